"""ALS: the settings a search varies, block counts sized to the data, fitting, and the top-k
unseen products of a fitted model for a set of customers."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame

from crm_spark.config import RecommendConfig
from crm_spark.recommend.interactions import EXPLICIT, ITEM, STRENGTH, USER
from crm_spark.recommend.top_k import RANK, top_k_unseen
from crm_spark.schemas import CUSTOMER_KEY, PRODUCT_ID, SCORE

ALS_MODEL = "als"
EVENTS_PER_BLOCK = 50_000


@dataclass(frozen=True)
class AlsParams:
    """The ALS settings a tuning trial varies."""

    rank: int
    reg_param: float
    alpha: float
    max_iter: int


def configured(cfg: RecommendConfig) -> AlsParams:
    """Return the configured ALS settings (the search's starting point)."""
    return AlsParams(cfg.rank, cfg.reg_param, cfg.alpha, cfg.max_iter)


def als_blocks(events: int, parallelism: int) -> int:
    """Return ALS user and item block counts sized to the data: one per ``EVENTS_PER_BLOCK``
    events, at least 2, at most the cluster's default parallelism (more only adds shuffles)."""
    return max(2, min(parallelism, -(-events // EVENTS_PER_BLOCK)))


def fit(interactions_df: DataFrame, params: AlsParams, explicit: bool, blocks: int, seed: int) -> ALSModel:
    """Fit ALS on ``(user, item, strength)``: implicit confidence or explicit values."""
    als = ALS(
        userCol=USER, itemCol=ITEM, ratingCol=STRENGTH, implicitPrefs=not explicit, rank=params.rank,
        regParam=params.reg_param, alpha=params.alpha, maxIter=params.max_iter, seed=seed,
        numUserBlocks=blocks, numItemBlocks=blocks, coldStartStrategy="drop", checkpointInterval=5,
    )
    return als.fit(interactions_df)


def recommend_for(indexed_df: DataFrame, users_df: DataFrame, items_df: DataFrame, targets_df: DataFrame,
                  params: AlsParams, cfg: RecommendConfig, blocks: int, k: int, excluded_items: tuple[int, ...] = ()
                  ) -> tuple[ALSModel, DataFrame]:
    """Fit ALS and return top-``k`` unseen products for ``targets_df``.

    Args:
        indexed_df: ``(user, item, strength)`` from :func:`index_pairs`.
        users_df: ``(customer_key, user)`` from :func:`index_pairs`.
        items_df: ``(product_id, item)`` index of the catalogue.
        targets_df: column ``customer_key`` of the customers to recommend to; those
            without interactions get nothing here.
        params: ALS settings.
        cfg: the recommendation settings (feedback and seed).
        blocks: ALS block count.
        k: recommendations per customer.
        excluded_items: item indices no one gets.

    Returns:
        The fitted model, and ``customer_key``, ``product_id``, ``score`` and ``rank``.
    """
    model = fit(indexed_df, params, cfg.feedback == EXPLICIT, blocks, cfg.seed)
    targets = targets_df.select(CUSTOMER_KEY).join(users_df, CUSTOMER_KEY).select(USER)
    recs = top_k_unseen(model, targets, indexed_df, k, excluded_items)
    return model, recs.join(users_df, USER).join(items_df, ITEM).select(CUSTOMER_KEY, PRODUCT_ID, SCORE, RANK)

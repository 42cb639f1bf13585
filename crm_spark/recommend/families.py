"""Recommender families and what a run tries of them: ALS (matrix factorization), EASE (item to
item) and a blend of the two, fitted on one set of interactions and scored for top-k."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark import Broadcast
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession

from crm_spark.config import RecommendConfig
from crm_spark.recommend import als, item_item
from crm_spark.recommend.als import ALS_MODEL, AlsParams
from crm_spark.recommend.interactions import EXPLICIT, ITEM, USER
from crm_spark.recommend.item_item import EASE_MODEL
from crm_spark.recommend.top_k import RANK, Scorer, top_k_unseen
from crm_spark.schemas import CUSTOMER_KEY, PRODUCT_ID, SCORE

log = logging.getLogger(__name__)

BLEND_MODEL = "blend"  # ALS and EASE scores, each standardized per customer, weighed together


@dataclass(frozen=True)
class Recommender:
    """One recommender setting: ALS, EASE, or a blend of the two.

    Attributes:
        model: ``als``, ``ease`` or ``blend``.
        als: the ALS settings (ALS and blend).
        ease_reg: EASE's regularization (EASE and blend).
        als_share: a blend's weight of ALS's standardized scores; EASE's is the rest.
    """

    model: str
    als: AlsParams | None = None
    ease_reg: float | None = None
    als_share: float | None = None

    def __str__(self) -> str:
        """Return the setting in a few words, e.g. ``ease reg 300`` or ``blend 0.5 als rank 64 ... + ease reg 300``."""
        als_text = (f"als rank {self.als.rank} reg {self.als.reg_param:g} alpha {self.als.alpha:g} "
                    f"iter {self.als.max_iter} {self.als.confidence}" if self.als else "")
        ease_text = f"ease reg {self.ease_reg:g}" if self.ease_reg is not None else ""
        if self.model == BLEND_MODEL:
            return f"blend {self.als_share:g} {als_text} + {ease_text}"
        return als_text or ease_text

    def params(self) -> dict[str, float]:
        """Return the numeric settings, for the registry."""
        values = self.als.as_map() if self.als else {}
        values.update({name: getattr(self, name) for name in ("ease_reg", "als_share")
                       if getattr(self, name) is not None})
        return values


def starting_points(cfg: RecommendConfig) -> list[Recommender]:
    """Return the configured setting of each configured family, in config order (a search's starting points)."""
    return [Recommender(ALS_MODEL, als=als.configured(cfg)) if model == ALS_MODEL
            else Recommender(EASE_MODEL, ease_reg=cfg.ease_reg) for model in cfg.models]


class Fitting:
    """Fits recommenders on one set of interactions, each model once; a context manager.

    The item co-occurrence, EASE's weights and every fitted ALS model are kept, so trials
    that share them (EASE at several regularizations, blends of a fitted ALS) do not refit.
    Leaving the ``with`` block releases the weights sent to the executors.

    Args:
        spark: the session.
        indexed_df: ``(user, item, strength)`` interactions, persisted by the caller.
        cfg: the recommendation settings (feedback, seed, catalogue limit).
        blocks: ALS block count.
    """

    def __init__(self, spark: SparkSession, indexed_df: DataFrame, cfg: RecommendConfig, blocks: int) -> None:
        self.spark, self.indexed, self.cfg, self.blocks = spark, indexed_df, cfg, blocks
        self._models: dict[AlsParams, ALSModel] = {}
        self._items: np.ndarray | None = None
        self._gram: np.ndarray | None = None
        self._weights: dict[float, Broadcast] = {}

    def __enter__(self) -> Fitting:
        return self

    def __exit__(self, *_: object) -> None:
        for shared in self._weights.values():
            shared.destroy()
        self._weights.clear()

    def skip_reason(self, model: str) -> str | None:
        """Return why a family cannot be fitted on these interactions, or None."""
        if model in (EASE_MODEL, BLEND_MODEL) and self.cfg.feedback == EXPLICIT:
            return "EASE learns from implicit feedback; recommend.feedback is explicit"
        if model in (EASE_MODEL, BLEND_MODEL) and len(self.items()) > self.cfg.ease_max_items:
            return (f"EASE needs an item-item matrix of {len(self.items()):,} items, more than "
                    f"recommend.ease_max_items ({self.cfg.ease_max_items:,})")
        return None

    def items(self) -> np.ndarray:
        """Return the items with interactions, ascending."""
        if self._items is None:
            self._items = item_item.item_ids_of(self.indexed)
        return self._items

    def als_model(self, params: AlsParams) -> ALSModel:
        """Return ALS fitted with ``params``."""
        if params not in self._models:
            self._models[params] = als.fit(self.indexed, params, self.cfg.feedback == EXPLICIT, self.blocks,
                                           self.cfg.seed)
        return self._models[params]

    def ease_weights(self, reg: float) -> Broadcast:
        """Return EASE's weights at ``reg``, broadcast; the co-occurrence is aggregated on first use."""
        if reg not in self._weights:
            if self._gram is None:
                self._gram = item_item.cooccurrence(self.indexed, self.items())
            self._weights[reg] = self.spark.sparkContext.broadcast(item_item.ease_weights(self._gram, reg))
        return self._weights[reg]

    def scorer(self, spec: Recommender) -> Scorer:
        """Return the scoring of ``spec`` fitted on these interactions."""
        if spec.model == ALS_MODEL:
            return als.als_scorer(self.als_model(spec.als))
        ease = item_item.ease_scorer(self.indexed, self.items(), self.ease_weights(spec.ease_reg))
        if spec.model == EASE_MODEL:
            return ease
        return blend(als.als_scorer(self.als_model(spec.als)), ease, spec.als_share)

    def save(self, spec: Recommender, path: str) -> None:
        """Save the fitted ``spec`` under ``path``: the ALS model and the EASE weights as Parquet."""
        if spec.model in (ALS_MODEL, BLEND_MODEL):
            self.als_model(spec.als).write().overwrite().save(f"{path}/{ALS_MODEL}")
        if spec.model in (EASE_MODEL, BLEND_MODEL):
            item_item.weights_frame(self.spark, self.items(), self.ease_weights(spec.ease_reg).value).write.mode(
                "overwrite").parquet(f"{path}/{EASE_MODEL}")


def blend(first: Scorer, second: Scorer, share: float) -> Scorer:
    """Return ``share`` times ``first``'s scores plus the rest times ``second``'s, each standardized per
    customer (mean 0, standard deviation 1 over the items), so neither scale dominates.

    Raises:
        ValueError: the two score different items.
    """
    if not np.array_equal(first.item_ids, second.item_ids):
        raise ValueError("a blend needs two recommenders fitted on the same items")

    first_score, second_score = first.score, second.score  # the scorers' frames stay on the driver

    def score(part: pd.DataFrame) -> np.ndarray:
        return share * _standardized(first_score(part)) + (1.0 - share) * _standardized(second_score(part))

    return Scorer(first.item_ids, first.users, score)


def _standardized(scores: np.ndarray) -> np.ndarray:
    """Return each row of ``scores`` less its mean, over its standard deviation (rows without spread: 0)."""
    spread = scores.std(axis=1, keepdims=True)
    return ((scores - scores.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1.0)).astype(np.float32)


def recommend_for(scorer: Scorer, users_df: DataFrame, items_df: DataFrame, indexed_df: DataFrame,
                  targets_df: DataFrame, k: int, excluded_items: tuple[int, ...] = ()) -> DataFrame:
    """Return top-``k`` unseen products of a fitted recommender for ``targets_df``.

    Args:
        scorer: the fitted recommender's scoring (``Fitting.scorer``).
        users_df: ``(customer_key, user)`` from :func:`index_pairs`.
        items_df: ``(product_id, item)`` index of the catalogue.
        indexed_df: ``(user, item, strength)``: what each customer has seen.
        targets_df: column ``customer_key`` of the customers to recommend to; those
            without interactions get nothing here.
        k: recommendations per customer.
        excluded_items: item indices no one gets.

    Returns:
        ``customer_key``, ``product_id``, ``score`` and ``rank``.
    """
    targets = targets_df.select(CUSTOMER_KEY).join(users_df, CUSTOMER_KEY).select(USER)
    recs = top_k_unseen(scorer, targets, indexed_df, k, excluded_items)
    return recs.join(users_df, USER).join(items_df, ITEM).select(CUSTOMER_KEY, PRODUCT_ID, SCORE, RANK)

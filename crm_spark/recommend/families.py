"""Recommender families and what a run tries of them: ALS (matrix factorization), EASE (item to
item) and a blend of the two, fitted on one set of interactions and scored for top-k."""

from __future__ import annotations

import logging
from collections.abc import Callable
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

PARTNER = "partner"  # a blend's second ALS: its params' prefix and its saved model's suffix
PARTNER_FEATURES = f"{PARTNER}_features"  # the user factors of a blend's second ALS

BLEND_MODEL = "blend"  # ALS (one or two) and EASE scores, each standardized per customer, weighed together


@dataclass(frozen=True)
class Recommender:
    """One recommender setting: ALS, EASE, or a blend of the two.

    Attributes:
        model: ``als``, ``ease`` or ``blend``.
        als: the ALS settings (ALS and blend).
        ease_reg: EASE's regularization (EASE and blend).
        als_share: a blend's weight of ALS's standardized scores; EASE's is the rest.
        partner: a blend's second ALS, of another rank; the two share ``als_share`` evenly.
    """

    model: str
    als: AlsParams | None = None
    ease_reg: float | None = None
    als_share: float | None = None
    partner: AlsParams | None = None

    def __str__(self) -> str:
        """Return the setting in a few words, e.g. ``ease reg 300`` or ``blend 0.5 als rank 64 ... + ease reg 300``."""
        als_text = " + ".join(f"als rank {p.rank} reg {p.reg_param:g} alpha {p.alpha:g} iter {p.max_iter} "
                              f"{p.confidence}" for p in (self.als, self.partner) if p)
        ease_text = f"ease reg {self.ease_reg:g}" if self.ease_reg is not None else ""
        if self.model == BLEND_MODEL:
            return f"blend {self.als_share:g} {als_text} + {ease_text}"
        return als_text or ease_text

    def params(self) -> dict[str, float]:
        """Return the numeric settings, for the registry (a partner's prefixed ``partner_``)."""
        values = self.als.as_map() if self.als else {}
        values.update({name: getattr(self, name) for name in ("ease_reg", "als_share")
                       if getattr(self, name) is not None})
        if self.partner:
            values.update({f"{PARTNER}_{name}": value for name, value in self.partner.as_map().items()})
        return values

    @classmethod
    def from_params(cls, model: str, params: dict[str, float]) -> Recommender:
        """Return the setting that ``params`` gave for ``model`` (a registry row's model and params)."""
        return cls(model, als=AlsParams.from_map(params) if "rank" in params else None,
                   ease_reg=params.get("ease_reg"), als_share=params.get("als_share"),
                   partner=AlsParams.from_map(params, f"{PARTNER}_") if f"{PARTNER}_rank" in params else None)


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
        return scorer_of(spec, lambda params, column: als.als_scorer(self.als_model(params), column),
                         lambda: item_item.ease_scorer(self.indexed, self.items(), self.ease_weights(spec.ease_reg)))

    def save(self, spec: Recommender, path: str) -> None:
        """Save the fitted ``spec`` under ``path``: the ALS model (and a blend's partner) and the EASE weights as
        Parquet."""
        if spec.model in (ALS_MODEL, BLEND_MODEL):
            self.als_model(spec.als).write().overwrite().save(f"{path}/{ALS_MODEL}")
        if spec.partner is not None:
            self.als_model(spec.partner).write().overwrite().save(f"{path}/{ALS_MODEL}_{PARTNER}")
        if spec.model in (EASE_MODEL, BLEND_MODEL):
            item_item.weights_frame(self.spark, self.items(), self.ease_weights(spec.ease_reg).value).write.mode(
                "overwrite").parquet(f"{path}/{EASE_MODEL}")


def scorer_of(spec: Recommender, als_part: Callable[[AlsParams, str], Scorer],
              ease_part: Callable[[], Scorer]) -> Scorer:
    """Return the scoring of ``spec`` from its parts: ALS, EASE, or their blend.

    Args:
        spec: the setting.
        als_part: the scoring of the ALS with the given settings, its user factors in the given column.
        ease_part: the scoring of EASE at ``spec.ease_reg``.
    """
    if spec.model == ALS_MODEL:
        return als_part(spec.als, "features")
    ease = ease_part()
    if spec.model == EASE_MODEL:
        return ease
    if spec.partner is None:
        return blend([(als_part(spec.als, "features"), spec.als_share), (ease, 1.0 - spec.als_share)])
    return blend([(als_part(spec.als, "features"), spec.als_share / 2),
                  (als_part(spec.partner, PARTNER_FEATURES), spec.als_share / 2), (ease, 1.0 - spec.als_share)])


def blend(weighted: list[tuple[Scorer, float]]) -> Scorer:
    """Return the weighted sum of several recommenders' scores, each standardized per customer
    (mean 0, standard deviation 1 over the items), so no scale dominates.

    The customers are those with every per-user column the parts read (ALS factors).

    Raises:
        ValueError: the parts score different items.
    """
    first = weighted[0][0]
    if any(not np.array_equal(first.item_ids, part.item_ids) for part, _ in weighted):
        raise ValueError("a blend needs recommenders fitted on the same items")
    users = None
    for part, _ in weighted:
        if len(part.users.columns) > 1:  # per-user inputs beside the user
            users = part.users if users is None else users.join(part.users, USER)
    scores = [(part.score, weight) for part, weight in weighted]  # the scorers' frames stay on the driver

    def score(block: pd.DataFrame) -> np.ndarray:
        return sum(weight * _standardized(part_score(block)) for part_score, weight in scores)

    return Scorer(first.item_ids, first.users if users is None else users, score)


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

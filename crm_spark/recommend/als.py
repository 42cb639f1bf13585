"""ALS: the settings a search varies, block counts sized to the data, fitting, and scoring every
item for a block of customers from the fitted factors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.config import RecommendConfig
from crm_spark.recommend.interactions import ITEM, STRENGTH, USER
from crm_spark.recommend.top_k import Scorer

ALS_MODEL = "als"
EVENTS_PER_BLOCK = 50_000
LINEAR, LOG = "linear", "log"  # confidence transforms: 1 + alpha * r, or 1 + alpha * log(1 + r)


@dataclass(frozen=True)
class AlsParams:
    """The ALS settings a tuning trial varies."""

    rank: int
    reg_param: float
    alpha: float
    max_iter: int
    confidence: str = LINEAR

    def as_map(self) -> dict[str, float]:
        """Return the numeric settings, with the confidence transform as 0 (linear) or 1 (log)."""
        return {"rank": float(self.rank), "reg_param": self.reg_param, "alpha": self.alpha,
                "max_iter": float(self.max_iter), "log_confidence": float(self.confidence == LOG)}

    @classmethod
    def from_map(cls, values: dict[str, float], prefix: str = "") -> AlsParams:
        """Return the settings ``as_map`` gave, read from ``values`` under ``prefix`` (the registry's params)."""
        return cls(int(values[f"{prefix}rank"]), values[f"{prefix}reg_param"], values[f"{prefix}alpha"],
                   int(values[f"{prefix}max_iter"]), LOG if values.get(f"{prefix}log_confidence") else LINEAR)


def configured(cfg: RecommendConfig) -> AlsParams:
    """Return the configured ALS settings (the search's starting point)."""
    return AlsParams(cfg.rank, cfg.reg_param, cfg.alpha, cfg.max_iter, cfg.confidence)


def als_blocks(events: int, parallelism: int) -> int:
    """Return ALS user and item block counts sized to the data: one per ``EVENTS_PER_BLOCK``
    events, at least 2, at most the tasks the cluster runs at once (``parallelism``): more
    only adds tasks, and at 270,000 events on 2 cores a fit took 7.7 s on 6 blocks, 3.9 s on 2."""
    return max(2, min(parallelism, -(-events // EVENTS_PER_BLOCK)))


def fit(interactions_df: DataFrame, params: AlsParams, explicit: bool, blocks: int, seed: int) -> ALSModel:
    """Fit ALS on ``(user, item, strength)``: implicit confidence or explicit values.

    Implicit ALS weighs a pair by ``1 + alpha * strength``; the log transform feeds it
    ``log(1 + strength)`` instead, so many repeats of a pair weigh less than linearly.
    """
    als = ALS(
        userCol=USER, itemCol=ITEM, ratingCol=STRENGTH, implicitPrefs=not explicit, rank=params.rank,
        regParam=params.reg_param, alpha=params.alpha, maxIter=params.max_iter, seed=seed,
        numUserBlocks=blocks, numItemBlocks=blocks, coldStartStrategy="drop", checkpointInterval=5,
    )
    if params.confidence == LOG and not explicit:
        interactions_df = interactions_df.withColumn(STRENGTH, F.log1p(STRENGTH).cast("float"))
    return als.fit(interactions_df)


def als_scorer(model: ALSModel, column: str = "features", user_factors_df: DataFrame | None = None) -> Scorer:
    """Return the scoring of a fitted ALS model: user factors times every item's factors.

    The user factors come in ``column``, so the factors of two models can sit side by side in a blend.

    Args:
        model: the fitted model.
        column: the name of the user factors' column.
        user_factors_df: ``(user, features)`` to score with instead of the model's own (folded-in customers).
    """
    item_factors = model.itemFactors.orderBy("id").toPandas()
    item_ids = item_factors["id"].to_numpy(dtype=np.int64)
    matrix = (np.stack(item_factors["features"].to_numpy()).astype(np.float32).T if len(item_ids)
              else np.zeros((model.rank, 0), dtype=np.float32))

    def score(part: pd.DataFrame) -> np.ndarray:
        return np.stack(part[column].to_numpy()).astype(np.float32) @ matrix

    users = model.userFactors.withColumnRenamed("id", USER) if user_factors_df is None else user_factors_df
    return Scorer(item_ids, users.withColumnRenamed("features", column), score)

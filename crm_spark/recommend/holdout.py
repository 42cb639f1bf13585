"""Held-out data for recommendations: relevant products after a cutoff, or a share of each
customer's products at random; the training events are what remains."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from crm_spark.config import RecommendConfig
from crm_spark.dates import start_of
from crm_spark.recommend.interactions import EVENT_TS
from crm_spark.schemas import CUSTOMER_KEY, PRODUCT_ID

BY_TIME = "time"  # recommend.holdout: products first met after the cutoff (else ``random``)


def split_by_time(events_df: DataFrame, cutoff: dt.date, end: dt.date) -> tuple[DataFrame, DataFrame]:
    """Split events at ``cutoff``: relevant are products first met in ``[cutoff, end)``.

    Only customers with an event before ``cutoff`` get relevant items, so every held-out
    customer is one a model can serve; products they met before ``cutoff`` are not relevant.

    Returns:
        Training events (before ``cutoff``) and distinct ``(customer_key, product_id)`` relevant pairs.
    """
    start = start_of(cutoff)
    train = events_df.where(F.col(EVENT_TS) < start)
    window = events_df.where((F.col(EVENT_TS) >= start) & (F.col(EVENT_TS) < start_of(end)))
    relevant = (
        window.select(CUSTOMER_KEY, PRODUCT_ID).distinct()
        .join(train.select(CUSTOMER_KEY, PRODUCT_ID), [CUSTOMER_KEY, PRODUCT_ID], "left_anti")
        .join(train.select(CUSTOMER_KEY).distinct(), CUSTOMER_KEY, "left_semi")
    )
    return train, relevant


def split_at_random(events_df: DataFrame, share: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """Hold out ``share`` of each customer's distinct products, chosen by a seeded hash.

    A customer with ``n`` products keeps ``n - round(n * share)`` of them for training,
    and at least one; every event of a held-out pair leaves training.

    Returns:
        Training events and distinct ``(customer_key, product_id)`` relevant pairs.
    """
    pairs = events_df.select(CUSTOMER_KEY, PRODUCT_ID).distinct()
    by_customer = Window.partitionBy(CUSTOMER_KEY)
    order = by_customer.orderBy(F.xxhash64(CUSTOMER_KEY, PRODUCT_ID, F.lit(seed)), PRODUCT_ID)
    size = F.count(F.lit(1)).over(by_customer)
    relevant = (pairs.withColumn("_held", F.least(F.round(size * share), size - 1))
                .withColumn("_n", F.row_number().over(order))
                .where(F.col("_n") <= F.col("_held")).drop("_n", "_held"))
    return events_df.join(relevant, [CUSTOMER_KEY, PRODUCT_ID], "left_anti"), relevant


def split(events_df: DataFrame, cfg: RecommendConfig, cutoff: dt.date, end: dt.date, seed: int
          ) -> tuple[DataFrame, DataFrame]:
    """Split events into training events and held-out relevant pairs, by time or at random (``recommend.holdout``)."""
    if cfg.holdout == BY_TIME:
        return split_by_time(events_df, cutoff, end)
    return split_at_random(events_df, cfg.holdout_share, seed)


def validation_split(train_events: DataFrame, cfg: RecommendConfig, cutoff: dt.date, horizon: dt.timedelta
                     ) -> tuple[DataFrame, DataFrame]:
    """Carve validation data out of the training events (before ``cutoff``) the way the test split was made:
    by time, the ``horizon`` before the cutoff; at random, ``validation_share`` of each customer's products
    with another seed.

    A validation share below the test share keeps what tuning fits on close in size to what the
    final model fits on: settings chosen on much less data favour too small a rank.
    """
    if cfg.holdout == BY_TIME:
        return split_by_time(train_events, cutoff - horizon, cutoff)
    return split_at_random(train_events, cfg.validation_share, cfg.seed + 1)

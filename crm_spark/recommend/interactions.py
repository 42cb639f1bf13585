"""Interactions: purchase and rating events, the per-pair strength ALS learns from, and the
dense integer indices of customers and products."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.config import RecommendConfig
from crm_spark.dates import start_of
from crm_spark.errors import StageSkipped
from crm_spark.features.customer import completed_before
from crm_spark.schemas import CUSTOMER_KEY, ORDER_TS, PRODUCT_ID, RATED_TS, RATING

USER, ITEM, STRENGTH = "user", "item", "strength"
EVENT_TS, VALUE = "event_ts", "value"
PURCHASES, RATINGS = "purchases", "ratings"  # where interactions come from
EXPLICIT = "explicit"  # recommend.feedback: rating values instead of an implicit confidence


def catalogue(products_df: DataFrame, *event_frames: DataFrame) -> DataFrame:
    """Return every ``product_id`` of the products table or of an order line or rating."""
    result = products_df.select(PRODUCT_ID)
    for frame in event_frames:
        result = result.unionByName(frame.where(F.col(PRODUCT_ID).isNotNull()).select(PRODUCT_ID))
    return result.distinct()


def purchase_events(orders_df: DataFrame, before: dt.date) -> DataFrame:
    """Return ``(customer_key, product_id, event_ts, value)``: completed order lines before a date."""
    return completed_before(orders_df, before).where(F.col(PRODUCT_ID).isNotNull()).select(
        CUSTOMER_KEY, PRODUCT_ID, F.col(ORDER_TS).alias(EVENT_TS), F.lit(1.0).alias(VALUE))


def rating_events(ratings_df: DataFrame, before: dt.date) -> DataFrame:
    """Return ``(customer_key, product_id, event_ts, value)``: ratings of known customers before a date.

    A rating without a time counts as given before every date.
    """
    return ratings_df.where(
        F.col(CUSTOMER_KEY).isNotNull()
        & (F.col(RATED_TS).isNull() | (F.col(RATED_TS) < start_of(before)))
    ).select(CUSTOMER_KEY, PRODUCT_ID, F.coalesce(RATED_TS, F.lit(dt.datetime(1970, 1, 1))).alias(EVENT_TS),
             F.col(RATING).cast("double").alias(VALUE))


def interactions(events_df: DataFrame, explicit: bool, half_life_days: float | None) -> DataFrame:
    """Return ``(customer_key, product_id, strength)``, one row per pair.

    Args:
        events_df: ``purchase_events`` or ``rating_events``.
        explicit: strength is the pair's latest value (a rating) instead of a confidence.
        half_life_days: implicit strength is the sum of the pair's event weights, each
            ``2 ** -(age / half_life_days)`` with the age counted back from the newest
            event of the frame; None weighs every event 1.

    Returns:
        The pairs with their strength as float.
    """
    pairs = events_df.groupBy(CUSTOMER_KEY, PRODUCT_ID)
    if explicit:
        return pairs.agg(F.max_by(VALUE, EVENT_TS).cast("float").alias(STRENGTH))
    if half_life_days is None:
        return pairs.agg(F.count(F.lit(1)).cast("float").alias(STRENGTH))
    newest = events_df.agg(F.max(EVENT_TS)).first()[0]
    age_days = (F.lit(newest).cast("long") - F.col(EVENT_TS).cast("long")) / 86_400.0
    return pairs.agg(F.sum(F.pow(F.lit(2.0), -age_days / half_life_days)).cast("float").alias(STRENGTH))


def to_pairs(events_df: DataFrame, cfg: RecommendConfig, kind: str) -> DataFrame:
    """Return the ``interactions`` ALS learns from, as configured for ``kind`` (purchases or ratings)."""
    explicit = cfg.feedback == EXPLICIT
    if kind == RATINGS and not explicit:
        # A rating says the customer met the product; binary feedback ranks better than the stars.
        return interactions(events_df, False, None).withColumn(STRENGTH, F.lit(1.0).cast("float"))
    return interactions(events_df, explicit, cfg.recency_half_life_days if kind == PURCHASES else None)


def interaction_kind(cfg: RecommendConfig, orders_df: DataFrame, ratings_df: DataFrame) -> str:
    """Return where interactions come from: ``purchases`` or ``ratings``.

    ``auto`` takes purchases when any order line names a product, else ratings.

    Raises:
        StageSkipped: the chosen (or every) source has no usable rows.
    """
    def has_purchases() -> bool:
        return not orders_df.where(F.col(PRODUCT_ID).isNotNull()).isEmpty()

    kind = cfg.interactions
    if kind == "auto":  # each source is looked at only when the answer depends on it
        kind = PURCHASES if cfg.feedback != EXPLICIT and has_purchases() else RATINGS
    elif kind == PURCHASES and not has_purchases():
        raise StageSkipped("no order lines with a product: purchase recommendations need them")
    if kind == RATINGS and ratings_df.isEmpty():
        raise StageSkipped("no ratings and no order lines with a product: recommendations need one of them")
    return kind


def dense_index(df: DataFrame, key: str, index: str) -> DataFrame:
    """Return ``(key, index)``: distinct keys numbered 0..n-1 in key order.

    Uses ``zipWithIndex``, which numbers rows across partitions without moving them
    to one place.
    """
    ordered = df.select(key).distinct().orderBy(key)
    return ordered.rdd.zipWithIndex().map(lambda pair: (pair[0][0], int(pair[1]))).toDF(
        f"{key} string, {index} int"
    )


def index_pairs(pairs_df: DataFrame, items_df: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Number the customers of ``pairs_df`` and return the ``(customer_key, user)`` index
    and the ``(user, item, strength)`` rows ALS trains on."""
    users = dense_index(pairs_df, CUSTOMER_KEY, USER)
    return users, pairs_df.join(users, CUSTOMER_KEY).join(items_df, PRODUCT_ID).select(USER, ITEM, STRENGTH)

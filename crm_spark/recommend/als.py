"""Interactions, holdout splits, integer indexing, ALS and top-k recommendations that skip seen items."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from crm_spark.features import completed_before
from crm_spark.schemas import CUSTOMER_KEY, ORDER_TS, PRODUCT_ID, RATED_TS, RATING

USER, ITEM, STRENGTH, SCORE, RANK = "user", "item", "strength", "score", "rank"
EVENT_TS, VALUE = "event_ts", "value"
# Scores of one block of users against every item stay below this many cells (float32).
BLOCK_CELLS = 4_000_000


@dataclass(frozen=True)
class AlsParams:
    """The ALS settings a tuning trial varies."""

    rank: int
    reg_param: float
    alpha: float
    max_iter: int


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
        & (F.col(RATED_TS).isNull() | (F.col(RATED_TS) < F.lit(before).cast("timestamp")))
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


def split_by_time(events_df: DataFrame, cutoff: dt.date, end: dt.date) -> tuple[DataFrame, DataFrame]:
    """Split events at ``cutoff``: relevant are products first met in ``[cutoff, end)``.

    Only customers with an event before ``cutoff`` get relevant items, so every held-out
    customer is one a model can serve; products they met before ``cutoff`` are not relevant.

    Returns:
        Training events (before ``cutoff``) and distinct ``(customer_key, product_id)`` relevant pairs.
    """
    start = F.lit(cutoff).cast("timestamp")
    train = events_df.where(F.col(EVENT_TS) < start)
    window = events_df.where((F.col(EVENT_TS) >= start) & (F.col(EVENT_TS) < F.lit(end).cast("timestamp")))
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


def dense_index(df: DataFrame, key: str, index: str) -> DataFrame:
    """Return ``(key, index)``: distinct keys numbered 0..n-1 in key order.

    Uses ``zipWithIndex``, which numbers rows across partitions without moving them
    to one place.
    """
    ordered = df.select(key).distinct().orderBy(key)
    return ordered.rdd.zipWithIndex().map(lambda pair: (pair[0][0], int(pair[1]))).toDF(
        f"{key} string, {index} int"
    )


def fit(interactions_df: DataFrame, params: AlsParams, explicit: bool, blocks: int, seed: int) -> ALSModel:
    """Fit ALS on ``(user, item, strength)``: implicit confidence or explicit values."""
    als = ALS(
        userCol=USER, itemCol=ITEM, ratingCol=STRENGTH, implicitPrefs=not explicit, rank=params.rank,
        regParam=params.reg_param, alpha=params.alpha, maxIter=params.max_iter, seed=seed,
        numUserBlocks=blocks, numItemBlocks=blocks, coldStartStrategy="drop", checkpointInterval=5,
    )
    return als.fit(interactions_df)


def top_k_unseen(
    model: ALSModel, users_df: DataFrame, seen_df: DataFrame, k: int, excluded_items: Sequence[int] = ()
) -> DataFrame:
    """Return each user's ``k`` best-scored items, never one they have seen or an excluded one.

    Scores every item for a block of users at a time with one matrix product (the item
    factors travel with the task; the driver holds only the catalogue's factors), masks
    seen and excluded items, and keeps the best ``k``. Measured faster than
    ``recommendForUserSubset`` with ``k`` plus the most items anyone has seen followed by
    an anti-join (see ``benchmarks/recommend_topk.py``).

    Args:
        model: fitted ALS model.
        users_df: column ``user``.
        seen_df: ``(user, item)`` pairs to exclude.
        k: recommendations per user.
        excluded_items: items no one gets (for example inactive products).

    Returns:
        ``user``, ``item``, ``score`` and ``rank`` (1 = best); fewer than ``k`` rows
        only when fewer unseen items exist.
    """
    item_factors = model.itemFactors.orderBy("id").toPandas()
    item_ids = item_factors["id"].to_numpy(dtype=np.int64)
    matrix = np.stack(item_factors["features"].to_numpy()).astype(np.float32).T if len(item_ids) else None
    excluded = np.flatnonzero(np.isin(item_ids, np.asarray(excluded_items, dtype=np.int64)))
    block_rows = max(1, BLOCK_CELLS // max(1, len(item_ids)))
    seen = seen_df.groupBy(USER).agg(F.collect_list(ITEM).alias("seen"))
    users = (model.userFactors.withColumnRenamed("id", USER).join(users_df.select(USER).distinct(), USER)
             .join(seen, USER, "left"))

    def best(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for start in range(0, len(batch), block_rows):
                part = batch.iloc[start:start + block_rows]
                yield _block_top_k(part, item_ids, matrix, excluded, k)

    return users.mapInPandas(best, f"{USER} int, {ITEM} int, {SCORE} float, {RANK} int")


def _block_top_k(part: pd.DataFrame, item_ids: np.ndarray, matrix: np.ndarray | None, excluded: np.ndarray,
                 k: int) -> pd.DataFrame:
    """Return the top ``k`` unseen items of each user of one block (see :func:`top_k_unseen`)."""
    if matrix is None or part.empty:
        return pd.DataFrame({USER: [], ITEM: [], SCORE: [], RANK: []})
    scores = np.stack(part["features"].to_numpy()).astype(np.float32) @ matrix
    scores[:, excluded] = -np.inf
    seen = part["seen"].to_numpy()
    lengths = np.array([0 if s is None else len(s) for s in seen])
    if lengths.sum():
        columns = np.searchsorted(item_ids, np.concatenate([s for s in seen if s is not None]))
        scores[np.repeat(np.arange(len(part)), lengths), np.minimum(columns, len(item_ids) - 1)] = -np.inf
    m = min(k, scores.shape[1])
    top = np.argpartition(-scores, m - 1, axis=1)[:, :m]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
    keep = np.isfinite(top_scores).ravel()
    return pd.DataFrame({
        USER: np.repeat(part[USER].to_numpy(dtype=np.int32), m)[keep],
        ITEM: item_ids[top].ravel()[keep].astype(np.int32),
        SCORE: top_scores.ravel()[keep],
        RANK: np.tile(np.arange(1, m + 1, dtype=np.int32), len(part))[keep],
    })


def popularity(interactions_df: DataFrame) -> DataFrame:
    """Return ``(product_id, score)``: the number of distinct customers who interacted with it."""
    return interactions_df.groupBy(PRODUCT_ID).agg(F.countDistinct(CUSTOMER_KEY).cast("double").alias(SCORE))


def popular_unseen(
    users_df: DataFrame, seen_df: DataFrame | None, popularity_df: DataFrame, k: int, max_seen: int
) -> DataFrame:
    """Return each customer's ``k`` most popular products they have not interacted with.

    Args:
        users_df: column ``customer_key``.
        seen_df: ``(customer_key, product_id)`` pairs to exclude, or None.
        popularity_df: ``(product_id, score)``; higher is more popular.
        k: recommendations per customer.
        max_seen: the largest number of seen products of any customer.

    Returns:
        ``customer_key``, ``product_id``, ``score`` and ``rank``.
    """
    top = popularity_df.orderBy(F.col(SCORE).desc(), PRODUCT_ID).limit(k + max_seen)
    best = Window.partitionBy(CUSTOMER_KEY).orderBy(F.col(SCORE).desc(), PRODUCT_ID)
    pairs = users_df.select(CUSTOMER_KEY).crossJoin(F.broadcast(top))
    if seen_df is not None:
        pairs = pairs.join(seen_df.select(CUSTOMER_KEY, PRODUCT_ID), [CUSTOMER_KEY, PRODUCT_ID], "left_anti")
    return pairs.withColumn(RANK, F.row_number().over(best)).where(F.col(RANK) <= k)


def group_popular(interactions_df: DataFrame, groups_df: DataFrame, k: int, min_customers: int) -> DataFrame:
    """Return the ``k`` most popular products of each group with at least ``min_customers`` customers.

    Args:
        interactions_df: ``(customer_key, product_id, ...)``.
        groups_df: ``(customer_key, group)``.
        k: products per group.
        min_customers: smaller groups get no list (their customers fall back to overall popularity).

    Returns:
        ``group``, ``product_id``, ``score`` (customers of the group who interacted) and ``rank``.
    """
    members = interactions_df.join(groups_df, CUSTOMER_KEY)
    large = members.groupBy("group").agg(F.countDistinct(CUSTOMER_KEY).alias("_customers")).where(
        F.col("_customers") >= min_customers)
    counts = members.join(large, "group", "left_semi").groupBy("group", PRODUCT_ID).agg(
        F.countDistinct(CUSTOMER_KEY).cast("double").alias(SCORE))
    best = Window.partitionBy("group").orderBy(F.col(SCORE).desc(), PRODUCT_ID)
    return counts.withColumn(RANK, F.row_number().over(best)).where(F.col(RANK) <= k)


def cap_per_category(recs_df: DataFrame, categories_df: DataFrame, cap: int, k: int) -> DataFrame:
    """Keep at most ``cap`` products of a category per customer, then the best ``k``, re-ranked.

    Args:
        recs_df: ``customer_key``, ``product_id``, ``score``, ``rank`` (more than ``k`` candidates).
        categories_df: ``(product_id, category)``; products without one form no category.
        cap: products per category.
        k: recommendations per customer.
    """
    per_category = Window.partitionBy(CUSTOMER_KEY, "_category").orderBy(RANK)
    capped = (recs_df.join(categories_df.select(PRODUCT_ID, F.col("category").alias("_category")), PRODUCT_ID,
                           "left")
              .withColumn("_nth", F.row_number().over(per_category))
              .where(F.col("_category").isNull() | (F.col("_nth") <= cap)))
    rerank = Window.partitionBy(CUSTOMER_KEY).orderBy(RANK)
    return capped.withColumn(RANK, F.row_number().over(rerank)).where(F.col(RANK) <= k).drop("_category", "_nth")


def candidates_for_cap(k: int, cap: int | None) -> int:
    """Return how many candidates to draw so a category cap can still fill ``k`` places."""
    return k if cap is None else k * max(2, math.ceil(k / cap))

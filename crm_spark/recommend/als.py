"""Interactions, integer indexing and ALS top-k recommendations that skip seen items."""

from __future__ import annotations

import datetime as dt

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from crm_spark.config import RecommendConfig
from crm_spark.features import completed_before
from crm_spark.schemas import CUSTOMER_KEY, ORDER_ID, ORDER_TS, PRODUCT_ID, RATING

USER, ITEM, STRENGTH, SCORE, RANK = "user", "item", "strength", "score", "rank"


def catalogue(products_df: DataFrame, orders_df: DataFrame) -> DataFrame:
    """Return every ``product_id`` of the products table or of an order line."""
    ordered = orders_df.where(F.col(PRODUCT_ID).isNotNull()).select(PRODUCT_ID)
    return products_df.select(PRODUCT_ID).unionByName(ordered).distinct()


def purchase_interactions(orders_df: DataFrame, before: dt.date) -> DataFrame:
    """Return ``(customer_key, product_id, strength)``: orders of each product before a date."""
    return completed_before(orders_df, before).where(F.col(PRODUCT_ID).isNotNull()).groupBy(
        CUSTOMER_KEY, PRODUCT_ID).agg(
        F.countDistinct(ORDER_ID).cast("float").alias(STRENGTH)
    )


def new_purchases(orders_df: DataFrame, start: dt.date, end: dt.date) -> DataFrame:
    """Return distinct ``(customer_key, product_id)`` first bought in ``[start, end)``.

    These are the relevant items of a time-split holdout: products bought in the
    window that the customer had not bought before ``start``.
    """
    window = completed_before(orders_df, end).where(
        (F.col(ORDER_TS) >= F.lit(start).cast("timestamp")) & F.col(PRODUCT_ID).isNotNull())
    seen = completed_before(orders_df, start).select(CUSTOMER_KEY, PRODUCT_ID)
    return window.select(CUSTOMER_KEY, PRODUCT_ID).distinct().join(seen, [CUSTOMER_KEY, PRODUCT_ID], "left_anti")


def holdout_relevance(orders_df: DataFrame, cutoff: dt.date, end: dt.date) -> DataFrame:
    """Return the relevant items of the time-split holdout, for customers a model can serve.

    Relevant: products first bought in ``[cutoff, end)`` by customers who bought
    something before ``cutoff``.
    """
    known = completed_before(orders_df, cutoff).select(CUSTOMER_KEY).distinct()
    return new_purchases(orders_df, cutoff, end).join(known, CUSTOMER_KEY, "left_semi")


def dense_index(df: DataFrame, key: str, index: str) -> DataFrame:
    """Return ``(key, index)``: distinct keys numbered 0..n-1 in key order.

    Uses ``zipWithIndex``, which numbers rows across partitions without moving them
    to one place.
    """
    ordered = df.select(key).distinct().orderBy(key)
    return ordered.rdd.zipWithIndex().map(lambda pair: (pair[0][0], int(pair[1]))).toDF(
        f"{key} string, {index} int"
    )


def fit_implicit(interactions_df: DataFrame, cfg: RecommendConfig, blocks: int) -> ALSModel:
    """Fit implicit-feedback ALS on ``(user, item, strength)``."""
    als = ALS(
        userCol=USER, itemCol=ITEM, ratingCol=STRENGTH, implicitPrefs=True, rank=cfg.rank,
        regParam=cfg.reg_param, alpha=cfg.alpha, maxIter=cfg.max_iter, seed=cfg.seed,
        numUserBlocks=blocks, numItemBlocks=blocks, coldStartStrategy="drop", checkpointInterval=5,
    )
    return als.fit(interactions_df)


def fit_explicit(ratings_df: DataFrame, cfg: RecommendConfig, blocks: int) -> ALSModel:
    """Fit explicit-feedback ALS on ``(user, item, rating)``."""
    als = ALS(
        userCol=USER, itemCol=ITEM, ratingCol=RATING, implicitPrefs=False, rank=cfg.rating_rank,
        regParam=cfg.rating_reg_param, maxIter=cfg.max_iter, seed=cfg.seed, nonnegative=True,
        numUserBlocks=blocks, numItemBlocks=blocks, coldStartStrategy="drop", checkpointInterval=5,
    )
    return als.fit(ratings_df)


def top_k_unseen(model: ALSModel, users_df: DataFrame, seen_df: DataFrame, k: int, max_seen: int) -> DataFrame:
    """Return each user's ``k`` best-scored items they have not interacted with.

    Asks ALS for ``k + max_seen`` items per user, so at least ``k`` unseen ones remain
    whenever the catalogue has them.

    Args:
        model: fitted ALS model.
        users_df: column ``user``.
        seen_df: ``(user, item)`` pairs to exclude.
        k: recommendations per user.
        max_seen: the largest number of seen items of any user.

    Returns:
        ``user``, ``item``, ``score`` and ``rank`` (1 = best).
    """
    recs = model.recommendForUserSubset(users_df, k + max_seen).select(
        USER, F.explode("recommendations").alias("rec")
    ).select(USER, F.col("rec")[ITEM].alias(ITEM), F.col("rec")[RATING].alias(SCORE))
    best = Window.partitionBy(USER).orderBy(F.col(SCORE).desc(), F.col(ITEM))
    return (
        recs.join(seen_df.select(USER, ITEM), [USER, ITEM], "left_anti")
        .withColumn(RANK, F.row_number().over(best))
        .where(F.col(RANK) <= k)
    )


def popular_unseen(
    users_df: DataFrame, seen_df: DataFrame | None, popularity_df: DataFrame, k: int, max_seen: int
) -> DataFrame:
    """Return each customer's ``k`` most popular products they have not bought.

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


def popularity(interactions_df: DataFrame) -> DataFrame:
    """Return ``(product_id, score)``: the number of distinct customers who bought it."""
    return interactions_df.groupBy(PRODUCT_ID).agg(F.countDistinct(CUSTOMER_KEY).cast("double").alias(SCORE))

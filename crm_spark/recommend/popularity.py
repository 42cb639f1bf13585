"""Popularity: products ranked by how many customers interacted with them, overall or per
customer group; the baseline ALS must beat and the lists of customers without history."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from crm_spark.recommend.top_k import RANK
from crm_spark.schemas import CUSTOMER_KEY, PRODUCT_ID, SCORE

POPULAR_MODEL = "popular"  # the most popular products overall
GROUP_POPULAR_MODEL = "segment_popular"  # the most popular products of the customer's group
GROUP = "group"  # a customer group's name (see cold_start.customer_groups)


def popularity(interactions_df: DataFrame) -> DataFrame:
    """Return ``(product_id, score)``: the number of customers who interacted with it.

    Args:
        interactions_df: ``(customer_key, product_id, ...)``, one row per pair (as
            :func:`~crm_spark.recommend.interactions.interactions` returns them), so rows are customers.
    """
    return interactions_df.groupBy(PRODUCT_ID).agg(F.count(F.lit(1)).cast("double").alias(SCORE))


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
        interactions_df: ``(customer_key, product_id, ...)``, one row per pair.
        groups_df: ``(customer_key, group)``, one row per customer.
        k: products per group.
        min_customers: smaller groups get no list (their customers fall back to overall popularity).

    Returns:
        ``group``, ``product_id``, ``score`` (customers of the group who interacted) and ``rank``.
    """
    with_history = groups_df.join(interactions_df.select(CUSTOMER_KEY).distinct(), CUSTOMER_KEY, "left_semi")
    large = with_history.groupBy(GROUP).agg(F.count(F.lit(1)).alias("_customers")).where(
        F.col("_customers") >= min_customers)
    counts = interactions_df.join(groups_df.join(large, GROUP, "left_semi"), CUSTOMER_KEY).groupBy(
        GROUP, PRODUCT_ID).agg(F.count(F.lit(1)).cast("double").alias(SCORE))
    best = Window.partitionBy(GROUP).orderBy(F.col(SCORE).desc(), PRODUCT_ID)
    return counts.withColumn(RANK, F.row_number().over(best)).where(F.col(RANK) <= k)

"""Cold start: customers without history get the popular products of their group (gender and
age band, say), or of everyone when their group is too small."""

from __future__ import annotations

from typing import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.recommend.popularity import GROUP_POPULAR_MODEL, POPULAR_MODEL, group_popular, popular_unseen, popularity
from crm_spark.recommend.top_k import RANK
from crm_spark.schemas import CUSTOMER_KEY, PRODUCT_ID, SCORE

SOURCE = "source"  # which model served a customer's list


def customer_groups(features_df: DataFrame, columns: Sequence[str]) -> DataFrame | None:
    """Return ``(customer_key, group)``: the values of ``columns`` joined by ``|`` (``?`` for a null),
    or None when the features have none of the columns."""
    present = [c for c in columns if c in features_df.columns]
    if not present:
        return None
    return features_df.select(CUSTOMER_KEY, F.concat_ws("|", *[
        F.coalesce(F.col(c).cast("string"), F.lit("?")) for c in present]).alias("group"))


def cold_start(pairs_df: DataFrame, cold_df: DataFrame, groups_df: DataFrame | None, k: int, min_customers: int
               ) -> DataFrame:
    """Return recommendations for customers without history.

    A customer gets the ``k`` most popular products of their group when the group has
    at least ``min_customers`` customers with history; otherwise the most popular
    products overall.

    Args:
        pairs_df: the interactions of the customers with history.
        cold_df: column ``customer_key`` of the customers without history.
        groups_df: ``(customer_key, group)`` (:func:`customer_groups`), or None for no groups.
        k: recommendations per customer.
        min_customers: customers with history a group needs for a list of its own.

    Returns:
        ``customer_key``, ``product_id``, ``score``, ``rank`` and ``source``.
    """
    grouped = groups_df if groups_df is not None else cold_df.limit(0).select(
        CUSTOMER_KEY, F.lit(None).cast("string").alias("group"))
    lists = group_popular(pairs_df, grouped, k, min_customers)
    by_group = cold_df.join(grouped, CUSTOMER_KEY).join(lists, "group").select(
        CUSTOMER_KEY, PRODUCT_ID, SCORE, RANK, F.lit(GROUP_POPULAR_MODEL).alias(SOURCE))
    rest = cold_df.join(by_group.select(CUSTOMER_KEY).distinct(), CUSTOMER_KEY, "left_anti")
    overall = popular_unseen(rest, None, popularity(pairs_df), k, 0).select(
        CUSTOMER_KEY, PRODUCT_ID, SCORE, RANK, F.lit(POPULAR_MODEL).alias(SOURCE))
    return by_group.unionByName(overall)

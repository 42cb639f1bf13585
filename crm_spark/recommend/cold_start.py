"""Cold start: customers without history get the popular products of their group (gender and
age band, say), or of everyone when their group is too small."""

from __future__ import annotations

from typing import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.recommend.popularity import GROUP, GROUP_POPULAR_MODEL, POPULAR_MODEL, group_popular, popularity
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
        F.coalesce(F.col(c).cast("string"), F.lit("?")) for c in present]).alias(GROUP))


def cold_start(pairs_df: DataFrame, cold_df: DataFrame, groups_df: DataFrame | None, k: int, min_customers: int
               ) -> DataFrame:
    """Return recommendations for customers without history.

    A customer gets the ``k`` most popular products of their group when the group has
    at least ``min_customers`` customers with history; otherwise the most popular
    products overall. The lists, at most ``k`` per group plus ``k``, are worked out
    first and brought to the driver, so each customer is joined to theirs once.

    Args:
        pairs_df: the interactions of the customers with history.
        cold_df: column ``customer_key`` of the customers without history.
        groups_df: ``(customer_key, group)`` (:func:`customer_groups`), or None for no groups.
        k: recommendations per customer.
        min_customers: customers with history a group needs for a list of its own.

    Returns:
        ``customer_key``, ``product_id``, ``score``, ``rank`` and ``source``.
    """
    top = popularity(pairs_df).orderBy(F.col(SCORE).desc(), PRODUCT_ID).limit(k).collect()
    rows = [(None, r[PRODUCT_ID], r[SCORE], POPULAR_MODEL, rank) for rank, r in enumerate(top, 1)]
    if groups_df is not None:
        rows += group_popular(pairs_df, groups_df, k, min_customers).select(
            GROUP, PRODUCT_ID, SCORE, F.lit(GROUP_POPULAR_MODEL), RANK).collect()
    lists = cold_df.sparkSession.createDataFrame(
        rows, f"{GROUP} string, {PRODUCT_ID} {pairs_df.schema[PRODUCT_ID].dataType.simpleString()}, {SCORE} double, "
              f"{SOURCE} string, {RANK} int")
    if groups_df is None:
        customers = cold_df.select(CUSTOMER_KEY, F.lit(None).cast("string").alias(GROUP))
    else:  # a customer of a group without a list of its own gets the overall one (group null)
        listed = groups_df.join(F.broadcast(lists.select(GROUP).where(F.col(GROUP).isNotNull()).distinct()), GROUP)
        customers = cold_df.select(CUSTOMER_KEY).join(listed, CUSTOMER_KEY, "left")
    return customers.join(F.broadcast(lists), customers[GROUP].eqNullSafe(lists[GROUP])).select(
        CUSTOMER_KEY, PRODUCT_ID, SCORE, RANK, SOURCE)

"""Per-customer purchase summaries of the buy-till-you-die models: repeat purchases, recency,
age and the mean value of repeat purchases, in periods of a configured number of days."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crm_spark.features.customer import completed_before
from crm_spark.features.labels import in_horizon
from crm_spark.schemas import (
    ACTUAL_PURCHASES,
    AGE_PERIODS,
    CUSTOMER_KEY,
    ORDER_TS,
    QUANTITY,
    RECENCY_PERIODS,
    REPEAT_ORDER_VALUE,
    REPEAT_PURCHASES,
    UNIT_PRICE,
)


def purchase_days(orders_df: DataFrame) -> DataFrame:
    """Return one row per customer and day with a purchase: ``customer_key``, ``day`` and ``value``
    (the day's completed spend). Several orders of one day are one purchase, as in the field's models."""
    return orders_df.groupBy(CUSTOMER_KEY, F.to_date(ORDER_TS).alias("day")).agg(
        F.sum(F.col(QUANTITY) * F.col(UNIT_PRICE)).cast("double").alias("value"))


def purchase_summaries(orders_df: DataFrame, as_of_date: dt.date, period_days: int,
                       period_bins: bool = False) -> DataFrame:
    """Return the summary of every customer with a completed purchase before ``as_of_date``.

    The observation ends on the day before ``as_of_date``. Times are in periods of
    ``period_days`` days (7: weeks): exact to the day, or with ``period_bins`` binned by
    period, each time at the middle of its period (the whole periods elapsed plus one half; a
    customer without repeat purchases keeps t_x 0). Binned times bound the distinct
    ``(x, t_x, T)`` rows by the calendar rather than by the customer count, so fitting on them
    takes about the same time at any scale; the middle of the period keeps the parameters
    close to the exact ones, where the whole periods alone (as the field's tools count with a
    period frequency) bias them by 4-10 % (``benchmarks/lifetime.py``).

    Returns:
        ``customer_key``; ``repeat_purchases`` (x: purchase days after the first);
        ``recency_periods`` (t_x: from the first purchase to the last); ``age_periods``
        (T: from the first purchase to the end of the observation); ``repeat_order_value``
        (the mean spend of the repeat purchase days, 0.0 without any).
    """
    end = as_of_date - dt.timedelta(days=1)
    days = purchase_days(completed_before(orders_df, as_of_date))
    first = F.min(F.struct("day", "value"))
    summary = days.groupBy(CUSTOMER_KEY).agg(
        first.alias("_first"), F.max("day").alias("_last"), F.count(F.lit(1)).alias("_days"),
        F.sum("value").alias("_total"))
    repeats = F.col("_days") - 1

    def periods(days: Column) -> Column:
        elapsed = days / F.lit(float(period_days))
        return F.floor(elapsed) + F.lit(0.5) if period_bins else elapsed

    recency = periods(F.datediff("_last", "_first.day"))
    return summary.select(
        CUSTOMER_KEY,
        repeats.cast("double").alias(REPEAT_PURCHASES),
        (F.when(repeats > 0, recency).otherwise(F.lit(0.0)) if period_bins else recency).alias(RECENCY_PERIODS),
        periods(F.datediff(F.lit(end), "_first.day")).alias(AGE_PERIODS),
        F.when(repeats > 0, (F.col("_total") - F.col("_first.value")) / repeats).otherwise(F.lit(0.0))
        .alias(REPEAT_ORDER_VALUE),
    )


def with_actual_purchases(summaries_df: DataFrame, orders_df: DataFrame, cutoff: dt.date,
                          horizon_days: int) -> DataFrame:
    """Add ``actual_purchases``: the customer's purchase days in ``[cutoff, cutoff + horizon_days)``."""
    bought = purchase_days(in_horizon(orders_df, cutoff, horizon_days)).groupBy(CUSTOMER_KEY).agg(
        F.count(F.lit(1)).cast("double").alias(ACTUAL_PURCHASES))
    return summaries_df.join(bought, CUSTOMER_KEY, "left").fillna(0.0, [ACTUAL_PURCHASES])

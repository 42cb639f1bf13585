"""Anomaly detection with robust z-scores: order lines against the customer's own history and
the product's usual price and quantity; customers against their segment's centre."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from crm_spark.schemas import (
    CUSTOMER_KEY,
    FEATURES_VECTOR,
    ORDER_ID,
    PRODUCT_ID,
    QUANTITY,
    SCORE,
    SEGMENT,
    UNIT_PRICE,
)

MAD_TO_SD = 1.4826  # the MAD of a normal distribution times this is its standard deviation
MIN_HISTORY = 5  # lines a customer needs before their own history is a reference
ORDER, CUSTOMER = "order", "customer"


def robust_z(value: Column, median: Column, mad: Column, floor: float) -> Column:
    """Return ``(value - median) / max(1.4826 * MAD, floor)``: a z-score outliers cannot inflate."""
    return (value - median) / F.greatest(mad * F.lit(MAD_TO_SD), F.lit(floor))


def _nth(counted: Column, k: Column) -> Column:
    """Return the value at 0-based position ``k`` of the values an ascending array of ``(v, c)`` pairs holds,
    each value ``v`` ``c`` times."""
    start = F.struct(F.lit(0).cast("long").alias("seen"), F.lit(None).cast("double").alias("v"))
    return F.aggregate(counted, start, lambda acc, x: F.struct(
        (acc["seen"] + x["c"]).alias("seen"),
        F.when((acc["seen"] <= k) & (acc["seen"] + x["c"] > k), x["v"]).otherwise(acc["v"]).alias("v")))["v"]


def _median(counted: Column, n: Column) -> Column:
    """Return the median of the ``n`` values an ascending array of ``(v, c)`` pairs holds, as ``F.median``
    computes it (the mean of the middle two)."""
    lower, upper = _nth(counted, ((n - 1) / 2).cast("long")), _nth(counted, (n / 2).cast("long"))
    return F.when(n % 2 == 1, lower).otherwise(F.lit(0.5) * lower + F.lit(0.5) * upper)


def _counted(rows: Column, value: Callable[[Column], Column], count: str) -> Column:
    """Return, in ascending order, a ``(v, c)`` pair per element of an array of structs: ``v`` is ``value``
    of the element, ``c`` its field ``count``."""
    return F.array_sort(F.transform(rows, lambda x: F.struct(value(x).alias("v"), x[count].alias("c"))))


def _mad(counted: Column, median: Column, n: Column) -> Column:
    """Return the median absolute deviation from ``median`` of the ``n`` values an ascending array of
    ``(v, c)`` pairs holds."""
    return _median(_counted(counted, lambda x: F.abs(x["v"] - median), "c"), n)


def _reference(df: DataFrame, by: str, columns: dict[str, str]) -> DataFrame:
    """Return per ``by`` value, for each of ``columns`` (column -> prefix): the median, MAD and count.

    Rows are counted per distinct combination of the columns' values first, so a group ships
    each combination once with its count: prices and quantities repeat (in the 100,000-customer
    demo, a product's 1,500 lines hold 11 combinations of quantity and price at the median).
    The median and the median absolute deviation are read from the counted values, sorted.
    Every row has a value in each of ``columns``.
    """
    combinations = df.groupBy(by, *columns).agg(F.count(F.lit(1)).alias("_c")).groupBy(by).agg(
        F.collect_list(F.struct(*columns, "_c")).alias("_h"), F.sum("_c").cast("int").alias("_n"))
    counted = combinations.select(by, "_n", *[
        _counted(F.col("_h"), lambda x, c=c: x[c].cast("double"), "_c").alias(p) for c, p in columns.items()])
    n = F.col("_n")
    # The medians are computed a step before the deviations from them, which read them element by element.
    medians = counted.select(by, "_n", *columns.values(),
                             *[_median(F.col(p), n).alias(f"{p}_median") for p in columns.values()])
    return medians.select(by, *[c for p in columns.values() for c in (
        f"{p}_median", _mad(F.col(p), F.col(f"{p}_median"), n).alias(f"{p}_mad"), n.alias(f"{p}_n"))])


def order_anomalies(lines_df: DataFrame, threshold: float, floor: float) -> DataFrame:
    """Score every order by its most unusual line and return the orders at or above ``threshold``.

    On the log scale, each line's quantity is compared with the product's usual quantity
    and, with at least ``MIN_HISTORY`` lines, with the customer's own; its unit price with
    the product's usual price. Robust z-scores use the median and MAD, with the scale
    floored at ``floor`` so a product that always sells one unit at one price does not
    turn every small deviation into an outlier. Only unusually high values count. (The
    line amount against the customer's usual amount was measured as a further signal and
    dropped: amounts legitimately vary twentyfold across categories, which more than
    halved precision.)

    Args:
        lines_df: order lines with ``order_id``, ``customer_key``, ``product_id``,
            ``quantity`` and ``unit_price``.
        threshold: the score at which an order is anomalous.
        floor: the smallest scale of a z-score, in natural-log units.

    Returns:
        ``level`` (``order``), ``order_id``, ``customer_key``, ``score`` and ``reason``.
    """
    lines = lines_df.where(
        F.col(CUSTOMER_KEY).isNotNull() & (F.col(QUANTITY) > 0) & (F.col(UNIT_PRICE) > 0)
    ).select(ORDER_ID, CUSTOMER_KEY, PRODUCT_ID, QUANTITY, UNIT_PRICE,
             F.log(QUANTITY).alias("lq"), F.log(UNIT_PRICE).alias("lp"))
    # The customer's own reference is a window over their lines: the lines are shuffled once, not
    # aggregated and joined back.
    own_lines = Window.partitionBy(CUSTOMER_KEY)
    scored = lines.withColumn("cq_median", F.median("lq").over(own_lines)).select(
        "*", F.median(F.abs(F.col("lq") - F.col("cq_median"))).over(own_lines).alias("cq_mad"),
        F.count(F.lit(1)).over(own_lines).alias("cq_n")).join(
        _reference(lines, PRODUCT_ID, {"lq": "pq", "lp": "pp"}), PRODUCT_ID)
    own = F.col("cq_n") >= MIN_HISTORY
    signals = {
        "quantity_customer": F.when(own, robust_z(F.col("lq"), F.col("cq_median"), F.col("cq_mad"), floor)),
        "quantity_product": robust_z(F.col("lq"), F.col("pq_median"), F.col("pq_mad"), floor),
        "price_product": robust_z(F.col("lp"), F.col("pp_median"), F.col("pp_mad"), floor),
    }
    per_line = scored.select(ORDER_ID, CUSTOMER_KEY, PRODUCT_ID, QUANTITY, UNIT_PRICE, "cq_median", "pq_median",
                             "pp_median", *[z.alias(name) for name, z in signals.items()]).withColumn(
        SCORE, F.greatest(*[F.coalesce(F.col(name), F.lit(0.0)) for name in signals]))
    # The worst line of each flagged order, its reason written only for those (formatting is dear). An
    # order is flagged when any line reaches the threshold, and its worst line is then one of those:
    # only they are shuffled. Lines tied on the score go to the largest product id, quantity and price,
    # so the reason does not depend on the order the lines arrive in.
    worst = F.struct(SCORE, PRODUCT_ID, QUANTITY, UNIT_PRICE)
    flagged = per_line.where(F.col(SCORE) >= threshold).groupBy(ORDER_ID, CUSTOMER_KEY).agg(
        F.max_by(F.struct(*[c for c in per_line.columns if c not in (ORDER_ID, CUSTOMER_KEY)]), worst).alias("_w")
    ).select(ORDER_ID, CUSTOMER_KEY, "_w.*")
    # The reference the worst quantity signal used: the customer's own history or the product's.
    usual_quantity = F.exp(F.coalesce(F.when(F.col("quantity_customer") == F.col(SCORE), F.col("cq_median")),
                                      F.col("pq_median")))
    reasons = F.when(F.col("price_product") == F.col(SCORE), F.format_string(
        "unit price %.2f of product %s is %.1fx its usual %.2f", F.col(UNIT_PRICE), F.col(PRODUCT_ID),
        F.col(UNIT_PRICE) / F.exp("pp_median"), F.exp("pp_median"))
    ).otherwise(F.format_string(
        "quantity %d of product %s is %.1fx the usual %.1f", F.col(QUANTITY), F.col(PRODUCT_ID),
        F.col(QUANTITY) / usual_quantity, usual_quantity))
    return flagged.select(F.lit(ORDER).alias("level"), ORDER_ID, CUSTOMER_KEY, SCORE, reasons.alias("reason"))


def customer_anomalies(assigned_df: DataFrame, centres: list[np.ndarray], threshold: float) -> DataFrame:
    """Return customers unusually far from their segment's centre.

    The distance is Euclidean in the standardized feature space KMeans clustered in;
    each customer's robust z-score compares it with the distances of their segment.

    Args:
        assigned_df: ``customer_key``, ``segment`` and the scaled ``features`` vector.
        centres: cluster centres, indexed by segment.
        threshold: the z-score at which a customer is anomalous.

    Returns:
        ``level`` (``customer``), ``order_id`` (null), ``customer_key``, ``score`` and ``reason``.
    """
    centre = F.element_at(F.array(*[F.array(*[F.lit(float(v)) for v in c]) for c in centres]),
                          F.col(SEGMENT).cast("int") + 1)
    squares = F.aggregate(F.zip_with(vector_to_array(FEATURES_VECTOR), centre, lambda x, c: (x - c) * (x - c)),
                          F.lit(0.0), lambda acc, v: acc + v)
    distances = assigned_df.select(CUSTOMER_KEY, SEGMENT, F.sqrt(squares).alias("distance"))
    reference = _reference(distances, SEGMENT, {"distance": "d"})
    scored = distances.join(reference, SEGMENT).withColumn(
        SCORE, robust_z(F.col("distance"), F.col("d_median"), F.col("d_mad"), 1e-6))
    return scored.where(F.col(SCORE) >= threshold).select(
        F.lit(CUSTOMER).alias("level"), F.lit(None).cast("string").alias(ORDER_ID), CUSTOMER_KEY, SCORE,
        F.format_string("%.1fx the usual distance to the centre of segment %d (%.2f against a median of %.2f)",
                        F.col("distance") / F.col("d_median"), F.col(SEGMENT), F.col("distance"),
                        F.col("d_median")).alias("reason"))

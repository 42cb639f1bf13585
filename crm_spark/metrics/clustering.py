"""Agreement of a clustering with reference labels."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crm_spark.frames import persisted


def _pairs(count: Column) -> Column:
    return count * (count - 1) / 2


def adjusted_rand_index(df: DataFrame, predicted: str, reference: str) -> float:
    """Return the adjusted Rand index of two labellings of the rows of ``df``.

    1 means the same partition, about 0 what chance agreement gives. Computed from the
    contingency table's counts, so no pair of rows is listed.
    """
    with persisted(df.groupBy(predicted, reference).count()) as table:
        both = table.agg(F.sum(_pairs(F.col("count")))).first()[0] or 0.0
        rows = table.groupBy(predicted).agg(F.sum("count").alias("n")).agg(F.sum(_pairs(F.col("n")))).first()[0] or 0.0
        cols = table.groupBy(reference).agg(F.sum("count").alias("n")).agg(F.sum(_pairs(F.col("n")))).first()[0] or 0.0
        total = table.agg(F.sum("count")).first()[0] or 0
    expected = rows * cols / (total * (total - 1) / 2) if total > 1 else 0.0
    maximum = (rows + cols) / 2
    return float((both - expected) / (maximum - expected)) if maximum != expected else 1.0

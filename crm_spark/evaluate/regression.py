"""Regression metrics from a frame of actual values (``label``) and ``prediction``."""

from __future__ import annotations

from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.schemas import LABEL, PREDICTION

DECILES = 10


def _metric(df: DataFrame, name: str) -> float:
    return float(RegressionEvaluator(labelCol=LABEL, predictionCol=PREDICTION, metricName=name).evaluate(df))


def rmse(df: DataFrame) -> float:
    """Return the root mean squared error of ``prediction`` against ``label``."""
    return _metric(df, "rmse")


def regression_metrics(df: DataFrame) -> dict[str, float]:
    """Return RMSE, MAE and R² of ``prediction`` against ``label``."""
    return {"rmse": rmse(df), "mae": _metric(df, "mae"), "r2": _metric(df, "r2")}


def calibration(df: DataFrame) -> list[tuple[int, float, float, int]]:
    """Return the mean predicted and mean actual value per decile of the prediction.

    Deciles are cut at approximate percentiles of the prediction (no global sort); tied
    predictions share a decile.

    Returns:
        ``(decile, mean_predicted, mean_actual, rows)`` for each non-empty decile, 1 lowest.
    """
    cuts = df.agg(F.percentile_approx(PREDICTION, [i / DECILES for i in range(1, DECILES)], 10_000)).first()[0]
    decile = sum(((F.col(PREDICTION) > F.lit(c)).cast("int") for c in cuts), F.lit(1))
    rows = df.groupBy(decile.alias("decile")).agg(
        F.avg(PREDICTION).alias("predicted"), F.avg(LABEL).alias("actual"), F.count(F.lit(1)).alias("n"),
    ).orderBy("decile").collect()
    return [(r["decile"], float(r["predicted"]), float(r["actual"]), int(r["n"])) for r in rows]

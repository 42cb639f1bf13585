"""Regression metrics from a frame of actual values (``label``) and ``prediction``."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.schemas import LABEL, PREDICTION

DECILES = 10


@dataclass(frozen=True)
class DecileCalibration:
    """The mean predicted and mean actual value of one decile of the prediction."""

    decile: int  # 1 is the lowest
    mean_predicted: float
    mean_actual: float
    rows: int


def _metric(df: DataFrame, name: str, label: str = LABEL) -> float:
    return float(RegressionEvaluator(labelCol=label, predictionCol=PREDICTION, metricName=name).evaluate(df))


def rmse(df: DataFrame, label: str = LABEL) -> float:
    """Return the root mean squared error of ``prediction`` against the actual values in ``label``."""
    return _metric(df, "rmse", label)


def regression_metrics(df: DataFrame) -> dict[str, float]:
    """Return RMSE, MAE and R² of ``prediction`` against ``label``."""
    return {"rmse": rmse(df), "mae": _metric(df, "mae"), "r2": _metric(df, "r2")}


def calibration(df: DataFrame) -> list[DecileCalibration]:
    """Return the mean predicted and mean actual value per decile of the prediction.

    Deciles are cut at approximate percentiles of the prediction (no global sort); tied
    predictions share a decile.

    Returns:
        One entry for each non-empty decile, lowest first.
    """
    cuts = df.agg(F.percentile_approx(PREDICTION, [i / DECILES for i in range(1, DECILES)], 10_000)).first()[0]
    decile = sum(((F.col(PREDICTION) > F.lit(c)).cast("int") for c in cuts), F.lit(1))
    rows = df.groupBy(decile.alias("decile")).agg(
        F.avg(PREDICTION).alias("predicted"), F.avg(LABEL).alias("actual"), F.count(F.lit(1)).alias("n"),
    ).orderBy("decile").collect()
    return [DecileCalibration(r["decile"], float(r["predicted"]), float(r["actual"]), int(r["n"])) for r in rows]

"""Score: apply the registry's champions to the customers as of ``as_of_date``, without
retraining: churn scores, customer value, segments with their profiles, and anomalies."""

from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import registry, tables
from crm_spark.config import Config
from crm_spark.evaluate.classification import SCORE
from crm_spark.features import read_features
from crm_spark.labels import label_source
from crm_spark.schemas import CUSTOMER_KEY, ORDER_TS, PREDICTION
from crm_spark.stage import StageSkipped
from crm_spark.train import (
    CHURN_TASK,
    CLV_TASK,
    SEGMENT_TASK,
    anomalies,
    churn,
    clv,
    segments,
)

log = logging.getLogger(__name__)


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Write ``churn_scores``, ``clv_predictions``, ``customer_segments``, ``segment_profiles``
    and ``anomalies`` for ``as_of_date`` with each task's champion.

    A champion is the newest registered for a date up to ``as_of_date`` (see
    :func:`crm_spark.registry.champions`); a task without one is left out.

    Returns:
        Rows written per table.

    Raises:
        StageSkipped: no model has been trained yet.
    """
    lake = config.paths.lakehouse_dir
    found = {task: row for task, row in registry.champions(spark, config).items()
             if task in (CHURN_TASK, CLV_TASK, SEGMENT_TASK)}
    if not found:
        raise StageSkipped("no churn, customer value or segmentation model in the registry: run train first")
    counts: dict[str, int] = {}

    def write(df: DataFrame, table: tables.Table) -> None:
        counts[table.qualified] = tables.write_dated(df, table, lake, config.as_of_date, run_id)

    current = read_features(spark, lake, config.as_of_date)
    buyers = current.where(F.col("frequency") > 0)
    churn_scores = None
    if CHURN_TASK in found:
        entry = found[CHURN_TASK]
        # A churn label from the horizon concerns customers who have bought; a label
        # column concerns every customer.
        population = buyers if label_source(spark, config) == "horizon" else current
        churn_scores = churn.score(PipelineModel.load(entry["path"]), population, entry["params"]["threshold"]).select(
            CUSTOMER_KEY, F.col(SCORE).alias("churn_probability"), F.col(PREDICTION).alias("churn_predicted"),
            F.lit(entry["model"]).alias("model"), F.lit(entry["run_id"]).alias("model_run_id"),
        ).persist(StorageLevel.MEMORY_AND_DISK)
        write(churn_scores, tables.CHURN_SCORES)
    if CLV_TASK in found:
        entry = found[CLV_TASK]
        write(clv.predict(PipelineModel.load(entry["path"]), buyers).select(
            CUSTOMER_KEY, F.col(PREDICTION).alias("predicted_spend"),
            F.lit(config.churn_horizon_days).alias("horizon_days"), F.lit(entry["model"]).alias("model"),
            F.lit(entry["run_id"]).alias("model_run_id")), tables.CLV_PREDICTIONS)
    if SEGMENT_TASK in found:
        entry = found[SEGMENT_TASK]
        model = PipelineModel.load(entry["path"])
        assigned = segments.assign(model, buyers).persist(StorageLevel.MEMORY_AND_DISK)
        write(assigned.drop("features").withColumn("algorithm", F.lit(entry["model"]))
              .withColumn("model_run_id", F.lit(entry["run_id"]))
              .join(segments.rfm_segments(buyers), CUSTOMER_KEY, "left"), tables.CUSTOMER_SEGMENTS)
        write(segments.profiles(assigned, buyers, churn_scores).withColumn("algorithm", F.lit(entry["model"])),
              tables.SEGMENT_PROFILES)
        orders = tables.read_table(spark, tables.ORDERS, lake).where(
            F.col(ORDER_TS) < F.lit(config.as_of_date).cast("timestamp"))
        flagged = anomalies.order_anomalies(orders, config.train.anomaly_z, config.train.anomaly_scale_floor)
        flagged = flagged.unionByName(
            anomalies.customer_anomalies(assigned, segments.centres(model), config.train.customer_anomaly_z))
        write(flagged, tables.ANOMALIES)
        assigned.unpersist()
    if churn_scores is not None:
        churn_scores.unpersist()
    return counts

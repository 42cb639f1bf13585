"""Score: apply the registry's champions to the customers as of ``as_of_date``, without
retraining: churn scores, customer value, segments with their profiles, and anomalies."""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from pyspark import StorageLevel
from pyspark.ml import PipelineModel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from crm_spark import registry, tables
from crm_spark.config import Config
from crm_spark.dates import start_of
from crm_spark.errors import StageSkipped
from crm_spark.features.customer import buyers, read_features
from crm_spark.features.labels import HORIZON, label_source
from crm_spark.frames import beside, persisted
from crm_spark.models import anomalies, churn, clv, lifetime, segments
from crm_spark.registry import CHURN_TASK, CLV_TASK, LIFETIME_TASK, SEGMENT_TASK
from crm_spark.schemas import (
    ALGORITHM,
    CHURN_PREDICTED,
    CHURN_PROBABILITY,
    CUSTOMER_KEY,
    EXPECTED_ORDER_VALUE,
    EXPECTED_PURCHASES,
    FEATURES_VECTOR,
    LIFETIME_VALUE,
    MODEL,
    MODEL_RUN_ID,
    ORDER_TS,
    P_ALIVE,
    PREDICTED_SPEND,
    PREDICTION,
    SCORE,
)

log = logging.getLogger(__name__)

PIPELINE_TASKS = (CHURN_TASK, CLV_TASK, SEGMENT_TASK)  # the tasks whose champion is a saved PipelineModel


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Write ``churn_scores``, ``clv_predictions``, ``customer_segments``, ``segment_profiles``
    and ``anomalies`` for ``as_of_date`` with each task's champion. ``clv_predictions`` holds
    the regression's predicted horizon spend beside BG/NBD and Gamma-Gamma's probability
    alive, expected purchases in the horizon, expected order value and lifetime value.

    A champion is the newest registered for a date up to ``as_of_date`` (see
    :func:`crm_spark.registry.champions`); a task without one is left out. The saved
    pipelines are loaded side by side (:func:`~crm_spark.frames.beside`): a load is a
    series of small reads on the driver.

    Returns:
        Rows written per table.

    Raises:
        StageSkipped: no model has been trained yet.
    """
    lake = config.paths.lakehouse_dir
    found = {task: row for task, row in registry.champions(spark, config).items()
             if task in (*PIPELINE_TASKS, LIFETIME_TASK)}
    if not found:
        raise StageSkipped("no churn, customer value or segmentation model in the registry: run train first")
    write = tables.DatedWriter(lake, config.as_of_date, run_id)
    current = read_features(spark, lake, config.as_of_date)
    current_buyers = current.transform(buyers)
    with contextlib.ExitStack() as scope:
        pool = scope.enter_context(ThreadPoolExecutor(len(PIPELINE_TASKS)))
        models = {task: beside(spark, pool, PipelineModel.load, entry["path"])
                  for task, entry in found.items() if task in PIPELINE_TASKS}
        churn_scores = None
        if CHURN_TASK in found:
            entry = found[CHURN_TASK]
            # A churn label from the horizon concerns customers who have bought; a label
            # column concerns every customer.
            population = current_buyers if label_source(spark, config) == HORIZON else current
            churn_scores = scope.enter_context(persisted(churn.score(
                models[CHURN_TASK].result(), population, entry["params"]["threshold"]).select(
                CUSTOMER_KEY, F.col(SCORE).alias(CHURN_PROBABILITY), F.col(PREDICTION).alias(CHURN_PREDICTED),
                F.lit(entry["model"]).alias(MODEL), F.lit(entry["run_id"]).alias(MODEL_RUN_ID),
            ), StorageLevel.MEMORY_AND_DISK))
            write(churn_scores, tables.CHURN_SCORES)
        value = None
        if CLV_TASK in found:
            entry = found[CLV_TASK]
            value = clv.predict(models[CLV_TASK].result(), current_buyers).select(
                CUSTOMER_KEY, F.col(PREDICTION).alias(PREDICTED_SPEND),
                F.lit(config.churn_horizon_days).alias("horizon_days"), F.lit(entry["model"]).alias(MODEL),
                F.lit(entry["run_id"]).alias(MODEL_RUN_ID))
        if LIFETIME_TASK in found:
            entry = found[LIFETIME_TASK]
            # Kept: the prediction reads the summaries twice, for their distinct pairs and to join them.
            summaries = scope.enter_context(persisted(lifetime.summaries_of(
                current, tables.read_table(spark, tables.ORDERS, lake), config.as_of_date, config.train),
                StorageLevel.MEMORY_AND_DISK))
            predicted = lifetime.predict(lifetime.LifetimeModel.from_params(entry["params"]), summaries,
                                         config.churn_horizon_days, config.train).select(
                CUSTOMER_KEY, P_ALIVE, EXPECTED_PURCHASES, EXPECTED_ORDER_VALUE, LIFETIME_VALUE,
                F.lit(entry["run_id"]).alias("lifetime_model_run_id"))
            value = predicted if value is None else value.join(predicted, CUSTOMER_KEY, "full")
        if value is not None:
            write(value, tables.CLV_PREDICTIONS)
        if SEGMENT_TASK in found:
            entry = found[SEGMENT_TASK]
            model = models[SEGMENT_TASK].result()
            assigned = scope.enter_context(persisted(segments.assign(model, current_buyers),
                                                     StorageLevel.MEMORY_AND_DISK))
            write(assigned.drop(FEATURES_VECTOR).withColumn(ALGORITHM, F.lit(entry["model"]))
                  .withColumn(MODEL_RUN_ID, F.lit(entry["run_id"]))
                  .join(segments.rfm_segments(current_buyers), CUSTOMER_KEY, "left"), tables.CUSTOMER_SEGMENTS)
            write(segments.profiles(assigned, current_buyers, churn_scores)
                  .withColumn(ALGORITHM, F.lit(entry["model"])), tables.SEGMENT_PROFILES)
            orders = tables.read_table(spark, tables.ORDERS, lake).where(F.col(ORDER_TS) < start_of(config.as_of_date))
            flagged = anomalies.order_anomalies(orders, config.train.anomaly_z, config.train.anomaly_scale_floor)
            flagged = flagged.unionByName(
                anomalies.customer_anomalies(assigned, segments.centres(model), config.train.customer_anomaly_z))
            write(flagged, tables.ANOMALIES)
    return write.counts

"""Train: churn classifiers on a time split, champion scoring, segments chosen by silhouette, RFM
segments, segment profiles and anomalies."""

from __future__ import annotations

import dataclasses
import logging
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import registry, tables
from crm_spark.config import Config
from crm_spark.evaluate.classification import SCORE, auc
from crm_spark.features import read_features
from crm_spark.labels import SPLIT, TRAIN, VALIDATION, labelled_customers
from crm_spark.schemas import CUSTOMER_KEY, ORDER_TS
from crm_spark.select import kept_features
from crm_spark.train import anomalies, churn, segments

log = logging.getLogger(__name__)

CHURN_TASK = "churn"
SEGMENT_TASK = "segmentation"


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Train the churn classifiers and segments, score ``as_of_date`` with the champion.

    Classifiers are fitted on the train split of customers labelled at the training
    cutoff; the champion is the one with the higher validation AUC. Held-out
    predictions (validation and test, plus a recency-only baseline) are written for
    the evaluate stage.

    Returns:
        Rows written per table.
    """
    lake = config.paths.lakehouse_dir
    labelled = labelled_customers(spark, config).persist(StorageLevel.MEMORY_AND_DISK)
    kept = kept_features(spark, config)
    train_df = labelled.where(F.col(SPLIT) == TRAIN)
    holdout_df = labelled.where(F.col(SPLIT) != TRAIN)
    entries, fitted = [], {}
    holdout_frames = [churn.recency_baseline(holdout_df).withColumn("model", F.lit(churn.RECENCY_BASELINE))]
    for name, classifier in churn.classifiers(config.train).items():
        model = churn.fit(train_df, kept, classifier)
        path = registry.model_path(lake, run_id, CHURN_TASK, name)
        model.write().overwrite().save(path)
        scored = churn.score(model, holdout_df).withColumn("model", F.lit(name))
        validation_auc = auc(scored.where(F.col(SPLIT) == VALIDATION))
        log.info("churn %s: validation AUC %.4f", name, validation_auc)
        fitted[name] = (model, validation_auc)
        holdout_frames.append(scored)
        entries.append(registry.ModelEntry(CHURN_TASK, name, path, "validation_auc", validation_auc, False, kept))
    champion = max(fitted, key=lambda n: fitted[n][1])
    entries = [dataclasses.replace(e, is_champion=e.model == champion) for e in entries]

    counts: dict[str, int] = {}

    def write(df: DataFrame, table: tables.Table) -> None:
        counts[table.qualified] = tables.write_dated(df, table, lake, config.as_of_date, run_id)

    write(reduce(DataFrame.unionByName, holdout_frames), tables.CHURN_HOLDOUT)
    labelled.unpersist()

    current = read_features(spark, lake, config.as_of_date).where(F.col("frequency") > 0)
    churn_scores = churn.score(fitted[champion][0], current).select(
        "customer_key", F.col(SCORE).alias("churn_probability"), F.col("prediction").alias("churn_predicted"),
        F.lit(champion).alias("model"))
    write(churn_scores, tables.CHURN_SCORES)

    segment_columns = segments.segment_features(current)
    fitted_segments = segments.fit_best(current, segment_columns, config.train)
    for index, segmentation in enumerate(fitted_segments):
        path = registry.model_path(lake, run_id, SEGMENT_TASK, segmentation.algorithm)
        segmentation.model.write().overwrite().save(path)
        entries.append(registry.ModelEntry(SEGMENT_TASK, segmentation.algorithm, path, "silhouette",
                                           segmentation.silhouette, index == 0, segment_columns))
        log.info("segments %s: k=%d silhouette %.4f", segmentation.algorithm, segmentation.k,
                 segmentation.silhouette)
    chosen = fitted_segments[0]
    assigned = segments.assign(chosen.model, current).persist(StorageLevel.MEMORY_AND_DISK)
    write(assigned.drop("features").withColumn("algorithm", F.lit(chosen.algorithm))
          .join(segments.rfm_segments(current), CUSTOMER_KEY, "left"), tables.CUSTOMER_SEGMENTS)
    write(segments.profiles(assigned, current, churn_scores).withColumn("algorithm", F.lit(chosen.algorithm)),
          tables.SEGMENT_PROFILES)

    orders = tables.read_table(spark, tables.ORDERS, lake).where(
        F.col(ORDER_TS) < F.lit(config.as_of_date).cast("timestamp"))
    flagged = anomalies.order_anomalies(orders, config.train.anomaly_z, config.train.anomaly_scale_floor).unionByName(
        anomalies.customer_anomalies(assigned, segments.centres(chosen.model), config.train.customer_anomaly_z))
    write(flagged, tables.ANOMALIES)
    assigned.unpersist()

    counts[tables.MODEL_REGISTRY.qualified] = registry.record(spark, config, run_id, entries)
    log.info("churn champion: %s", champion)
    return counts

"""Train: churn classifiers on a time split, champion scoring, KMeans segments."""

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
from crm_spark.select import kept_features
from crm_spark.train import churn, segments

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
    segment_model = segments.fit(current, segment_columns, config.train)
    path = registry.model_path(lake, run_id, SEGMENT_TASK, segments.KMEANS)
    segment_model.write().overwrite().save(path)
    assigned = segments.assign(segment_model, current).persist(StorageLevel.MEMORY_AND_DISK)
    silhouette = segments.silhouette(assigned)
    write(assigned.drop("features"), tables.CUSTOMER_SEGMENTS)
    assigned.unpersist()
    log.info("segments: k=%d silhouette %.4f", config.train.kmeans_k, silhouette)

    entries.append(registry.ModelEntry(SEGMENT_TASK, segments.KMEANS, path, "silhouette", silhouette, True,
                                       segment_columns))
    counts[tables.MODEL_REGISTRY.qualified] = registry.record(spark, config, run_id, entries)
    log.info("churn champion: %s", champion)
    return counts

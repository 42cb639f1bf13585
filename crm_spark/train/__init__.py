"""Train: churn classifiers on a time split, champion scoring, KMeans segments."""

from __future__ import annotations

import logging
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.evaluate.classification import SCORE, auc
from crm_spark.features import read_features
from crm_spark.labels import SPLIT, TRAIN, VALIDATION, labelled_customers
from crm_spark.schemas import AS_OF_DATE, MODEL_REGISTRY_SCHEMA, RUN_ID
from crm_spark.select import kept_features
from crm_spark.train import churn, segments

log = logging.getLogger(__name__)

CHURN_TASK = "churn"
SEGMENT_TASK = "segmentation"


def model_path(lakehouse_dir: str, run_id: str, task: str, model: str) -> str:
    """Return where a model of a run is saved."""
    return f"{lakehouse_dir.rstrip('/')}/models/{run_id}/{task}/{model}"


def _stamp(df: DataFrame, config: Config, run_id: str) -> DataFrame:
    return df.withColumn(AS_OF_DATE, F.lit(config.as_of_date)).withColumn(RUN_ID, F.lit(run_id))


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
    registry, holdout_frames, fitted = [], [churn.recency_baseline(holdout_df).withColumn("model", F.lit(churn.RECENCY_BASELINE))], {}
    for name, classifier in churn.classifiers(config.train).items():
        model = churn.fit(train_df, kept, classifier)
        path = model_path(lake, run_id, CHURN_TASK, name)
        model.write().overwrite().save(path)
        scored = churn.score(model, holdout_df).withColumn("model", F.lit(name))
        validation_auc = auc(scored.where(F.col(SPLIT) == VALIDATION))
        log.info("churn %s: validation AUC %.4f", name, validation_auc)
        fitted[name] = (model, validation_auc)
        holdout_frames.append(scored)
        registry.append((name, path, "validation_auc", validation_auc))
    champion = max(fitted, key=lambda n: fitted[n][1])
    counts = {}
    holdout = reduce(DataFrame.unionByName, holdout_frames)
    counts[tables.CHURN_HOLDOUT.qualified] = tables.write_table(
        _stamp(holdout, config, run_id), tables.CHURN_HOLDOUT, lake, config.as_of_date)
    labelled.unpersist()

    current = read_features(spark, lake, config.as_of_date).where(F.col("frequency") > 0)
    churn_scores = churn.score(fitted[champion][0], current).select(
        "customer_key", F.col(SCORE).alias("churn_probability"), F.col("prediction").alias("churn_predicted"),
        F.lit(champion).alias("model"))
    counts[tables.CHURN_SCORES.qualified] = tables.write_table(
        _stamp(churn_scores, config, run_id), tables.CHURN_SCORES, lake, config.as_of_date)

    segment_model = segments.fit(current, config.train)
    path = model_path(lake, run_id, SEGMENT_TASK, segments.KMEANS)
    segment_model.write().overwrite().save(path)
    assigned = segments.assign(segment_model, current).persist(StorageLevel.MEMORY_AND_DISK)
    silhouette = segments.silhouette(assigned)
    counts[tables.CUSTOMER_SEGMENTS.qualified] = tables.write_table(
        _stamp(assigned.drop("features"), config, run_id), tables.CUSTOMER_SEGMENTS, lake, config.as_of_date)
    assigned.unpersist()
    log.info("segments: k=%d silhouette %.4f", config.train.kmeans_k, silhouette)

    rows = [
        (run_id, config.as_of_date, CHURN_TASK, name, path_, metric, value, name == champion, kept)
        for name, path_, metric, value in registry
    ] + [(run_id, config.as_of_date, SEGMENT_TASK, segments.KMEANS, path, "silhouette", silhouette, True,
          segments.segment_features(current))]
    counts[tables.MODEL_REGISTRY.qualified] = tables.write_table(
        spark.createDataFrame(rows, MODEL_REGISTRY_SCHEMA), tables.MODEL_REGISTRY, lake, run_id)
    log.info("churn champion: %s", champion)
    return counts

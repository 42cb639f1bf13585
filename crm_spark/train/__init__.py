"""Train: classifiers with tuned parameters and thresholds, customer value regressors and
segmentations, saved per run in the registry with held-out predictions and explanations.
Scoring ``as_of_date`` is the score stage's job."""

from __future__ import annotations

import dataclasses
import logging
import time
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import registry, tables
from crm_spark.config import Config
from crm_spark.evaluate.classification import auc
from crm_spark.evaluate.regression import rmse
from crm_spark.features import read_features
from crm_spark.labels import (
    SPLIT,
    TRAIN,
    VALIDATION,
    label_source,
    labelled_customers,
    with_split,
)
from crm_spark.schemas import MODEL_EXPLANATIONS_SCHEMA
from crm_spark.select import kept_features
from crm_spark.train import churn, clv, segments

log = logging.getLogger(__name__)

CHURN_TASK = "churn"
CLV_TASK = "clv"
SEGMENT_TASK = "segmentation"


def _champion(entries: list[registry.ModelEntry], lower_is_better: bool = False) -> list[registry.ModelEntry]:
    """Mark the entry with the best selection value as champion."""
    sign = -1.0 if lower_is_better else 1.0
    best = max(entries, key=lambda e: sign * e.selection_value)
    return [dataclasses.replace(e, is_champion=e is best) for e in entries]


def train_classifiers(config: Config, run_id: str, labelled: DataFrame, kept: list[str], with_baseline: bool
                      ) -> tuple[list[registry.ModelEntry], DataFrame, list[tuple]]:
    """Fit each classifier on the train split, choose its threshold on validation, score the holdout.

    Returns:
        Registry entries (champion by validation AUC), held-out predictions of every model
        (plus the recency baseline when ``with_baseline``) and explanation rows.
    """
    train_df = labelled.where(F.col(SPLIT) == TRAIN)
    holdout_df = labelled.where(F.col(SPLIT) != TRAIN)
    entries, frames, explained = [], [], []
    if with_baseline:
        frames.append(churn.recency_baseline(holdout_df).withColumn("model", F.lit(churn.RECENCY_BASELINE)))
    for name in churn.classifiers(config.train):
        began = time.perf_counter()
        fitted = churn.fit(train_df, kept, name, config.train)
        seconds = time.perf_counter() - began
        validation = churn.score(fitted.model, holdout_df.where(F.col(SPLIT) == VALIDATION)).cache()
        threshold = churn.choose_threshold(validation, config.train.threshold_objective)
        validation_auc = auc(validation)
        validation.unpersist()
        path = registry.model_path(config.paths.lakehouse_dir, run_id, CHURN_TASK, name)
        fitted.model.write().overwrite().save(path)
        log.info("churn %s: %s, threshold %.4f, validation AUC %.4f, trained in %.1fs", name, fitted.params,
                 threshold, validation_auc, seconds)
        frames.append(churn.score(fitted.model, holdout_df, threshold).withColumn("model", F.lit(name)))
        params = {**fitted.params, "threshold": threshold, "tvs_auc": fitted.tvs_auc, "train_seconds": seconds}
        entries.append(registry.ModelEntry(CHURN_TASK, name, path, "validation_auc", validation_auc, False, kept,
                                           params))
        explained += [(CHURN_TASK, name, *row) for row in churn.explanations(fitted, train_df)]
        explained.append((CHURN_TASK, name, "threshold", config.train.threshold_objective, threshold, None))
    return _champion(entries), reduce(DataFrame.unionByName, frames), explained


def train_regressors(spark: SparkSession, config: Config, run_id: str, kept: list[str]
                     ) -> tuple[list[registry.ModelEntry], DataFrame, DataFrame]:
    """Fit the customer value regressors on next-horizon spend; champion by validation RMSE.

    Returns:
        Registry entries, held-out predictions of every model and the mean baseline, and
        the persisted labelled customers (the caller releases them once the predictions
        are written).
    """
    lake = config.paths.lakehouse_dir
    features_df = read_features(spark, lake, config.training_cutoff)
    labelled = with_split(
        clv.with_spend_label(features_df, tables.read_table(spark, tables.ORDERS, lake), config.training_cutoff,
                             config.churn_horizon_days),
        config.train.validation_share, config.train.test_share, config.train.seed,
    ).persist(StorageLevel.MEMORY_AND_DISK)
    train_df = labelled.where(F.col(SPLIT) == TRAIN)
    holdout_df = labelled.where(F.col(SPLIT) != TRAIN)
    entries = []
    frames = [clv.mean_baseline(train_df, holdout_df).withColumn("model", F.lit(clv.MEAN_BASELINE))]
    cap = None
    if config.train.clv_label_cap_quantile is not None:
        train_df, cap = clv.capped(train_df, config.train.clv_label_cap_quantile)
        log.info("clv: training spend capped at %.2f (quantile %s)", cap, config.train.clv_label_cap_quantile)
    for name, regressor in clv.regressors(config.train).items():
        began = time.perf_counter()
        model = clv.fit(train_df, kept, regressor)
        seconds = time.perf_counter() - began
        predicted = clv.predict(model, holdout_df).withColumn("model", F.lit(name))
        validation_rmse = rmse(predicted.where(F.col(SPLIT) == VALIDATION))
        path = registry.model_path(lake, run_id, CLV_TASK, name)
        model.write().overwrite().save(path)
        log.info("clv %s: validation RMSE %.2f, trained in %.1fs", name, validation_rmse, seconds)
        frames.append(predicted)
        params = {"train_seconds": seconds, **({"label_cap": cap} if cap is not None else {})}
        entries.append(registry.ModelEntry(CLV_TASK, name, path, "validation_rmse", validation_rmse, False, kept,
                                           params))
    holdout = reduce(DataFrame.unionByName, frames)
    return _champion(entries, lower_is_better=True), holdout, labelled


def train_segments(config: Config, run_id: str, buyers: DataFrame) -> list[registry.ModelEntry]:
    """Fit the segmentation algorithms on the customers with purchases; champion by silhouette."""
    columns = segments.segment_features(buyers)
    entries = []
    for index, segmentation in enumerate(segments.fit_best(buyers, columns, config.train)):
        path = registry.model_path(config.paths.lakehouse_dir, run_id, SEGMENT_TASK, segmentation.algorithm)
        segmentation.model.write().overwrite().save(path)
        log.info("segments %s: k=%d silhouette %.4f, trained in %.1fs", segmentation.algorithm, segmentation.k,
                 segmentation.silhouette, segmentation.seconds)
        entries.append(registry.ModelEntry(SEGMENT_TASK, segmentation.algorithm, path, "silhouette",
                                           segmentation.silhouette, index == 0, columns,
                                           {"k": float(segmentation.k), "train_seconds": segmentation.seconds}))
    return entries


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Train every model this configuration's data supports and register them.

    Classifiers learn the label of :func:`crm_spark.labels.label_source`. With purchase
    history, customer value regressors and segmentations are trained too. Held-out
    predictions (validation and test) are written for the evaluate stage.

    Returns:
        Rows written per table.
    """
    lake = config.paths.lakehouse_dir
    counts: dict[str, int] = {}

    def write(df: DataFrame, table: tables.Table) -> None:
        counts[table.qualified] = tables.write_dated(df, table, lake, config.as_of_date, run_id)

    source = label_source(spark, config)
    labelled = labelled_customers(spark, config, source).persist(StorageLevel.MEMORY_AND_DISK)
    kept = kept_features(spark, config)
    entries, holdout, explained = train_classifiers(config, run_id, labelled, kept, source == "horizon")
    write(holdout, tables.CHURN_HOLDOUT)
    labelled.unpersist()

    if source == "horizon":
        clv_entries, clv_holdout, clv_labelled = train_regressors(spark, config, run_id, kept)
        write(clv_holdout, tables.CLV_HOLDOUT)
        clv_labelled.unpersist()
        entries += clv_entries
    buyers = read_features(spark, lake, config.as_of_date).where(F.col("frequency") > 0)
    if buyers.isEmpty():
        log.info("no customer has purchases: no segmentation")
    else:
        entries += train_segments(config, run_id, buyers)

    counts[tables.MODEL_REGISTRY.qualified] = registry.record(spark, config, run_id, entries)
    rows = [(run_id, config.as_of_date, *row) for row in explained]
    counts[tables.MODEL_EXPLANATIONS.qualified] = tables.write_table(
        spark.createDataFrame(rows, MODEL_EXPLANATIONS_SCHEMA), tables.MODEL_EXPLANATIONS, lake, run_id)
    for entry in entries:
        if entry.is_champion:
            log.info("%s champion: %s (%s %.4f)", entry.task, entry.model, entry.selection_metric,
                     entry.selection_value)
    return counts


"""Train: classifiers with tuned parameters and thresholds, customer value regressors and
segmentations, saved per run in the registry with held-out predictions and explanations.
Scoring ``as_of_date`` is the score stage's job."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import registry, tables
from crm_spark.config import Config
from crm_spark.features.customer import buyers, read_features
from crm_spark.features.labels import (
    HORIZON,
    label_source,
    labelled_customers,
    require_two_classes,
    with_spend_label,
    with_split,
)
from crm_spark.features.purchase_summary import with_actual_purchases
from crm_spark.features.selection import kept_features
from crm_spark.frames import beside, for_fitting, persisted
from crm_spark.metrics.classification import auc
from crm_spark.metrics.regression import rmse
from crm_spark.models import churn, clv, lifetime, segments
from crm_spark.models.preprocessing import model_inputs
from crm_spark.registry import CHURN_TASK, CLV_TASK, LIFETIME_TASK, SEGMENT_TASK
from crm_spark.schemas import (
    ACTUAL_PURCHASES,
    CUSTOMER_KEY,
    EXPECTED_ORDER_VALUE,
    EXPECTED_PURCHASES,
    LABEL,
    MODEL,
    MODEL_EXPLANATIONS_SCHEMA,
    P_ALIVE,
    PREDICTION,
    REPEAT_PURCHASES,
    SPLIT,
    TRAIN,
    VALIDATION,
)

log = logging.getLogger(__name__)


def _champion(entries: list[registry.ModelEntry], lower_is_better: bool = False) -> list[registry.ModelEntry]:
    """Mark the entry with the best selection value as champion (an undefined value is never best)."""
    sign = -1.0 if lower_is_better else 1.0
    best = max(entries, key=lambda e: -math.inf if math.isnan(e.selection_value) else sign * e.selection_value)
    return [dataclasses.replace(e, is_champion=e is best) for e in entries]


def train_classifiers(config: Config, run_id: str, labelled: DataFrame, kept: list[str], with_baseline: bool
                      ) -> tuple[list[registry.ModelEntry], DataFrame, dict[str, list[churn.Explanation]]]:
    """Fit each classifier on the train split (whose customers carry both label values), choose its
    threshold on validation, score the holdout.

    Returns:
        Registry entries (champion by validation AUC), held-out predictions of every model
        (plus the recency baseline when ``with_baseline``) and each model's explanations.
    """
    train_df = labelled.where(F.col(SPLIT) == TRAIN)
    holdout_df = labelled.where(F.col(SPLIT) != TRAIN)
    inputs = model_inputs(kept, train_df, config.attribute_columns)
    entries, frames = [], []
    explained: dict[str, list[churn.Explanation]] = {}
    if with_baseline:
        frames.append(churn.recency_baseline(holdout_df).withColumn(MODEL, F.lit(churn.RECENCY_BASELINE)))
    for name in churn.classifiers(config.train):
        began = time.perf_counter()
        fitted = churn.fit(train_df, inputs, name, config.train)
        seconds = time.perf_counter() - began
        with persisted(churn.score(fitted.model, holdout_df.where(F.col(SPLIT) == VALIDATION))) as validation:
            threshold = churn.choose_threshold(validation, config.train.threshold_objective)
            validation_auc = auc(validation)
        path = registry.model_path(config.paths.lakehouse_dir, run_id, CHURN_TASK, name)
        fitted.model.write().overwrite().save(path)
        log.info("churn %s: %s, threshold %.4f, validation AUC %.4f, trained in %.1fs", name, fitted.params,
                 threshold, validation_auc, seconds)
        frames.append(churn.score(fitted.model, holdout_df, threshold).withColumn(MODEL, F.lit(name)))
        params = {**fitted.params, "threshold": threshold, "tvs_auc": fitted.tvs_auc, "train_seconds": seconds}
        entries.append(registry.ModelEntry(CHURN_TASK, name, path, "validation_auc", validation_auc, False, kept,
                                           params))
        explained[name] = [*churn.explanations(fitted, train_df),
                           churn.Explanation("threshold", config.train.threshold_objective, threshold)]
    return _champion(entries), reduce(DataFrame.unionByName, frames), explained


def train_regressors(config: Config, run_id: str, labelled: DataFrame, kept: list[str]
                     ) -> tuple[list[registry.ModelEntry], DataFrame]:
    """Fit the customer value regressors on next-horizon spend; champion by validation RMSE.

    Args:
        config: run configuration.
        run_id: the run's id (models are saved under it).
        labelled: customers with their next-horizon spend as ``label`` and ``split``.
        kept: the features the models use.

    Returns:
        Registry entries, and held-out predictions of every model and the mean baseline.
    """
    train_df = labelled.where(F.col(SPLIT) == TRAIN)
    holdout_df = labelled.where(F.col(SPLIT) != TRAIN)
    entries = []
    frames = [clv.mean_baseline(train_df, holdout_df).withColumn(MODEL, F.lit(clv.MEAN_BASELINE))]
    inputs = model_inputs(kept, train_df, config.attribute_columns)
    cap = None
    if config.train.clv_label_cap_quantile is not None:
        train_df, cap = clv.capped(train_df, config.train.clv_label_cap_quantile)
        log.info("clv: training spend capped at %.2f (quantile %s)", cap, config.train.clv_label_cap_quantile)
    for name, regressor in clv.regressors(config.train).items():
        began = time.perf_counter()
        model = clv.fit(train_df, inputs, regressor)
        seconds = time.perf_counter() - began
        predicted = clv.predict(model, holdout_df).withColumn(MODEL, F.lit(name))
        validation_rmse = rmse(predicted.where(F.col(SPLIT) == VALIDATION))
        path = registry.model_path(config.paths.lakehouse_dir, run_id, CLV_TASK, name)
        model.write().overwrite().save(path)
        log.info("clv %s: validation RMSE %.2f, trained in %.1fs", name, validation_rmse, seconds)
        frames.append(predicted)
        params = {"train_seconds": seconds, **({"label_cap": cap} if cap is not None else {})}
        entries.append(registry.ModelEntry(CLV_TASK, name, path, "validation_rmse", validation_rmse, False, kept,
                                           params))
    return _champion(entries, lower_is_better=True), reduce(DataFrame.unionByName, frames)


def train_lifetime(config: Config, run_id: str, labelled: DataFrame, orders_df: DataFrame
                   ) -> tuple[list[registry.ModelEntry], DataFrame | None, DataFrame | None]:
    """Fit BG/NBD and Gamma-Gamma on the training customers' purchase summaries as of the
    training cutoff, and predict the held-out customers' horizon.

    Args:
        config: run configuration.
        run_id: the run's id (the parameters are saved under it).
        labelled: the customer value regressors' customers, with next-horizon spend as
            ``label`` and ``split``.
        orders_df: silver order lines.

    Returns:
        The registry entry; held-out spend predictions (expected purchases times expected
        order value) in the customer value regressors' layout; held-out expected against
        actual purchases. Without a customer to fit on, no entry and no frames.
    """
    cutoff, horizon = config.training_cutoff, config.churn_horizon_days
    summaries = lifetime.summaries_of(labelled, orders_df, cutoff, config.train).join(
        labelled.select(CUSTOMER_KEY, LABEL, SPLIT), CUSTOMER_KEY)
    try:
        model = lifetime.fit(summaries.where(F.col(SPLIT) == TRAIN), config.train)
    except ValueError as error:
        log.warning("lifetime: BG/NBD and Gamma-Gamma not fitted: %s", error)
        return [], None, None
    params = model.params()
    log.info("lifetime: %s", ", ".join(f"{k} {v:.4g}" for k, v in params.items()))
    path = registry.model_path(config.paths.lakehouse_dir, run_id, LIFETIME_TASK, lifetime.BG_NBD_GAMMA_GAMMA)
    labelled.sparkSession.createDataFrame([params]).coalesce(1).write.mode("overwrite").json(path)
    predicted = lifetime.predict(model, summaries.where(F.col(SPLIT) != TRAIN), horizon, config.train)
    spend = predicted.select(CUSTOMER_KEY, LABEL, SPLIT, (F.col(EXPECTED_PURCHASES) * F.col(EXPECTED_ORDER_VALUE))
                             .alias(PREDICTION), F.lit(lifetime.BG_NBD_GAMMA_GAMMA).alias(MODEL))
    purchases = predicted.transform(with_actual_purchases, orders_df, cutoff, horizon).select(
        CUSTOMER_KEY, SPLIT, REPEAT_PURCHASES, P_ALIVE, EXPECTED_PURCHASES, ACTUAL_PURCHASES)
    entry = registry.ModelEntry(LIFETIME_TASK, lifetime.BG_NBD_GAMMA_GAMMA, path, "log_likelihood",
                                model.purchases.log_likelihood, True, [], params)
    return [entry], spend, purchases


def train_segments(config: Config, run_id: str, buyers_df: DataFrame, kept: list[str]) -> list[registry.ModelEntry]:
    """Fit the segmentation algorithms on the customers with purchases, with the numeric attributes the
    selection kept; champion by silhouette."""
    types = dict(buyers_df.dtypes)
    attributes = [a for a in config.attribute_columns if a in kept and types.get(a, "string") != "string"]
    columns = segments.segment_features(buyers_df, attributes)
    entries = []
    for index, segmentation in enumerate(segments.fit_best(buyers_df, columns, config.train)):
        path = registry.model_path(config.paths.lakehouse_dir, run_id, SEGMENT_TASK, segmentation.algorithm)
        segmentation.model.write().overwrite().save(path)
        log.info("segments %s: k=%d silhouette %.4f, trained in %.1fs", segmentation.algorithm, segmentation.k,
                 segmentation.silhouette, segmentation.seconds)
        entries.append(registry.ModelEntry(SEGMENT_TASK, segmentation.algorithm, path, "silhouette",
                                           segmentation.silhouette, index == 0, columns,
                                           {"k": float(segmentation.k), "train_seconds": segmentation.seconds}))
    return entries


def train_value_and_segments(spark: SparkSession, config: Config, run_id: str, kept: list[str], horizon: bool,
                             write: tables.DatedWriter) -> list[registry.ModelEntry]:
    """Fit the customer value regressors and BG/NBD with Gamma-Gamma (with a horizon label) and the
    segmentations, and write their held-out predictions: the models that do not need the classifiers.

    Returns:
        Their registry entries.
    """
    lake = config.paths.lakehouse_dir
    entries: list[registry.ModelEntry] = []
    if horizon:
        spend = read_features(spark, lake, config.training_cutoff).transform(buyers).transform(
            with_spend_label, tables.read_table(spark, tables.ORDERS, lake), config.training_cutoff,
            config.churn_horizon_days).transform(
            with_split, config.train.validation_share, config.train.test_share, config.train.seed)
        with persisted(spend, StorageLevel.MEMORY_AND_DISK) as labelled:
            labelled = for_fitting(labelled, labelled.count())
            clv_entries, clv_holdout = train_regressors(config, run_id, labelled, kept)
            lifetime_entries, lifetime_spend, purchases = train_lifetime(
                config, run_id, labelled, tables.read_table(spark, tables.ORDERS, lake))
            if lifetime_spend is not None:
                clv_holdout = clv_holdout.unionByName(lifetime_spend)
                write(purchases, tables.PURCHASE_HOLDOUT)
            write(clv_holdout, tables.CLV_HOLDOUT)
        entries += clv_entries + lifetime_entries
    current_buyers = read_features(spark, lake, config.as_of_date).transform(buyers)
    if current_buyers.isEmpty():
        log.info("no customer has purchases: no segmentation")
    else:
        entries += train_segments(config, run_id, current_buyers, kept)
    return entries


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Train every model this configuration's data supports and register them.

    Classifiers learn the label of :func:`crm_spark.features.labels.label_source`. With
    purchase history, customer value regressors and segmentations are trained too, on a
    thread beside the classifiers (:func:`train_value_and_segments`): many of the fits run
    on one partition, one core, and many of their Spark jobs are a few milliseconds' work.
    Held-out predictions (validation and test) are written for the evaluate stage.

    Returns:
        Rows written per table.

    Raises:
        StageSkipped: there is no customer to label, or the training customers carry a single label value.
    """
    lake = config.paths.lakehouse_dir
    write = tables.DatedWriter(lake, config.as_of_date, run_id)
    source = label_source(spark, config)
    labelled_df = labelled_customers(spark, config, source)  # raises StageSkipped when there is nothing to label
    kept = kept_features(spark, config)
    with persisted(labelled_df, StorageLevel.MEMORY_AND_DISK) as labelled:
        labelled = for_fitting(labelled, labelled.count())
        require_two_classes(labelled.where(F.col(SPLIT) == TRAIN))
        with ThreadPoolExecutor(1) as pool:
            others = beside(spark, pool, train_value_and_segments, spark, config, run_id, kept, source == HORIZON,
                            write)
            entries, holdout, explained = train_classifiers(config, run_id, labelled, kept, source == HORIZON)
            write(holdout, tables.CHURN_HOLDOUT)
            entries += others.result()

    write.counts[tables.MODEL_REGISTRY.qualified] = registry.record(spark, config, run_id, entries)
    rows = [(run_id, config.as_of_date, CHURN_TASK, model, *dataclasses.astuple(e))
            for model, explanation in explained.items() for e in explanation]
    write.counts[tables.MODEL_EXPLANATIONS.qualified] = tables.write_table(
        spark.createDataFrame(rows, MODEL_EXPLANATIONS_SCHEMA), tables.MODEL_EXPLANATIONS, lake, run_id)
    for entry in entries:
        if entry.is_champion:
            log.info("%s champion: %s (%s %.4f)", entry.task, entry.model, entry.selection_metric,
                     entry.selection_value)
    return write.counts

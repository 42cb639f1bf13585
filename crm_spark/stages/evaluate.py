"""Evaluate: metrics of every model on held-out data, written to ``model_metrics``."""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.dates import start_of
from crm_spark.frames import persisted
from crm_spark.metrics import classification, clustering, lift, ranking, regression
from crm_spark.models.bgnbd import BG_NBD
from crm_spark.models.churn import RECENCY_BASELINE
from crm_spark.models.clv import MEAN_BASELINE
from crm_spark.recommend.interactions import ITEM, catalogue, dense_index
from crm_spark.registry import CHURN_TASK, CLV_TASK, SEGMENT_TASK
from crm_spark.schemas import (
    ACTUAL_PURCHASES,
    AS_OF_DATE,
    CUSTOMER_KEY,
    EXPECTED_PURCHASES,
    LABEL,
    MODEL,
    MODEL_METRICS_SCHEMA,
    MODEL_RUN_ID,
    ORDER_ID,
    ORDER_TS,
    PRODUCT_ID,
    RATING,
    REPEAT_PURCHASES,
    RUN_ID,
    SCORE,
    SEGMENT,
    SPLIT,
    TEST,
    VALIDATION,
)
from crm_spark.synth import truth

log = logging.getLogger(__name__)

ALL, SERVING = "all", "serving"  # splits of metrics measured on every customer, and on the served lists


@dataclass(frozen=True)
class Metric:
    """One row of ``model_metrics`` (without the run and date that every row of a run shares)."""

    task: str
    model: str
    metric: str
    value: float | None
    split: str
    model_run_id: str | None


def _latest(spark: SparkSession, table: tables.Table, config: Config) -> DataFrame:
    return tables.read_table(spark, table, config.paths.lakehouse_dir).where(
        F.col(AS_OF_DATE) == F.lit(config.as_of_date))


def _written(spark: SparkSession, table: tables.Table, config: Config) -> bool:
    """Return whether ``table`` has rows for ``as_of_date`` (its stage ran and was not skipped)."""
    return tables.table_exists(spark, table, config.paths.lakehouse_dir) and not _latest(
        spark, table, config).isEmpty()


def _run_id_of(df: DataFrame) -> str | None:
    row = df.select(RUN_ID).limit(1).collect()
    return row[0][0] if row else None


def _models(df: DataFrame) -> list[str]:
    """Return the distinct ``model`` values of a frame of predictions, sorted."""
    return sorted(r[0] for r in df.select(MODEL).distinct().collect())


def dedup_metrics(spark: SparkSession, config: Config) -> list[Metric]:
    """Return pairwise entity-resolution metrics against the ground truth, when it is available."""
    if not truth.truth_available(config.paths.truth_dir):
        return []
    xref = tables.read_table(spark, tables.CUSTOMER_XREF, config.paths.lakehouse_dir)
    values = truth.dedup_pair_counts(spark, config.paths.truth_dir, xref)
    return [Metric("dedup", "entity_resolution", name, value, ALL, None) for name, value in values.items()]


def churn_metrics(spark: SparkSession, config: Config) -> list[Metric]:
    """Return AUC (ROC, PR), lift and capture in the top decile, and the confusion matrix
    and its metrics at the model's chosen threshold, per churn model and held-out split.

    With ground truth available, adds the oracle AUC of the planted label
    probabilities on the same test customers.
    """
    metrics: list[Metric] = []
    with persisted(_latest(spark, tables.CHURN_HOLDOUT, config)) as holdout:
        source_run = _run_id_of(holdout)
        for model in _models(holdout):
            for split in (VALIDATION, TEST):
                rows = holdout.where((F.col(MODEL) == model) & (F.col(SPLIT) == split))
                values = {"auc": classification.auc(rows), "auc_pr": classification.auc(rows, "areaUnderPR"),
                          **lift.top_decile(rows)}
                if model != RECENCY_BASELINE:
                    values.update(classification.confusion_metrics(rows))
                values["positive_share"] = rows.agg(F.avg(LABEL)).first()[0]
                metrics += [Metric(CHURN_TASK, model, name, value, split, source_run) for name, value in values.items()]
        if truth.truth_available(config.paths.truth_dir):
            xref = tables.read_table(spark, tables.CUSTOMER_XREF, config.paths.lakehouse_dir)
            oracle = truth.oracle_churn_scores(spark, config.paths.truth_dir, xref)
            test_rows = holdout.where(F.col(SPLIT) == TEST).select(CUSTOMER_KEY, LABEL).distinct().join(
                oracle, CUSTOMER_KEY)
            metrics.append(Metric(CHURN_TASK, "oracle", "auc", classification.auc(test_rows), TEST, source_run))
    return metrics


def clv_metrics(spark: SparkSession, config: Config) -> list[Metric]:
    """Return RMSE, MAE and R² per customer value model and held-out split, the mean baseline
    among them, and the mean predicted and actual spend per decile of the test predictions."""
    metrics: list[Metric] = []
    with persisted(_latest(spark, tables.CLV_HOLDOUT, config)) as holdout:
        source_run = _run_id_of(holdout)
        for model in _models(holdout):
            for split in (VALIDATION, TEST):
                rows = holdout.where((F.col(MODEL) == model) & (F.col(SPLIT) == split))
                metrics += [Metric(CLV_TASK, model, name, value, split, source_run)
                            for name, value in regression.regression_metrics(rows).items()]
            if model != MEAN_BASELINE:
                test = holdout.where((F.col(MODEL) == model) & (F.col(SPLIT) == TEST))
                for decile in regression.calibration(test):
                    name = f"decile_{decile.decile:02d}_mean"
                    metrics += [Metric(CLV_TASK, model, f"{name}_predicted", decile.mean_predicted, TEST, source_run),
                                Metric(CLV_TASK, model, f"{name}_actual", decile.mean_actual, TEST, source_run)]
    return metrics


def purchase_metrics(spark: SparkSession, config: Config) -> list[Metric]:
    """Return BG/NBD's expected against actual purchases in the horizon per held-out split: the
    totals, the mean absolute error per customer, the AUC of buying again at all, and on the test
    customers the field's calibration: mean expected and actual purchases by the number of
    repeat purchases before the cutoff (0 to 6, then 7 or more)."""
    metrics: list[Metric] = []
    with persisted(_latest(spark, tables.PURCHASE_HOLDOUT, config)) as holdout:
        source_run = _run_id_of(holdout)
        for split in (VALIDATION, TEST):
            rows = holdout.where(F.col(SPLIT) == split)
            stats = rows.agg(F.sum(EXPECTED_PURCHASES).alias("expected"), F.sum(ACTUAL_PURCHASES).alias("actual"),
                             F.avg(F.abs(F.col(EXPECTED_PURCHASES) - F.col(ACTUAL_PURCHASES))).alias("mae")).first()
            bought = rows.select((F.col(ACTUAL_PURCHASES) > 0).cast("double").alias(LABEL),
                                 F.col(EXPECTED_PURCHASES).alias(SCORE))
            values = {"expected_purchases_total": stats["expected"], "actual_purchases_total": stats["actual"],
                      "purchases_mae": stats["mae"], "auc_buys_again": classification.auc(bought)}
            metrics += [Metric(CLV_TASK, BG_NBD, name, value, split, source_run) for name, value in values.items()]
        group = F.least(F.col(REPEAT_PURCHASES), F.lit(7.0)).cast("int").alias("group")
        calibration = holdout.where(F.col(SPLIT) == TEST).groupBy(group).agg(
            F.avg(EXPECTED_PURCHASES).alias("expected"), F.avg(ACTUAL_PURCHASES).alias("actual"))
        for row in calibration.orderBy("group").collect():
            name = f"repeat_purchases_{row['group']}{'_or_more' if row['group'] == 7 else ''}"
            metrics += [Metric(CLV_TASK, BG_NBD, f"{name}_mean_expected", row["expected"], TEST, source_run),
                        Metric(CLV_TASK, BG_NBD, f"{name}_mean_actual", row["actual"], TEST, source_run)]
    return metrics


def _list_quality(recs_df: DataFrame, products_df: DataFrame) -> dict[str, float]:
    """Return catalogue coverage and the entropy of recommendation counts of a set of lists."""
    return {"catalogue_coverage": ranking.catalogue_coverage(recs_df, products_df),
            "distribution_entropy": ranking.distribution_entropy(recs_df)}


def recommendation_metrics(spark: SparkSession, config: Config) -> list[Metric]:
    """Return ranking metrics, coverage, entropy and novelty of each recommender on held-out data.

    Also the tuned ALS's validation score, the coverage of the served lists, and the
    rating RMSE of explicit ALS against item means when ratings exist.
    """
    lake = config.paths.lakehouse_dir
    k = config.recommend.top_k
    metrics: list[Metric] = []
    task = "recommendation"
    with contextlib.ExitStack() as scope:
        products = scope.enter_context(persisted(catalogue(*(tables.read_table(spark, t, lake) for t in (
            tables.PRODUCTS, tables.ORDERS, tables.RATINGS)))))
        items = scope.enter_context(persisted(dense_index(products, PRODUCT_ID, ITEM)))
        relevant = scope.enter_context(persisted(_latest(spark, tables.RECOMMENDATION_RELEVANCE, config)))
        holdout = scope.enter_context(persisted(_latest(spark, tables.RECOMMENDATION_HOLDOUT, config)))
        source_run = _run_id_of(holdout)
        for model in _models(holdout):
            recs = holdout.where(F.col(MODEL) == model)
            values = ranking.ranking_metrics(ranking.ranking_frame(recs, relevant, items), k)
            values = {name.replace("_k", f"_{k}"): value for name, value in values.items()}
            values.update(_list_quality(recs, products))
            values["novelty"] = ranking.novelty(recs)
            metrics += [Metric(task, model, name, value, TEST, source_run) for name, value in values.items()]
        tuning = _latest(spark, tables.RECOMMENDATION_TUNING, config).where("chosen")
        metrics += [Metric(task, r[MODEL], r["metric"], r["value"], VALIDATION, r[RUN_ID]) for r in tuning.collect()]
        served = scope.enter_context(persisted(_latest(spark, tables.RECOMMENDATIONS, config)))
        served_run = _run_id_of(served)
        metrics += [Metric(task, "served", name, value, SERVING, served_run)
                    for name, value in _list_quality(served, products).items()]
        if _written(spark, tables.RATING_HOLDOUT, config):
            rated = _latest(spark, tables.RATING_HOLDOUT, config)
            rated_run = _run_id_of(rated)
            for model in _models(rated):
                value = regression.rmse(rated.where(F.col(MODEL) == model), RATING)
                metrics.append(Metric("rating", model, "rmse", value, TEST, rated_run))
    return metrics


def segmentation_metrics(spark: SparkSession, config: Config) -> list[Metric]:
    """Return the silhouette of each segmentation model of the training run whose champion
    wrote this date's segments and, with ground truth, the segments' adjusted Rand index
    against the planted customer groups."""
    lake = config.paths.lakehouse_dir
    assigned = _latest(spark, tables.CUSTOMER_SEGMENTS, config)
    source_run = assigned.select(MODEL_RUN_ID).first()[0]
    registry = tables.read_table(spark, tables.MODEL_REGISTRY, lake).where(
        (F.col(RUN_ID) == F.lit(source_run)) & (F.col("task") == SEGMENT_TASK))
    metrics = [Metric(SEGMENT_TASK, r["model"], r["selection_metric"], r["selection_value"], ALL, source_run)
               for r in registry.collect()]
    if truth.truth_available(config.paths.truth_dir):
        groups = truth.planted_groups(spark, config.paths.truth_dir,
                                      tables.read_table(spark, tables.CUSTOMER_XREF, lake))
        algorithm = assigned.select("algorithm").first()[0]
        value = clustering.adjusted_rand_index(assigned.join(groups, CUSTOMER_KEY), SEGMENT, "group")
        metrics.append(Metric(SEGMENT_TASK, algorithm, "adjusted_rand_index", value, ALL, source_run))
    return metrics


def anomaly_metrics(spark: SparkSession, config: Config) -> list[Metric]:
    """Return how many orders and customers were flagged and, with ground truth, order-level
    precision, recall and F1 against the planted anomalous orders.

    The truth is limited to orders the detector could see: order lines of known customers
    in silver before ``as_of_date``.
    """
    task, model = "anomaly", "robust_z"
    with persisted(_latest(spark, tables.ANOMALIES, config)) as flagged:
        run = _run_id_of(flagged)
        counts = {r["level"]: r["count"] for r in flagged.groupBy("level").count().collect()}
        metrics = [Metric(task, model, f"flagged_{level}s", float(counts.get(level, 0)), ALL, run)
                   for level in ("order", "customer")]
        if truth.truth_has(config.paths.truth_dir, "anomalous_orders"):
            seen = tables.read_table(spark, tables.ORDERS, config.paths.lakehouse_dir).where(
                F.col(CUSTOMER_KEY).isNotNull() & (F.col(ORDER_TS) < start_of(config.as_of_date))
            ).select(ORDER_ID).distinct()
            planted = truth.anomalous_orders(spark, config.paths.truth_dir).join(seen, ORDER_ID)
            orders = flagged.where(F.col("level") == "order").select(ORDER_ID)
            hits, predicted, actual = orders.join(planted, ORDER_ID).count(), orders.count(), planted.count()
            precision = hits / predicted if predicted else float("nan")
            recall = hits / actual if actual else float("nan")
            f1 = 2 * precision * recall / (precision + recall) if predicted and actual and hits else 0.0
            metrics += [Metric(task, model, name, value, ALL, run) for name, value in (
                ("precision", precision), ("recall", recall), ("f1", f1), ("planted_orders", float(actual)))]
    return metrics


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Compute the metrics of every model this date has and write them to ``model_metrics``.

    Models whose stage was skipped (no holdout rows for ``as_of_date``) get none.

    Returns:
        Rows written.
    """
    metrics = dedup_metrics(spark, config)
    if _written(spark, tables.CHURN_HOLDOUT, config):
        metrics += churn_metrics(spark, config)
    if _written(spark, tables.CLV_HOLDOUT, config):
        metrics += clv_metrics(spark, config)
    if _written(spark, tables.PURCHASE_HOLDOUT, config):
        metrics += purchase_metrics(spark, config)
    if _written(spark, tables.CUSTOMER_SEGMENTS, config):
        metrics += segmentation_metrics(spark, config)
    if _written(spark, tables.ANOMALIES, config):
        metrics += anomaly_metrics(spark, config)
    if _written(spark, tables.RECOMMENDATION_HOLDOUT, config):
        metrics += recommendation_metrics(spark, config)
    for m in metrics:
        log.info("metric %s/%s %s [%s] = %s", m.task, m.model, m.metric, m.split, _number(m.value))
    rows = [(run_id, config.as_of_date, m.task, m.model, m.metric, _number(m.value), m.split, m.model_run_id)
            for m in metrics]
    frame = spark.createDataFrame(rows, MODEL_METRICS_SCHEMA)
    written = tables.write_table(frame, tables.MODEL_METRICS, config.paths.lakehouse_dir, run_id)
    return {tables.MODEL_METRICS.qualified: written}


def _number(value: float | None) -> float | None:
    """Return ``value`` as a float, or None for a missing or undefined (NaN) value."""
    return None if value is None or math.isnan(value) else float(value)

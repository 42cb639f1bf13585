"""Evaluate: metrics of every model on held-out data, written to ``model_metrics``."""

from __future__ import annotations

import logging
import math

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.evaluate import classification, clustering, ranking, regression, truth
from crm_spark.labels import LABEL, SPLIT, TEST, VALIDATION
from crm_spark.recommend.als import ITEM, catalogue, dense_index
from crm_spark.schemas import (
    AS_OF_DATE,
    CUSTOMER_KEY,
    MODEL_METRICS_SCHEMA,
    PRODUCT_ID,
    RUN_ID,
)
from crm_spark.train.churn import RECENCY_BASELINE
from crm_spark.train.clv import MEAN_BASELINE

log = logging.getLogger(__name__)

Metric = tuple[str, str, str, float, str, str]  # task, model, metric, value, split, model_run_id


def _latest(spark: SparkSession, table: tables.Table, config: Config) -> DataFrame:
    return tables.read_table(spark, table, config.paths.lakehouse_dir).where(
        F.col(AS_OF_DATE) == F.lit(config.as_of_date))


def _written(spark: SparkSession, table: tables.Table, config: Config) -> bool:
    """Return whether ``table`` has rows for ``as_of_date`` (its stage ran and was not skipped)."""
    return tables.table_exists(spark, table, config.paths.lakehouse_dir) and not _latest(
        spark, table, config).isEmpty()


def dedup_metrics(spark: SparkSession, config: Config) -> list[Metric]:
    """Return pairwise entity-resolution metrics against the ground truth, when it is available."""
    if not truth.truth_available(config.paths.truth_dir):
        return []
    xref = tables.read_table(spark, tables.CUSTOMER_XREF, config.paths.lakehouse_dir)
    values = truth.dedup_pair_counts(spark, config.paths.truth_dir, xref)
    return [("dedup", "entity_resolution", name, value, "all", None) for name, value in values.items()]


def _run_id_of(df: DataFrame) -> str | None:
    row = df.select(RUN_ID).limit(1).collect()
    return row[0][0] if row else None


def churn_metrics(spark: SparkSession, config: Config) -> list[Metric]:
    """Return AUC (ROC, PR), lift and capture in the top decile, and the confusion matrix
    and its metrics at the model's chosen threshold, per churn model and held-out split.

    With ground truth available, adds the oracle AUC of the planted label
    probabilities on the same test customers.
    """
    holdout = _latest(spark, tables.CHURN_HOLDOUT, config).cache()
    source_run = _run_id_of(holdout)
    models = sorted(r[0] for r in holdout.select("model").distinct().collect())
    metrics: list[Metric] = []
    for model in models:
        for split in (VALIDATION, TEST):
            rows = holdout.where((F.col("model") == model) & (F.col(SPLIT) == split))
            values = {"auc": classification.auc(rows), "auc_pr": classification.auc(rows, "areaUnderPR"),
                      **classification.top_decile(rows)}
            if model != RECENCY_BASELINE:
                values.update(classification.confusion_metrics(rows))
            values["positive_share"] = rows.agg(F.avg(LABEL)).first()[0]
            metrics += [("churn", model, name, value, split, source_run) for name, value in values.items()]
    if truth.truth_available(config.paths.truth_dir):
        xref = tables.read_table(spark, tables.CUSTOMER_XREF, config.paths.lakehouse_dir)
        oracle = truth.oracle_churn_scores(spark, config.paths.truth_dir, xref)
        test_rows = holdout.where(F.col(SPLIT) == TEST).select(CUSTOMER_KEY, LABEL).distinct().join(
            oracle, CUSTOMER_KEY)
        metrics.append(("churn", "oracle", "auc", classification.auc(test_rows), TEST, source_run))
    holdout.unpersist()
    return metrics


def clv_metrics(spark: SparkSession, config: Config) -> list[Metric]:
    """Return RMSE, MAE and R² per customer value model and held-out split, the mean baseline
    among them, and the mean predicted and actual spend per decile of the test predictions."""
    holdout = _latest(spark, tables.CLV_HOLDOUT, config).cache()
    source_run = _run_id_of(holdout)
    metrics: list[Metric] = []
    for model in sorted(r[0] for r in holdout.select("model").distinct().collect()):
        for split in (VALIDATION, TEST):
            rows = holdout.where((F.col("model") == model) & (F.col(SPLIT) == split))
            metrics += [("clv", model, name, value, split, source_run)
                        for name, value in regression.regression_metrics(rows).items()]
        if model != MEAN_BASELINE:
            test = holdout.where((F.col("model") == model) & (F.col(SPLIT) == TEST))
            for decile, predicted, actual, _ in regression.calibration(test):
                metrics += [("clv", model, f"decile_{decile:02d}_mean_predicted", predicted, TEST, source_run),
                            ("clv", model, f"decile_{decile:02d}_mean_actual", actual, TEST, source_run)]
    holdout.unpersist()
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
    products = catalogue(*(tables.read_table(spark, t, lake) for t in (tables.PRODUCTS, tables.ORDERS,
                                                                          tables.RATINGS))).cache()
    items = dense_index(products, PRODUCT_ID, ITEM).cache()
    relevant = _latest(spark, tables.RECOMMENDATION_RELEVANCE, config).cache()
    holdout = _latest(spark, tables.RECOMMENDATION_HOLDOUT, config).cache()
    source_run = _run_id_of(holdout)
    metrics: list[Metric] = []
    for model in sorted(r[0] for r in holdout.select("model").distinct().collect()):
        recs = holdout.where(F.col("model") == model)
        values = ranking.ranking_metrics(ranking.ranking_frame(recs, relevant, items), k)
        values = {name.replace("_k", f"_{k}"): value for name, value in values.items()}
        values.update(_list_quality(recs, products))
        values["novelty"] = ranking.novelty(recs)
        metrics += [("recommendation", model, name, value, TEST, source_run) for name, value in values.items()]
    tuning = _latest(spark, tables.RECOMMENDATION_TUNING, config).where("chosen")
    metrics += [("recommendation", "als", r["metric"], r["value"], VALIDATION, r[RUN_ID]) for r in tuning.collect()]
    served = _latest(spark, tables.RECOMMENDATIONS, config).cache()
    served_run = _run_id_of(served)
    metrics += [("recommendation", "served", name, value, "serving", served_run)
                for name, value in _list_quality(served, products).items()]
    if _written(spark, tables.RATING_HOLDOUT, config):
        rated = _latest(spark, tables.RATING_HOLDOUT, config)
        rated_run = _run_id_of(rated)
        for model in sorted(r[0] for r in rated.select("model").distinct().collect()):
            metrics.append(("rating", model, "rmse", ranking.rmse(rated.where(F.col("model") == model)), TEST,
                            rated_run))
    for frame in (products, items, relevant, holdout, served):
        frame.unpersist()
    return metrics


def segmentation_metrics(spark: SparkSession, config: Config) -> list[Metric]:
    """Return the silhouette of each segmentation model of the training run whose champion
    wrote this date's segments and, with ground truth, the segments' adjusted Rand index
    against the planted customer groups."""
    lake = config.paths.lakehouse_dir
    assigned = _latest(spark, tables.CUSTOMER_SEGMENTS, config)
    source_run = assigned.select("model_run_id").first()[0]
    registry = tables.read_table(spark, tables.MODEL_REGISTRY, lake).where(
        (F.col(RUN_ID) == F.lit(source_run)) & (F.col("task") == "segmentation"))
    metrics: list[Metric] = [("segmentation", r["model"], r["selection_metric"], r["selection_value"], "all",
                              source_run) for r in registry.collect()]
    if truth.truth_available(config.paths.truth_dir):
        groups = truth.planted_groups(spark, config.paths.truth_dir,
                                      tables.read_table(spark, tables.CUSTOMER_XREF, lake))
        algorithm = assigned.select("algorithm").first()[0]
        value = clustering.adjusted_rand_index(assigned.join(groups, CUSTOMER_KEY), "segment", "group")
        metrics.append(("segmentation", algorithm, "adjusted_rand_index", value, "all", source_run))
    return metrics


def anomaly_metrics(spark: SparkSession, config: Config) -> list[Metric]:
    """Return how many orders and customers were flagged and, with ground truth, order-level
    precision, recall and F1 against the planted anomalous orders.

    The truth is limited to orders the detector could see: order lines of known customers
    in silver before ``as_of_date``.
    """
    flagged = _latest(spark, tables.ANOMALIES, config).cache()
    run = _run_id_of(flagged)
    counts = {r["level"]: r["count"] for r in flagged.groupBy("level").count().collect()}
    metrics: list[Metric] = [("anomaly", "robust_z", f"flagged_{level}s", float(counts.get(level, 0)), "all", run)
                             for level in ("order", "customer")]
    if truth.truth_has(config.paths.truth_dir, "anomalous_orders"):
        seen = tables.read_table(spark, tables.ORDERS, config.paths.lakehouse_dir).where(
            F.col(CUSTOMER_KEY).isNotNull() & (F.col("order_ts") < F.lit(config.as_of_date).cast("timestamp"))
        ).select("order_id").distinct()
        planted = truth.anomalous_orders(spark, config.paths.truth_dir).join(seen, "order_id")
        orders = flagged.where(F.col("level") == "order").select("order_id")
        hits, predicted, actual = orders.join(planted, "order_id").count(), orders.count(), planted.count()
        precision = hits / predicted if predicted else float("nan")
        recall = hits / actual if actual else float("nan")
        f1 = 2 * precision * recall / (precision + recall) if predicted and actual and hits else 0.0
        metrics += [("anomaly", "robust_z", name, value, "all", run) for name, value in (
            ("precision", precision), ("recall", recall), ("f1", f1), ("planted_orders", float(actual)))]
    flagged.unpersist()
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
    if _written(spark, tables.CUSTOMER_SEGMENTS, config):
        metrics += segmentation_metrics(spark, config)
    if _written(spark, tables.ANOMALIES, config):
        metrics += anomaly_metrics(spark, config)
    if _written(spark, tables.RECOMMENDATION_HOLDOUT, config):
        metrics += recommendation_metrics(spark, config)
    rows = [
        (run_id, config.as_of_date, task, model, metric,
         None if value is None or math.isnan(value) else float(value), split, model_run)
        for task, model, metric, value, split, model_run in metrics
    ]
    for row in rows:
        log.info("metric %s/%s %s [%s] = %s", row[2], row[3], row[4], row[6], row[5])
    frame = spark.createDataFrame(rows, MODEL_METRICS_SCHEMA)
    written = tables.write_table(frame, tables.MODEL_METRICS, config.paths.lakehouse_dir, run_id)
    return {tables.MODEL_METRICS.qualified: written}

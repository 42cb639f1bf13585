"""The whole pipeline on a small generated data set: tables, reconciliation, leakage,
recommendation exclusions and churn model quality."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from crm_spark import runs, tables
from crm_spark.config import GenerateConfig
from crm_spark.features import completed_before, customer_features, read_features

from .conftest import make_config

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def run(spark, session_root):
    config = make_config(session_root / "pipeline")
    config = dataclasses.replace(config, generate=GenerateConfig(customers=2500, products=150, partitions=2))
    result = runs.execute(spark, config, ["generate", *runs.PIPELINE], run_id="test-run")
    return config, result


def read(spark, config, table):
    return tables.read_table(spark, table, config.paths.lakehouse_dir)


def test_every_table_is_delta(spark, run):
    config, result = run
    lake = config.paths.lakehouse_dir
    missing = [t.qualified for t in tables.ALL_TABLES if not DeltaTable.isDeltaTable(spark, t.path(lake))]
    assert missing == []
    assert result.status == "succeeded"
    manifest = read(spark, config, tables.RUNS).where(F.col("run_id") == "test-run").first()
    assert manifest["status"] == "succeeded"
    assert sorted(manifest["stage_seconds"]) == sorted(["generate", *runs.PIPELINE])


def test_rows_reconcile_through_ingest(spark, run):
    config, result = run
    raw = config.paths.raw_dir
    header_free = {
        "customers": spark.read.text(f"{raw}/customers").where(~F.col("value").startswith("customer_id,")).count(),
        "products": spark.read.text(f"{raw}/products").where(~F.col("value").startswith("product_id,")).count(),
        "orders": spark.read.text(f"{raw}/orders").count(),
        "ratings": spark.read.parquet(f"{raw}/ratings").count(),
    }
    quarantine = read(spark, config, tables.QUARANTINE)
    for source, lines in header_free.items():
        accepted = read(spark, config, tables.BRONZE[source]).count()
        rejected = quarantine.where(F.col("source") == source).count()
        assert (source, lines) == (source, accepted + rejected)
        assert result.row_counts[f"{source}.read"] == lines


def test_planted_malformed_lines_are_quarantined_with_reasons(spark, run):
    config, _ = run
    truth = spark.read.parquet(f"{config.paths.truth_dir}/malformed")
    planted = {(r["source"], r["malformed"]): r["count"]
               for r in truth.groupBy("source", "malformed").count().collect()}
    found = {(r["source"], r["reason"]): r["count"]
             for r in read(spark, config, tables.QUARANTINE).groupBy("source", "reason").count().collect()}
    assert planted, "the generator must plant malformed lines"
    assert found[("orders", "malformed_json")] == planted[("orders", "truncated_json")]
    for (source, kind), count in planted.items():
        if source == "customers":
            assert found[("customers", kind)] == count


def test_duplicates_are_merged_into_one_key(spark, run):
    config, _ = run
    xref = read(spark, config, tables.CUSTOMER_XREF)
    truth = spark.read.parquet(f"{config.paths.truth_dir}/customers")
    # Persons planted with an exact duplicate (same normalized email or phone) and no
    # other dirt on their records must end up with one key.
    exact = F.col("variation").isin("case_email", "phone_only", "email_only")
    dirty = F.col("malformed").isNotNull() | F.col("dirt").isNotNull()
    eligible = truth.groupBy("person_id").agg(F.max(exact).alias("exact"), F.max(dirty).alias("dirty")) \
        .where(F.col("exact") & ~F.col("dirty"))
    keys = truth.join(eligible, "person_id").join(xref, "customer_id").groupBy("person_id").agg(
        F.count("*").alias("records"), F.countDistinct("customer_key").alias("keys"))
    assert keys.count() > 0
    assert keys.where((F.col("records") != 2) | (F.col("keys") != 1)).count() == 0
    assert read(spark, config, tables.CUSTOMERS).count() == xref.select("customer_key").distinct().count()
    # Exact matching never merges two different persons.
    merged = truth.join(xref, "customer_id").groupBy("customer_key").agg(F.countDistinct("person_id").alias("n"))
    assert merged.where(F.col("n") > 1).count() == 0


def test_features_ignore_events_on_or_after_as_of_date(spark, run):
    config, _ = run
    orders = read(spark, config, tables.ORDERS)
    ratings = read(spark, config, tables.RATINGS)
    shifted_orders = orders.withColumn("order_ts", F.lit(config.as_of_date).cast("timestamp")
                                       + F.expr("INTERVAL 5 HOURS")).withColumn("status", F.lit("completed"))
    shifted_ratings = ratings.withColumn("rated_ts", F.lit(config.as_of_date).cast("timestamp"))
    products = read(spark, config, tables.PRODUCTS)
    categories = sorted(r[0] for r in products.select("category").distinct().collect())
    recomputed = customer_features(read(spark, config, tables.CUSTOMERS), orders.unionByName(shifted_orders),
                                   ratings.unionByName(shifted_ratings), products, config.as_of_date, categories)
    stored = read_features(spark, config.paths.lakehouse_dir, config.as_of_date).drop("run_id")
    assertDataFrameEqual(recomputed.select(*stored.columns), stored)


def test_recommendations_exclude_purchased_products(spark, run):
    config, _ = run
    recs = read(spark, config, tables.RECOMMENDATIONS).where(F.col("as_of_date") == config.as_of_date)
    bought = completed_before(read(spark, config, tables.ORDERS), config.as_of_date).select(
        "customer_key", "product_id")
    assert recs.join(bought, ["customer_key", "product_id"]).count() == 0
    per_customer = recs.groupBy("customer_key").agg(F.count("*").alias("n"), F.max("rank").alias("top"))
    k = config.recommend.top_k
    assert per_customer.where((F.col("n") != k) | (F.col("top") != k)).count() == 0
    registered = read(spark, config, tables.CUSTOMERS).where(
        F.col("signup_ts").isNull() | (F.col("signup_ts") < F.lit(config.as_of_date).cast("timestamp")))
    assert recs.select("customer_key").distinct().count() == registered.count()


def test_churn_model_beats_recency_baseline(spark, run):
    config, _ = run
    metrics = read(spark, config, tables.MODEL_METRICS).where(
        (F.col("run_id") == "test-run") & (F.col("task") == "churn") & (F.col("metric") == "auc")
        & (F.col("split") == "test"))
    auc = {r["model"]: r["value"] for r in metrics.collect()}
    best = max(auc["logistic_regression"], auc["decision_tree"])
    assert best > auc["recency_baseline"] + 0.02, auc
    assert auc["oracle"] > auc["recency_baseline"], auc


def test_held_out_splits_do_not_overlap_training(spark, run):
    config, _ = run
    holdout = read(spark, config, tables.CHURN_HOLDOUT)
    assert sorted(r[0] for r in holdout.select("split").distinct().collect()) == ["test", "validation"]
    assert holdout.groupBy("model", "customer_key").count().where("count > 1").count() == 0


def test_as_of_date_rerun_replaces_rows(spark, run):
    config, _ = run
    before = read(spark, config, tables.CUSTOMER_FEATURES).count()
    runs.execute(spark, config, ["features"], run_id="test-rerun")
    assert read(spark, config, tables.CUSTOMER_FEATURES).count() == before
    assert read(spark, config, tables.CUSTOMER_FEATURES).where(
        F.col("as_of_date") == dt.date(2025, 1, 1)).select("run_id").distinct().collect() == [("test-rerun",)]


def test_registry_records_saved_models_and_one_champion_per_task(spark, run):
    config, _ = run
    registry = read(spark, config, tables.MODEL_REGISTRY).where(F.col("run_id") == "test-run")
    champions = {r["task"]: r["n"] for r in registry.where("is_champion").groupBy("task").agg(
        F.count("*").alias("n")).collect()}
    assert champions == {"churn": 1, "segmentation": 1, "recommendation": 1}
    models = sorted((r["task"], r["model"]) for r in registry.collect())
    assert models == [("churn", "decision_tree"), ("churn", "logistic_regression"), ("recommendation", "als"),
                      ("segmentation", "kmeans")]
    for row in registry.collect():
        assert (Path(row["path"]) / "metadata").is_dir(), row["path"]

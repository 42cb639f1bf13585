"""The whole pipeline on a small generated data set: tables, reconciliation, leakage,
recommendation exclusions and churn model quality."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from crm_spark import cli, runs, tables
from crm_spark.config import GenerateConfig
from crm_spark.features.customer import completed_before, customer_features, read_features
from crm_spark.models.lifetime import with_purchase_summary
from crm_spark.recommend.popularity import GROUP_POPULAR_MODEL, POPULAR_MODEL
from crm_spark.report import charts, page
from crm_spark.report.sections import SECTIONS
from crm_spark.stages import erase

from .conftest import make_config

pytestmark = pytest.mark.integration
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

@pytest.fixture(scope="module")
def run(spark, session_root):
    """Run the whole pipeline once, with every log record of the run kept in ``run.log``."""
    config = make_config(session_root / "pipeline")
    config = dataclasses.replace(config, generate=GenerateConfig(customers=2500, products=150, partitions=2))
    (session_root / "pipeline").mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(session_root / "pipeline" / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        result = runs.execute(spark, config, ["generate", *runs.PIPELINE], run_id="test-run")
        handler.stream.write(cli.summary(spark, config, "test-run") + "\n")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
    return config, result


def read(spark, config, table):
    return tables.read_table(spark, table, config.paths.lakehouse_dir)


def test_every_table_is_delta(spark, run):
    config, result = run
    lake = config.paths.lakehouse_dir
    written_by_runs = [t for t in tables.ALL_TABLES if t != tables.ERASURE_LOG]
    missing = [t.qualified for t in written_by_runs if not DeltaTable.isDeltaTable(spark, t.path(lake))]
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
    more_orders = orders.unionByName(shifted_orders)
    recomputed = customer_features(read(spark, config, tables.CUSTOMERS), more_orders,
                                   ratings.unionByName(shifted_ratings), products, config.as_of_date, categories
                                   ).transform(with_purchase_summary, more_orders, config.as_of_date, config.train)
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
    buyers = bought.select("customer_key").distinct()
    by_source = {r["source"]: r for r in recs.join(buyers.withColumn("buyer", F.lit(True)), "customer_key", "left")
                 .groupBy("source").agg(F.countDistinct("customer_key").alias("customers"),
                                        F.count("buyer").alias("buyer_rows")).collect()}
    tuning = read(spark, config, tables.RECOMMENDATION_TUNING).where(F.col("run_id") == "test-run")
    champion = tuning.where("chosen").collect()
    assert len(champion) == 1 and champion[0]["value"] == tuning.agg(F.max("value")).first()[0]
    champion = champion[0]["model"]
    assert set(by_source) - {"popular"} == {champion, "segment_popular"}
    assert by_source[champion]["customers"] == buyers.count()
    assert by_source["segment_popular"]["buyer_rows"] == 0 and by_source.get("popular", {"buyer_rows": 0})[
        "buyer_rows"] == 0
    cfg = config.recommend
    tried = tuning.collect()
    als = [r for r in tried if r["model"] == "als"]
    assert {r["reg_param"] for r in als} >= set(cfg.tune_reg_params) and {r["rank"] for r in als} >= set(
        cfg.tune_ranks) and {r["alpha"] for r in als} >= set(cfg.tune_alphas)
    assert {r["ease_reg"] for r in tried if r["model"] == "ease"} == {cfg.ease_reg, *cfg.tune_ease_regs}
    assert {r["als_share"] for r in tried if r["model"] == "blend"} == set(cfg.tune_blend_shares)


def test_segments_profiles_rfm_and_anomalies(spark, run):
    config, _ = run
    segments = read(spark, config, tables.CUSTOMER_SEGMENTS).where(F.col("run_id") == "test-run")
    profiles = read(spark, config, tables.SEGMENT_PROFILES).where(F.col("run_id") == "test-run")
    sizes = {r["segment"]: r["n"] for r in segments.groupBy("segment").agg(F.count("*").alias("n")).collect()}
    assert {r["segment"]: r["customers"] for r in profiles.collect()} == sizes
    assert profiles.where("size(top_categories) != 3 or churn_rate is null").count() == 0
    named = {r[0] for r in segments.select("rfm_segment").distinct().collect()}
    assert {"champions", "hibernating"} <= named and segments.where("rfm_segment is null").count() == 0
    metrics = {(r["model"], r["metric"]): r["value"] for r in read(spark, config, tables.MODEL_METRICS).where(
        (F.col("run_id") == "test-run") & F.col("task").isin("anomaly", "segmentation")).collect()}
    assert metrics[("robust_z", "precision")] >= 0.8 and metrics[("robust_z", "recall")] >= 0.7, metrics
    assert metrics[("robust_z", "planted_orders")] > 0
    assert any(metric == "adjusted_rand_index" for _, metric in metrics)
    reasons = read(spark, config, tables.ANOMALIES).where("level = 'order'").select("reason").collect()
    assert reasons and all(r[0].startswith(("quantity ", "unit price ")) for r in reasons)


def test_churn_model_beats_recency_baseline(spark, run):
    config, _ = run
    metrics = read(spark, config, tables.MODEL_METRICS).where(
        (F.col("run_id") == "test-run") & (F.col("task") == "churn") & (F.col("metric") == "auc")
        & (F.col("split") == "test"))
    auc = {r["model"]: r["value"] for r in metrics.collect()}
    best = max(auc["logistic_regression"], auc["decision_tree"])
    assert best > auc["recency_baseline"] + 0.02, auc
    assert auc["oracle"] > auc["recency_baseline"], auc


def test_churn_and_clv_metrics_explanations_and_baselines(spark, run):
    config, _ = run
    metrics = {(r["task"], r["model"], r["metric"]): r["value"] for r in read(spark, config, tables.MODEL_METRICS)
               .where((F.col("run_id") == "test-run") & (F.col("split") == "test")).collect()}
    for model in ("logistic_regression", "decision_tree"):
        for name in ("accuracy", "precision", "recall", "f1", "auc", "auc_pr", "lift_top_decile",
                     "capture_top_decile", "true_positives", "false_positives", "false_negatives", "true_negatives"):
            assert metrics[("churn", model, name)] is not None, (model, name)
        assert metrics[("churn", model, "lift_top_decile")] > 1.0
    for model in ("linear_regression", "gradient_boosted_trees", "mean_baseline"):
        assert {"rmse", "mae", "r2"} <= {m for t, mm, m in metrics if (t, mm) == ("clv", model)}
    assert abs(metrics[("clv", "mean_baseline", "r2")]) < 0.05  # the training mean on unseen customers
    assert ("clv", "linear_regression", "decile_10_mean_actual") in metrics
    # BG/NBD and Gamma-Gamma beside the regressors: spend against the same test customers, purchases
    # against the horizon's, and the calibration by repeat purchases before the cutoff.
    assert {"rmse", "mae", "r2", "decile_10_mean_actual"} <= {
        m for t, mm, m in metrics if (t, mm) == ("clv", "bg_nbd_gamma_gamma")}
    assert metrics[("clv", "bg_nbd", "auc_buys_again")] > 0.6
    expected, actual = (metrics[("clv", "bg_nbd", f"{n}_purchases_total")] for n in ("expected", "actual"))
    assert 0.5 < expected / actual < 2.0, (expected, actual)
    assert {"repeat_purchases_0_mean_expected", "repeat_purchases_0_mean_actual"} <= {
        m for t, mm, m in metrics if (t, mm) == ("clv", "bg_nbd")}
    explained = read(spark, config, tables.MODEL_EXPLANATIONS).where(F.col("run_id") == "test-run")
    kinds = {(r["model"], r["kind"]) for r in explained.select("model", "kind").distinct().collect()}
    assert {("logistic_regression", "coefficient"), ("logistic_regression", "threshold"),
            ("decision_tree", "importance"), ("decision_tree", "rules"), ("gradient_boosted_trees", "importance")
            } <= kinds


def test_score_applies_the_champions_without_retraining(spark, run):
    config, _ = run
    lake = config.paths.lakehouse_dir
    registry_before = read(spark, config, tables.MODEL_REGISTRY).count()
    columns = ["customer_key", "churn_probability", "churn_predicted", "model", "model_run_id"]
    before = read(spark, config, tables.CHURN_SCORES).where(F.col("run_id") == "test-run").select(*columns)
    before = before.collect()
    runs.execute(spark, config, ["score"], run_id="rescore")
    after = read(spark, config, tables.CHURN_SCORES).where(F.col("as_of_date") == config.as_of_date)
    assert after.select("run_id").distinct().collect() == [("rescore",)]
    assertDataFrameEqual(after.select(*columns), before)
    assert {r[0] for r in after.select("model_run_id").distinct().collect()} == {"test-run"}
    clv = read(spark, config, tables.CLV_PREDICTIONS).where(F.col("run_id") == "rescore")
    assert clv.count() == len(before) and clv.where("predicted_spend < 0").count() == 0
    assert clv.where("p_alive BETWEEN 0 AND 1 AND expected_purchases >= 0 AND expected_order_value > 0 "
                     "AND lifetime_value >= 0").count() == len(before)
    assert read(spark, config, tables.MODEL_REGISTRY).count() == registry_before
    assert not (Path(lake) / "models" / "rescore").exists()


def test_held_out_splits_do_not_overlap_training(spark, run):
    config, _ = run
    holdout = read(spark, config, tables.CHURN_HOLDOUT)
    assert sorted(r[0] for r in holdout.select("split").distinct().collect()) == ["test", "validation"]
    assert holdout.groupBy("model", "customer_key").count().where("count > 1").count() == 0


def test_registry_records_saved_models_and_one_champion_per_task(spark, run):
    config, _ = run
    registry = read(spark, config, tables.MODEL_REGISTRY).where(F.col("run_id") == "test-run")
    champions = {r["task"]: r["n"] for r in registry.where("is_champion").groupBy("task").agg(
        F.count("*").alias("n")).collect()}
    assert champions == {"churn": 1, "clv": 1, "lifetime": 1, "segmentation": 1, "recommendation": 1}
    models = sorted((r["task"], r["model"]) for r in registry.collect())
    assert models == [("churn", "decision_tree"), ("churn", "gradient_boosted_trees"), ("churn", "logistic_regression"),
                      ("clv", "gradient_boosted_trees"), ("clv", "linear_regression"),
                      ("lifetime", "bg_nbd_gamma_gamma"), ("recommendation", "als"), ("recommendation", "blend"),
                      ("recommendation", "ease"), ("segmentation", "bisecting_kmeans"), ("segmentation", "kmeans")]
    churn_params = registry.where("task = 'churn'").select("params").collect()
    assert all({"threshold", "train_seconds"} <= set(r[0]) for r in churn_params)
    lifetime = registry.where("task = 'lifetime'").first()
    assert {f"bgnbd_{k}" for k in ("r", "alpha", "a", "b", "log_likelihood", "distinct_rows", "fit_seconds")} | {
        f"gg_{k}" for k in ("p", "q", "v")} <= set(lifetime["params"])
    assert spark.read.json(lifetime["path"]).first().asDict() == lifetime["params"]  # saved where it says
    for row in registry.where("task not in ('lifetime', 'recommendation')").collect():
        assert (Path(row["path"]) / "metadata").is_dir(), row["path"]
    recommenders = {r["model"]: r for r in registry.where("task = 'recommendation'").collect()}
    assert [model for model, r in recommenders.items() if r["path"]] == [
        model for model, r in recommenders.items() if r["is_champion"]]  # only the champion is refitted and saved
    served = next(r for r in recommenders.values() if r["is_champion"])
    saved = {"als": ["als/metadata"], "ease": ["ease"], "blend": ["als/metadata", "ease"]}[served["model"]]
    if "partner_rank" in served["params"]:  # a blend with a second ALS saves it beside the first
        saved.append("als_partner/metadata")
    assert all((Path(served["path"]) / part).is_dir() for part in saved), served["path"]
    als_settings = {"rank", "reg_param", "alpha", "max_iter", "log_confidence"}
    blend_params = set(recommenders["blend"]["params"])
    assert blend_params - {f"partner_{name}" for name in als_settings} == als_settings | {"ease_reg", "als_share"}
    assert blend_params & {f"partner_{name}" for name in als_settings} in (set(), {
        f"partner_{name}" for name in als_settings})


def personal_values(spark, config):
    """Return the emails, phones (as written and normalized) and names of the input customers."""
    raw = read(spark, config, tables.BRONZE["customers"]).collect()
    silver = read(spark, config, tables.CUSTOMERS).select("phone").collect()
    emails = {r["email"].strip().lower() for r in raw if r["email"] and "@" in r["email"] and r["email"].strip()}
    phones = {r["phone"].strip() for r in raw if r["phone"] and len(r["phone"].strip()) >= 10}
    phones |= {r["phone"] for r in silver if r["phone"]}
    names = {r[c].strip().title() for r in raw for c in ("first_name", "last_name") if r[c] and r[c].strip()}
    return emails, phones, names


def leaks(texts, phones, names):
    """Return the texts that hold an email-like value, a known phone number or a known name as a whole value."""
    numbers = {re.sub(r"\D", "", p)[-10:] for p in phones}
    found = []
    for text in texts:
        digits = re.sub(r"\D", "", text)
        if EMAIL.search(text) or (len(digits) >= 10 and digits[-10:] in numbers) or text.strip().title() in names:
            found.append(text)
    return found


def test_gold_tables_and_models_hold_no_personal_data(spark, run):
    config, _ = run
    emails, phones, names = personal_values(spark, config)
    assert len(emails) > 2000 and len(phones) > 2000 and len(names) > 50
    planted = [next(iter(emails)), f"x {next(iter(phones))}", next(iter(names))]
    assert leaks(planted, phones, names) == planted
    lake = config.paths.lakehouse_dir
    for table in tables.ALL_TABLES:
        if table.layer not in ("gold", "models") or not tables.table_exists(spark, table, lake):
            continue
        frame = read(spark, config, table)
        assert not set(frame.columns) & {"first_name", "last_name", "email", "phone", "birth_date", "age"}, table
        as_text = frame.select(F.to_json(F.struct(*frame.columns)).alias("row")).limit(20_000)
        values = [v for row in as_text.collect() for v in re.findall(r'"((?:[^"\\]|\\.)*)"', row["row"])]
        assert leaks(values, phones, names) == [], table.qualified
    import pyarrow.parquet as pq

    for path in Path(lake, "models").rglob("*"):
        if path.suffix == ".parquet":
            texts = [str(v) for column in pq.read_table(path).to_pylist() for v in column.values()]
        elif path.is_file() and not path.name.startswith("."):
            texts = re.findall(r'"([^"]*)"', path.read_text(encoding="utf-8", errors="replace"))
        else:
            continue
        assert leaks(texts, phones, set()) == [], path


def test_logs_of_a_run_hold_no_emails_or_phones(spark, run, session_root):
    config, _ = run
    emails, phones, _ = personal_values(spark, config)
    text = (session_root / "pipeline" / "run.log").read_text(encoding="utf-8")
    assert "stage evaluate: done" in text and "wrote" in text
    assert [e for e in emails if e in text.lower()] == []
    assert [p for p in phones if p in text] == []
    assert EMAIL.search(text) is None


def test_erasure_removes_a_person_everywhere_and_keeps_them_out(spark, run, tmp_path):
    # On a copy of the pipeline's lakehouse, so the tables the other tests read keep every person.
    shared, _ = run
    lake = str(tmp_path / "lakehouse")
    shutil.copytree(shared.paths.lakehouse_dir, lake)
    config = dataclasses.replace(shared, paths=dataclasses.replace(shared.paths, lakehouse_dir=lake))
    xref = read(spark, config, tables.CUSTOMER_XREF)
    pair = xref.groupBy("customer_key").agg(F.sort_array(F.collect_list("customer_id")).alias("ids")).where(
        F.size("ids") == 2).orderBy("customer_key").first()
    key, (first_id, second_id) = pair["customer_key"], pair["ids"]
    bronze = read(spark, config, tables.BRONZE["customers"])
    emails = {r[0].strip().lower() for r in bronze.where(F.col("customer_id").isin(first_id, second_id)).select(
        "email").collect() if r[0] and "@" in r[0]}
    assert emails and read(spark, config, tables.RECOMMENDATIONS).where(F.col("customer_key") == key).count() > 0

    result = erase.run(spark, config, [first_id], "erase-test")
    assert (result.records, result.keys) == (2, 1)
    assert result.rows_deleted["bronze.customers"] == 2 and result.rows_deleted["silver.customers"] == 1
    assert result.rows_deleted["gold.recommendations"] == config.recommend.top_k
    for table in tables.ALL_TABLES:
        if not tables.table_exists(spark, table, lake):
            continue
        frame = read(spark, config, table)
        if "customer_id" in frame.columns:
            assert frame.where(F.col("customer_id").isin(first_id, second_id)).isEmpty(), table
        if "customer_key" in frame.columns:
            assert frame.where(F.col("customer_key") == key).isEmpty(), table

    import pyarrow.parquet as pq

    files = list(Path(lake).rglob("*.parquet"))
    assert len(files) > 20
    for path in files:
        values = [str(v).lower() for row in pq.read_table(path).to_pylist() for v in row.values()]
        assert [v for v in values if any(e in v for e in emails)] == [], path
    commits = [p for p in Path(lake).rglob("*.json") if "_delta_log" in p.parts]
    assert [p for p in commits if any(e in p.read_text(encoding="utf-8").lower() for e in emails)] == []

    logged = read(spark, config, tables.ERASURE_LOG).where(F.col("run_id") == "erase-test").first()
    assert len(logged["id_hashes"]) == 2 and logged["rows_deleted"] == result.rows_deleted
    assert first_id not in str(logged.asDict()) and second_id not in str(logged.asDict())

    # Every file read again (not only new ones): the erased customers' rows stay out.
    everything = dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, incremental=False))
    counts = runs.execute(spark, everything, ["ingest"], run_id="after-erase").row_counts
    assert counts["erased.customers"] == 2
    assert read(spark, config, tables.BRONZE["customers"]).where(
        F.col("customer_id").isin(first_id, second_id)).isEmpty()


@pytest.fixture(scope="module")
def report(spark, run):
    """Write the run's report once."""
    config, _ = run
    return Path(page.write_report(spark, config, "test-run"))


def _page_texts(markup: str) -> list[str]:
    """Return the text values of a report page: the text between its tags and the text of its charts."""
    texts = [html.unescape(t).strip() for t in re.findall(r">([^<]+)<", re.sub(r'src="data:[^"]*"', "", markup))]
    for encoded in re.findall(r'src="data:image/svg\+xml;base64,([^"]*)"', markup):
        texts += re.findall(r"<!-- (.*?) -->", base64.b64decode(encoded).decode("utf-8"))
    return [t for t in texts if t]


def test_report_has_every_section_with_charts_and_no_personal_data(spark, run, report):
    config, _ = run
    markup = report.read_text(encoding="utf-8")
    assert report.name == f"report-{config.as_of_date}-test-run.html"
    sections = dict(re.findall(r'<section id="(\w+)" data-charts="(\d+)">', markup))
    assert list(sections) == ["run", "quality", "features", "churn", "value", "segments", "recommendations",
                              "anomalies", "campaigns"]
    assert len(sections) == len(SECTIONS)
    assert {key: int(n) > 0 for key, n in sections.items()} == dict.fromkeys(sections, True), sections
    assert int(sections["churn"]) >= 8  # ROC, PR, gain, lift, calibration, confusion, coefficients, importances
    texts = _page_texts(markup)
    for heading in ("ROC curve (test customers)", "Budget curve", "RFM grid: customers by recency and frequency score",
                    "Correlation between numeric features", "Cumulative gain", "Calibration"):
        assert heading in texts, heading
    assert sum(t.startswith("How to read") for t in texts) == sum(int(n) for n in sections.values())
    emails, phones, names = personal_values(spark, config)
    assert leaks(texts, phones, names) == []
    assert [e for e in emails if e in markup.lower()] == []
    keys = {r["customer_key"] for r in read(spark, config, tables.CUSTOMER_XREF).collect()}
    assert [k for k in keys if k in markup] == []
    assert "http://" not in markup and "https://" not in markup and "<script" not in markup


def _browser():
    """Return Playwright's entry point and the system Chromium, or skip (fail when CI is set) without them."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if chromium and sync_playwright:
        return sync_playwright, chromium
    missing = "Debian's chromium package" if not chromium else "the playwright package (make test installs it)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so the browser test must run: install {missing}")
    pytest.skip(f"no browser test without {missing}")


ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artifacts"
# Per image: loaded, its size, and how many distinct colours a 64x64 sample of it holds (a blank chart has 1).
IMAGE_CHECK = """() => Array.from(document.images).map(img => {
  const canvas = document.createElement('canvas'); canvas.width = 64; canvas.height = 64;
  const g = canvas.getContext('2d'); g.fillStyle = '#fff'; g.fillRect(0, 0, 64, 64); g.drawImage(img, 0, 0, 64, 64);
  const data = g.getImageData(0, 0, 64, 64).data; const colours = new Set();
  for (let i = 0; i < data.length; i += 4) colours.add(data[i] + ',' + data[i + 1] + ',' + data[i + 2]);
  return {alt: img.alt, complete: img.complete, width: img.naturalWidth, colours: colours.size};
})"""


def test_a_chart_function_returns_before_drawing_and_a_drawing_error_reaches_the_reader():
    drawn = charts.bars("Title", ["a", "b"], [1.0, 2.0], "x", "How to read it.")
    assert (drawn.title, drawn.how_to_read) == ("Title", "How to read it.")
    svg = base64.b64decode(drawn.image.removeprefix("data:image/svg+xml;base64,")).decode("utf-8")
    assert svg.startswith("<?xml") and "</svg>" in svg
    assert charts.bars("Title", ["a", "b"], [1.0, 2.0], "x", "How to read it.").image == drawn.image
    broken = charts.bars("Broken", ["a", "b"], [1.0], "x", "Lengths differ.")
    with pytest.raises(IndexError):
        assert broken.image


def test_report_renders_offline_in_a_browser(report):
    sync_playwright, chromium = _browser()
    requests, errors = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page_ = browser.new_page(viewport={"width": 1400, "height": 1000})
            page_.route("**/*", lambda route: (route.continue_() if route.request.url.startswith(("file:", "data:"))
                                               else (requests.append(route.request.url), route.abort())))
            page_.on("request", lambda request: requests.append(request.url)
                     if not request.url.startswith(("file:", "data:")) else None)
            page_.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page_.on("pageerror", lambda error: errors.append(str(error)))
            page_.goto(report.as_uri(), wait_until="load")
            for key in ("run", "quality", "features", "churn", "value", "segments", "recommendations",
                        "anomalies", "campaigns"):
                section = page_.locator(f"section#{key}")
                assert section.is_visible() and section.locator("h2").inner_text(), key
            images = page_.evaluate(IMAGE_CHECK)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page_.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()
    assert requests == [] and errors == []
    assert len(images) >= 20
    blank = [i["alt"] for i in images if not i["complete"] or i["width"] < 100 or i["colours"] < 3]
    assert blank == []
    assert (ARTIFACTS / "report.png").stat().st_size > 50_000


def test_serve_keeps_the_recommend_stages_lists_and_folds_in_a_new_purchase(spark, run, tmp_path):
    # On a copy of the pipeline's lakehouse (the saved models stay where the pipeline wrote them).
    shared, _ = run
    lake = str(tmp_path / "lakehouse")
    shutil.copytree(shared.paths.lakehouse_dir, lake)
    config = dataclasses.replace(shared, paths=dataclasses.replace(shared.paths, lakehouse_dir=lake))
    columns = ["customer_key", "product_id", "rank", "source"]
    served = read(spark, config, tables.RECOMMENDATIONS).where(F.col("as_of_date") == config.as_of_date)
    before = served.select(*columns, "score").toPandas()
    registry_before = read(spark, config, tables.MODEL_REGISTRY).count()

    # The same day: no customer has an event since the fit, so every list is the recommend stage's.
    runs.execute(spark, config, ["serve"], run_id="serve-same-day")
    again = read(spark, config, tables.RECOMMENDATIONS).where(F.col("as_of_date") == config.as_of_date)
    assert again.select("run_id").distinct().collect() == [("serve-same-day",)]
    assertDataFrameEqual(again.select(*columns), spark.createDataFrame(before[columns]))
    scores = again.select(*columns, "score").toPandas().merge(before, on=columns)
    assert len(scores) == len(before) and np.allclose(scores["score_x"], scores["score_y"], atol=1e-4)
    assert read(spark, config, tables.MODEL_REGISTRY).count() == registry_before

    # The next day, one customer buys their first recommendation: they alone are folded in.
    model = before[~before["source"].isin([POPULAR_MODEL, GROUP_POPULAR_MODEL])]["source"].iloc[0]
    first = before[(before["source"] == model) & (before["rank"] == 1)].sort_values("customer_key").iloc[0]
    buyer, bought = first["customer_key"], first["product_id"]
    orders = read(spark, config, tables.ORDERS)
    line = orders.where((F.col("customer_key") == buyer) & F.col("product_id").isNotNull()).limit(1).withColumns({
        "order_id": F.lit("serve-test-order"), "product_id": F.lit(bought), "status": F.lit("completed"),
        "order_ts": F.lit(dt.datetime.combine(config.as_of_date, dt.time(12)))})
    line.write.format("delta").mode("append").save(tables.ORDERS.path(lake))
    next_day = dataclasses.replace(config, as_of_date=config.as_of_date + dt.timedelta(days=1))
    runs.execute(spark, next_day, ["serve"], run_id="serve-next-day")
    later = read(spark, config, tables.RECOMMENDATIONS).where(F.col("as_of_date") == next_day.as_of_date).toPandas()
    buyer_list = later[later["customer_key"] == buyer]
    assert bought not in set(buyer_list["product_id"]) and len(buyer_list) == config.recommend.top_k
    assert list(buyer_list.sort_values("rank")["product_id"]) != list(
        before[before["customer_key"] == buyer].sort_values("rank")["product_id"])
    # Customers without an event on the new day keep their lists (the real data of that day changes others).
    active = set(completed_before(orders, next_day.as_of_date).where(
        F.col("order_ts") >= F.lit(dt.datetime.combine(config.as_of_date, dt.time()))).select(
        "customer_key").toPandas()["customer_key"]) | {buyer}
    steady = before[(before["source"] == model) & ~before["customer_key"].isin(active)]
    kept = later.merge(steady, on=["customer_key", "product_id", "rank", "source"])
    assert len(steady) > 1000 and len(kept) == len(steady)
    assert later["customer_key"].nunique() == before["customer_key"].nunique()

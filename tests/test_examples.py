"""The example source configs run the whole pipeline from a config file alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from crm_spark import runs, tables
from crm_spark.config import QualityConfig, load_config
from crm_spark.features.labels import labelled_customers
from crm_spark.features.selection import kept_features
from crm_spark.prepare import quality
from crm_spark.prepare.quality import Measure, QualityError

REPO = Path(__file__).resolve().parents[1]


def example(name: str, root: Path, *overrides: str):
    """Load an example config with paths under ``root``, and lighter models than its
    defaults: logistic regression and a decision tree over small grids, k-means with one
    k, fewer boosting and ALS iterations and no ALS search (the tests check behaviour,
    not the breadth of the search; the pipeline test covers gradient-boosted trees and
    both segmentation algorithms, the MovieLens and pipeline tests the ALS search).
    ``overrides`` (``key=value``) are applied last."""
    return load_config(REPO / "conf" / "examples" / f"{name}.yaml", [
        f"paths.raw_dir={REPO / 'examples' / name}", f"paths.lakehouse_dir={root / 'lakehouse'}",
        f"paths.checkpoint_dir={root / 'checkpoints'}", f"paths.allowed_roots=['{REPO}', '{root}']",
        f"privacy.secret_file={root / 'secret.key'}", "privacy.create_secret=true",
        "train.classifiers=[logistic_regression, decision_tree]", "train.lr_reg_params=[0.001, 0.01]",
        "train.lr_elastic_nets=[0.0]", "train.dt_max_depths=[3, 5]", "train.dt_min_instances=[20]",
        "train.clv_gbt_max_iter=5", "train.segment_restarts=1", "train.segment_algorithms=[kmeans]",
        "train.segment_k_min=3", "train.segment_k_max=3", "recommend.max_iter=5",
        "recommend.tune=false", *overrides])


def run_row(spark, config, run_id):
    return tables.read_table(spark, tables.RUNS, config.paths.lakehouse_dir).where(
        F.col("run_id") == run_id).first()


def test_orders_only_export(spark, tmp_path):
    # One setting per classifier: this example checks the source settings, the flags example the models.
    config = example("orders_only", tmp_path, "train.lr_reg_params=[0.01]", "train.dt_max_depths=[5]")
    result = runs.execute(spark, config, list(runs.PIPELINE), "orders-only")
    row = run_row(spark, config, "orders-only")
    assert (row["status"], sorted(row["skipped"])) == ("succeeded", ["recommend"])
    counts = result.row_counts
    assert counts["orders.read"] == counts["bronze.orders"] + counts["quarantine.orders"]
    lake = config.paths.lakehouse_dir
    reasons = tables.read_table(spark, tables.QUARANTINE, lake).select("reason")
    assertDataFrameEqual(reasons, spark.createDataFrame(
        [("invalid_order_ts",), ("too_many_fields",), ("empty_line",), ("invalid_unit_price",)], "reason string"))
    lines = (REPO / "examples" / "orders_only" / "transactions.csv").read_text(encoding="iso-8859-1").splitlines()
    ids = {line.split(";")[0] for line in lines[1:] if line}
    assert tables.read_table(spark, tables.CUSTOMERS, lake).count() == len(ids)
    metrics = tables.read_table(spark, tables.MODEL_METRICS, lake).where(
        (F.col("task") == "churn") & (F.col("metric") == "auc") & (F.col("split") == "test"))
    assert {r["model"] for r in metrics.collect()} >= {"logistic_regression", "decision_tree", "recency_baseline"}


def test_ratings_and_users_without_orders(spark, tmp_path):
    # Explicit feedback: ALS on ratings as implicit feedback is the MovieLens test's case.
    config = example("ratings_users", tmp_path, "recommend.feedback=explicit")
    runs.execute(spark, config, list(runs.PIPELINE), "ratings-users")
    row = run_row(spark, config, "ratings-users")
    assert (row["status"], sorted(row["skipped"])) == ("succeeded", ["campaigns", "score", "select", "train"])
    lake = config.paths.lakehouse_dir
    customers = tables.read_table(spark, tables.CUSTOMERS, lake)
    assert customers.count() == 201
    assert customers.where("age is null").count() == 1
    measured = tables.read_table(spark, tables.DATA_QUALITY, lake).where(F.col("run_id") == "ratings-users")
    age = measured.where((F.col("dataset") == "customers") & (F.col("column") == "age")
                         & (F.col("metric") == "valid_share"))
    assert age.first()["value"] == pytest.approx(200 / 201)
    quarantine = tables.read_table(spark, tables.QUARANTINE, lake).select("source", "reason")
    assertDataFrameEqual(quarantine, spark.createDataFrame([("ratings", "rating_out_of_range")],
                                                           "source string, reason string"))
    features = tables.read_table(spark, tables.CUSTOMER_FEATURES, lake).where(
        F.col("as_of_date") == F.lit(config.as_of_date))
    assert features.where("n_ratings > 0 and avg_rating is not null and age_band is not null").count() > 150
    recs = tables.read_table(spark, tables.RECOMMENDATIONS, lake)
    sources = {r["source"]: r["customers"] for r in recs.groupBy("source").agg(
        F.countDistinct("customer_key").alias("customers")).collect()}
    assert sources == {"als": 200, "popular": 1}
    assert recs.groupBy("customer_key").count().where(F.col("count") != config.recommend.top_k).count() == 0
    rated = tables.read_table(spark, tables.RATINGS, lake)
    assert recs.join(rated, ["customer_key", "product_id"]).count() == 0  # nothing already rated

    # The profile prepare measured fails a stricter expectation with its measured value.
    strict = dataclasses.replace(config, quality=QualityConfig(
        expectations=("customers.age.valid_share >= 0.999",), on_failure="fail"))
    with pytest.raises(QualityError, match=r"customers.age.valid_share >= 0.999: measured 0.995"):
        quality.check([Measure.of_row(r) for r in measured.collect()], strict)


def test_customer_table_with_a_churn_flag_and_nothing_else(spark, tmp_path):
    config = example("customer_flags", tmp_path)
    runs.execute(spark, config, list(runs.PIPELINE), "flags")
    row = run_row(spark, config, "flags")  # the label is a column: no features as of the training cutoff
    assert (row["status"], sorted(row["skipped"])) == ("succeeded", ["recommend", "training_features"])
    lake = config.paths.lakehouse_dir
    customers = tables.read_table(spark, tables.CUSTOMERS, lake)
    assert customers.where("label IS NOT NULL").count() == 1200  # "maybe" is no label
    selection = tables.read_table(spark, tables.FEATURE_SELECTION, lake)
    assert {r["feature"] for r in selection.where("kept").collect()} >= {"age_band", "tenure_days"}
    registry = tables.read_table(spark, tables.MODEL_REGISTRY, lake).where(F.col("run_id") == "flags")
    assert sorted((r["task"], r["model"]) for r in registry.collect()) == [
        ("churn", "decision_tree"), ("churn", "logistic_regression")]
    metrics = {(r["model"], r["metric"]): r["value"] for r in tables.read_table(spark, tables.MODEL_METRICS, lake)
               .where((F.col("task") == "churn") & (F.col("split") == "test")).collect()}
    # Churn is planted on age, tenure and sex; both models must find it on the ~180 unseen customers.
    assert metrics[("logistic_regression", "auc")] >= 0.65, metrics
    assert metrics[("decision_tree", "auc")] >= 0.65, metrics
    assert {"accuracy", "precision", "recall", "f1", "auc_pr", "lift_top_decile", "capture_top_decile",
            "true_positives"} <= {metric for _, metric in metrics}
    scores = tables.read_table(spark, tables.CHURN_SCORES, lake)
    assert scores.count() == customers.count()


def test_subscription_export_learns_from_its_own_attributes(spark, tmp_path):
    """Planted: month-to-month contracts, fibre-optic internet and electronic checks raise churn, tenure lowers it."""
    config = example("subscription", tmp_path, "train.classifiers=[logistic_regression, decision_tree]")
    runs.execute(spark, config, list(runs.PIPELINE), "subscription")
    row = run_row(spark, config, "subscription")
    assert (row["status"], sorted(row["skipped"])) == ("succeeded", ["recommend", "training_features"])
    lake = config.paths.lakehouse_dir
    bronze = dict(tables.read_table(spark, tables.BRONZE["customers"], lake).dtypes)
    assert {c: bronze[c] for c in ("tenure", "senior_citizen", "contract", "total_charges")} == {
        "tenure": "double", "senior_citizen": "boolean", "contract": "string", "total_charges": "double"}
    quality = {(r["column"], r["metric"]): r["value"] for r in tables.read_table(spark, tables.DATA_QUALITY, lake)
               .where("dataset = 'customers'").collect()}
    new_customers = sum(1 for line in (REPO / "examples" / "subscription" / "customers.csv").read_text().splitlines()
                        if line.split(",")[5] == "0")
    assert quality[("total_charges", "null_share")] == pytest.approx(new_customers / 2000)  # blank " " is missing
    assert quality[("total_charges", "invalid_count")] == 0.0 and quality[("contract", "valid_share")] == 1.0

    kept = {r["feature"] for r in tables.read_table(spark, tables.FEATURE_SELECTION, lake).where("kept").collect()}
    assert {"tenure", "contract", "internet_service", "payment_method"} <= kept and "gender" not in kept
    explained = tables.read_table(spark, tables.MODEL_EXPLANATIONS, lake)
    weight = {r["feature"]: r["value"] for r in explained.where(
        "model = 'logistic_regression' AND kind = 'coefficient'").collect()}
    assert weight["tenure"] < 0
    assert weight["contract=Month-to-month"] > weight["contract=One year"] > weight["contract=Two year"]
    assert weight["internet_service=Fiber optic"] > weight["internet_service=DSL"]
    assert weight["payment_method=Electronic check"] == max(v for k, v in weight.items()
                                                            if k.startswith("payment_method="))
    rules = explained.where("kind = 'rules'").first()["detail"]
    assert "If (tenure <= " in rules and "contract=" in rules

    metrics = {r["model"]: r["value"] for r in tables.read_table(spark, tables.MODEL_METRICS, lake).where(
        "task = 'churn' AND metric = 'auc' AND split = 'test'").collect()}
    assert metrics["logistic_regression"] == pytest.approx(scikit_learn_auc(spark, config), abs=0.01), metrics
    assert metrics["decision_tree"] > 0.7, metrics
    assert tables.read_table(spark, tables.CHURN_SCORES, lake).count() == 2000


def scikit_learn_auc(spark, config) -> float:
    """Return the test AUC of scikit-learn's logistic regression on the same customers, split and kept features,
    encoded the same way (median imputation with missing indicators, standard scaling, one-hot categories)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    kept = kept_features(spark, config)
    labelled = labelled_customers(spark, config).select("label", "split", *kept)
    text = [c for c, kind in labelled.dtypes if c in kept and kind == "string"]
    numbers = [c for c in kept if c not in text]
    frame = labelled.toPandas()
    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    encode = ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), numbers),
        ("text", OneHotEncoder(handle_unknown="ignore"), text)])
    model = make_pipeline(encode, LogisticRegression(class_weight="balanced", max_iter=5000))
    model.fit(train[kept], train["label"])
    return float(roc_auc_score(test["label"], model.predict_proba(test[kept])[:, 1]))

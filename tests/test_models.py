"""Feature selection, classifier tuning, thresholds, explanations and regression metrics."""

from __future__ import annotations

import pytest
from pyspark.ml import Pipeline
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.tuning import TrainValidationSplit
from pyspark.sql import functions as F

from crm_spark.config import TrainConfig
from crm_spark.features.labels import with_split
from crm_spark.features.selection import selection_rows
from crm_spark.metrics import classification, lift, regression
from crm_spark.metrics.regression import DecileCalibration
from crm_spark.models import churn
from crm_spark.models.preprocessing import ModelInputs, model_inputs, preprocessing


def score(feature, chi2, p_value, selected=True):
    return {"feature": feature, "kind": "numeric", "chi2_statistic": chi2, "p_value": p_value,
            "degrees_of_freedom": 9.0, "selected": selected}


def test_correlation_filter_drops_the_weaker_of_a_correlated_pair():
    scores = [score("frequency", 50.0, 1e-9), score("monetary", 80.0, 1e-12), score("tenure", 20.0, 1e-3),
              score("noise", 1.0, 0.9, selected=False)]
    correlations = {
        "frequency": {"monetary": 0.95, "tenure": 0.2, "noise": 0.0},
        "monetary": {"frequency": 0.95, "tenure": -0.3, "noise": 0.1},
        "tenure": {"frequency": 0.2, "monetary": -0.3, "noise": 0.05},
        "noise": {"frequency": 0.0, "monetary": 0.1, "tenure": 0.05},
    }
    rows = {r["feature"]: r for r in selection_rows(scores, correlations, max_correlation=0.9)}
    assert {f: r["kept"] for f, r in rows.items()} == {"frequency": False, "monetary": True, "tenure": True,
                                                       "noise": False}
    assert (rows["frequency"]["correlated_with"], rows["frequency"]["max_abs_correlation"]) == ("monetary", 0.95)
    assert rows["frequency"]["reason"] == "correlation 0.950 with monetary above 0.9"
    assert rows["noise"]["reason"] == "chi-square p-value 0.9 not significant"
    assert (rows["tenure"]["correlated_with"], rows["tenure"]["reason"]) == ("monetary", "kept")
    # A looser threshold keeps both of the pair.
    assert all(r["kept"] for r in selection_rows(scores[:3], correlations, max_correlation=0.96))


def test_threshold_maximizes_f1_or_accuracy_on_the_given_rows(spark):
    rows = [(0.9, 1.0), (0.8, 1.0), (0.7, 0.0), (0.6, 1.0), (0.5, 0.0), (0.4, 0.0), (0.3, 1.0), (0.2, 0.0),
            (0.1, 0.0), (0.05, 0.0)]
    scored = spark.createDataFrame(rows, "score double, label double")
    # Predicting >= 0.6 gives TP 3, FP 1, FN 1: F1 0.75, the best of every cut.
    assert churn.choose_threshold(scored, "f1") == 0.6
    # Accuracy is best (0.9) at >= 0.6 once the 0.7 row is positive too.
    relabelled = scored.withColumn("label", F.when(F.col("score") == 0.7, 1.0).otherwise(F.col("label")))
    assert churn.choose_threshold(relabelled, "accuracy") == 0.6
    # The top decile is the one row above the 90th percentile (0.8): positive, against a 40% base rate.
    lifted = lift.top_decile(scored)
    assert lifted == {"lift_top_decile": pytest.approx(1.0 / 0.4), "capture_top_decile": pytest.approx(0.25)}
    # Ten rows tied on one score, 4 positive: 1 place in the top decile, worth 0.4 of a positive.
    tied = scored.withColumn("score", F.lit(0.5))
    assert lift.top_decile(tied) == {"lift_top_decile": pytest.approx(1.0),
                                     "capture_top_decile": pytest.approx(0.1)}


def test_classifiers_are_tuned_weighted_and_explained(spark):
    # 1,000 customers; churn is planted on recency and a one-hot gender effect, 20% positive.
    frame = spark.range(1000).select(
        F.concat(F.lit("k"), F.col("id").cast("string")).alias("customer_key"),
        (F.col("id") % 97).cast("double").alias("recency_days"),
        (F.col("id") % 13).cast("double").alias("frequency"),
        F.when(F.col("id") % 3 == 0, "F").otherwise("M").alias("gender"),
    ).withColumn("label", F.when((F.col("recency_days") > 60) & (F.col("gender") == "M"), 1.0).otherwise(
        F.when(F.col("recency_days") > 90, 1.0).otherwise(0.0)))
    split = with_split(frame, 0.2, 0.2, seed=3).cache()
    train_df, test_df = split.where("split = 'train'"), split.where("split = 'test'")
    weighted = churn.with_class_weights(train_df).groupBy("label").agg(F.sum("weight").alias("w")).collect()
    total = train_df.count()
    assert [round(r["w"], 6) for r in weighted] == [round(total / 2, 6)] * 2
    cfg = TrainConfig(lr_reg_params=(0.001, 0.1), lr_elastic_nets=(0.0,), dt_max_depths=(2, 4),
                      dt_min_instances=(1,))
    inputs = model_inputs(["recency_days", "frequency", "gender"], train_df)
    assert inputs == ModelInputs(("recency_days", "frequency"), ("gender",))  # no rare level, no attribute
    for name in (churn.LOGISTIC_REGRESSION, churn.DECISION_TREE):
        fitted = churn.fit(train_df, inputs, name, cfg)
        assert classification.auc(churn.score(fitted.model, test_df)) > 0.9, name
        rows = churn.explanations(fitted, train_df)
        kinds = {row.kind for row in rows}
        if name == churn.DECISION_TREE:
            assert fitted.params["maxDepth"] == 4.0
            assert kinds == {"parameter", "importance", "rules"}
            importance = {row.feature: row.value for row in rows if row.kind == "importance"}
            assert max(importance, key=importance.get) == "recency_days"
            rules = next(row.detail for row in rows if row.kind == "rules")
            assert "If (recency_days <= " in rules and "feature " not in rules
        else:
            assert kinds == {"parameter", "coefficient", "intercept"}
            coefficients = {row.feature for row in rows if row.kind == "coefficient"}
            assert coefficients == {"recency_days", "log1p(frequency)", "gender=M", "gender=F", "gender=__unknown"}


def test_grid_aucs_are_those_of_mllib_train_validation_split_over_the_whole_pipeline(spark):
    # Noisy labels and missing frequencies: the imputer's median and the scaler depend on which rows they see.
    frame = spark.range(600).select(
        F.concat(F.lit("k"), F.col("id").cast("string")).alias("customer_key"),
        (F.col("id") % 89).cast("double").alias("recency_days"),
        F.when(F.col("id") % 5 == 0, None).otherwise((F.col("id") * 37 % 601).cast("double")).alias("frequency"),
        F.when(F.col("id") % 3 == 0, "F").otherwise("M").alias("gender"),
        # Planted on recency and frequency (also where it is missing), every 7th customer's label flipped.
        F.when((F.col("id") % 89 / 89 + F.col("id") * 37 % 601 / 601 > 1.0) != (F.col("id") % 7 == 0), 1.0)
        .otherwise(0.0).alias("label"),
    )
    inputs = model_inputs(["recency_days", "frequency", "gender"], frame)
    cfg = TrainConfig(lr_reg_params=(0.001, 0.3), lr_elastic_nets=(0.0, 0.5), dt_max_depths=(1, 3),
                      dt_min_instances=(1, 50))
    for name in (churn.LOGISTIC_REGRESSION, churn.DECISION_TREE):
        fitted = churn.fit(frame, inputs, name, cfg)
        classifier, grid = churn.classifiers(cfg)[name]
        search = TrainValidationSplit(
            estimator=Pipeline(stages=[*preprocessing(inputs), classifier]), estimatorParamMaps=grid,
            evaluator=BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="probability"),
            trainRatio=cfg.tvs_train_ratio, seed=cfg.seed).fit(churn.with_class_weights(frame))
        assert fitted.grid_aucs == pytest.approx(search.validationMetrics, abs=1e-9), name
        assert len(set(fitted.grid_aucs)) > 1 and 0.5 < fitted.tvs_auc < 1.0, name  # the points differ
        best = grid[search.validationMetrics.index(max(search.validationMetrics))]
        assert fitted.params == {p.name: float(v) for p, v in best.items()}, name
        # The chosen point is refitted on every row: the same model as the search's.
        assert churn.score(fitted.model, frame).exceptAll(churn.score(search.bestModel, frame)).isEmpty(), name


def test_regression_metrics_and_decile_calibration_by_hand(spark):
    # Customers 2j and 2j+1 both get 2j + 0.5: every error is 0.5, and each decile is one pair.
    rows = [(float(i), 2.0 * (i // 2) + 0.5) for i in range(20)]
    frame = spark.createDataFrame(rows, "label double, prediction double")
    values = regression.regression_metrics(frame)
    mean = sum(r[0] for r in rows) / 20
    r2 = 1 - 20 * 0.25 / sum((r[0] - mean) ** 2 for r in rows)
    assert values == {"rmse": pytest.approx(0.5), "mae": pytest.approx(0.5), "r2": pytest.approx(r2)}
    assert regression.calibration(frame) == [DecileCalibration(d, 2.0 * d - 1.5, 2.0 * d - 1.5, 2)
                                             for d in range(1, 11)]


def test_rare_levels_are_grouped_and_missing_attributes_indicated_on_training_rows_only(spark):
    # 300 training customers: plan "gold" is seen on 2 (rare: under 1% of them), "platinum" only when scoring.
    rows = [(f"k{i}", "gold" if i < 2 else ("basic" if i % 2 else "plus"), None if i % 10 == 0 else float(i % 7),
             float(i % 2)) for i in range(300)]
    train_df = spark.createDataFrame(rows, "customer_key string, plan string, fee double, label double")
    inputs = model_inputs(["plan", "fee"], train_df, attributes=["plan", "fee"])
    assert inputs == ModelInputs(("fee",), ("plan",), ("fee",), {"plan": ("basic", "plus")})
    prepared = Pipeline(stages=preprocessing(inputs)).fit(train_df)
    scoring = spark.createDataFrame([("a", "gold", None, 0.0), ("b", "platinum", 3.0, 0.0), ("c", "plus", 3.0, 0.0)],
                                    train_df.schema)
    assert [(r["plan__levels"], r["fee__missing"]) for r in prepared.transform(scoring).orderBy("customer_key")
            .collect()] == [("(other)", 1.0), ("(other)", 0.0), ("plus", 0.0)]
    fitted = churn.fit(train_df, inputs, churn.LOGISTIC_REGRESSION,
                       TrainConfig(lr_reg_params=(0.01,), lr_elastic_nets=(0.0,)))
    named = {row.feature for row in churn.explanations(fitted, train_df) if row.kind == "coefficient"}
    assert named == {"fee", "fee is missing", "plan=basic", "plan=plus", "plan=(other)", "plan=__unknown"}

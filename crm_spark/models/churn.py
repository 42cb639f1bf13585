"""Churn classifiers (logistic regression, a decision tree and gradient-boosted trees in MLlib
Pipelines): parameters chosen by train-validation split, balanced class weights, a decision
threshold chosen on validation customers, and the explanations a marketing team reads."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool

from pyspark import inheritable_thread_target
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import (
    DecisionTreeClassifier,
    GBTClassifier,
    LogisticRegression,
)
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.functions import vector_to_array
from pyspark.ml.tuning import ParamGridBuilder
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.config import TrainConfig
from crm_spark.frames import persisted, present
from crm_spark.models.preprocessing import ID_COLUMNS, ModelInputs, preprocessing
from crm_spark.schemas import (
    FEATURES_VECTOR,
    LABEL,
    PREDICTION,
    RAW_FEATURES_VECTOR,
    RECENCY_DAYS,
    SCORE,
)

log = logging.getLogger(__name__)

LOGISTIC_REGRESSION = "logistic_regression"
DECISION_TREE = "decision_tree"
GRADIENT_BOOSTED_TREES = "gradient_boosted_trees"
RECENCY_BASELINE = "recency_baseline"
WEIGHT = "weight"
THRESHOLD_CANDIDATES = 99  # score quantiles tried as decision thresholds
# MLlib's default is 1e-6, at which elastic-net fits with a small regParam ran OWLQN to maxIter
# (200 iterations) for coefficients that moved validation AUC in the fifth decimal.
LR_TOLERANCE = 1e-5
GRID_THREADS = 2  # grid points fitted at once


@dataclass(frozen=True)
class Explanation:
    """One thing that explains a fitted model: a chosen parameter, a coefficient, an importance or tree rules."""

    kind: str
    feature: str
    value: float | None = None
    detail: str | None = None


@dataclass(frozen=True)
class FittedClassifier:
    """A fitted pipeline with the parameters the train-validation split chose, and the
    split's validation AUC of each grid point (in grid order)."""

    name: str
    model: PipelineModel
    params: dict[str, float]
    tvs_auc: float
    grid_aucs: tuple[float, ...]


def classifiers(cfg: TrainConfig) -> dict[str, tuple[object, list[dict]]]:
    """Return each configured classifier, untrained, with its parameter grid, by model name."""
    weight = {"weightCol": WEIGHT} if cfg.class_weights == "balanced" else {}
    lr = LogisticRegression(featuresCol=FEATURES_VECTOR, labelCol=LABEL, maxIter=200, tol=LR_TOLERANCE,
                            **weight)
    # The tree splits unscaled inputs, so its rules read in the features' own units.
    tree = DecisionTreeClassifier(featuresCol=RAW_FEATURES_VECTOR, labelCol=LABEL, seed=cfg.seed, **weight)
    gbt = GBTClassifier(featuresCol=RAW_FEATURES_VECTOR, labelCol=LABEL, maxIter=cfg.gbt_max_iter, seed=cfg.seed,
                        **weight)
    grids = {
        LOGISTIC_REGRESSION: (lr, ParamGridBuilder().addGrid(lr.regParam, list(cfg.lr_reg_params))
                              .addGrid(lr.elasticNetParam, list(cfg.lr_elastic_nets)).build()),
        DECISION_TREE: (tree, ParamGridBuilder().addGrid(tree.maxDepth, list(cfg.dt_max_depths))
                        .addGrid(tree.minInstancesPerNode, list(cfg.dt_min_instances)).build()),
        GRADIENT_BOOSTED_TREES: (gbt, ParamGridBuilder().addGrid(gbt.maxDepth, list(cfg.gbt_max_depths)).build()),
    }
    return {name: grids[name] for name in cfg.classifiers}


def with_class_weights(train_df: DataFrame) -> DataFrame:
    """Add ``weight`` so that each class weighs half of the training rows in total."""
    counts = {r[LABEL]: r["count"] for r in train_df.groupBy(LABEL).count().collect()}
    total = sum(counts.values())
    weight = F.lit(1.0)
    for label, count in counts.items():
        weight = F.when(F.col(LABEL) == label, F.lit(total / (len(counts) * count))).otherwise(weight)
    return train_df.withColumn(WEIGHT, weight)


def fit(train_df: DataFrame, inputs: ModelInputs, name: str, cfg: TrainConfig) -> FittedClassifier:
    """Choose ``name``'s parameters by train-validation split of ``train_df`` and refit on all of it.

    The split is MLlib ``TrainValidationSplit``'s: rows whose seeded uniform draw reaches
    ``cfg.tvs_train_ratio`` validate, the others train; each grid point is scored by AUC.
    The preprocessing does not depend on the grid, so it is fitted once on the split's
    training rows and every grid point's classifier learns from what it makes of them: the
    AUCs are the ones ``TrainValidationSplit`` of the whole pipeline gives, without refitting
    the preprocessing per point. The test customers are never seen here.
    """
    classifier, grid = classifiers(cfg)[name]
    weighted = with_class_weights(train_df) if cfg.class_weights == "balanced" else train_df
    drawn = weighted.select("*", F.rand(cfg.seed).alias("_draw"))
    validates = F.col("_draw") >= cfg.tvs_train_ratio
    fit_rows, validation_rows = drawn.where(~validates).drop("_draw"), drawn.where(validates).drop("_draw")
    prepared = Pipeline(stages=preprocessing(inputs)).fit(fit_rows)
    # Probabilities, not rawPrediction: a tree's raw prediction is its leaf's class
    # counts, which do not rank customers by churn likelihood.
    evaluator = BinaryClassificationEvaluator(labelCol=LABEL, rawPredictionCol="probability")
    with persisted(prepared.transform(fit_rows)) as fitting, persisted(prepared.transform(validation_rows)) as scoring:

        def auc(point: int) -> float:
            return evaluator.evaluate(classifier.fit(fitting, grid[point]).transform(scoring))

        with ThreadPool(min(GRID_THREADS, len(grid))) as pool:
            aucs = tuple(pool.map(inheritable_thread_target(train_df.sparkSession)(auc), range(len(grid))))
    for point, value in zip(grid, aucs, strict=True):
        log.info("%s %s: AUC %.4f on the train-validation split", name, {p.name: v for p, v in point.items()}, value)
    best = max(range(len(grid)), key=lambda i: aucs[i])
    model = Pipeline(stages=[*preprocessing(inputs), classifier]).fit(weighted, grid[best])
    return FittedClassifier(name, model, {p.name: float(v) for p, v in grid[best].items()}, aucs[best], aucs)


def score(model: PipelineModel, df: DataFrame, threshold: float = 0.5) -> DataFrame:
    """Return ``customer_key``, ``score`` (positive-class probability) and ``prediction``
    (1.0 where the score reaches ``threshold``) for ``df``."""
    scored = model.transform(df)
    probability = vector_to_array(scored["probability"])[1]
    return scored.select(
        *present(df, ID_COLUMNS),
        probability.alias(SCORE),
        (probability >= F.lit(threshold)).cast("double").alias(PREDICTION),
    )


def choose_threshold(scored_df: DataFrame, objective: str) -> float:
    """Return the score threshold that maximizes ``objective`` (f1 or accuracy) on ``scored_df``.

    Candidates are ``THRESHOLD_CANDIDATES`` quantiles of the score, all counted in one pass;
    without rows the threshold is 0.5.
    """
    quantiles = [i / (THRESHOLD_CANDIDATES + 1) for i in range(1, THRESHOLD_CANDIDATES + 1)]
    candidates = sorted(set(scored_df.agg(F.percentile_approx(SCORE, quantiles, 10_000)).first()[0] or []))
    positive = F.col(LABEL) == 1.0
    counts = scored_df.agg(
        F.count(F.lit(1)).alias("n"), F.sum(positive.cast("long")).alias("p"),
        *[F.sum((positive & (F.col(SCORE) >= t)).cast("long")).alias(f"tp{i}") for i, t in enumerate(candidates)],
        *[F.sum((F.col(SCORE) >= t).cast("long")).alias(f"pp{i}") for i, t in enumerate(candidates)],
    ).first()
    n, p = counts["n"], counts["p"] or 0

    def value(i: int) -> float:
        tp, predicted = counts[f"tp{i}"] or 0, counts[f"pp{i}"] or 0
        if objective == "accuracy":
            return (tp + (n - p - (predicted - tp))) / n
        return 2 * tp / (predicted + p) if predicted + p else 0.0

    return float(candidates[max(range(len(candidates)), key=value)]) if candidates else 0.5


def feature_names(model: PipelineModel, df: DataFrame) -> list[str]:
    """Return the name of each slot of the model's feature vector: ``log1p(column)`` for
    log-scaled features, ``column is missing`` for missing indicators, ``column=value``
    for one-hot slots."""
    metadata = model.transform(df.limit(1)).schema[RAW_FEATURES_VECTOR].metadata["ml_attr"]
    slots: dict[int, str] = {}
    for group in metadata.get("attrs", {}).values():
        for attr in group:
            slots[attr["idx"]] = attr["name"]
    names = [slots.get(i, f"feature_{i}") for i in range(metadata["num_attrs"])]
    return [re.sub(r"^(.*)__log__imputed$", r"log1p(\1)", n).removesuffix("__imputed")
            .replace("__onehot_", "=").replace("__missing", " is missing") for n in names]


def explanations(fitted: FittedClassifier, df: DataFrame) -> list[Explanation]:
    """Return what explains a fitted classifier.

    Logistic regression: one ``coefficient`` per feature (on standardized inputs, so
    sizes compare) and the ``intercept``. Trees: each feature's ``importance``; a single
    decision tree also its ``rules`` as readable text. All: the chosen ``parameter`` values.
    """
    names = feature_names(fitted.model, df)
    estimator = fitted.model.stages[-1]
    rows = [Explanation("parameter", name, value) for name, value in sorted(fitted.params.items())]
    if fitted.name == LOGISTIC_REGRESSION:
        rows += [Explanation("coefficient", n, float(c)) for n, c in zip(names, estimator.coefficients, strict=True)]
        rows.append(Explanation("intercept", "", float(estimator.intercept)))
    else:
        importances = estimator.featureImportances.toArray()
        rows += [Explanation("importance", n, float(v)) for n, v in zip(names, importances, strict=True)]
    if fitted.name == DECISION_TREE:
        rules = re.sub(r"feature (\d+)", lambda m: names[int(m.group(1))], estimator.toDebugString)
        rows.append(Explanation("rules", "", None, rules))
    return rows


def recency_baseline(df: DataFrame) -> DataFrame:
    """Return the recency-only baseline: the longer since the last purchase, the likelier churn."""
    return df.select(*present(df, ID_COLUMNS), F.col(RECENCY_DAYS).cast("double").alias(SCORE),
                     F.lit(None).cast("double").alias(PREDICTION))

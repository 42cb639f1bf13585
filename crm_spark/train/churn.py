"""Classifiers (logistic regression and a decision tree in MLlib Pipelines): parameters
chosen by train-validation split, balanced class weights, a decision threshold chosen on
validation customers, and the explanations a marketing team reads."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import (
    DecisionTreeClassifier,
    GBTClassifier,
    LogisticRegression,
)
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import (
    Imputer,
    OneHotEncoder,
    SQLTransformer,
    StandardScaler,
    StringIndexer,
    VectorAssembler,
)
from pyspark.ml.functions import vector_to_array
from pyspark.ml.tuning import ParamGridBuilder, TrainValidationSplit
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.config import TrainConfig
from crm_spark.evaluate.classification import LABEL, PREDICTION, SCORE
from crm_spark.features import CATEGORICAL_FEATURES
from crm_spark.schemas import CUSTOMER_KEY

log = logging.getLogger(__name__)

LOGISTIC_REGRESSION = "logistic_regression"
DECISION_TREE = "decision_tree"
GRADIENT_BOOSTED_TREES = "gradient_boosted_trees"
RECENCY_BASELINE = "recency_baseline"
WEIGHT = "weight"
# Non-negative, heavy-tailed features that enter the models as log(1 + x).
LOG_SCALED = ("frequency", "monetary", "avg_basket", "orders_per_30d", "interpurchase_days", "frequency_recent",
              "monetary_recent", "n_ratings")
THRESHOLD_CANDIDATES = 99  # score quantiles tried as decision thresholds


@dataclass(frozen=True)
class FittedClassifier:
    """A fitted pipeline with the parameters the train-validation split chose."""

    name: str
    model: PipelineModel
    params: dict[str, float]
    tvs_auc: float


def preprocessing(numeric: list[str], categorical: list[str], center: bool = True) -> list:
    """Return the stages that turn raw feature columns into a scaled ``features`` vector.

    Features in ``LOG_SCALED`` are taken as ``log(1 + x)``; median imputation, one-hot
    encoding and scaling are fitted with the model, on training rows only.
    ``center=False`` scales without subtracting the mean.
    """
    logged = [c for c in numeric if c in LOG_SCALED]
    inputs = [f"{c}__log" if c in logged else c for c in numeric]
    imputed = [f"{c}__imputed" for c in inputs]
    indexed = [f"{c}__index" for c in categorical]
    encoded = [f"{c}__onehot" for c in categorical]
    stages: list = []
    if logged:
        select = ", ".join(f"log1p(greatest(`{c}`, 0D)) AS `{c}__log`" for c in logged)
        stages.append(SQLTransformer(statement=f"SELECT *, {select} FROM __THIS__"))
    if numeric:
        stages.append(Imputer(inputCols=inputs, outputCols=imputed, strategy="median"))
    if categorical:
        stages += [
            StringIndexer(inputCols=categorical, outputCols=indexed, handleInvalid="keep"),
            OneHotEncoder(inputCols=indexed, outputCols=encoded, handleInvalid="keep"),
        ]
    stages += [
        VectorAssembler(inputCols=imputed + encoded, outputCol="features_raw"),
        StandardScaler(inputCol="features_raw", outputCol="features", withMean=center, withStd=True),
    ]
    return stages


def classifiers(cfg: TrainConfig) -> dict[str, tuple[object, list[dict]]]:
    """Return each configured classifier, untrained, with its parameter grid, by model name."""
    weight = {"weightCol": WEIGHT} if cfg.class_weights == "balanced" else {}
    lr = LogisticRegression(featuresCol="features", labelCol=LABEL, maxIter=200, **weight)
    # The tree splits unscaled inputs, so its rules read in the features' own units.
    tree = DecisionTreeClassifier(featuresCol="features_raw", labelCol=LABEL, seed=cfg.seed, **weight)
    gbt = GBTClassifier(featuresCol="features_raw", labelCol=LABEL, maxIter=cfg.gbt_max_iter, seed=cfg.seed,
                        **weight)
    grids = {
        LOGISTIC_REGRESSION: (lr, ParamGridBuilder().addGrid(lr.regParam, list(cfg.lr_reg_params))
                              .addGrid(lr.elasticNetParam, list(cfg.lr_elastic_nets)).build()),
        DECISION_TREE: (tree, ParamGridBuilder().addGrid(tree.maxDepth, list(cfg.dt_max_depths))
                        .addGrid(tree.minInstancesPerNode, list(cfg.dt_min_instances)).build()),
        GRADIENT_BOOSTED_TREES: (gbt, ParamGridBuilder().addGrid(gbt.maxDepth, list(cfg.gbt_max_depths)).build()),
    }
    return {name: grids[name] for name in cfg.classifiers}


def split_features(kept: list[str]) -> tuple[list[str], list[str]]:
    """Split kept feature names into numeric and categorical lists."""
    categorical = [f for f in kept if f in CATEGORICAL_FEATURES]
    return [f for f in kept if f not in CATEGORICAL_FEATURES], categorical


def with_class_weights(train_df: DataFrame) -> DataFrame:
    """Add ``weight`` so that each class weighs half of the training rows in total."""
    counts = {r[LABEL]: r["count"] for r in train_df.groupBy(LABEL).count().collect()}
    total = sum(counts.values())
    weight = F.lit(1.0)
    for label, count in counts.items():
        weight = F.when(F.col(LABEL) == label, F.lit(total / (len(counts) * count))).otherwise(weight)
    return train_df.withColumn(WEIGHT, weight)


def fit(train_df: DataFrame, kept: list[str], name: str, cfg: TrainConfig) -> FittedClassifier:
    """Choose ``name``'s parameters by train-validation split of ``train_df`` and refit on all of it.

    The split is MLlib's ``TrainValidationSplit`` (``cfg.tvs_train_ratio``), scored by
    AUC; the test customers are never seen here.
    """
    classifier, grid = classifiers(cfg)[name]
    numeric, categorical = split_features(kept)
    pipeline = Pipeline(stages=[*preprocessing(numeric, categorical), classifier])
    tvs = TrainValidationSplit(
        estimator=pipeline, estimatorParamMaps=grid, trainRatio=cfg.tvs_train_ratio, seed=cfg.seed, parallelism=2,
        # Probabilities, not rawPrediction: a tree's raw prediction is its leaf's class
        # counts, which do not rank customers by churn likelihood.
        evaluator=BinaryClassificationEvaluator(labelCol=LABEL, rawPredictionCol="probability"),
    )
    weighted = with_class_weights(train_df) if cfg.class_weights == "balanced" else train_df
    search = tvs.fit(weighted)
    best = max(range(len(grid)), key=lambda i: search.validationMetrics[i])
    params = {p.name: float(v) for p, v in grid[best].items()}
    for i, point in enumerate(grid):
        log.info("%s %s: AUC %.4f on the train-validation split", name,
                 {p.name: v for p, v in point.items()}, search.validationMetrics[i])
    return FittedClassifier(name, search.bestModel, params, float(search.validationMetrics[best]))


def _id_columns(df: DataFrame) -> list[str]:
    return [c for c in (CUSTOMER_KEY, LABEL, "split") if c in df.columns]


def score(model: PipelineModel, df: DataFrame, threshold: float = 0.5) -> DataFrame:
    """Return ``customer_key``, ``score`` (positive-class probability) and ``prediction``
    (1.0 where the score reaches ``threshold``) for ``df``."""
    scored = model.transform(df)
    probability = vector_to_array(scored["probability"])[1]
    return scored.select(
        *_id_columns(df),
        probability.alias(SCORE),
        (probability >= F.lit(threshold)).cast("double").alias(PREDICTION),
    )


def choose_threshold(scored_df: DataFrame, objective: str) -> float:
    """Return the score threshold that maximizes ``objective`` (f1 or accuracy) on ``scored_df``.

    Candidates are ``THRESHOLD_CANDIDATES`` quantiles of the score, all counted in one pass.
    """
    quantiles = [i / (THRESHOLD_CANDIDATES + 1) for i in range(1, THRESHOLD_CANDIDATES + 1)]
    candidates = sorted(set(scored_df.agg(F.percentile_approx(SCORE, quantiles, 10_000)).first()[0]))
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
    log-scaled features, ``column=value`` for one-hot slots."""
    metadata = model.transform(df.limit(1)).schema["features_raw"].metadata["ml_attr"]
    slots: dict[int, str] = {}
    for group in metadata.get("attrs", {}).values():
        for attr in group:
            slots[attr["idx"]] = attr["name"]
    names = [slots.get(i, f"feature_{i}") for i in range(metadata["num_attrs"])]
    return [re.sub(r"^(.*)__log__imputed$", r"log1p(\1)", n).removesuffix("__imputed").replace("__onehot_", "=")
            for n in names]


def explanations(fitted: FittedClassifier, df: DataFrame) -> list[tuple[str, str, float | None, str | None]]:
    """Return ``(kind, feature, value, detail)`` rows that explain a fitted classifier.

    Logistic regression: one ``coefficient`` per feature (on standardized inputs, so
    sizes compare) and the ``intercept``. Trees: each feature's ``importance``; a single
    decision tree also its ``rules`` as readable text. All: the chosen ``parameter`` values.
    """
    names = feature_names(fitted.model, df)
    estimator = fitted.model.stages[-1]
    rows: list[tuple[str, str, float | None, str | None]] = [
        ("parameter", name, value, None) for name, value in sorted(fitted.params.items())]
    if fitted.name == LOGISTIC_REGRESSION:
        rows += [("coefficient", n, float(c), None) for n, c in zip(names, estimator.coefficients, strict=True)]
        rows.append(("intercept", "", float(estimator.intercept), None))
    else:
        importances = estimator.featureImportances.toArray()
        rows += [("importance", n, float(v), None) for n, v in zip(names, importances, strict=True)]
    if fitted.name == DECISION_TREE:
        rules = re.sub(r"feature (\d+)", lambda m: names[int(m.group(1))], estimator.toDebugString)
        rows.append(("rules", "", None, rules))
    return rows


def recency_baseline(df: DataFrame) -> DataFrame:
    """Return the recency-only baseline: the longer since the last purchase, the likelier churn."""
    return df.select(*_id_columns(df), F.col("recency_days").cast("double").alias(SCORE),
                     F.lit(None).cast("double").alias(PREDICTION))

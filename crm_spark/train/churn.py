"""Churn classifiers: logistic regression and a decision tree in MLlib Pipelines."""

from __future__ import annotations

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import DecisionTreeClassifier, LogisticRegression
from pyspark.ml.feature import (
    Imputer,
    OneHotEncoder,
    StandardScaler,
    StringIndexer,
    VectorAssembler,
)
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.config import TrainConfig
from crm_spark.evaluate.classification import LABEL, PREDICTION, SCORE
from crm_spark.features import CATEGORICAL_FEATURES
from crm_spark.schemas import CUSTOMER_KEY

LOGISTIC_REGRESSION = "logistic_regression"
DECISION_TREE = "decision_tree"
RECENCY_BASELINE = "recency_baseline"


def preprocessing(numeric: list[str], categorical: list[str], center: bool = True) -> list:
    """Return the stages that turn raw feature columns into a scaled ``features`` vector.

    Median imputation, one-hot encoding and scaling are fitted with the model, on
    training rows only. ``center=False`` scales without subtracting the mean.
    """
    imputed = [f"{c}__imputed" for c in numeric]
    indexed = [f"{c}__index" for c in categorical]
    encoded = [f"{c}__onehot" for c in categorical]
    stages: list = [Imputer(inputCols=numeric, outputCols=imputed, strategy="median")] if numeric else []
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


def classifiers(cfg: TrainConfig) -> dict[str, object]:
    """Return the untrained churn classifiers by model name."""
    return {
        LOGISTIC_REGRESSION: LogisticRegression(
            featuresCol="features", labelCol=LABEL, regParam=cfg.lr_reg_param,
            elasticNetParam=cfg.lr_elastic_net, maxIter=200,
        ),
        DECISION_TREE: DecisionTreeClassifier(
            featuresCol="features", labelCol=LABEL, maxDepth=cfg.dt_max_depth,
            minInstancesPerNode=20, seed=cfg.seed,
        ),
    }


def split_features(kept: list[str]) -> tuple[list[str], list[str]]:
    """Split kept feature names into numeric and categorical lists."""
    categorical = [f for f in kept if f in CATEGORICAL_FEATURES]
    return [f for f in kept if f not in CATEGORICAL_FEATURES], categorical


def fit(train_df: DataFrame, kept: list[str], classifier: object) -> PipelineModel:
    """Fit preprocessing and ``classifier`` on the training rows."""
    numeric, categorical = split_features(kept)
    return Pipeline(stages=[*preprocessing(numeric, categorical), classifier]).fit(train_df)


def _id_columns(df: DataFrame) -> list[str]:
    return [c for c in (CUSTOMER_KEY, LABEL, "split") if c in df.columns]


def score(model: PipelineModel, df: DataFrame) -> DataFrame:
    """Return ``customer_key``, ``score`` (churn probability) and ``prediction`` for ``df``."""
    return model.transform(df).select(
        *_id_columns(df),
        vector_to_array("probability")[1].alias(SCORE),
        F.col(PREDICTION).cast("double").alias(PREDICTION),
    )


def recency_baseline(df: DataFrame) -> DataFrame:
    """Return the recency-only baseline: the longer since the last purchase, the likelier churn."""
    return df.select(*_id_columns(df), F.col("recency_days").cast("double").alias(SCORE),
                     F.lit(None).cast("double").alias(PREDICTION))

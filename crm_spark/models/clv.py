"""Customer value: next-horizon spend predicted by linear regression and gradient-boosted trees."""

from __future__ import annotations

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.regression import GBTRegressor, LinearRegression
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.config import TrainConfig
from crm_spark.frames import present
from crm_spark.models.churn import GRADIENT_BOOSTED_TREES
from crm_spark.models.preprocessing import ID_COLUMNS, ModelInputs, preprocessing
from crm_spark.schemas import (
    FEATURES_VECTOR,
    LABEL,
    PREDICTION,
    RAW_FEATURES_VECTOR,
)

LINEAR_REGRESSION = "linear_regression"
MEAN_BASELINE = "mean_baseline"


def capped(train_df: DataFrame, quantile: float) -> tuple[DataFrame, float]:
    """Cap ``label`` at its approximate ``quantile`` over ``train_df``; return the frame and the cap."""
    cap = float(train_df.agg(F.percentile_approx(LABEL, quantile, 10_000)).first()[0])
    return train_df.withColumn(LABEL, F.least(F.col(LABEL), F.lit(cap))), cap


def regressors(cfg: TrainConfig) -> dict[str, object]:
    """Return the untrained regressors by model name."""
    return {
        LINEAR_REGRESSION: LinearRegression(featuresCol=FEATURES_VECTOR, labelCol=LABEL, regParam=0.01,
                                            maxIter=100),
        # Trees split unscaled inputs.
        GRADIENT_BOOSTED_TREES: GBTRegressor(
            featuresCol=RAW_FEATURES_VECTOR, labelCol=LABEL, maxIter=cfg.clv_gbt_max_iter,
            maxDepth=cfg.clv_gbt_max_depth, minInstancesPerNode=20, seed=cfg.seed),
    }


def fit(train_df: DataFrame, inputs: ModelInputs, regressor: object) -> PipelineModel:
    """Fit preprocessing and ``regressor`` on the training customers."""
    return Pipeline(stages=[*preprocessing(inputs), regressor]).fit(train_df)


def predict(model: PipelineModel, df: DataFrame) -> DataFrame:
    """Return ``customer_key`` (with ``label`` and ``split`` when present) and ``prediction``,
    the predicted next-horizon spend, never below 0."""
    return model.transform(df).select(*present(df, ID_COLUMNS),
                                      F.greatest(F.col(PREDICTION), F.lit(0.0)).alias(PREDICTION))


def mean_baseline(train_df: DataFrame, df: DataFrame) -> DataFrame:
    """Return the baseline that predicts the training customers' mean spend for everyone."""
    mean = train_df.agg(F.avg(LABEL)).first()[0]
    return df.select(*present(df, ID_COLUMNS), F.lit(float(mean)).alias(PREDICTION))

"""Customer value: next-horizon spend predicted by linear regression and gradient-boosted trees."""

from __future__ import annotations

import datetime as dt

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.regression import GBTRegressor, LinearRegression
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.config import TrainConfig
from crm_spark.features import completed_before
from crm_spark.schemas import (
    CUSTOMER_KEY,
    LABEL,
    ORDER_TS,
    PREDICTION,
    QUANTITY,
    UNIT_PRICE,
)
from crm_spark.train.churn import GRADIENT_BOOSTED_TREES, preprocessing, split_features

LINEAR_REGRESSION = "linear_regression"
MEAN_BASELINE = "mean_baseline"


def with_spend_label(features_df: DataFrame, orders_df: DataFrame, cutoff: dt.date, horizon_days: int) -> DataFrame:
    """Label customers who bought before ``cutoff`` with their completed spend in the horizon.

    Returns:
        Customers with ``frequency > 0`` and ``label``: the amount of their completed
        order lines in ``[cutoff, cutoff + horizon_days)``, 0.0 when they bought nothing.
    """
    horizon_end = cutoff + dt.timedelta(days=horizon_days)
    spend = (
        completed_before(orders_df, horizon_end)
        .where(F.col(ORDER_TS) >= F.lit(cutoff).cast("timestamp"))
        .groupBy(CUSTOMER_KEY).agg(F.sum(F.col(QUANTITY) * F.col(UNIT_PRICE)).alias("_spend"))
    )
    return (
        features_df.where(F.col("frequency") > 0)
        .join(spend, CUSTOMER_KEY, "left")
        .withColumn(LABEL, F.coalesce(F.col("_spend"), F.lit(0.0)).cast("double"))
        .drop("_spend")
    )


def capped(train_df: DataFrame, quantile: float) -> tuple[DataFrame, float]:
    """Cap ``label`` at its approximate ``quantile`` over ``train_df``; return the frame and the cap."""
    cap = float(train_df.agg(F.percentile_approx(LABEL, quantile, 10_000)).first()[0])
    return train_df.withColumn(LABEL, F.least(F.col(LABEL), F.lit(cap))), cap


def regressors(cfg: TrainConfig) -> dict[str, object]:
    """Return the untrained regressors by model name."""
    return {
        LINEAR_REGRESSION: LinearRegression(featuresCol="features", labelCol=LABEL, regParam=0.01, maxIter=100),
        # Trees split unscaled inputs.
        GRADIENT_BOOSTED_TREES: GBTRegressor(
            featuresCol="features_raw", labelCol=LABEL, maxIter=cfg.clv_gbt_max_iter,
            maxDepth=cfg.clv_gbt_max_depth, minInstancesPerNode=20, seed=cfg.seed),
    }


def fit(train_df: DataFrame, kept: list[str], regressor: object) -> PipelineModel:
    """Fit preprocessing and ``regressor`` on the training customers."""
    numeric, categorical = split_features(kept)
    return Pipeline(stages=[*preprocessing(numeric, categorical), regressor]).fit(train_df)


def predict(model: PipelineModel, df: DataFrame) -> DataFrame:
    """Return ``customer_key`` (with ``label`` and ``split`` when present) and ``prediction``,
    the predicted next-horizon spend, never below 0."""
    keep = [c for c in (CUSTOMER_KEY, LABEL, "split") if c in df.columns]
    return model.transform(df).select(*keep, F.greatest(F.col(PREDICTION), F.lit(0.0)).alias(PREDICTION))


def mean_baseline(train_df: DataFrame, df: DataFrame) -> DataFrame:
    """Return the baseline that predicts the training customers' mean spend for everyone."""
    mean = train_df.agg(F.avg(LABEL)).first()[0]
    keep = [c for c in (CUSTOMER_KEY, LABEL, "split") if c in df.columns]
    return df.select(*keep, F.lit(float(mean)).alias(PREDICTION))

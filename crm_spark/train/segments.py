"""Customer segmentation with KMeans on standardized behaviour and demographics."""

from __future__ import annotations

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import KMeans
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.config import TrainConfig
from crm_spark.features import category_share_columns, informative
from crm_spark.schemas import CUSTOMER_KEY
from crm_spark.train.churn import preprocessing

KMEANS = "kmeans"
SEGMENT = "segment"
SEGMENT_BASE_FEATURES = ("recency_days", "frequency", "monetary", "avg_basket", "age_band")


def segment_features(features_df: DataFrame) -> list[str]:
    """Return the columns clustering uses: RFM, basket, age band and category shares that vary."""
    return informative(features_df, [*SEGMENT_BASE_FEATURES, *category_share_columns(features_df)])


def fit(customers_df: DataFrame, columns: list[str], cfg: TrainConfig) -> PipelineModel:
    """Fit imputation, scaling and KMeans with ``cfg.kmeans_k`` clusters on ``columns``."""
    kmeans = KMeans(featuresCol="features", predictionCol=SEGMENT, k=cfg.kmeans_k, seed=cfg.seed, maxIter=50)
    stages = [*preprocessing(columns, []), kmeans]
    return Pipeline(stages=stages).fit(customers_df)


def assign(model: PipelineModel, customers_df: DataFrame) -> DataFrame:
    """Return ``customer_key``, ``segment`` and the scaled ``features`` vector."""
    return model.transform(customers_df).select(CUSTOMER_KEY, F.col(SEGMENT).cast("int").alias(SEGMENT), "features")


def silhouette(assigned_df: DataFrame) -> float:
    """Return the silhouette (squared Euclidean) of the assignment."""
    evaluator = ClusteringEvaluator(featuresCol="features", predictionCol=SEGMENT)
    return float(evaluator.evaluate(assigned_df))

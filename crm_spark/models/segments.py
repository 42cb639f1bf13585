"""Customer segmentation: KMeans and BisectingKMeans on standardized behaviour and demographics
with k chosen by silhouette, segment profiles, and classic RFM score segments."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import BisectingKMeans, KMeans
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crm_spark.config import TrainConfig
from crm_spark.features.customer import category_share_columns, informative
from crm_spark.frames import beside, for_fitting, persisted, task_slots
from crm_spark.models import sample_clustering
from crm_spark.models.preprocessing import ModelInputs, preprocessing
from crm_spark.schemas import (
    AGE_BAND,
    BASKET_LINES,
    CATEGORY_SHARE_PREFIX,
    CHURN_PROBABILITY,
    CUSTOMER_KEY,
    FEATURES_VECTOR,
    FREQUENCY,
    MONETARY,
    ORDERS_PER_30D,
    RECENCY_DAYS,
    SEGMENT,
)

log = logging.getLogger(__name__)

KMEANS = "kmeans"  # the other algorithm is BisectingKMeans (config.validate.SEGMENT_ALGORITHMS names both)
# Who customers are and how they shop: age, purchase rate, basket size and category mix.
# Recency, frequency and monetary value are left to the RFM segments beside the clusters.
SEGMENT_BASE_FEATURES = (AGE_BAND, ORDERS_PER_30D, BASKET_LINES)
PROFILE_COLUMNS = (RECENCY_DAYS, FREQUENCY, MONETARY)
TOP_CATEGORIES = 3
# Classic RFM segments from recency (R) and frequency (F) quintile scores, first match wins.
RFM_SEGMENTS = (
    ("champions", "r >= 4 AND f >= 4"),
    ("loyal", "r >= 3 AND f >= 4"),
    ("new", "r >= 4 AND f <= 1"),
    ("potential_loyalists", "r >= 4"),
    ("at_risk", "r <= 2 AND f >= 3"),
    ("hibernating", "r <= 2"),
    ("need_attention", "TRUE"),
)


@dataclass(frozen=True)
class Segmentation:
    """A fitted segmentation model and how it was chosen."""

    algorithm: str
    k: int
    silhouette: float
    model: PipelineModel
    seconds: float  # choosing k on the sample and fitting it on all customers


def segment_features(features_df: DataFrame, attributes: Sequence[str] = ()) -> list[str]:
    """Return the columns clustering uses: age band, purchase rate, basket lines, category shares and the
    given numeric attributes, those that vary."""
    return informative(features_df, [*SEGMENT_BASE_FEATURES, *category_share_columns(features_df), *attributes])


# MLlib's iterations, which the search on the sample uses too (per split when bisecting).
KMEANS_MAX_ITER = 50
BISECTING_MAX_ITER = 20


def _estimator(algorithm: str, k: int, seed: int):
    if algorithm == KMEANS:
        return KMeans(featuresCol=FEATURES_VECTOR, predictionCol=SEGMENT, k=k, seed=seed, maxIter=KMEANS_MAX_ITER)
    return BisectingKMeans(featuresCol=FEATURES_VECTOR, predictionCol=SEGMENT, k=k, seed=seed,
                           maxIter=BISECTING_MAX_ITER)


def _silhouette(evaluator: ClusteringEvaluator, assigned_df: DataFrame) -> float:
    """Return the silhouette, or -1 when the model put every customer in one cluster."""
    if assigned_df.select(SEGMENT).distinct().limit(2).count() < 2:
        return -1.0
    return float(evaluator.evaluate(assigned_df))


def _fit_restarts(algorithm: str, k: int, prepared_df: DataFrame, cfg: TrainConfig):
    """Fit ``segment_restarts`` seeds, as many at a time as the session runs tasks (a fit on
    one partition keeps one core busy); return the model with the lowest within-cluster cost.

    One seed can settle in a poor local optimum (measured at 100k: KMeans k=3 silhouette
    0.197 with one seed, 0.275 with another).
    """
    spark = prepared_df.sparkSession
    with ThreadPoolExecutor(min(task_slots(spark), cfg.segment_restarts)) as pool:
        started = [beside(spark, pool, _estimator(algorithm, k, seed).fit, prepared_df) for seed in _seeds(cfg)]
        fits = [fit.result() for fit in started]
    return min(fits, key=lambda fit: fit.summary.trainingCost)


def _seeds(cfg: TrainConfig) -> range:
    return range(cfg.seed, cfg.seed + cfg.segment_restarts)


def _points(prepared_df: DataFrame) -> np.ndarray:
    """Return the feature vectors of a (bounded) sample as a matrix on the driver."""
    rows = prepared_df.select(vector_to_array(FEATURES_VECTOR).alias(FEATURES_VECTOR)).collect()
    return np.array([row[FEATURES_VECTOR] for row in rows], dtype=float).reshape(len(rows), -1)


def fit_best(customers_df: DataFrame, columns: list[str], cfg: TrainConfig) -> list[Segmentation]:
    """Fit each configured algorithm for every k in the range on a sample, keep its best k by
    silhouette, and fit that k on every customer.

    Imputation and scaling are fitted once on all customers and shared. k is chosen on a
    seeded sample of at most ``segment_sample`` customers, on the driver
    (:mod:`~crm_spark.models.sample_clustering`), each fit keeping the best of
    ``segment_restarts`` seeds. The chosen k is then fitted with MLlib on all customers,
    again the best of ``segment_restarts`` seeds by within-cluster cost (a single seed can
    settle in a worse optimum: at 100,000 customers, six seeds of bisecting k=3 gave
    silhouettes from 0.2678 to 0.2722). Fits run on one partition per
    ``FIT_ROWS_PER_PARTITION`` rows (:func:`~crm_spark.frames.for_fitting`). Each returned
    model is a whole pipeline (imputation, scaling, clustering) that assigns raw feature rows.

    Returns:
        One :class:`Segmentation` per algorithm, best silhouette first; ``silhouette`` is
        the model's on all customers.
    """
    # Scaled but not centred: distances are the same, and BisectingKMeans cannot split a
    # cluster whose centre is exactly the origin (its two seeds would coincide).
    prepared_model = Pipeline(stages=preprocessing(ModelInputs(tuple(columns)), center=False)).fit(customers_df)
    evaluator = ClusteringEvaluator(featuresCol=FEATURES_VECTOR, predictionCol=SEGMENT)
    best: list[Segmentation] = []
    with persisted(prepared_model.transform(customers_df).select(CUSTOMER_KEY, FEATURES_VECTOR)) as prepared:
        total = prepared.count()
        prepared = for_fitting(prepared, total)
        points = _points(prepared if total <= cfg.segment_sample else prepared.sample(
            fraction=cfg.segment_sample / total, seed=cfg.seed))
        for algorithm in cfg.segment_algorithms:
            began = time.perf_counter()
            bisecting = algorithm != KMEANS
            silhouettes = {}
            for k in range(cfg.segment_k_min, cfg.segment_k_max + 1):
                fitted = sample_clustering.fit(points, k, bisecting, _seeds(cfg),
                                               BISECTING_MAX_ITER if bisecting else KMEANS_MAX_ITER)
                silhouettes[k] = sample_clustering.silhouette(points, fitted.labels)
                log.info("segments %s k=%d: silhouette %.4f on %d sampled customers", algorithm, k, silhouettes[k],
                         len(points))
            k = max(silhouettes, key=lambda n: (silhouettes[n], -n))  # the smallest of equally good k
            model = _fit_restarts(algorithm, k, prepared, cfg)
            best.append(Segmentation(algorithm, k, _silhouette(evaluator, model.transform(prepared)),
                                     PipelineModel(stages=[*prepared_model.stages, model]),
                                     time.perf_counter() - began))
    return sorted(best, key=lambda s: -s.silhouette)


def assign(model: PipelineModel, customers_df: DataFrame) -> DataFrame:
    """Return ``customer_key``, ``segment`` and the scaled ``features`` vector."""
    return model.transform(customers_df).select(CUSTOMER_KEY, F.col(SEGMENT).cast("int").alias(SEGMENT),
                                                FEATURES_VECTOR)


def centres(model: PipelineModel) -> list:
    """Return the cluster centres of a segmentation pipeline, indexed by segment."""
    return list(model.stages[-1].clusterCenters())


def profiles(assigned_df: DataFrame, features_df: DataFrame, churn_df: DataFrame | None) -> DataFrame:
    """Return one row per segment: size, share, mean recency/frequency/monetary, top categories, churn rate.

    Args:
        assigned_df: ``customer_key`` and ``segment``.
        features_df: the customers' features (``recency_days``, ``frequency``, ``monetary``, shares).
        churn_df: ``customer_key`` and ``churn_probability``, or None (churn rate stays null).

    Returns:
        ``segment``, ``customers``, ``share``, ``mean_<column>`` for recency, frequency and
        monetary, ``top_categories`` (the three highest mean category shares) and ``churn_rate``
        (the mean churn probability of the segment's scored customers).
    """
    shares = category_share_columns(features_df)
    joined = assigned_df.select(CUSTOMER_KEY, SEGMENT).join(features_df, CUSTOMER_KEY)
    if churn_df is not None:
        joined = joined.join(churn_df.select(CUSTOMER_KEY, CHURN_PROBABILITY), CUSTOMER_KEY, "left")
    else:
        joined = joined.withColumn(CHURN_PROBABILITY, F.lit(None).cast("double"))
    ranked = F.array_sort(F.array(*[F.struct((-F.avg(c)).alias("neg"),
                                             F.lit(c[len(CATEGORY_SHARE_PREFIX):]).alias("category"))
                                    for c in shares])) if shares else F.array().cast("array<struct<neg:double,"
                                                                                       "category:string>>")
    total = assigned_df.count()
    return joined.groupBy(SEGMENT).agg(
        F.count(F.lit(1)).alias("customers"),
        *[F.avg(c).alias(f"mean_{c}") for c in PROFILE_COLUMNS],
        F.slice(F.transform(ranked, lambda s: s["category"]), 1, TOP_CATEGORIES).alias("top_categories"),
        F.avg(CHURN_PROBABILITY).alias("churn_rate"),
    ).withColumn("share", F.col("customers") / F.lit(max(total, 1)))


def _quintile(column: str, cuts: list[float], higher_is_better: bool) -> Column:
    """Return the 1-5 score of ``column`` against its four quintile cuts."""
    above = sum(((F.col(column) > F.lit(cut)).cast("int") for cut in cuts), F.lit(0))
    return (F.lit(1) + above) if higher_is_better else (F.lit(5) - above)


def rfm_segments(buyers_df: DataFrame) -> DataFrame:
    """Return ``customer_key``, ``r_score``, ``f_score``, ``m_score`` (1-5) and ``rfm_segment``.

    Scores are quintiles of recency (lower is better), frequency and monetary value over
    ``buyers_df`` (customers with a purchase), cut at approximate percentiles (no global
    sort); segments follow ``RFM_SEGMENTS``.
    """
    row = buyers_df.agg(*[F.percentile_approx(c, [0.2, 0.4, 0.6, 0.8], 10_000).alias(c)
                          for c in PROFILE_COLUMNS]).first()
    scored = buyers_df.select(
        CUSTOMER_KEY,
        _quintile(RECENCY_DAYS, row[RECENCY_DAYS] or [], False).alias("r"),
        _quintile(FREQUENCY, row[FREQUENCY] or [], True).alias("f"),
        _quintile(MONETARY, row[MONETARY] or [], True).alias("m"),
    )
    name = F.lit(None).cast("string")
    for segment, rule in reversed(RFM_SEGMENTS):
        name = F.when(F.expr(rule), F.lit(segment)).otherwise(name)
    return scored.select(CUSTOMER_KEY, F.col("r").alias("r_score"), F.col("f").alias("f_score"),
                         F.col("m").alias("m_score"), name.alias("rfm_segment"))

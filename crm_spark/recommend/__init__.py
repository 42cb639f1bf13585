"""Recommend: implicit ALS on purchases, evaluated on a time-split holdout beside a
popularity baseline, then served to every customer (popular items for cold starts)."""

from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import registry, tables
from crm_spark.config import Config
from crm_spark.recommend.als import (
    ITEM,
    RANK,
    SCORE,
    STRENGTH,
    USER,
    catalogue,
    dense_index,
    fit_explicit,
    fit_implicit,
    holdout_relevance,
    popular_unseen,
    popularity,
    purchase_interactions,
    top_k_unseen,
)
from crm_spark.schemas import (
    CUSTOMER_KEY,
    PRODUCT_ID,
    RATED_TS,
    RATING,
    SIGNUP_TS,
)
from crm_spark.stage import StageSkipped

log = logging.getLogger(__name__)

RECOMMEND_TASK = "recommendation"
ALS_MODEL, POPULAR_MODEL, ITEM_MEAN_MODEL = "als", "popular", "item_mean"


def _indexed(df: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    return df.join(users, CUSTOMER_KEY).join(items, PRODUCT_ID)


def _max_seen(interactions_df: DataFrame) -> int:
    return int(interactions_df.groupBy(CUSTOMER_KEY).count().agg(F.max("count")).first()[0] or 0)


def recommend_known(
    interactions_df: DataFrame, users_df: DataFrame, items_df: DataFrame, target_df: DataFrame,
    config: Config, blocks: int, max_seen: int,
) -> tuple[ALSModel, DataFrame]:
    """Fit implicit ALS on ``interactions_df`` and return top-k unseen products for ``target_df``.

    Args:
        interactions_df: ``(customer_key, product_id, strength)``.
        users_df: ``(customer_key, user)`` index of every customer with interactions.
        items_df: ``(product_id, item)`` index of the catalogue.
        target_df: column ``customer_key`` of the customers to recommend to.
        config: run configuration (``recommend`` section).
        blocks: ALS block count.
        max_seen: the largest number of products any customer interacted with.

    Returns:
        The fitted model, and ``customer_key``, ``product_id``, ``score`` and ``rank``.
    """
    indexed = _indexed(interactions_df, users_df, items_df).select(USER, ITEM, STRENGTH)
    model = fit_implicit(indexed, config.recommend, blocks)
    targets = target_df.join(users_df, CUSTOMER_KEY).select(USER)
    recs = top_k_unseen(model, targets, indexed, config.recommend.top_k, max_seen)
    return model, recs.join(users_df, USER).join(items_df, ITEM).select(CUSTOMER_KEY, PRODUCT_ID, SCORE, RANK)


def rating_holdout(ratings_df: DataFrame, users_df: DataFrame, items_df: DataFrame, config: Config,
                   blocks: int) -> DataFrame:
    """Predict held-out ratings (rated in the horizon) with explicit ALS and an item-mean baseline.

    Both models are scored on the same rows: ratings of customers and products ALS
    saw in training.

    Returns:
        ``customer_key``, ``product_id``, ``rating``, ``prediction`` and ``model``.
    """
    cutoff = F.lit(config.training_cutoff).cast("timestamp")
    end = F.lit(config.as_of_date).cast("timestamp")
    rated = ratings_df.where(F.col(CUSTOMER_KEY).isNotNull()).withColumn(RATING, F.col(RATING).cast("float"))
    train = _indexed(rated.where(F.col(RATED_TS) < cutoff), users_df, items_df)
    test = _indexed(rated.where((F.col(RATED_TS) >= cutoff) & (F.col(RATED_TS) < end)), users_df, items_df)
    model = fit_explicit(train.select(USER, ITEM, RATING), config.recommend, blocks)
    als = model.transform(test).select(CUSTOMER_KEY, PRODUCT_ID, RATING, F.col("prediction").cast("double"),
                                       F.lit(ALS_MODEL).alias("model"))
    global_mean = train.agg(F.avg(RATING)).first()[0]
    item_means = train.groupBy(PRODUCT_ID).agg(F.avg(RATING).alias("item_mean"))
    baseline = als.select(CUSTOMER_KEY, PRODUCT_ID, RATING).join(item_means, PRODUCT_ID, "left").select(
        CUSTOMER_KEY, PRODUCT_ID, RATING,
        F.coalesce("item_mean", F.lit(global_mean)).cast("double").alias("prediction"),
        F.lit(ITEM_MEAN_MODEL).alias("model"))
    return als.unionByName(baseline)


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Write the holdout recommendations, rating predictions and served recommendations.

    Holdout: ALS and popularity are fitted on purchases before the training cutoff and
    recommend to customers who bought something new in the horizon. Serving: ALS is
    refitted on all purchases before ``as_of_date``; customers without purchases get
    the most popular products.

    Returns:
        Rows written per table.
    """
    lake = config.paths.lakehouse_dir
    cfg = config.recommend
    blocks = max(2, spark.sparkContext.defaultParallelism)
    orders = tables.read_table(spark, tables.ORDERS, lake)
    if orders.where(F.col(PRODUCT_ID).isNotNull()).isEmpty():
        raise StageSkipped("no order lines with a product: recommendations need purchases of products")
    items = dense_index(catalogue(tables.read_table(spark, tables.PRODUCTS, lake), orders), PRODUCT_ID,
                        ITEM).persist()
    counts: dict[str, int] = {}

    def write(df: DataFrame, table: tables.Table) -> None:
        counts[table.qualified] = tables.write_dated(df, table, lake, config.as_of_date, run_id)

    history = purchase_interactions(orders, config.training_cutoff).persist(StorageLevel.MEMORY_AND_DISK)
    users = dense_index(history, CUSTOMER_KEY, USER).persist()
    targets = holdout_relevance(orders, config.training_cutoff, config.as_of_date).select(CUSTOMER_KEY).distinct()
    max_seen = _max_seen(history)
    _, als_holdout = recommend_known(history, users, items, targets, config, blocks, max_seen)
    popular_holdout = popular_unseen(targets, history, popularity(history), cfg.top_k, max_seen)
    holdout = als_holdout.withColumn("model", F.lit(ALS_MODEL)).unionByName(
        popular_holdout.withColumn("model", F.lit(POPULAR_MODEL)))
    write(holdout, tables.RECOMMENDATION_HOLDOUT)

    ratings = tables.read_table(spark, tables.RATINGS, lake)
    write(rating_holdout(ratings, users, items, config, blocks), tables.RATING_HOLDOUT)
    history.unpersist()
    users.unpersist()

    everything = purchase_interactions(orders, config.as_of_date).persist(StorageLevel.MEMORY_AND_DISK)
    all_users = dense_index(everything, CUSTOMER_KEY, USER).persist()
    model, served = recommend_known(everything, all_users, items, all_users.select(CUSTOMER_KEY), config, blocks,
                                    _max_seen(everything))
    path = registry.model_path(lake, run_id, RECOMMEND_TASK, ALS_MODEL)
    model.write().overwrite().save(path)
    registered = tables.read_table(spark, tables.CUSTOMERS, lake).where(
        F.col(SIGNUP_TS).isNull() | (F.col(SIGNUP_TS) < F.lit(config.as_of_date).cast("timestamp")))
    cold = registered.select(CUSTOMER_KEY).join(all_users.select(CUSTOMER_KEY), CUSTOMER_KEY, "left_anti")
    cold_recs = popular_unseen(cold, None, popularity(everything), cfg.top_k, 0) \
        .withColumn("source", F.lit(POPULAR_MODEL))
    write(served.withColumn("source", F.lit(ALS_MODEL)).unionByName(cold_recs), tables.RECOMMENDATIONS)
    counts[tables.MODEL_REGISTRY.qualified] = registry.record(spark, config, run_id, [
        registry.ModelEntry(RECOMMEND_TASK, ALS_MODEL, path, "none", None, True, [])])
    everything.unpersist()
    all_users.unpersist()
    items.unpersist()
    return counts

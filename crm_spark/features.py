"""Customer features as of a date: only events strictly before that date are used."""

from __future__ import annotations

import datetime as dt
import logging
import re

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.prepare.clean import age_on
from crm_spark.schemas import (
    AGE,
    AS_OF_DATE,
    BIRTH_DATE,
    CATEGORY,
    CUSTOMER_KEY,
    GENDER,
    ORDER_ID,
    ORDER_TS,
    PRODUCT_ID,
    QUANTITY,
    RATED_TS,
    RATING,
    SIGNUP_TS,
    STATUS,
    STATUS_COMPLETED,
    STATUS_RETURNED,
    UNIT_PRICE,
)

log = logging.getLogger(__name__)

RECENT_DAYS = 90
AGE_BAND_YEARS = 5
RATING_PRIOR_WEIGHT = 3.0  # ratings' worth of prior pulling a customer's rating deviation towards 0
NUMERIC_FEATURES = (
    "recency_days", "frequency", "monetary", "avg_basket", "basket_lines", "tenure_days", "orders_per_30d",
    "interpurchase_days", "frequency_recent", "frequency_trend", "monetary_recent", "return_rate",
    "n_ratings", "avg_rating", "rating_deviation", "age_band",
)
CATEGORICAL_FEATURES = (GENDER,)
CATEGORY_SHARE_PREFIX = "share_"


def category_share_column(category: str) -> str:
    """Return the feature name of a category's share of order lines."""
    return CATEGORY_SHARE_PREFIX + re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_")


def category_share_columns(features_df: DataFrame) -> list[str]:
    """Return the category spend-share columns of a features frame, sorted."""
    return sorted(c for c in features_df.columns if c.startswith(CATEGORY_SHARE_PREFIX))


def feature_columns(features_df: DataFrame) -> list[str]:
    """Return the numeric model features present in a features frame, in a fixed order."""
    return [*NUMERIC_FEATURES, *category_share_columns(features_df)]


def informative(features_df: DataFrame, columns: list[str]) -> list[str]:
    """Return the columns that vary (two or more distinct non-null values), in order.

    A feature the sources cannot fill (no ratings, no birth dates) is constant or
    empty; it is logged and left out rather than breaking imputation or bucketing.
    """
    if not columns:
        return []
    bounds = features_df.agg(*[F.min(c).alias(f"lo{i}") for i, c in enumerate(columns)],
                             *[F.max(c).alias(f"hi{i}") for i, c in enumerate(columns)]).first()
    varying = [c for i, c in enumerate(columns)
               if bounds[f"lo{i}"] is not None and bounds[f"lo{i}"] != bounds[f"hi{i}"]]
    for column in columns:
        if column not in varying:
            log.info("feature %s is constant or empty here; left out", column)
    return varying


def completed_before(orders_df: DataFrame, as_of_date: dt.date) -> DataFrame:
    """Return completed order lines of known customers strictly before ``as_of_date``."""
    return orders_df.where(
        (F.col(ORDER_TS) < F.lit(as_of_date).cast("timestamp"))
        & (F.col(STATUS) == STATUS_COMPLETED)
        & F.col(CUSTOMER_KEY).isNotNull()
    )


def customer_features(
    customers_df: DataFrame,
    orders_df: DataFrame,
    ratings_df: DataFrame,
    products_df: DataFrame,
    as_of_date: dt.date,
    categories: list[str],
) -> DataFrame:
    """Compute one feature row per customer registered before ``as_of_date``.

    Args:
        customers_df: silver customers.
        orders_df: silver order lines.
        ratings_df: silver ratings.
        products_df: silver products (for categories).
        as_of_date: features see only events strictly before this date.
        categories: categories that get a spend-share column.

    Returns:
        ``customer_key``, ``as_of_date``, the numeric features (RFM, tenure, mean days
        between orders, recent activity and its trend against the 90 days before, the
        share of orders returned, rating statistics, ``age_band`` (the lower bound of the
        customer's 5-year age band: gold holds no exact age), mean order lines per order,
        category shares: the share of the customer's order lines in each category) and
        ``gender``. ``rating_deviation`` is the mean of the customer's ratings minus each
        product's mean rating, shrunk towards 0 by ``RATING_PRIOR_WEIGHT`` ratings.
        Customers without purchases have frequency 0 and null recency.
    """
    cutoff = F.lit(as_of_date).cast("timestamp")
    lines = completed_before(orders_df, as_of_date).join(
        products_df.select(PRODUCT_ID, CATEGORY), PRODUCT_ID, "left"
    ).withColumn("amount", F.col(QUANTITY) * F.col(UNIT_PRICE))
    recent_start = F.lit(as_of_date - dt.timedelta(days=RECENT_DAYS)).cast("timestamp")
    recent = F.col(ORDER_TS) >= recent_start
    prior = (F.col(ORDER_TS) < recent_start) & (
        F.col(ORDER_TS) >= F.lit(as_of_date - dt.timedelta(days=2 * RECENT_DAYS)).cast("timestamp"))
    share_aggs = [
        F.sum(F.when(F.col(CATEGORY) == c, F.lit(1.0)).otherwise(0.0)).alias(category_share_column(c))
        for c in categories
    ]
    purchases = lines.groupBy(CUSTOMER_KEY).agg(
        F.max(ORDER_TS).alias("last_order_ts"),
        F.min(ORDER_TS).alias("first_order_ts"),
        F.countDistinct(ORDER_ID).alias("frequency"),
        F.sum("amount").alias("monetary"),
        F.count(F.lit(1)).alias("n_lines"),
        F.countDistinct(F.when(recent, F.col(ORDER_ID))).alias("frequency_recent"),
        F.countDistinct(F.when(prior, F.col(ORDER_ID))).alias("frequency_prior"),
        F.sum(F.when(recent, F.col("amount")).otherwise(0.0)).alias("monetary_recent"),
        *share_aggs,
    )
    returns = orders_df.where((F.col(ORDER_TS) < cutoff) & F.col(CUSTOMER_KEY).isNotNull()).groupBy(
        CUSTOMER_KEY).agg((F.countDistinct(F.when(F.col(STATUS) == STATUS_RETURNED, F.col(ORDER_ID)))
                           / F.countDistinct(ORDER_ID)).alias("return_rate"))
    rated = ratings_df.where((F.col(RATED_TS) < cutoff) & F.col(CUSTOMER_KEY).isNotNull())
    rated = rated.join(rated.groupBy(PRODUCT_ID).agg(F.avg(RATING).alias("_product_rating")), PRODUCT_ID).groupBy(
        CUSTOMER_KEY).agg(
        F.count(F.lit(1)).alias("n_ratings"), F.avg(RATING).alias("avg_rating"),
        (F.sum(F.col(RATING) - F.col("_product_rating")) / (F.count(F.lit(1)) + RATING_PRIOR_WEIGHT)).alias(
            "rating_deviation"),
    )
    registered = customers_df.where(F.col(SIGNUP_TS).isNull() | (F.col(SIGNUP_TS) < cutoff))
    shares = [category_share_column(c) for c in categories]
    return (
        registered.select(CUSTOMER_KEY, SIGNUP_TS, BIRTH_DATE, AGE, GENDER)
        .join(purchases, CUSTOMER_KEY, "left")
        .join(rated, CUSTOMER_KEY, "left")
        .join(returns, CUSTOMER_KEY, "left")
        .select(
            CUSTOMER_KEY,
            F.lit(as_of_date).alias(AS_OF_DATE),
            F.datediff(F.lit(as_of_date), F.to_date("last_order_ts")).cast("double").alias("recency_days"),
            F.coalesce("frequency", F.lit(0)).cast("double").alias("frequency"),
            F.coalesce("monetary", F.lit(0.0)).alias("monetary"),
            (F.col("monetary") / F.col("frequency")).alias("avg_basket"),
            (F.col("n_lines") / F.col("frequency")).alias("basket_lines"),
            F.datediff(F.lit(as_of_date), F.to_date(SIGNUP_TS)).cast("double").alias("tenure_days"),
            (F.col("frequency") * 30.0
             / F.greatest(F.datediff(F.lit(as_of_date), F.to_date("first_order_ts")), F.lit(30))).alias(
                "orders_per_30d"),
            (F.datediff(F.to_date("last_order_ts"), F.to_date("first_order_ts"))
             / F.when(F.col("frequency") > 1, F.col("frequency") - 1)).cast("double").alias("interpurchase_days"),
            F.coalesce("frequency_recent", F.lit(0)).cast("double").alias("frequency_recent"),
            (F.coalesce("frequency_recent", F.lit(0)) - F.coalesce("frequency_prior", F.lit(0))).cast("double")
            .alias("frequency_trend"),
            F.coalesce("monetary_recent", F.lit(0.0)).alias("monetary_recent"),
            F.col("return_rate").cast("double").alias("return_rate"),
            F.coalesce("n_ratings", F.lit(0)).cast("double").alias("n_ratings"),
            F.col("avg_rating").cast("double").alias("avg_rating"),
            F.coalesce("rating_deviation", F.lit(0.0)).cast("double").alias("rating_deviation"),
            (F.floor(F.coalesce(age_on(F.col(BIRTH_DATE), as_of_date), F.col(AGE)) / AGE_BAND_YEARS)
             * AGE_BAND_YEARS).cast("double").alias("age_band"),
            *[F.coalesce(F.col(s) / F.col("n_lines"), F.lit(0.0)).alias(s) for s in shares],
            F.coalesce(F.col(GENDER), F.lit("U")).alias(GENDER),
        )
    )


def read_features(spark: SparkSession, lakehouse_dir: str, as_of_date: dt.date) -> DataFrame:
    """Read the ``customer_features`` rows of one date.

    Raises:
        FileNotFoundError: the features stage has not written that date.
    """
    features_df = tables.read_table(spark, tables.CUSTOMER_FEATURES, lakehouse_dir).where(
        F.col(AS_OF_DATE) == F.lit(as_of_date)
    )
    if features_df.isEmpty():
        raise FileNotFoundError(f"no customer_features for {as_of_date}: run the features stage first")
    return features_df


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Write features as of ``as_of_date`` and as of the training cutoff.

    Args:
        spark: the session.
        config: run configuration.
        run_id: the run's id.

    Returns:
        Feature rows written per date.
    """
    lake = config.paths.lakehouse_dir
    silver = {t.name: tables.read_table(spark, t, lake)
              for t in (tables.CUSTOMERS, tables.ORDERS, tables.RATINGS, tables.PRODUCTS)}
    categories = sorted(r[0] for r in silver["products"].select(CATEGORY).distinct().collect())
    counts = {}
    for date in (config.training_cutoff, config.as_of_date):
        features_df = customer_features(
            silver["customers"], silver["orders"], silver["ratings"], silver["products"], date, categories
        ).withColumn("run_id", F.lit(run_id))
        counts[f"{tables.CUSTOMER_FEATURES.qualified}@{date}"] = tables.write_table(
            features_df, tables.CUSTOMER_FEATURES, lake, date
        )
    return counts

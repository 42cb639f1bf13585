"""Customer features as of a date: only events strictly before that date are used."""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.dates import age_on, start_of
from crm_spark.schemas import (
    AGE,
    AGE_BAND,
    AS_OF_DATE,
    AVG_BASKET,
    AVG_RATING,
    BASKET_LINES,
    BIRTH_DATE,
    CATEGORICAL_FEATURES,
    CATEGORY,
    CATEGORY_SHARE_PREFIX,
    CUSTOMER_KEY,
    FREQUENCY,
    FREQUENCY_RECENT,
    FREQUENCY_TREND,
    GENDER,
    INTERPURCHASE_DAYS,
    MONETARY,
    MONETARY_RECENT,
    N_RATINGS,
    NUMERIC_FEATURES,
    ORDER_ID,
    ORDER_TS,
    ORDERS_PER_30D,
    PRODUCT_ID,
    QUANTITY,
    RATED_TS,
    RATING,
    RATING_DEVIATION,
    RECENCY_DAYS,
    RETURN_RATE,
    SIGNUP_TS,
    STATUS,
    STATUS_COMPLETED,
    STATUS_RETURNED,
    TENURE_DAYS,
    UNIT_PRICE,
)

log = logging.getLogger(__name__)

RECENT_DAYS = 90
AGE_BAND_YEARS = 5
RATING_PRIOR_WEIGHT = 3.0  # ratings' worth of prior pulling a customer's rating deviation towards 0


def category_share_column(category: str) -> str:
    """Return the feature name of a category's share of order lines."""
    return CATEGORY_SHARE_PREFIX + re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_")


def category_share_columns(features_df: DataFrame) -> list[str]:
    """Return the category spend-share columns of a features frame, sorted."""
    return sorted(c for c in features_df.columns if c.startswith(CATEGORY_SHARE_PREFIX))


def candidate_features(features_df: DataFrame, attributes: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Return the numeric and the categorical model features of a features frame, in a fixed order.

    Numeric: the computed features, the category shares, then the numeric attributes;
    categorical: gender, then the attributes held as text.
    """
    types = dict(features_df.dtypes)
    text = [a for a in attributes if types.get(a) == "string"]
    numbers = [a for a in attributes if a in types and a not in text]
    return [*NUMERIC_FEATURES, *category_share_columns(features_df), *numbers], [*CATEGORICAL_FEATURES, *text]


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
        (F.col(ORDER_TS) < start_of(as_of_date))
        & (F.col(STATUS) == STATUS_COMPLETED)
        & F.col(CUSTOMER_KEY).isNotNull()
    )


def registered_before(customers_df: DataFrame, as_of_date: dt.date) -> DataFrame:
    """Return the customers who signed up before ``as_of_date`` (or whose signup is unknown)."""
    return customers_df.where(F.col(SIGNUP_TS).isNull() | (F.col(SIGNUP_TS) < start_of(as_of_date)))


def buyers(features_df: DataFrame) -> DataFrame:
    """Return the customers of a features frame who have bought (at least one completed order)."""
    return features_df.where(F.col(FREQUENCY) > 0)


def customer_features(
    customers_df: DataFrame,
    orders_df: DataFrame,
    ratings_df: DataFrame,
    products_df: DataFrame,
    as_of_date: dt.date,
    categories: list[str],
    attributes: Sequence[str] = (),
) -> DataFrame:
    """Compute one feature row per customer registered before ``as_of_date``.

    Args:
        customers_df: silver customers.
        orders_df: silver order lines.
        ratings_df: silver ratings.
        products_df: silver products (for categories).
        as_of_date: features see only events strictly before this date.
        categories: categories that get a spend-share column.
        attributes: customer attributes (columns of ``customers_df``) to carry: numbers
            as they are, yes/no as 1.0/0.0, dates as the days between them and
            ``as_of_date``, text as it is (a categorical feature).

    Returns:
        ``customer_key``, ``as_of_date``, the numeric features (RFM, tenure, mean days
        between orders, recent activity and its trend against the 90 days before, the
        share of orders returned, rating statistics, ``age_band`` (the lower bound of the
        customer's 5-year age band: gold holds no exact age), mean order lines per order,
        category shares: the share of the customer's order lines in each category) and
        ``gender``, then the attributes. ``rating_deviation`` is the mean of the customer's
        ratings minus each product's mean rating, shrunk towards 0 by ``RATING_PRIOR_WEIGHT`` ratings.
        Customers without purchases have frequency 0 and null recency.
    """
    cutoff = start_of(as_of_date)
    recent_start = start_of(as_of_date - dt.timedelta(days=RECENT_DAYS))
    completed = F.col(STATUS) == STATUS_COMPLETED
    recent = completed & (F.col(ORDER_TS) >= recent_start)
    prior = completed & (F.col(ORDER_TS) < recent_start) & (
        F.col(ORDER_TS) >= start_of(as_of_date - dt.timedelta(days=2 * RECENT_DAYS)))

    def flag(condition: Column) -> Column:
        return F.max(condition.cast("int"))

    def completed_sum(value: Column) -> Column:
        return F.sum(F.when(completed, value))

    # One row per order first: distinct orders are then counted by summing flags, where
    # counting distinct order ids of several conditions in one aggregation expands every line.
    per_order = orders_df.where((F.col(ORDER_TS) < cutoff) & F.col(CUSTOMER_KEY).isNotNull()).join(
        products_df.select(PRODUCT_ID, CATEGORY), PRODUCT_ID, "left"
    ).groupBy(CUSTOMER_KEY, ORDER_ID).agg(
        flag(completed).alias("_completed"), flag(recent).alias("_recent"), flag(prior).alias("_prior"),
        flag(F.col(STATUS) == STATUS_RETURNED).alias("_returned"),
        F.max(F.when(completed, F.col(ORDER_TS))).alias("last_order_ts"),
        F.min(F.when(completed, F.col(ORDER_TS))).alias("first_order_ts"),
        completed_sum(F.col(QUANTITY) * F.col(UNIT_PRICE)).alias(MONETARY),
        completed_sum(F.lit(1)).alias("n_lines"),
        completed_sum(F.when(recent, F.col(QUANTITY) * F.col(UNIT_PRICE))).alias(MONETARY_RECENT),
        *[completed_sum(F.when(F.col(CATEGORY) == c, F.lit(1.0)).otherwise(0.0)).alias(category_share_column(c))
          for c in categories],
    )
    purchases = per_order.groupBy(CUSTOMER_KEY).agg(
        F.max("last_order_ts").alias("last_order_ts"),
        F.min("first_order_ts").alias("first_order_ts"),
        F.sum("_completed").alias(FREQUENCY),
        F.sum(MONETARY).alias(MONETARY),
        F.sum("n_lines").alias("n_lines"),
        F.sum("_recent").alias(FREQUENCY_RECENT),
        F.sum("_prior").alias("frequency_prior"),
        F.sum(MONETARY_RECENT).alias(MONETARY_RECENT),
        *[F.sum(category_share_column(c)).alias(category_share_column(c)) for c in categories],
        (F.sum("_returned") / F.count(F.lit(1))).alias(RETURN_RATE),
    ).withColumn(FREQUENCY, F.when(F.col(FREQUENCY) > 0, F.col(FREQUENCY)))
    rated = ratings_df.where((F.col(RATED_TS) < cutoff) & F.col(CUSTOMER_KEY).isNotNull())
    rated = rated.join(rated.groupBy(PRODUCT_ID).agg(F.avg(RATING).alias("_product_rating")), PRODUCT_ID).groupBy(
        CUSTOMER_KEY).agg(
        F.count(F.lit(1)).alias(N_RATINGS), F.avg(RATING).alias(AVG_RATING),
        (F.sum(F.col(RATING) - F.col("_product_rating")) / (F.count(F.lit(1)) + RATING_PRIOR_WEIGHT)).alias(
            RATING_DEVIATION),
    )
    shares = [category_share_column(c) for c in categories]
    frequency = F.col(FREQUENCY)
    types = dict(customers_df.dtypes)
    carried = [a for a in attributes if a in types]
    return (
        registered_before(customers_df, as_of_date).select(CUSTOMER_KEY, SIGNUP_TS, BIRTH_DATE, AGE, GENDER, *carried)
        .join(purchases, CUSTOMER_KEY, "left")
        .join(rated, CUSTOMER_KEY, "left")
        .select(
            CUSTOMER_KEY,
            F.lit(as_of_date).alias(AS_OF_DATE),
            F.datediff(F.lit(as_of_date), F.to_date("last_order_ts")).cast("double").alias(RECENCY_DAYS),
            F.coalesce(FREQUENCY, F.lit(0)).cast("double").alias(FREQUENCY),
            F.coalesce(MONETARY, F.lit(0.0)).alias(MONETARY),
            (F.col(MONETARY) / frequency).alias(AVG_BASKET),
            (F.col("n_lines") / frequency).alias(BASKET_LINES),
            F.datediff(F.lit(as_of_date), F.to_date(SIGNUP_TS)).cast("double").alias(TENURE_DAYS),
            (frequency * 30.0
             / F.greatest(F.datediff(F.lit(as_of_date), F.to_date("first_order_ts")), F.lit(30))).alias(
                ORDERS_PER_30D),
            (F.datediff(F.to_date("last_order_ts"), F.to_date("first_order_ts"))
             / F.when(frequency > 1, frequency - 1)).cast("double").alias(INTERPURCHASE_DAYS),
            F.coalesce(FREQUENCY_RECENT, F.lit(0)).cast("double").alias(FREQUENCY_RECENT),
            (F.coalesce(FREQUENCY_RECENT, F.lit(0)) - F.coalesce("frequency_prior", F.lit(0))).cast("double")
            .alias(FREQUENCY_TREND),
            F.coalesce(MONETARY_RECENT, F.lit(0.0)).alias(MONETARY_RECENT),
            F.col(RETURN_RATE).cast("double").alias(RETURN_RATE),
            F.coalesce(N_RATINGS, F.lit(0)).cast("double").alias(N_RATINGS),
            F.col(AVG_RATING).cast("double").alias(AVG_RATING),
            F.coalesce(RATING_DEVIATION, F.lit(0.0)).cast("double").alias(RATING_DEVIATION),
            (F.floor(F.coalesce(age_on(F.col(BIRTH_DATE), as_of_date), F.col(AGE)) / AGE_BAND_YEARS)
             * AGE_BAND_YEARS).cast("double").alias(AGE_BAND),
            *[F.coalesce(F.col(s) / F.col("n_lines"), F.lit(0.0)).alias(s) for s in shares],
            F.coalesce(F.col(GENDER), F.lit("U")).alias(GENDER),
            *[_attribute_feature(F.col(a), types[a], as_of_date).alias(a) for a in carried],
        )
    )


def _attribute_feature(value: Column, sql_type: str, as_of_date: dt.date) -> Column:
    """Return an attribute as a feature: dates as days before ``as_of_date``, yes/no as 1.0/0.0, numbers as
    doubles, text as it is."""
    if sql_type == "date":
        return F.datediff(F.lit(as_of_date), value).cast("double")
    if sql_type == "string":
        return value
    return value.cast("double")


def read_features(spark: SparkSession, lakehouse_dir: str, as_of_date: dt.date) -> DataFrame:
    """Read the ``customer_features`` rows of one date.

    Raises:
        FileNotFoundError: no stage has written that date (``features`` writes ``as_of_date``,
            ``training_features`` the training cutoff).
    """
    features_df = tables.read_table(spark, tables.CUSTOMER_FEATURES, lakehouse_dir).where(
        F.col(AS_OF_DATE) == F.lit(as_of_date)
    )
    if features_df.isEmpty():
        raise FileNotFoundError(f"no customer_features for {as_of_date}: run the features stage first "
                                "(training_features for the training cutoff)")
    return features_df

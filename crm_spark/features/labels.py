"""Labels, from the horizon after the training cutoff (churn, next-horizon spend) or from the
customer source's label column, and the customer-level train/validation/test split."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.dates import start_of
from crm_spark.errors import StageSkipped
from crm_spark.features.customer import buyers, completed_before, read_features
from crm_spark.schemas import CUSTOMER_KEY, LABEL, ORDER_TS, QUANTITY, SPLIT, TEST, TRAIN, UNIT_PRICE, VALIDATION

# Where labels come from once ``train.label: auto`` is resolved: the purchase horizon or the customers' label column.
HORIZON, COLUMN = "horizon", "column"


def in_horizon(orders_df: DataFrame, cutoff: dt.date, horizon_days: int) -> DataFrame:
    """Return the completed order lines of known customers in ``[cutoff, cutoff + horizon_days)``."""
    return completed_before(orders_df, cutoff + dt.timedelta(days=horizon_days)).where(
        F.col(ORDER_TS) >= start_of(cutoff))


def with_churn_label(features_df: DataFrame, orders_df: DataFrame, cutoff: dt.date, horizon_days: int) -> DataFrame:
    """Add ``label``: 1.0 (churned) for customers without a completed purchase in the horizon, else 0.0.

    Args:
        features_df: features as of ``cutoff``, usually of the customers who had bought
            before it (:func:`~crm_spark.features.customer.buyers`).
        orders_df: silver order lines.
        cutoff: the training cutoff; features saw only events before it.
        horizon_days: length of the label window starting at ``cutoff``.
    """
    bought = in_horizon(orders_df, cutoff, horizon_days).select(CUSTOMER_KEY).distinct().withColumn(
        "_bought", F.lit(True))
    return (
        features_df.join(bought, CUSTOMER_KEY, "left")
        .withColumn(LABEL, F.when(F.col("_bought"), F.lit(0.0)).otherwise(F.lit(1.0)))
        .drop("_bought")
    )


def with_spend_label(features_df: DataFrame, orders_df: DataFrame, cutoff: dt.date, horizon_days: int) -> DataFrame:
    """Add ``label``: the customer's completed spend in ``[cutoff, cutoff + horizon_days)``, 0.0 without any.

    The arguments are those of :func:`with_churn_label`.
    """
    spend = in_horizon(orders_df, cutoff, horizon_days).groupBy(CUSTOMER_KEY).agg(
        F.sum(F.col(QUANTITY) * F.col(UNIT_PRICE)).alias("_spend"))
    return (
        features_df
        .join(spend, CUSTOMER_KEY, "left")
        .withColumn(LABEL, F.coalesce(F.col("_spend"), F.lit(0.0)).cast("double"))
        .drop("_spend")
    )


def with_split(df: DataFrame, validation_share: float, test_share: float, seed: int) -> DataFrame:
    """Assign each customer to train, validation or test by a hash of its key.

    The assignment depends only on the key and the seed, so a customer stays in the
    same split across runs and stages.
    """
    u = F.pmod(F.xxhash64(F.lit(seed), F.col(CUSTOMER_KEY)), F.lit(1_000_000)) / F.lit(1_000_000.0)
    return df.withColumn(
        SPLIT,
        F.when(u < test_share, F.lit(TEST))
        .when(u < test_share + validation_share, F.lit(VALIDATION))
        .otherwise(F.lit(TRAIN)),
    )


def require_two_classes(train_df: DataFrame) -> None:
    """Check that the training customers carry both label values.

    Raises:
        StageSkipped: every training customer has the same label (or none has one).
    """
    classes = [row[0] for row in train_df.select(LABEL).distinct().limit(2).collect()]
    if len(classes) < 2:
        found = f"every one is {classes[0]:g}" if classes else "there are none"
        raise StageSkipped(f"the label needs two classes among the training customers, but {found}")


def label_source(spark: SparkSession, config: Config) -> str:
    """Return where labels come from: ``column`` or ``horizon`` (``train.label``, resolving ``auto``).

    ``auto`` takes the column when any silver customer carries a label.
    """
    if config.train.label != "auto":
        return config.train.label
    customers = tables.read_table(spark, tables.CUSTOMERS, config.paths.lakehouse_dir)
    return COLUMN if not customers.where(F.col(LABEL).isNotNull()).isEmpty() else HORIZON


def features_date(source: str, config: Config) -> dt.date:
    """Return the date of the features the labels go with: the training cutoff for the
    horizon label, ``as_of_date`` for a label column (it describes the customer now)."""
    return config.training_cutoff if source == HORIZON else config.as_of_date


def labelled_customers(spark: SparkSession, config: Config, source: str | None = None) -> DataFrame:
    """Return customer features with ``label`` and ``split``.

    With the horizon label: features as of the training cutoff of customers who had
    bought before it, labelled churned when they did not buy in the horizon. With a
    label column: features as of ``as_of_date`` of customers whose label is set.
    ``source`` is :func:`label_source`'s answer when the caller already has it.

    Raises:
        FileNotFoundError: the features or orders table is missing.
        StageSkipped: there is nothing to label (no orders, no label column).
    """
    lake = config.paths.lakehouse_dir
    source = source or label_source(spark, config)
    features_df = read_features(spark, lake, features_date(source, config))
    if source == COLUMN:
        labels = tables.read_table(spark, tables.CUSTOMERS, lake).where(F.col(LABEL).isNotNull())
        labelled = features_df.join(labels.select(CUSTOMER_KEY, LABEL), CUSTOMER_KEY)
        if labelled.isEmpty():
            raise StageSkipped("train.label is column but no customer carries a label")
    else:
        orders_df = tables.read_table(spark, tables.ORDERS, lake)
        if orders_df.isEmpty():
            raise StageSkipped("no order lines and no label column: churn labels need purchase history")
        labelled = features_df.transform(buyers).transform(
            with_churn_label, orders_df, config.training_cutoff, config.churn_horizon_days)
    return labelled.transform(with_split, config.train.validation_share, config.train.test_share, config.train.seed)

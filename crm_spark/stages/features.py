"""Features: silver -> ``gold.customer_features``, as of ``as_of_date`` (``features``) and as of
the training cutoff (``training_features``, which only fitting reads)."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.errors import StageSkipped
from crm_spark.features.customer import customer_features
from crm_spark.features.labels import HORIZON, label_source
from crm_spark.models.lifetime import with_purchase_summary
from crm_spark.schemas import CATEGORY, RUN_ID


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Write the features as of ``as_of_date``, which scoring, serving and campaigns read.

    Returns:
        Feature rows written, keyed by table and date.
    """
    return _write(spark, config, run_id, config.as_of_date)


def run_training(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Write the features as of the training cutoff, which the horizon label's fitting reads
    (feature selection, churn and customer value models).

    Returns:
        Feature rows written, keyed by table and date.

    Raises:
        StageSkipped: the labels are the export's own column, learnt from the features as of
            ``as_of_date``: no model reads the cutoff's.
    """
    if label_source(spark, config) != HORIZON:
        raise StageSkipped("the labels are a column of the customers: fitting reads the features as of "
                           "as_of_date, not the training cutoff")
    return _write(spark, config, run_id, config.training_cutoff)


def _write(spark: SparkSession, config: Config, run_id: str, date: dt.date) -> dict[str, int]:
    """Write the features as of ``date``, with the purchase summaries and BG/NBD's probability alive
    fitted on them (:func:`~crm_spark.models.lifetime.with_purchase_summary`)."""
    lake = config.paths.lakehouse_dir
    silver = {t.name: tables.read_table(spark, t, lake)
              for t in (tables.CUSTOMERS, tables.ORDERS, tables.RATINGS, tables.PRODUCTS)}
    categories = sorted(r[0] for r in silver["products"].select(CATEGORY).distinct().collect())
    features_df = customer_features(
        silver["customers"], silver["orders"], silver["ratings"], silver["products"], date, categories,
        config.attribute_columns,
    ).transform(with_purchase_summary, silver["orders"], date, config.train).withColumn(RUN_ID, F.lit(run_id))
    written = tables.write_table(features_df, tables.CUSTOMER_FEATURES, lake, date)
    return {f"{tables.CUSTOMER_FEATURES.qualified}@{date}": written}

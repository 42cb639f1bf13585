"""Features: silver -> ``gold.customer_features`` as of ``as_of_date`` and as of the training cutoff."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.features.customer import customer_features
from crm_spark.models.lifetime import with_p_alive
from crm_spark.schemas import CATEGORY, RUN_ID


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Write features as of ``as_of_date`` and as of the training cutoff, with BG/NBD's
    probability alive fitted on the purchases before each date.

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
            silver["customers"], silver["orders"], silver["ratings"], silver["products"], date, categories,
            config.attribute_columns,
        ).transform(with_p_alive, silver["orders"], date, config.train).withColumn(RUN_ID, F.lit(run_id))
        counts[f"{tables.CUSTOMER_FEATURES.qualified}@{date}"] = tables.write_table(
            features_df, tables.CUSTOMER_FEATURES, lake, date
        )
    return counts

"""Prepare: bronze -> silver (clean, standardize, de-duplicate, count quality rules)."""

from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.prepare import clean, dedup
from crm_spark.schemas import CUSTOMER_ID, CUSTOMER_KEY

log = logging.getLogger(__name__)


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Write the silver tables from the bronze ones.

    Args:
        spark: the session.
        config: run configuration.
        run_id: the run's id (unused by the transforms; kept for a uniform signature).

    Returns:
        Rows written per silver table and the count of each cleaning rule's hits.
    """
    lake = config.paths.lakehouse_dir
    bronze = {name: tables.read_table(spark, table, lake) for name, table in tables.BRONZE.items()}
    customers = clean.with_clean_customers(bronze["customers"], config.as_of_date).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    counts: dict[str, int] = {}
    rule_hits = customers.agg(
        *[F.sum(F.col(flag).cast("int")).alias(flag) for flag in dedup.FLAGS]
    ).first().asDict()
    counts.update({f"rule.{name}": int(value or 0) for name, value in rule_hits.items()})

    vertices = customers.select(F.col(CUSTOMER_ID).alias("id")).distinct()
    components = dedup.connected_components(vertices, dedup.match_edges(customers))
    xref_df = dedup.xref(components)
    counts[tables.CUSTOMER_XREF.qualified] = tables.write_table(xref_df, tables.CUSTOMER_XREF, lake)
    xref_df = tables.read_table(spark, tables.CUSTOMER_XREF, lake)
    counts[tables.CUSTOMERS.qualified] = tables.write_table(
        dedup.golden_records(customers, xref_df), tables.CUSTOMERS, lake
    )
    customers.unpersist()

    counts[tables.PRODUCTS.qualified] = tables.write_table(
        clean.with_clean_products(bronze["products"]), tables.PRODUCTS, lake
    )
    orders = clean.with_customer_key(clean.with_clean_orders(bronze["orders"]), xref_df)
    counts[tables.ORDERS.qualified] = tables.write_table(orders, tables.ORDERS, lake)
    ratings = clean.with_latest_rating(clean.with_customer_key(bronze["ratings"], xref_df).drop("_source_file"))
    counts[tables.RATINGS.qualified] = tables.write_table(ratings, tables.RATINGS, lake)

    silver_orders = tables.read_table(spark, tables.ORDERS, lake)
    counts["rule.order_unknown_customer"] = silver_orders.where(F.col(CUSTOMER_KEY).isNull()).count()
    for name, value in sorted(counts.items()):
        log.info("prepare %s = %d", name, value)
    return counts

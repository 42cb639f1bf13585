"""Prepare: bronze -> silver (clean, standardize, resolve entities, report quality)."""

from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import privacy, tables
from crm_spark.config import Config
from crm_spark.ingest import empty_bronze
from crm_spark.prepare import clean, dedup, quality
from crm_spark.schemas import BIRTH_DATE, BRONZE_SCHEMAS, CUSTOMER_ID, CUSTOMER_KEY

log = logging.getLogger(__name__)


def bronze_frames(spark: SparkSession, config: Config) -> dict[str, DataFrame]:
    """Return the bronze table of every configured source and an empty frame for the others."""
    lake = config.paths.lakehouse_dir
    return {
        name: tables.read_table(spark, table, lake) if name in config.sources else empty_bronze(spark, name)
        for name, table in tables.BRONZE.items()
    }


def customers_from_activity(orders_df: DataFrame, ratings_df: DataFrame) -> DataFrame:
    """Return bronze-shaped customer rows for every customer id seen in orders or ratings.

    Used when no customer source is configured: each id becomes a customer with
    nothing but its id.
    """
    ids = orders_df.select(CUSTOMER_ID).unionByName(ratings_df.select(CUSTOMER_ID)).distinct()
    schema = BRONZE_SCHEMAS["customers"]
    return ids.select(*[F.col(f.name) if f.name == CUSTOMER_ID else F.lit(None).cast(f.dataType).alias(f.name)
                        for f in schema.fields])


def resolve(customers_df: DataFrame, config: Config) -> tuple[DataFrame, dict[str, int]]:
    """Cluster cleaned customer records into persons: exact edges plus blocked fuzzy edges.

    Returns:
        The cross-reference (``customer_id``, ``customer_key``, ``cluster_id``) and
        counts: ``dedup.exact_edges``, ``dedup.blocks``, ``dedup.blocks_skipped``,
        ``dedup.comparisons`` and ``dedup.fuzzy_edges``.
    """
    rules = config.prepare
    counts: dict[str, int] = {}
    exact = dedup.match_edges(customers_df).persist(StorageLevel.MEMORY_AND_DISK)
    counts["dedup.exact_edges"] = exact.count()
    edges, cached = exact, [exact]
    if rules.fuzzy_matching:
        pairs, sizes = dedup.candidate_pairs(dedup.blocks(customers_df), rules.max_block_size)
        pairs = pairs.persist(StorageLevel.MEMORY_AND_DISK)
        block_stats = sizes.agg(F.count(F.lit(1)).alias("blocks"),
                                F.count(F.when(F.col("size") > rules.max_block_size, 1)).alias("skipped")).first()
        fuzzy = dedup.fuzzy_edges(customers_df, pairs, rules).select("src", "dst").persist(
            StorageLevel.MEMORY_AND_DISK)
        counts.update({"dedup.blocks": block_stats["blocks"], "dedup.blocks_skipped": block_stats["skipped"],
                       "dedup.comparisons": pairs.count(), "dedup.fuzzy_edges": fuzzy.count()})
        if block_stats["skipped"]:
            log.warning("entity resolution skipped %d blocks larger than %d records", block_stats["skipped"],
                        rules.max_block_size)
        edges, cached = exact.unionByName(fuzzy), [exact, pairs, fuzzy]
    vertices = customers_df.select(F.col(CUSTOMER_ID).alias("id")).distinct()
    components = dedup.connected_components(vertices, edges)  # checkpointed: no longer needs the edges
    for frame in cached:
        frame.unpersist()
    keyed = privacy.keyed_hash(privacy.load_secret(config.privacy))
    return dedup.xref(components, keyed), counts


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Write the silver tables and the run's ``data_quality`` rows from the bronze ones.

    Args:
        spark: the session.
        config: run configuration (``sources``, ``prepare``, ``quality``).
        run_id: the run's id, stamped on the quality rows.

    Returns:
        Rows written per silver table, entity-resolution counts and the count of each
        cleaning rule's hits (``rule.<name>``).

    Raises:
        quality.QualityError: an expectation failed and ``quality.on_failure`` is ``fail``.
    """
    lake = config.paths.lakehouse_dir
    bronze = bronze_frames(spark, config)
    if "customers" not in config.sources:
        log.info("no customer source configured: customers are the ids seen in orders and ratings")
        bronze["customers"] = customers_from_activity(bronze["orders"], bronze["ratings"])
    customer_source = config.sources.get("customers")
    birth_formats = tuple(customer_source.formats.get(BIRTH_DATE, ())) if customer_source else ()
    customers = clean.with_clean_customers(bronze["customers"], config.as_of_date, config.prepare,
                                           birth_formats).persist(StorageLevel.MEMORY_AND_DISK)
    counts: dict[str, int] = {}
    rule_hits = customers.agg(*[F.sum(F.col(f).cast("int")).alias(f) for f in clean.CUSTOMER_FLAGS]).first()
    counts.update({f"rule.{name}": int(value or 0) for name, value in rule_hits.asDict().items()})

    xref_df, resolution = resolve(customers, config)
    counts.update(resolution)
    counts[tables.CUSTOMER_XREF.qualified] = tables.write_table(xref_df, tables.CUSTOMER_XREF, lake)
    xref_df = tables.read_table(spark, tables.CUSTOMER_XREF, lake)
    counts[tables.CUSTOMERS.qualified] = tables.write_table(
        dedup.golden_records(customers, xref_df), tables.CUSTOMERS, lake
    )

    counts[tables.PRODUCTS.qualified] = tables.write_table(
        clean.with_clean_products(bronze["products"]), tables.PRODUCTS, lake
    )
    orders = clean.with_customer_key(clean.with_clean_orders(bronze["orders"]), xref_df)
    counts[tables.ORDERS.qualified] = tables.write_table(orders, tables.ORDERS, lake)
    ratings = clean.with_latest_rating(clean.with_customer_key(bronze["ratings"], xref_df).drop("_source_file"))
    counts[tables.RATINGS.qualified] = tables.write_table(ratings, tables.RATINGS, lake)

    silver_orders = tables.read_table(spark, tables.ORDERS, lake)
    order_stats = silver_orders.agg(F.count(F.when(F.col(CUSTOMER_KEY).isNull(), 1)).alias("unknown"),
                                    F.count(F.when(F.col("is_return_quantity"), 1)).alias("returns")).first()
    counts["rule.order_unknown_customer"] = order_stats["unknown"]
    counts["rule.order_negative_quantity_as_return"] = order_stats["returns"]

    rows: list[quality.Row] = []
    for name in config.sources:
        rows += quality.profile(bronze[name], name)
    bronze_rows = {dataset: int(value) for dataset, _, metric, value, _ in rows if metric == "rows"}
    counts["rule.order_duplicate_line"] = bronze_rows.get("orders", 0) - counts[tables.ORDERS.qualified]
    counts["rule.rating_superseded"] = bronze_rows.get("ratings", 0) - counts[tables.RATINGS.qualified]
    if "customers" in config.sources:
        rows += quality.validity(bronze["customers"], customers, "customers")
    rows += quality.quarantine_counts(tables.read_table(spark, tables.QUARANTINE, lake))
    rows += quality.rule_counts(counts)
    counts[tables.DATA_QUALITY.qualified] = tables.write_table(
        quality.report(spark, config, run_id, rows), tables.DATA_QUALITY, lake, run_id)
    customers.unpersist()
    for name, value in sorted(counts.items()):
        log.info("prepare %s = %d", name, value)
    quality.check(rows, config)
    return counts


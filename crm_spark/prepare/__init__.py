"""Prepare: bronze -> silver (clean, standardize, resolve entities, report quality)."""

from __future__ import annotations

import logging

from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import ingest, privacy, tables
from crm_spark.config import Config
from crm_spark.prepare import clean, dedup, quality
from crm_spark.schemas import (
    BIRTH_DATE,
    BRONZE_SCHEMAS,
    CUSTOMER_ID,
    CUSTOMER_KEY,
    ORDER_LINE_ID,
    ORDER_TS,
    PRODUCT_ID,
    RATED_TS,
    RATING,
    SOURCE_FILE,
)

log = logging.getLogger(__name__)


def bronze_frames(spark: SparkSession, config: Config) -> dict[str, DataFrame]:
    """Return the bronze table of every configured source and an empty frame for the others."""
    lake = config.paths.lakehouse_dir
    return {
        name: tables.read_table(spark, table, lake) if name in config.sources else ingest.empty_bronze(spark, name)
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


def rebuild_silver(spark: SparkSession, config: Config, bronze: dict[str, DataFrame], customers: DataFrame,
                   xref_df: DataFrame) -> dict[str, int]:
    """Overwrite every silver table from all of bronze.

    Returns:
        Rows written per silver table.
    """
    lake = config.paths.lakehouse_dir
    counts = {tables.CUSTOMER_XREF.qualified: tables.write_table(xref_df, tables.CUSTOMER_XREF, lake)}
    xref_df = tables.read_table(spark, tables.CUSTOMER_XREF, lake)
    counts[tables.CUSTOMERS.qualified] = tables.write_table(
        dedup.golden_records(customers, xref_df), tables.CUSTOMERS, lake)
    counts[tables.PRODUCTS.qualified] = tables.write_table(
        clean.with_clean_products(bronze["products"]), tables.PRODUCTS, lake)
    orders = clean.with_customer_key(clean.with_clean_orders(bronze["orders"]), xref_df)
    counts[tables.ORDERS.qualified] = tables.write_table(orders, tables.ORDERS, lake)
    ratings = clean.with_latest_rating(clean.with_customer_key(bronze["ratings"], xref_df).drop(SOURCE_FILE))
    counts[tables.RATINGS.qualified] = tables.write_table(ratings, tables.RATINGS, lake)
    return counts


def merge_silver(spark: SparkSession, config: Config, bronze: dict[str, DataFrame], customers: DataFrame,
                 xref_df: DataFrame, pending: list[str]) -> dict[str, int]:
    """Upsert silver from the bronze rows of ``pending`` files with Delta MERGE.

    Customers are resolved over all of bronze (a new record may join an existing
    person), then merged by ``customer_id`` (cross-reference) and ``customer_key``
    (golden records); ids whose key changed are the *re-keyed* ids. Orders are merged
    by ``order_line_id`` (the later ``order_ts`` wins) from the pending rows and every
    row of a re-keyed id; ratings by customer and product (the later rating wins)
    after the rows of re-keyed persons, and rows of unknown customers, are taken out
    and derived again.

    Returns:
        Rows per silver table after the merge and ``merge.<table>.<inserted|updated|deleted>``.
    """
    lake = config.paths.lakehouse_dir
    counts: dict[str, int] = {}

    def merged(table: tables.Table, df: DataFrame, keys: tuple[str, ...], **options) -> None:
        result = tables.merge_table(df, table, lake, keys, **options)
        counts.update({f"merge.{table.qualified}.{k}": v for k, v in result.items()})

    old_xref = tables.read_table(spark, tables.CUSTOMER_XREF, lake).select(
        CUSTOMER_ID, F.col(CUSTOMER_KEY).alias("_old_key"))
    xref_df = xref_df.persist(StorageLevel.MEMORY_AND_DISK)
    # Checkpointed, not cached: a cached frame would be recomputed from the merged table.
    rekeyed = (xref_df.join(old_xref, CUSTOMER_ID, "left")
               .where(~F.col(CUSTOMER_KEY).eqNullSafe(F.col("_old_key")))
               .select(CUSTOMER_ID, CUSTOMER_KEY, "_old_key")).checkpoint(eager=True)
    counts["merge.rekeyed_ids"] = rekeyed.count()
    merged(tables.CUSTOMER_XREF, xref_df, (CUSTOMER_ID,), delete_missing=True)
    merged(tables.CUSTOMERS, dedup.golden_records(customers, xref_df), (CUSTOMER_KEY,), delete_missing=True)
    merged(tables.PRODUCTS, clean.with_clean_products(bronze["products"]), (PRODUCT_ID,), delete_missing=True)

    new_rows = spark.createDataFrame([(p,) for p in pending], f"{SOURCE_FILE} string")
    rekeyed_ids = F.broadcast(rekeyed.select(CUSTOMER_ID))
    orders = bronze["orders"].join(F.broadcast(new_rows), SOURCE_FILE, "left_semi").unionByName(
        bronze["orders"].join(rekeyed_ids, CUSTOMER_ID, "left_semi"))
    merged(tables.ORDERS, clean.with_customer_key(clean.with_clean_orders(orders.distinct()), xref_df),
           (ORDER_LINE_ID,), newer=f"s.{ORDER_TS} >= t.{ORDER_TS}")

    # Persons whose key changed: their rows (and rows under no key) are taken out and derived again.
    persons = rekeyed.select(F.col(CUSTOMER_KEY).alias("_key")).unionByName(
        rekeyed.select(F.col("_old_key").alias("_key"))).where(F.col("_key").isNotNull()).distinct()
    ratings = bronze["ratings"].join(F.broadcast(new_rows), SOURCE_FILE, "left_semi")
    if counts["merge.rekeyed_ids"]:
        silver_ratings = DeltaTable.forPath(spark, tables.RATINGS.path(lake))
        silver_ratings.alias("t").merge(F.broadcast(persons).alias("s"), f"t.{CUSTOMER_KEY} = s._key") \
            .whenMatchedDelete().execute()
        silver_ratings.delete(F.col(CUSTOMER_KEY).isNull())
        person_ids = xref_df.select(CUSTOMER_ID, F.col(CUSTOMER_KEY).alias("_key")).join(
            F.broadcast(persons), "_key", "left_semi").select(CUSTOMER_ID)
        ratings = ratings.unionByName(bronze["ratings"].join(F.broadcast(person_ids), CUSTOMER_ID, "left_semi")) \
            .unionByName(bronze["ratings"].join(xref_df.select(CUSTOMER_ID), CUSTOMER_ID, "left_anti"))
    later = (f"s.{RATED_TS} > t.{RATED_TS} OR (t.{RATED_TS} IS NULL AND s.{RATED_TS} IS NOT NULL) "
             f"OR (s.{RATED_TS} <=> t.{RATED_TS} AND s.{RATING} > t.{RATING})")
    merged(tables.RATINGS, clean.with_latest_rating(clean.with_customer_key(ratings.distinct(), xref_df)
                                                    .drop(SOURCE_FILE)), (CUSTOMER_KEY, PRODUCT_ID), newer=later)
    for table in (tables.CUSTOMER_XREF, tables.CUSTOMERS, tables.PRODUCTS, tables.ORDERS, tables.RATINGS):
        counts[table.qualified] = tables.read_table(spark, table, lake).count()
    xref_df.unpersist()
    return counts


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Write the silver tables and the run's ``data_quality`` rows from the bronze ones.

    With ``ingest.incremental`` and silver already built, the rows of files ingested
    since the last run are merged in (:func:`merge_silver`); otherwise silver is
    rebuilt from all of bronze. Either way the files are then marked prepared.

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
    incremental = config.ingest.incremental and tables.table_exists(spark, tables.CUSTOMER_XREF, lake)
    pending = [r[SOURCE_FILE] for r in ingest.pending_files(spark, lake).select(SOURCE_FILE).collect()] \
        if tables.table_exists(spark, tables.INGESTED_FILES, lake) else []
    if incremental:
        counts.update(merge_silver(spark, config, bronze, customers, xref_df, pending))
    else:
        counts.update(rebuild_silver(spark, config, bronze, customers, xref_df))
    if pending:
        ingest.mark_prepared(spark, lake, pending, run_id)

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


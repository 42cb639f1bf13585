"""Prepare: bronze -> silver (clean, standardize, resolve entities, report quality)."""

from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import privacy, tables
from crm_spark.config import Config
from crm_spark.frames import persisted
from crm_spark.ingest import ledger
from crm_spark.prepare import quality
from crm_spark.prepare.clean import MAX_AGE, MIN_AGE, blank_to_null, checked_on, customer_records
from crm_spark.prepare.dedup import resolve, resolve_changed
from crm_spark.prepare.silver import (
    bronze_frames,
    cleaned_records,
    customers_from_activity,
    merge_silver,
    rebuild_silver,
    rows_of_files,
)
from crm_spark.schemas import AGE, CUSTOMER_FLAGS, CUSTOMER_ID, CUSTOMER_KEY

log = logging.getLogger(__name__)


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Write the silver tables and the run's ``data_quality`` rows from the bronze ones.

    With ``ingest.incremental`` and silver already built, only the persons that records of
    the new files can reach are resolved again (:func:`~crm_spark.prepare.dedup.resolve_changed`)
    and the rows of files ingested since the last run are merged in
    (:func:`~crm_spark.prepare.silver.merge_silver`); otherwise silver is rebuilt from all of
    bronze. Either way the files are then marked prepared. Customer rows are cleaned once:
    ``silver.customer_records`` keeps them cleaned up to the checks of a date, and an incremental
    run cleans only the rows of the new files (:func:`~crm_spark.prepare.silver.cleaned_records`).

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
    incremental = config.ingest.incremental and tables.table_exists(spark, tables.CUSTOMER_XREF, lake)
    pending = ledger.pending_files(spark, lake)
    counts: dict[str, int] = {}
    if "customers" in config.sources:
        records, counts[tables.CUSTOMER_RECORDS.qualified] = cleaned_records(
            spark, config, bronze["customers"], pending.get("customers", []) if incremental else None)
    else:
        log.info("no customer source configured: customers are the ids seen in orders and ratings")
        bronze["customers"] = customers_from_activity(bronze["orders"], bronze["ratings"])
        records = customer_records(bronze["customers"], config.prepare, attributes=config.attribute_columns)
    cleaned = checked_on(records, config.as_of_date, config.attribute_columns)
    with persisted(cleaned, StorageLevel.MEMORY_AND_DISK) as customers:
        rule_hits = customers.agg(*[F.sum(F.col(f).cast("int")).alias(f) for f in CUSTOMER_FLAGS]).first()
        counts.update({f"rule.{name}": int(value or 0) for name, value in rule_hits.asDict().items()})
        keyed_hash = privacy.keyed_hash(privacy.load_secret(config.privacy))
        if incremental:
            xref_df, resolution, again = resolve_changed(
                customers, tables.read_table(spark, tables.CUSTOMER_XREF, lake),
                _changed_ids(config, bronze, customers, pending), config.prepare, keyed_hash)
            counts.update(resolution)
            counts.update(merge_silver(spark, config, bronze, customers, xref_df, pending, again))
        else:
            xref_df, resolution = resolve(customers, config.prepare, keyed_hash)
            counts.update(resolution)
            counts.update(rebuild_silver(spark, config, bronze, customers, xref_df))
        if pending:
            ledger.mark_prepared(spark, lake, [path for paths in pending.values() for path in paths], run_id)
        counts.update(_order_rule_hits(tables.read_table(spark, tables.ORDERS, lake)))
        measures = _measures(spark, config, bronze, customers, pending, counts)
        counts[tables.DATA_QUALITY.qualified] = tables.write_table(
            quality.report(spark, config, run_id, measures), tables.DATA_QUALITY, lake, run_id)
    for name, value in sorted(counts.items()):
        log.info("prepare %s = %d", name, value)
    quality.check(measures, config)
    return counts


def _changed_ids(config: Config, bronze: dict[str, DataFrame], customers: DataFrame,
                 pending: dict[str, list[str]]) -> DataFrame:
    """Return ``customer_id`` of the records an incremental resolution must compare again: those of
    the pending files (of orders and ratings when customers come from them), and those whose
    cleaned birth date may have changed with ``as_of_date`` (invalid, or at an end of the age range)."""
    sources = ["customers"] if "customers" in config.sources else ["orders", "ratings"]
    ids = customers.where(F.col("birth_date_invalid") | F.col(AGE).isin(MIN_AGE, MAX_AGE)).select(CUSTOMER_ID)
    for source in sources:
        if pending.get(source):
            ids = ids.unionByName(bronze[source].transform(rows_of_files, pending[source]).select(
                blank_to_null(F.col(CUSTOMER_ID)).alias(CUSTOMER_ID)))  # as clean_customers spells ids
    return ids.where(F.col(CUSTOMER_ID).isNotNull())


def _order_rule_hits(orders_df: DataFrame) -> dict[str, int]:
    """Return the hits of the order rules seen in silver: lines of unknown customers and negative quantities."""
    stats = orders_df.agg(F.count(F.when(F.col(CUSTOMER_KEY).isNull(), 1)).alias("unknown"),
                          F.count(F.when(F.col("is_return_quantity"), 1)).alias("returns")).first()
    return {"rule.order_unknown_customer": stats["unknown"], "rule.order_negative_quantity_as_return": stats["returns"]}


def _measures(spark: SparkSession, config: Config, bronze: dict[str, DataFrame], customers: DataFrame,
              pending: dict[str, list[str]], counts: dict[str, int]) -> list[quality.Measure]:
    """Return the data-quality measures of the run; add the duplicate-line and superseded-rating hits to ``counts``."""
    sources = {name: bronze[name] for name in config.sources}
    measures = quality.source_profile(spark, config.paths.lakehouse_dir, sources, pending)
    bronze_rows = {m.dataset: int(m.value) for m in measures if m.metric == "rows"}
    counts["rule.order_duplicate_line"] = bronze_rows.get("orders", 0) - counts[tables.ORDERS.qualified]
    counts["rule.rating_superseded"] = bronze_rows.get("ratings", 0) - counts[tables.RATINGS.qualified]
    if "customers" in config.sources:
        measures += quality.validity(bronze["customers"], customers, "customers")
        measures += quality.attribute_validity(bronze["customers"], config.attribute_columns, "customers")
    measures += quality.quarantine_counts(tables.read_table(spark, tables.QUARANTINE, config.paths.lakehouse_dir))
    return measures + quality.rule_counts(counts)

"""Ingest: raw sources -> typed bronze tables, with every rejected row in ``quarantine``.

Each source is described in config (:class:`crm_spark.config.SourceConfig`): path,
format, column mapping onto canonical names, date formats and constants. Text formats
are read line by line, so a rejected row keeps its original text. Every row becomes
either a typed bronze row or a quarantine row with a reason code and a message
(:mod:`crm_spark.ingest.canonical`); the run stops if rows read differ from rows
accepted plus rows quarantined.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Callable

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from crm_spark import privacy, tables
from crm_spark.config import Config, SourceConfig
from crm_spark.frames import persisted
from crm_spark.ingest import ledger
from crm_spark.ingest.canonical import (
    Attribute,
    IngestError,
    SourceError,
    accepted_rows,
    declared_attributes,
    personal_attributes,
    quarantine_rows,
    resolved_attributes,
    typed_columns,
)
from crm_spark.ingest.erased import erased_hashes, erased_ids
from crm_spark.ingest.parse import REASON
from crm_spark.ingest.sources import read_source, source_files, source_path
from crm_spark.schemas import CUSTOMER_ID, QUARANTINE_SCHEMA, REQUIRED_COLUMNS, SOURCE_FILE, bronze_table_schema

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Erased:
    """The keyed hashes of every erased source id, and the keyed hash that finds them among a source's ids."""

    hashes: DataFrame
    keyed_hash: Callable[[Column], Column]


@dataclass
class Ingested:
    """What one run read: row counts, quarantined rows, and the files read per source."""

    erased: Erased | None
    counts: dict[str, int] = field(default_factory=dict)
    quarantined: list[DataFrame] = field(default_factory=list)
    files: list[Row] = field(default_factory=list)
    sources_read: list[str] = field(default_factory=list)


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Ingest the new files of every configured source into bronze and quarantine.

    Only files not in ``bronze.ingested_files`` (or changed since) are read; their rows
    replace any earlier rows of the same files in bronze and quarantine, so a re-run,
    or a run after a crash, never duplicates rows. With ``ingest.incremental: false``
    every file is read and bronze is rebuilt. Rows of customers erased earlier
    (``gold.erasure_log``) are dropped before anything is written; rows read =
    accepted + quarantined + erased.

    Args:
        spark: the session.
        config: run configuration (``sources``, ``ingest``, ``paths``).
        run_id: the run's id, stamped on quarantine rows and on the files read.

    Returns:
        Row counts: ``<source>.files`` (files read), ``<source>.read``,
        ``bronze.<source>``, ``quarantine.<source>`` and, once anything was erased,
        ``erased.<source>``.

    Raises:
        IngestError: a source is unreadable, lacks a required column, or its rows do
            not reconcile.
    """
    hashes = erased_hashes(spark, config.paths.lakehouse_dir)
    ingested = Ingested(None if hashes is None else Erased(
        hashes, privacy.keyed_hash(privacy.load_secret(config.privacy))))
    # Checked rows stay persisted until the quarantine, written last, has taken its rows from them.
    with contextlib.ExitStack() as scope:
        for source, spec in config.sources.items():
            _ingest_source(spark, config, source, spec, run_id, ingested, scope)
        _write_quarantine(spark, config, ingested)
        ledger.record_files(spark, config, ingested.files, run_id)
    return ingested.counts


def _ingest_source(spark: SparkSession, config: Config, source: str, spec: SourceConfig, run_id: str,
                   ingested: Ingested, scope: contextlib.ExitStack) -> None:
    """Read one source's new files into its bronze table; note counts, quarantine rows and files in ``ingested``."""
    lake, counts = config.paths.lakehouse_dir, ingested.counts
    path = source_path(config.paths.raw_dir, spec)
    fresh, seen_before = ledger.new_files(spark, config, source, source_files(spark, source, spec, path))
    paths = sorted(row[SOURCE_FILE] for row in fresh)  # a stable order, so reads are reproducible
    ingested.files += [Row(source=source, **row.asDict()) for row in fresh]
    counts[f"{source}.files"] = len(paths)
    log.info("source %s: %d new or changed files at %s", source, len(paths), path)
    canonical = read_source(spark, source, spec, path if spec.format == "delta" else paths) if paths else None
    if canonical is None:
        if paths:
            log.warning("source %s at %s is empty (no lines)", source, path)
        counts.update({f"{source}.read": 0, f"bronze.{source}": 0, f"quarantine.{source}": 0})
        if not tables.table_exists(spark, tables.BRONZE[source], lake):
            tables.write_table(spark.createDataFrame([], bronze_table_schema(source)), tables.BRONZE[source], lake)
        return
    ingested.sources_read.append(source)
    erased = 0
    if ingested.erased is not None and CUSTOMER_ID in canonical.columns:
        canonical, erased = _without_erased(canonical, ingested.erased, scope)
        counts[f"erased.{source}"] = erased
        log.info("source %s: %d rows of erased customers dropped", source, erased)
    attributes = _attributes(spark, config, source, spec, canonical)
    checked = scope.enter_context(persisted(
        typed_columns(canonical, source, dict(spec.formats), config.ingest, attributes), StorageLevel.MEMORY_AND_DISK))
    required = REQUIRED_COLUMNS[source]
    stats = checked.groupBy(REASON).agg(F.count(F.lit(1)).alias("_n"), *[F.count(c).alias(c) for c in required])
    by_reason = {row[REASON]: row for row in stats.collect()}
    read = sum(row["_n"] for row in by_reason.values()) + erased
    if read == 0:
        log.warning("source %s at %s is empty (no data rows)", source, path)
    for column in required:
        if read and not sum(row[column] for row in by_reason.values()):
            raise SourceError(f"source '{source}' lacks required column '{column}': no row at {path} has it")
    accepted = tables.write_table(accepted_rows(checked), tables.BRONZE[source], lake,
                                  where=tables.in_files(paths) if seen_before else None)
    rejected = read - erased - (by_reason[None]["_n"] if None in by_reason else 0)
    if read != accepted + rejected + erased:
        raise IngestError(f"source '{source}': read {read} != accepted {accepted} + quarantined {rejected} "
                          f"+ erased {erased}")
    for reason, row in sorted((r, row) for r, row in by_reason.items() if r is not None):
        log.info("source %s: %d rows quarantined as %s", source, row["_n"], reason)
    counts.update({f"{source}.read": read, f"bronze.{source}": accepted, f"quarantine.{source}": rejected})
    ingested.quarantined.append(quarantine_rows(checked, source, run_id))


def _attributes(spark: SparkSession, config: Config, source: str, spec: SourceConfig, canonical: DataFrame
                ) -> list[Attribute]:
    """Return the source's attributes with their types resolved, refusing any whose values are personal data.

    Raises:
        SourceError: an attribute's values are mostly e-mail addresses or phone numbers (the
            message names the attribute, never a value).
    """
    declared = declared_attributes(spec)
    if not declared:
        return []
    personal = personal_attributes(canonical, declared)
    if personal:
        raise SourceError(f"sources.{source}.attributes.{personal[0]} holds e-mail addresses or phone numbers: "
                          "personal data stays out of features and gold tables; leave it out of the attributes")
    bronze = tables.BRONZE[source]
    existing = tables.read_table(spark, bronze, config.paths.lakehouse_dir).schema \
        if tables.table_exists(spark, bronze, config.paths.lakehouse_dir) else None
    attributes = resolved_attributes(canonical, declared, existing)
    log.info("source %s attributes: %s", source, ", ".join(f"{a.column} ({a.kind})" for a in attributes))
    return attributes


def _without_erased(canonical: DataFrame, erased: Erased, scope: contextlib.ExitStack) -> tuple[DataFrame, int]:
    """Return the rows not of erased customers, and how many rows were of erased customers."""
    erased_df = F.broadcast(scope.enter_context(persisted(erased_ids(canonical, erased.hashes, erased.keyed_hash))))
    return (canonical.join(erased_df, CUSTOMER_ID, "left_anti"),
            canonical.join(erased_df, CUSTOMER_ID, "left_semi").count())


def _write_quarantine(spark: SparkSession, config: Config, ingested: Ingested) -> None:
    """Replace the quarantine rows of the files read (all of them without ``ingest.incremental``).

    An incremental run that quarantined nothing, from files with no earlier quarantine rows,
    commits nothing (an empty write still costs a Delta commit).
    """
    lake, incremental = config.paths.lakehouse_dir, config.ingest.incremental
    union = spark.createDataFrame([], QUARANTINE_SCHEMA)
    for frame in ingested.quarantined:
        union = union.unionByName(frame)
    replaced = [row[SOURCE_FILE] for row in ingested.files if row["source"] in ingested.sources_read]
    where = tables.in_files(replaced) if incremental and replaced else None
    expected = sum(v for k, v in ingested.counts.items() if k.startswith("quarantine."))
    if incremental and not expected and tables.table_exists(spark, tables.QUARANTINE, lake) and (
            where is None or tables.read_table(spark, tables.QUARANTINE, lake).where(where).isEmpty()):
        return  # no row to add, and none of the files read has earlier rows to replace: no commit
    written = tables.write_table(union, tables.QUARANTINE, lake, where=where)
    if written != expected:
        raise IngestError(f"quarantine wrote {written} rows, expected {expected}")
    ingested.counts[tables.QUARANTINE.qualified] = written

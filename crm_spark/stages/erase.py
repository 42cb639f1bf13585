"""Right to erasure: remove every record of a person from every table, and keep them out.

A request names customer ids as they appear in the sources. Each id is resolved
through ``silver.customer_xref`` to its ``customer_key`` and from there to every linked
source id, so all duplicates of the person go. Rows are deleted from every bronze,
silver and gold table that holds those ids or keys (quarantine rows by their original
text), the touched tables are VACUUMed with the configured retention, and the request
is logged in ``gold.erasure_log`` without personal data: keyed hashes of the ids, the
time, the tables touched and the rows deleted. Ingest drops rows whose id hash is in
the log, so the person does not come back from raw files that still hold them. Campaign
exports are written again from the cleaned audiences, so no exported file keeps them.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from delta.tables import DeltaTable
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from crm_spark import privacy, tables
from crm_spark.campaigns import export
from crm_spark.config import Config
from crm_spark.frames import beside
from crm_spark.schemas import CUSTOMER_ID, CUSTOMER_KEY, EMAIL, ERASURE_LOG_SCHEMA

log = logging.getLogger(__name__)
# Tables erased at once: a DELETE, REORG or VACUUM spends most of its time on the driver (the
# transaction log, planning, small jobs), so the work of several tables overlaps even on two cores.
ERASE_THREADS = 4


class ErasureError(ValueError):
    """The request is empty or cannot be carried out."""


@dataclass
class ErasureResult:
    """What an erasure did, without personal data."""

    request_hash: str
    ids_requested: int
    records: int = 0
    keys: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)


def read_ids(ids: list[str], ids_file: str | None) -> list[str]:
    """Return the distinct, non-blank ids of a request (command line plus one id per file line)."""
    values = [v for item in ids for v in item.split(",")]
    if ids_file:
        with open(ids_file, encoding="utf-8") as handle:
            values += handle.read().splitlines()
    unique = sorted({v.strip() for v in values if v.strip()})
    if not unique:
        raise ErasureError("no customer ids given: pass --ids or --ids-file")
    return unique


def _mentions(raw: Column, tokens: list[str]) -> Column:
    """Return whether the text holds any token as a whole field (not inside a longer id)."""
    pattern = "|".join(re.escape(t) for t in tokens)
    return F.lower(raw).rlike(f"(^|[^a-z0-9_.@-])({pattern.lower()})($|[^a-z0-9_.@-])")


def run(spark: SparkSession, config: Config, ids: list[str], run_id: str) -> ErasureResult:
    """Erase the persons with source ids ``ids`` from every table and log the request.

    Args:
        spark: the session.
        config: run configuration (``paths.lakehouse_dir``, ``privacy``).
        ids: customer ids as they appear in the sources.
        run_id: the erasure's id in ``erasure_log``.

    Returns:
        Counts of ids, linked records and keys, and rows deleted per table.

    Raises:
        ErasureError: ``ids`` is empty.
    """
    if not ids:
        raise ErasureError("no customer ids given")
    lake = config.paths.lakehouse_dir
    secret = privacy.load_secret(config.privacy)
    result = ErasureResult(request_hash=privacy.id_hash(secret, "\n".join(sorted(ids))), ids_requested=len(ids))
    source_ids, keys = set(ids), set()
    if tables.table_exists(spark, tables.CUSTOMER_XREF, lake):
        xref = tables.read_table(spark, tables.CUSTOMER_XREF, lake)
        keys = {r[0] for r in xref.where(F.col(CUSTOMER_ID).isin(ids)).select(CUSTOMER_KEY).distinct().collect()}
        linked = xref.where(F.col(CUSTOMER_KEY).isin(list(keys))).select(CUSTOMER_ID).collect() if keys else []
        source_ids |= {r[0] for r in linked}
    result.records, result.keys = len(source_ids), len(keys)
    emails = _emails(spark, lake, source_ids, keys)
    hours = config.privacy.vacuum_retention_hours
    with tables.retention_allowed(spark, hours), ThreadPoolExecutor(ERASE_THREADS) as pool:
        erasing = {}
        for table in tables.ALL_TABLES:
            if table == tables.ERASURE_LOG or not tables.table_exists(spark, table, lake):
                continue
            condition = _condition(tables.read_table(spark, table, lake).columns, source_ids, keys, emails)
            if condition is not None:
                erasing[table] = beside(spark, pool, _erase_rows, spark, table.path(lake), condition, hours)
        deleted = {table.qualified: future.result() for table, future in erasing.items()}
    result.rows_deleted = {name: rows for name, rows in deleted.items() if rows}
    if tables.CAMPAIGN_AUDIENCES.qualified in result.rows_deleted:
        refreshed = export.refresh(spark, lake, config.paths.exports)
        log.info("campaign exports of %d dates written again without the erased customers", len(refreshed))
    _log_request(spark, config, run_id, result, [privacy.id_hash(secret, i) for i in sorted(source_ids)])
    log.info("erasure %s: %d ids, %d linked records, %d keys, %d rows deleted from %d tables", run_id,
             result.ids_requested, result.records, result.keys, sum(result.rows_deleted.values()),
             len(result.rows_deleted))
    return result


def _erase_rows(spark: SparkSession, path: str, condition: Column, hours: int) -> int:
    """Delete the rows matching ``condition`` from the table at ``path``; VACUUM it if any went.

    Returns:
        Rows deleted.
    """
    delta = DeltaTable.forPath(spark, path)
    delta.delete(condition)
    deleted = int((delta.history(1).select("operationMetrics").first()[0] or {}).get("numDeletedRows", 0))
    if deleted:
        tables.vacuum(spark, path, hours)
    return deleted


def _emails(spark: SparkSession, lake: str, source_ids: set[str], keys: set[str]) -> list[str]:
    """Return the normalized emails of the persons (to find their quarantined lines); kept in memory only."""
    found: set[str] = set()
    for table, column, values in ((tables.CUSTOMERS, CUSTOMER_KEY, keys),
                                  (tables.BRONZE["customers"], CUSTOMER_ID, source_ids)):
        if values and tables.table_exists(spark, table, lake):
            rows = tables.read_table(spark, table, lake).where(F.col(column).isin(list(values))).select(EMAIL)
            found |= {r[0].strip().lower() for r in rows.collect() if r[0] and r[0].strip()}
    return sorted(found)


def _condition(columns: list[str], source_ids: set[str], keys: set[str], emails: list[str]) -> Column | None:
    """Return the delete predicate for a table with ``columns``, or None if it holds no customer."""
    parts = []
    if CUSTOMER_ID in columns and source_ids:
        parts.append(F.col(CUSTOMER_ID).isin(sorted(source_ids)))
    if CUSTOMER_KEY in columns and keys:
        parts.append(F.col(CUSTOMER_KEY).isin(sorted(keys)))
    if "raw" in columns and (source_ids or emails):
        parts.append(F.coalesce(_mentions(F.col("raw"), [*sorted(source_ids), *emails]), F.lit(False)))
    if not parts:
        return None
    condition = parts[0]
    for part in parts[1:]:
        condition = condition | part
    return F.coalesce(condition, F.lit(False))


def _log_request(spark: SparkSession, config: Config, run_id: str, result: ErasureResult,
                 hashes: list[str]) -> None:
    row = (run_id, dt.datetime.now(dt.timezone.utc), result.request_hash, result.ids_requested, result.records,
           result.keys, sorted(result.rows_deleted), result.rows_deleted, hashes, config.privacy.vacuum_retention_hours)
    frame = spark.createDataFrame([row], ERASURE_LOG_SCHEMA)
    tables.write_table(frame, tables.ERASURE_LOG, config.paths.lakehouse_dir, run_id)


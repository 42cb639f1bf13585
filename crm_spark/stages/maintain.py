"""Maintain: OPTIMIZE (compaction, Z-ORDER by customer key where tables hold one) and
VACUUM with the configured retention, for every table of the lakehouse."""

from __future__ import annotations

import logging

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.schemas import CUSTOMER_KEY

log = logging.getLogger(__name__)


def optimize(spark: SparkSession, path: str) -> tuple[int, int]:
    """Compact a table's small files; Z-ORDER by ``customer_key`` when the table has one,
    so lookups and erasures by customer read fewer files.

    Returns:
        Files removed and files added.
    """
    table = DeltaTable.forPath(spark, path)
    builder = table.optimize()
    if CUSTOMER_KEY in table.toDF().columns:
        metrics = builder.executeZOrderBy(CUSTOMER_KEY)
    else:
        metrics = builder.executeCompaction()
    row = metrics.select("metrics.numFilesRemoved", "metrics.numFilesAdded").first()
    return int(row[0] or 0), int(row[1] or 0)


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """OPTIMIZE and then VACUUM every table of the lakehouse that exists.

    VACUUM keeps ``privacy.vacuum_retention_hours`` of history (time travel to older
    versions is lost beyond it).

    Returns:
        Files removed and added by compaction, per table.
    """
    lake = config.paths.lakehouse_dir
    counts: dict[str, int] = {}
    for table in tables.ALL_TABLES:
        if not tables.table_exists(spark, table, lake):
            continue
        path = table.path(lake)
        removed, added = optimize(spark, path)
        tables.vacuum(spark, path, config.privacy.vacuum_retention_hours)
        log.info("maintained %s: %d files compacted into %d", table.qualified, removed, added)
        counts[f"{table.qualified}.files_removed"] = removed
        counts[f"{table.qualified}.files_added"] = added
    return counts

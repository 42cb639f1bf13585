"""The ingested-files ledger, ``bronze.ingested_files``: which raw files were read, as what,
and which ``prepare`` run merged their rows into silver."""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.ingest.sources import source_hash
from crm_spark.schemas import INGESTED_FILES_SCHEMA, SOURCE_FILE


def new_files(spark: SparkSession, config: Config, source: str, files_df: DataFrame) -> tuple[list[Row], bool]:
    """Return the files of ``source`` to read this run and whether any was ingested before.

    With ``ingest.incremental`` a file is new unless ``bronze.ingested_files`` holds it
    with the same size, modification time and source settings (a rewritten file, or
    every file of a source whose mapping changed, is read again and its rows replaced);
    otherwise every file is read again.
    """
    lake = config.paths.lakehouse_dir
    files_df = files_df.withColumn("source_hash", F.lit(source_hash(config.sources[source])))
    if not config.ingest.incremental or not tables.table_exists(spark, tables.INGESTED_FILES, lake):
        return files_df.collect(), False
    seen = tables.read_table(spark, tables.INGESTED_FILES, lake).where(F.col("source") == source)
    fresh = files_df.join(seen, [SOURCE_FILE, "file_size", "modified_at", "source_hash"], "left_anti").collect()
    return fresh, not seen.isEmpty()


def record_files(spark: SparkSession, config: Config, files: list[Row], run_id: str) -> None:
    """Record the files read in ``bronze.ingested_files``, each waiting for ``prepare``.

    Written last, so a run that stops before this point reads the same files again.
    """
    rows = [(f["source"], f[SOURCE_FILE], f["file_size"], f["modified_at"], f["source_hash"], run_id, None)
            for f in files]
    files_df = spark.createDataFrame(rows, INGESTED_FILES_SCHEMA)
    lake = config.paths.lakehouse_dir
    if config.ingest.incremental:
        tables.merge_table(files_df, tables.INGESTED_FILES, lake, ("source", SOURCE_FILE))
    else:
        tables.write_table(files_df, tables.INGESTED_FILES, lake)


def pending_files(spark: SparkSession, lakehouse_dir: str) -> dict[str, list[str]]:
    """Return, per source, the ingested files whose rows ``prepare`` has not merged into silver yet
    (a source without any is left out; none before any ingest)."""
    if not tables.table_exists(spark, tables.INGESTED_FILES, lakehouse_dir):
        return {}
    pending: dict[str, list[str]] = {}
    rows = tables.read_table(spark, tables.INGESTED_FILES, lakehouse_dir).where(F.col("prepared_run_id").isNull())
    for row in rows.select("source", SOURCE_FILE).orderBy("source", SOURCE_FILE).collect():
        pending.setdefault(row["source"], []).append(row[SOURCE_FILE])
    return pending


def mark_prepared(spark: SparkSession, lakehouse_dir: str, files: list[str], run_id: str) -> None:
    """Record that ``prepare`` run ``run_id`` merged the rows of ``files`` into silver."""
    DeltaTable.forPath(spark, tables.INGESTED_FILES.path(lakehouse_dir)).update(
        F.col("prepared_run_id").isNull() & F.col(SOURCE_FILE).isin(files), {"prepared_run_id": F.lit(run_id)})

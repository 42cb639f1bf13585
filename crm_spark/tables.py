"""The lakehouse: where each Delta table lives and how it is read, written and vacuumed."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from typing import Iterator

from delta.tables import DeltaTable
from pyspark.errors import AnalysisException, IllegalArgumentException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, NumericType, StringType, TimestampType

from crm_spark.config import DELTA_SAFE_RETENTION_HOURS
from crm_spark.schemas import AS_OF_DATE, PII_COLUMNS, RUN_ID, SOURCE_FILE

log = logging.getLogger(__name__)

# Columns whose values are personal data, including the original text of quarantined lines.
PERSONAL_TEXT_COLUMNS = (*PII_COLUMNS, "raw")
DELETION_VECTORS = "delta.enableDeletionVectors"


@dataclass(frozen=True)
class Table:
    """One Delta table: its layer, name and how a run replaces its rows.

    ``scope`` is ``"all"`` (a run overwrites the table), ``"as_of_date"`` (a run
    replaces the rows of its date) or ``"run_id"`` (a run replaces its own rows).
    ``deletion_vectors`` marks a table that daily MERGEs update in place: its updated and
    deleted rows are marked in deletion vectors instead of rewriting every file that holds
    one, so a day's MERGE writes about what changed, not the whole table.
    """

    layer: str
    name: str
    scope: str = "all"
    deletion_vectors: bool = False

    def path(self, lakehouse_dir: str) -> str:
        """Return the table's location under the lakehouse root."""
        return f"{lakehouse_dir.rstrip('/')}/{self.layer}/{self.name}"

    @property
    def qualified(self) -> str:
        """Return ``layer.name``, the table's name in logs and row counts."""
        return f"{self.layer}.{self.name}"


BRONZE = {s: Table("bronze", s) for s in ("customers", "products", "orders", "ratings")}
QUARANTINE = Table("bronze", "quarantine")
INGESTED_FILES = Table("bronze", "ingested_files")
FILE_PROFILES = Table("bronze", "file_profiles")
CUSTOMERS = Table("silver", "customers", deletion_vectors=True)
CUSTOMER_XREF = Table("silver", "customer_xref", deletion_vectors=True)
CUSTOMER_RECORDS = Table("silver", "customer_records")
PRODUCTS = Table("silver", "products", deletion_vectors=True)
ORDERS = Table("silver", "orders", deletion_vectors=True)
RATINGS = Table("silver", "ratings", deletion_vectors=True)
CUSTOMER_FEATURES = Table("gold", "customer_features", AS_OF_DATE)
FEATURE_SELECTION = Table("gold", "feature_selection", AS_OF_DATE)
CHURN_HOLDOUT = Table("gold", "churn_holdout_predictions", AS_OF_DATE)
CHURN_SCORES = Table("gold", "churn_scores", AS_OF_DATE)
CLV_HOLDOUT = Table("gold", "clv_holdout_predictions", AS_OF_DATE)
CLV_PREDICTIONS = Table("gold", "clv_predictions", AS_OF_DATE)
PURCHASE_HOLDOUT = Table("gold", "purchase_holdout_predictions", AS_OF_DATE)
CUSTOMER_SEGMENTS = Table("gold", "customer_segments", AS_OF_DATE)
SEGMENT_PROFILES = Table("gold", "segment_profiles", AS_OF_DATE)
ANOMALIES = Table("gold", "anomalies", AS_OF_DATE)
RECOMMENDATIONS = Table("gold", "recommendations", AS_OF_DATE)
RECOMMENDATION_HOLDOUT = Table("gold", "recommendation_holdout", AS_OF_DATE)
RECOMMENDATION_RELEVANCE = Table("gold", "recommendation_relevance", AS_OF_DATE)
RECOMMENDATION_TUNING = Table("gold", "recommendation_tuning", AS_OF_DATE)
RATING_HOLDOUT = Table("gold", "rating_holdout_predictions", AS_OF_DATE)
CAMPAIGN_AUDIENCES = Table("gold", "campaign_audiences", AS_OF_DATE)
CAMPAIGN_SUMMARY = Table("gold", "campaign_summary", AS_OF_DATE)
MODEL_METRICS = Table("gold", "model_metrics", RUN_ID)
DATA_QUALITY = Table("gold", "data_quality", RUN_ID)
ERASURE_LOG = Table("gold", "erasure_log", RUN_ID)
RUNS = Table("gold", "runs", RUN_ID)
MODEL_REGISTRY = Table("models", "registry", RUN_ID)
MODEL_EXPLANATIONS = Table("models", "explanations", RUN_ID)
RECOMMENDER_USERS = Table("models", "recommender_users", RUN_ID)

ALL_TABLES = (
    *BRONZE.values(), QUARANTINE, INGESTED_FILES, FILE_PROFILES, CUSTOMERS, CUSTOMER_XREF, CUSTOMER_RECORDS, PRODUCTS,
    ORDERS, RATINGS, CUSTOMER_FEATURES, FEATURE_SELECTION, CHURN_HOLDOUT, CHURN_SCORES, CLV_HOLDOUT, CLV_PREDICTIONS,
    PURCHASE_HOLDOUT, CUSTOMER_SEGMENTS, SEGMENT_PROFILES, ANOMALIES, RECOMMENDATIONS, RECOMMENDATION_HOLDOUT,
    RECOMMENDATION_RELEVANCE, RECOMMENDATION_TUNING, RATING_HOLDOUT, CAMPAIGN_AUDIENCES, CAMPAIGN_SUMMARY,
    MODEL_METRICS, DATA_QUALITY, RUNS, MODEL_REGISTRY, MODEL_EXPLANATIONS, RECOMMENDER_USERS,
    ERASURE_LOG,
)


def sql_literal(value: object) -> str:
    """Return ``value`` (a date or text) as a SQL literal."""
    if isinstance(value, dt.date):
        return f"DATE'{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def in_files(paths: list[str]) -> str:
    """Return a SQL predicate selecting the bronze rows read from ``paths``."""
    return f"{SOURCE_FILE} IN ({', '.join(sql_literal(p) for p in paths)})"


def write_table(df: DataFrame, table: Table, lakehouse_dir: str, key: object = None, where: str | None = None) -> int:
    """Write ``df`` to ``table`` and return the number of rows written.

    A table scoped to ``all`` is overwritten, or, given ``where`` and once it exists,
    has only the rows matching ``where`` replaced; one scoped to a column has only the
    rows whose column equals ``key`` replaced, so re-running the same date or run
    replaces rather than appends.

    Args:
        df: rows to write; for a scoped table every row must carry ``key``.
        table: the target table.
        lakehouse_dir: the lakehouse root.
        key: value of the scope column for this write (``as_of_date`` or ``run_id``).
        where: a SQL predicate narrowing the rows replaced (every written row must
            satisfy it), e.g. ``task = 'churn'``.

    Returns:
        Rows written, from the Delta commit's metrics.

    Raises:
        ValueError: a scoped table is written without ``key``.
    """
    writer = df.write.format("delta").mode("overwrite")
    personal = [c for c in df.columns if c in PERSONAL_TEXT_COLUMNS]
    if personal:
        # File statistics in the Delta log would keep min/max values of personal columns
        # after the rows are erased; collect statistics on the other columns only.
        statistics_types = (NumericType, StringType, DateType, TimestampType)
        kept = [f.name for f in df.schema.fields if f.name not in personal and isinstance(f.dataType, statistics_types)]
        writer = writer.option("delta.dataSkippingStatsColumns", ",".join(f"`{c}`" for c in kept))
    path = table.path(lakehouse_dir)
    exists = DeltaTable.isDeltaTable(df.sparkSession, path)
    # Delta commits nothing for an empty frame replacing no rows: the tag tells this write's commit from an earlier one.
    tag = f"crm-spark write {uuid.uuid4().hex}"
    writer = writer.option("userMetadata", tag)
    if table.deletion_vectors and not exists:
        writer = writer.option(DELETION_VECTORS, "true")  # a table property: taken when the write creates the table
    if table.scope == "all" and where and exists:
        # New columns (a customer attribute added to the config) join the table's schema.
        writer = writer.option("replaceWhere", where).option("mergeSchema", "true")
    elif table.scope == "all":
        writer = writer.option("overwriteSchema", "true")
    else:
        if key is None:
            raise ValueError(f"{table.qualified} is replaced per {table.scope}: pass key")
        condition = f"{table.scope} = {sql_literal(key)}" + (f" AND ({where})" if where else "")
        writer = (
            writer.option("replaceWhere", condition)
            .option("mergeSchema", "true")
            .partitionBy(table.scope)
        )
    writer.save(path)
    rows = rows_written(df.sparkSession, path, tag)
    log.info("wrote %s rows to %s", rows, table.qualified)
    return rows


GONE = "_merge_gone"  # marks the source rows of a MERGE whose target rows are deleted


def merge_table(
    df: DataFrame, table: Table, lakehouse_dir: str, keys: tuple[str, ...], newer: str | None = None,
    delete_missing: bool = False, deleted: DataFrame | None = None,
) -> dict[str, int]:
    """Upsert ``df`` into ``table`` with one Delta MERGE; create the table when absent.

    Keys match null-safely. A matched row is updated only when a value differs (so a
    re-run commits no changed rows) and, given ``newer``, only when that predicate on
    ``t`` (target) and ``s`` (source) holds. ``df`` must hold at most one row per key.

    Args:
        df: the new rows, deduplicated on ``keys``.
        table: the target table (scoped to ``all``).
        lakehouse_dir: the lakehouse root.
        keys: the columns that identify a row.
        newer: SQL predicate that must hold to replace a matched row, e.g.
            ``s.order_ts >= t.order_ts``.
        delete_missing: delete target rows with no source row (the source is complete).
        deleted: the ``keys`` of target rows to delete, none of them in ``df`` (the source
            is the part of the table that may have changed); ``df``'s columns must all be
            the table's already.

    Returns:
        ``inserted``, ``updated`` and ``deleted`` row counts.

    Raises:
        ValueError: ``deleted`` is given with columns the table does not have.
    """
    path = table.path(lakehouse_dir)
    if not DeltaTable.isDeltaTable(df.sparkSession, path):
        return {"inserted": write_table(df, table, lakehouse_dir), "updated": 0, "deleted": 0}
    target = DeltaTable.forPath(df.sparkSession, path)
    if table.deletion_vectors and target.detail().first()["properties"].get(DELETION_VECTORS) != "true":
        # A table created before the setting existed; loaded again, as a MERGE on the old snapshot fails.
        df.sparkSession.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('{DELETION_VECTORS}' = 'true')")
        target = DeltaTable.forPath(df.sparkSession, path)
    matched = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    compared = [c for c in df.columns if c not in keys]
    known = set(df.columns) <= set(target.toDF().columns)
    # A column the table does not have yet (a new customer attribute) changes every matched row.
    changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in compared) if known else "TRUE"
    update = f"({newer}) AND ({changed})" if newer else changed
    if deleted is not None:
        if not known:
            raise ValueError(f"rows merged into {table.qualified} with deletions bring columns it does not have")
        # Rows to delete ride in the source, flagged, beside the rows to upsert.
        gone = deleted.select(*[F.col(f.name) if f.name in keys else F.lit(None).cast(f.dataType).alias(f.name)
                                for f in df.schema.fields])
        source = df.withColumn(GONE, F.lit(False)).unionByName(gone.withColumn(GONE, F.lit(True)))
        values = {f"`{c}`": f"s.`{c}`" for c in df.columns}
        merge = (target.alias("t").merge(source.alias("s"), matched)
                 .whenMatchedDelete(condition=f"s.{GONE}")
                 .whenMatchedUpdate(condition=update, set=values)
                 .whenNotMatchedInsert(condition=f"NOT s.{GONE}", values=values))
    else:
        merge = (
            target.alias("t").merge(df.alias("s"), matched)
            .whenMatchedUpdateAll(condition=update)
            .whenNotMatchedInsertAll()
            .withSchemaEvolution()  # columns the rows bring (a new customer attribute) join the table
        )
    if delete_missing:
        merge = merge.whenNotMatchedBySourceDelete()
    metrics = merge.execute().first()
    counts = {name: int(metrics[f"num_{name}_rows"]) for name in ("inserted", "updated", "deleted")}
    log.info("merged into %s: %s", table.qualified, counts)
    return counts


def write_dated(df: DataFrame, table: Table, lakehouse_dir: str, as_of_date: dt.date, run_id: str) -> int:
    """Stamp rows with ``as_of_date`` and ``run_id`` and replace that date's rows of ``table``.

    Returns:
        Rows written.
    """
    stamped = df.withColumn(AS_OF_DATE, F.lit(as_of_date)).withColumn(RUN_ID, F.lit(run_id))
    return write_table(stamped, table, lakehouse_dir, as_of_date)


@dataclass
class DatedWriter:
    """Writes a stage's dated outputs for one ``as_of_date`` and run, keeping the rows written per table."""

    lakehouse_dir: str
    as_of_date: dt.date
    run_id: str
    counts: dict[str, int] = field(default_factory=dict)

    def __call__(self, df: DataFrame, table: Table) -> int:
        """Replace the date's rows of ``table`` with ``df`` (see :func:`write_dated`); return rows written."""
        rows = write_dated(df, table, self.lakehouse_dir, self.as_of_date, self.run_id)
        self.counts[table.qualified] = rows
        return rows


def rows_written(spark: SparkSession, path: str, tag: str | None = None) -> int:
    """Return the rows the latest commit of the Delta table at ``path`` added.

    Rows a ``replaceWhere`` copied from rewritten files are not counted. Given ``tag``,
    a latest commit whose ``userMetadata`` is not ``tag`` (the write committed nothing)
    added 0.
    """
    if not DeltaTable.isDeltaTable(spark, path):
        return 0
    commit = DeltaTable.forPath(spark, path).history(1).select("operationMetrics", "userMetadata").first()
    if tag is not None and commit["userMetadata"] != tag:
        return 0
    metrics = commit["operationMetrics"] or {}
    return int(metrics.get("numOutputRows", 0)) - int(metrics.get("numCopiedRows", 0))


class TableMissing(FileNotFoundError):
    """A table an earlier stage writes does not exist yet."""

    def __init__(self, table: Table, message: str) -> None:
        super().__init__(message)
        self.table = table


def read_table(spark: SparkSession, table: Table, lakehouse_dir: str) -> DataFrame:
    """Read a Delta table, with a clear error when an earlier stage has not written it.

    Raises:
        TableMissing: the table does not exist yet.
    """
    path = table.path(lakehouse_dir)
    if not DeltaTable.isDeltaTable(spark, path):
        raise TableMissing(table, f"table {table.qualified} not found at {path}: run the stage that writes it first")
    return spark.read.format("delta").load(path)


def table_exists(spark: SparkSession, table: Table, lakehouse_dir: str) -> bool:
    """Return whether ``table`` exists as a Delta table."""
    return DeltaTable.isDeltaTable(spark, table.path(lakehouse_dir))


RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"


@contextlib.contextmanager
def retention_allowed(spark: SparkSession, hours: int) -> Iterator[None]:
    """Within the block, let VACUUM keep only ``hours`` of history, even below Delta's safety limit.

    Config validation allows such ``hours`` only when ``privacy.allow_short_retention``
    says so. The check is lifted only when ``hours`` is below the limit, and set back to
    its previous value afterwards; a block nested in another (or VACUUMs on threads
    inside one) sets it back to what the outer block set.
    """
    short = hours < DELTA_SAFE_RETENTION_HOURS
    previous = spark.conf.get(RETENTION_CHECK, None)
    if short:
        spark.conf.set(RETENTION_CHECK, "false")
    try:
        yield
    finally:
        if short:
            if previous is None:
                spark.conf.unset(RETENTION_CHECK)
            else:
                spark.conf.set(RETENTION_CHECK, previous)


def vacuum(spark: SparkSession, path: str, hours: int) -> None:
    """VACUUM a table, keeping files newer than ``hours`` (see :func:`retention_allowed`).

    A table with deletion vectors is purged first (``REORG ... APPLY (PURGE)``): its data
    files are rewritten without the rows marked deleted, so VACUUM removes the files that
    still held them. LITE mode finds the files to delete from the transaction log instead
    of listing the table's folders (about 6x faster here); when the log no longer covers
    every removed file, Delta refuses LITE and the full VACUUM runs instead.
    """
    if "deletionVectors" in (DeltaTable.forPath(spark, path).detail().first()["tableFeatures"] or ()):
        spark.sql(f"REORG TABLE delta.`{path}` APPLY (PURGE)")
    with retention_allowed(spark, hours):
        try:
            spark.sql(f"VACUUM delta.`{path}` LITE RETAIN {hours} HOURS")
        except (AnalysisException, IllegalArgumentException) as error:
            if "LITE" not in str(error):
                raise
            log.info("VACUUM LITE not possible for %s; running a full VACUUM", path)
            spark.sql(f"VACUUM delta.`{path}` RETAIN {hours} HOURS")

"""Ingest: raw files -> typed bronze tables, with every rejected row in ``quarantine``.

Text formats are read line by line, so a rejected row keeps its original text. Each
row gets either a typed bronze row or a quarantine row with a reason code; the run
fails if rows read differ from rows accepted plus rows quarantined.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.schemas import (
    BRONZE_SCHEMAS,
    RATING,
    RAW_COLUMNS,
    RUN_ID,
    SOURCE_FILE,
    raw_text_schema,
)

log = logging.getLogger(__name__)

# Raw format of each source in the canonical layout.
SOURCE_FORMATS = {"customers": "csv", "products": "csv", "orders": "json", "ratings": "parquet"}
_QUOTED = '"(?:[^"]|"")*"'
_CORRUPT = "_corrupt_record"
REASON = "_reason"
MESSAGE = "_message"
RAW = "_raw"


class IngestError(RuntimeError):
    """A source cannot be read at all, or rows do not reconcile."""


def parse_csv_lines(lines_df: DataFrame, source: str) -> DataFrame:
    """Parse CSV text lines into the source's string columns, flagging malformed lines.

    Header lines (fields equal to the column names) are dropped; blank lines, lines
    with an unbalanced quote and lines with too few or too many fields get a reason.

    Args:
        lines_df: columns ``_raw`` (one line of text) and ``_source_file``.
        source: a key of ``RAW_COLUMNS``.

    Returns:
        ``_raw``, ``_source_file``, one string column per canonical field, ``_reason``
        and ``_message`` (null for a well-formed line).
    """
    columns = RAW_COLUMNS[source]
    parsed = F.from_csv(RAW, raw_text_schema(source).simpleString(), {"escape": '"'})
    unquoted = F.regexp_replace(RAW, _QUOTED, "")
    n_fields = F.size(F.split(unquoted, ",", -1))
    header = F.lower(F.trim(F.col(RAW))) == ",".join(columns)
    reason = (
        F.when(F.trim(RAW) == "", F.lit("empty_line"))
        .when(unquoted.contains('"'), F.lit("unbalanced_quote"))
        .when(n_fields < len(columns), F.lit("too_few_fields"))
        .when(n_fields > len(columns), F.lit("too_many_fields"))
    )
    message = F.format_string(f"expected {len(columns)} fields, found %d", n_fields)
    return (
        lines_df.where(~header)
        .withColumn("_parsed", parsed)
        .select(RAW, SOURCE_FILE, *[F.col("_parsed")[c].alias(c) for c in columns],
                reason.alias(REASON),
                F.when(reason == "empty_line", F.lit("empty line"))
                .when(reason == "unbalanced_quote", F.lit("a quoted field is not closed"))
                .when(reason.isNotNull(), message).alias(MESSAGE))
    )


def parse_json_lines(lines_df: DataFrame, source: str) -> DataFrame:
    """Parse JSON lines into the source's string columns, flagging malformed lines.

    Args:
        lines_df: columns ``_raw`` and ``_source_file``.
        source: a key of ``RAW_COLUMNS``.

    Returns:
        The same shape as :func:`parse_csv_lines`.
    """
    columns = RAW_COLUMNS[source]
    schema = raw_text_schema(source).add(_CORRUPT, StringType())
    parsed = F.from_json(RAW, schema, {"columnNameOfCorruptRecord": _CORRUPT})
    reason = (
        F.when(F.trim(RAW) == "", F.lit("empty_line"))
        .when(F.col("_parsed")[_CORRUPT].isNotNull() | F.col("_parsed").isNull(), F.lit("malformed_json"))
    )
    return lines_df.withColumn("_parsed", parsed).select(
        RAW, SOURCE_FILE, *[F.col("_parsed")[c].alias(c) for c in columns],
        reason.alias(REASON),
        F.when(reason == "empty_line", F.lit("empty line"))
        .when(reason.isNotNull(), F.lit("not a complete JSON object")).alias(MESSAGE),
    )


def parse_parquet(parquet_df: DataFrame, source: str) -> DataFrame:
    """Bring a Parquet source into the parsed shape, its row as JSON in ``_raw``.

    Raises:
        IngestError: a canonical column is missing.
    """
    missing = [c for c in RAW_COLUMNS[source] if c not in parquet_df.columns]
    if missing:
        raise IngestError(f"source '{source}' lacks required column '{missing[0]}'")
    columns = RAW_COLUMNS[source]
    return parquet_df.select(
        F.to_json(F.struct(*columns)).alias(RAW),
        F.col("_metadata.file_path").alias(SOURCE_FILE),
        *[F.col(c).cast("string").alias(c) for c in columns],
        F.lit(None).cast("string").alias(REASON),
        F.lit(None).cast("string").alias(MESSAGE),
    )


def _blank(column: str) -> Column:
    return F.col(column).isNull() | (F.trim(F.col(column)) == "")


def with_typed_columns(parsed_df: DataFrame, source: str) -> DataFrame:
    """Cast parsed strings to the bronze types, giving a reason to rows that fail.

    A required field that is blank gets ``missing_<field>``; a value that does not
    cast gets ``invalid_<field>``; a rating outside 1..5 gets ``rating_out_of_range``.
    The first failing check wins; earlier structural reasons are kept.

    Args:
        parsed_df: output of one of the ``parse_*`` functions.
        source: a key of ``BRONZE_SCHEMAS``.

    Returns:
        Typed canonical columns plus ``_raw``, ``_source_file``, ``_reason``, ``_message``.
    """
    schema = BRONZE_SCHEMAS[source]
    typed: dict[str, Column] = {}
    checks: list[tuple[Column, str, str]] = []
    for field in schema.fields:
        text = F.trim(F.col(field.name))
        value = text if isinstance(field.dataType, StringType) else text.try_cast(field.dataType)
        typed[field.name] = F.when(~_blank(field.name), value)
        if not field.nullable:
            checks.append((_blank(field.name), f"missing_{field.name}", f"{field.name} is empty"))
        if not isinstance(field.dataType, StringType):
            checks.append((~_blank(field.name) & value.isNull(), f"invalid_{field.name}",
                           f"{field.name} is not a valid {field.dataType.simpleString()}"))
    if source == "ratings":
        checks.append((~typed[RATING].between(1, 5), "rating_out_of_range", "rating must be 1 to 5"))
    reason, message = F.col(REASON), F.col(MESSAGE)
    if checks:
        first_failure = F.when(checks[0][0], F.lit(checks[0][1]))
        first_message = F.when(checks[0][0], F.lit(checks[0][2]))
        for failed, code, text_message in checks[1:]:
            first_failure = first_failure.when(failed, F.lit(code))
            first_message = first_message.when(failed, F.lit(text_message))
        reason = F.coalesce(reason, first_failure)
        message = F.coalesce(message, first_message)
    return parsed_df.select(
        RAW, SOURCE_FILE, *[typed[f.name].alias(f.name) for f in schema.fields],
        reason.alias(REASON), message.alias(MESSAGE),
    )


def read_source(spark: SparkSession, source: str, path: str) -> DataFrame:
    """Read one raw source into the parsed shape.

    Raises:
        IngestError: the local path does not exist.
    """
    fmt = SOURCE_FORMATS[source]
    if not Path(path).exists() and "://" not in path:
        raise IngestError(f"source '{source}': path not found: {path}")
    if fmt == "parquet":
        return parse_parquet(spark.read.parquet(path), source)
    lines_df = spark.read.text(path).select(
        F.col("value").alias(RAW), F.col("_metadata.file_path").alias(SOURCE_FILE)
    )
    parse = parse_csv_lines if fmt == "csv" else parse_json_lines
    return parse(lines_df, source)


def quarantine_rows(checked_df: DataFrame, source: str, run_id: str) -> DataFrame:
    """Return the rejected rows in the quarantine table's shape."""
    return checked_df.where(F.col(REASON).isNotNull()).select(
        F.lit(run_id).alias(RUN_ID), F.lit(source).alias("source"), SOURCE_FILE,
        F.col(REASON).alias("reason"), F.col(MESSAGE).alias("message"), F.col(RAW).alias("raw"),
    )


def accepted_rows(checked_df: DataFrame, source: str) -> DataFrame:
    """Return the accepted rows with the bronze columns and their source file."""
    return checked_df.where(F.col(REASON).isNull()).select(
        *BRONZE_SCHEMAS[source].fieldNames(), SOURCE_FILE
    )


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Ingest every raw source into bronze and quarantine, checking reconciliation.

    Args:
        spark: the session.
        config: run configuration (``paths.raw_dir``, ``paths.lakehouse_dir``).
        run_id: the run's id, stamped on quarantine rows.

    Returns:
        Row counts: ``<source>.read``, ``bronze.<source>`` and ``quarantine.<source>``.

    Raises:
        IngestError: a source is unreadable or its rows do not reconcile.
    """
    lake = config.paths.lakehouse_dir
    counts: dict[str, int] = {}
    quarantined: list[DataFrame] = []
    checked_frames: list[DataFrame] = []
    for source in SOURCE_FORMATS:
        path = f"{config.paths.raw_dir.rstrip('/')}/{source}"
        checked = with_typed_columns(read_source(spark, source, path), source)
        checked = checked.persist(StorageLevel.MEMORY_AND_DISK)
        checked_frames.append(checked)
        by_reason = {row[0]: row[1] for row in checked.groupBy(F.col(REASON)).count().collect()}
        read = sum(by_reason.values())
        if read == 0:
            log.warning("source %s at %s is empty", source, path)
        accepted = tables.write_table(accepted_rows(checked, source), tables.BRONZE[source], lake)
        rejected = read - by_reason.get(None, 0)
        if read != accepted + rejected:
            raise IngestError(f"source '{source}': read {read} != accepted {accepted} + quarantined {rejected}")
        for reason, n in sorted((r, n) for r, n in by_reason.items() if r is not None):
            log.info("source %s: %d rows quarantined as %s", source, n, reason)
        counts.update({f"{source}.read": read, f"bronze.{source}": accepted, f"quarantine.{source}": rejected})
        quarantined.append(quarantine_rows(checked, source, run_id))
    union = quarantined[0]
    for frame in quarantined[1:]:
        union = union.unionByName(frame)
    written = tables.write_table(union, tables.QUARANTINE, lake)
    expected = sum(v for k, v in counts.items() if k.startswith("quarantine."))
    if written != expected:
        raise IngestError(f"quarantine wrote {written} rows, expected {expected}")
    for frame in checked_frames:
        frame.unpersist()
    return counts

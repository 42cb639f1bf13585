"""Ingest: raw sources -> typed bronze tables, with every rejected row in ``quarantine``.

Each source is described in config (:class:`crm_spark.config.SourceConfig`): path,
format, column mapping onto canonical names, date formats and constants. Text formats
are read line by line, so a rejected row keeps its original text. Every row becomes
either a typed bronze row or a quarantine row with a reason code and a message; the
run stops if rows read differ from rows accepted plus rows quarantined.

Reason codes: ``empty_line``, ``bad_encoding``, ``unbalanced_quote``,
``too_few_fields``, ``too_many_fields``, ``malformed_json``, ``field_too_long``,
``control_characters``, ``missing_<column>``, ``invalid_<column>``,
``rating_out_of_range``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import re
from pathlib import Path

from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType

from crm_spark import erase, privacy, tables
from crm_spark.config import Config, IngestConfig, SourceConfig
from crm_spark.schemas import (
    BRONZE_SCHEMAS,
    CANONICAL_COLUMNS,
    CUSTOMER_ID,
    INGESTED_FILES_SCHEMA,
    ORDER_ID,
    QUARANTINE_SCHEMA,
    RATING,
    REQUIRED_COLUMNS,
    RUN_ID,
    SOURCE_FILE,
)

log = logging.getLogger(__name__)

_QUOTED = '"(?:[^"]|"")*"'
_CORRUPT = "_corrupt_record"
_CONTROL = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]"
REASON = "_reason"
MESSAGE = "_message"
RAW = "_raw"
BAD_ENCODING = "_bad_encoding"
FIRST_BLOCK = "_first_block"


class IngestError(RuntimeError):
    """A source cannot be read at all, lacks a required column, or rows do not reconcile."""


def field_name(position: int) -> str:
    """Return the internal name of a source's field at ``position`` (names in files vary)."""
    return f"_f{position}"


def read_lines(spark: SparkSession, path: str, encoding: str = "UTF-8") -> DataFrame:
    """Read text files line by line, decoding them and flagging bytes that are not text.

    Args:
        spark: the session.
        path: file, folder or glob.
        encoding: ``UTF-8``, ``ISO-8859-1`` or ``US-ASCII``.

    Returns:
        ``_raw`` (the line; a leading byte-order mark removed), ``_source_file`` and
        ``_bad_encoding`` (the line's bytes are not valid in ``encoding``).
    """
    value = F.col("value")
    if encoding == "UTF-8":
        bad, text = ~F.is_valid_utf8(value), F.make_valid_utf8(value)
    else:
        text = F.decode(value.cast("binary"), encoding)
        bad = text.contains("\ufffd") if encoding == "US-ASCII" else F.lit(False)
    return spark.read.text(path).select(
        F.regexp_replace(text, "^\ufeff", "").alias(RAW),
        F.col("_metadata.file_path").alias(SOURCE_FILE),
        bad.alias(BAD_ENCODING),
        (F.col("_metadata.file_block_start") == 0).alias(FIRST_BLOCK),
    )


def first_line(lines_df: DataFrame) -> str | None:
    """Return the first line of one of the files (its header, if it has one), or None without lines."""
    row = lines_df.where(F.col(FIRST_BLOCK)).select(RAW).first()
    return None if row is None else row[0]


def split_header(line: str, delimiter: str) -> list[str]:
    """Return the column names of a CSV header line."""
    return [name.strip() for name in next(csv.reader([line], delimiter=delimiter))]


def parse_csv_lines(lines_df: DataFrame, n_fields: int, delimiter: str = ",", header: str | None = None) -> DataFrame:
    """Split CSV lines into string fields ``_f0..``, flagging malformed lines.

    Args:
        lines_df: ``_raw``, ``_source_file`` and ``_bad_encoding``.
        n_fields: how many fields a line must have.
        delimiter: the field separator.
        header: the header line's text; lines equal to it (one per part file) are dropped.

    Returns:
        ``_raw``, ``_source_file``, ``_bad_encoding``, ``_f0`` .. ``_f<n-1>``, ``_reason``
        and ``_message`` (null for a well-formed line).
    """
    schema = ", ".join(f"{field_name(i)} STRING" for i in range(n_fields))
    parsed = F.from_csv(RAW, schema, {"sep": delimiter, "escape": '"'})
    unquoted = F.regexp_replace(RAW, _QUOTED, "")
    found = F.size(F.split(unquoted, re.escape(delimiter), -1))
    reason = (
        F.when(F.trim(RAW) == "", F.lit("empty_line"))
        .when(unquoted.contains('"'), F.lit("unbalanced_quote"))
        .when(found < n_fields, F.lit("too_few_fields"))
        .when(found > n_fields, F.lit("too_many_fields"))
    )
    message = (
        F.when(reason == "empty_line", F.lit("empty line"))
        .when(reason == "unbalanced_quote", F.lit("a quoted field is not closed"))
        .when(reason.isNotNull(), F.format_string(f"expected {n_fields} fields, found %d", found))
    )
    kept = lines_df if header is None else lines_df.where(F.col(RAW) != header)
    return kept.withColumn("_parsed", parsed).select(
        RAW, SOURCE_FILE, BAD_ENCODING,
        *[F.col("_parsed")[field_name(i)].alias(field_name(i)) for i in range(n_fields)],
        reason.alias(REASON), message.alias(MESSAGE),
    )


def parse_json_lines(lines_df: DataFrame, keys: list[str]) -> DataFrame:
    """Parse JSON lines, taking ``keys`` as string fields ``_f0..``, flagging malformed lines.

    Returns:
        The same shape as :func:`parse_csv_lines`.
    """
    schema = StructType([StructField(k, StringType()) for k in keys]).add(_CORRUPT, StringType())
    parsed = F.from_json(RAW, schema, {"columnNameOfCorruptRecord": _CORRUPT})
    reason = (
        F.when(F.trim(RAW) == "", F.lit("empty_line"))
        .when(F.col("_parsed")[_CORRUPT].isNotNull() | F.col("_parsed").isNull(), F.lit("malformed_json"))
    )
    return lines_df.withColumn("_parsed", parsed).select(
        RAW, SOURCE_FILE, BAD_ENCODING, *[F.col("_parsed")[k].alias(field_name(i)) for i, k in enumerate(keys)],
        reason.alias(REASON),
        F.when(reason == "empty_line", F.lit("empty line"))
        .when(reason.isNotNull(), F.lit("not a complete JSON object")).alias(MESSAGE),
    )


def parse_table(table_df: DataFrame, source_file: Column) -> DataFrame:
    """Bring a Parquet or Delta source into the parsed shape, each row as JSON in ``_raw``."""
    return table_df.select(
        F.to_json(F.struct(*[F.col(f"`{c}`") for c in table_df.columns])).alias(RAW),
        source_file.alias(SOURCE_FILE),
        F.lit(False).alias(BAD_ENCODING),
        *[F.col(f"`{c}`").cast("string").alias(field_name(i)) for i, c in enumerate(table_df.columns)],
        F.lit(None).cast("string").alias(REASON),
        F.lit(None).cast("string").alias(MESSAGE),
    )


def canonical_columns(parsed_df: DataFrame, source: str, spec: SourceConfig, fields: list[str]) -> DataFrame:
    """Map a parsed source's fields onto the canonical columns of ``source``.

    A canonical column takes the source field named in ``spec.columns`` (or named like
    the column itself, ignoring case), else the constant from ``spec.constants``; a
    missing ``order_id`` is derived from a hash of the line, so identical lines are
    one order line; any other missing optional column is null.

    Args:
        parsed_df: output of a ``parse_*`` function, fields ``_f0..``.
        source: a key of ``CANONICAL_COLUMNS``.
        spec: the source's configuration.
        fields: the source's field names, in ``_f`` order.

    Returns:
        ``_raw``, ``_source_file``, ``_bad_encoding``, canonical string columns,
        ``_reason`` and ``_message``.

    Raises:
        IngestError: a required column is neither in the source nor a constant.
    """
    exact = {name: i for i, name in enumerate(fields)}
    folded = {name.lower(): i for i, name in reversed(list(enumerate(fields)))}
    columns: list[Column] = []
    for column in CANONICAL_COLUMNS[source]:
        wanted = spec.columns.get(column, column)
        position = exact.get(wanted, folded.get(wanted.lower()))
        if position is not None:
            value = F.col(field_name(position))
        elif column in spec.constants:
            value = F.lit(spec.constants[column])
        elif column == ORDER_ID:
            value = F.concat(F.lit("o_"), F.substring(F.sha2(F.col(RAW), 256), 1, 20))
        elif column in REQUIRED_COLUMNS[source]:
            raise IngestError(
                f"source '{source}' lacks required column '{column}' (source field '{wanted}' not found; map it "
                f"under sources.{source}.columns or set sources.{source}.constants.{column})")
        else:
            value = F.lit(None).cast("string")
        columns.append(value.alias(column))
    return parsed_df.select(RAW, SOURCE_FILE, BAD_ENCODING, *columns, REASON, MESSAGE)


def _blank(column: str) -> Column:
    return F.col(column).isNull() | (F.trim(F.col(column)) == "")


def parse_timestamp_text(text: Column, formats: tuple[str, ...]) -> Column:
    """Return ``text`` as a timestamp by the first matching format (``epoch``: Unix seconds), or null."""
    if not formats:
        return text.try_cast(TimestampType())
    parsed = [
        F.timestamp_seconds(text.try_cast("long")) if fmt == "epoch" else F.try_to_timestamp(text, F.lit(fmt))
        for fmt in formats
    ]
    return F.coalesce(*parsed)


def with_typed_columns(
    canonical_df: DataFrame, source: str, formats: dict[str, tuple[str, ...]] | None = None,
    limits: IngestConfig | None = None,
) -> DataFrame:
    """Cast canonical strings to the bronze types, giving a reason to rows that fail.

    Checks, first failure wins, after any structural reason from parsing: bytes not
    valid in the encoding, a field longer than ``limits.max_field_chars``, control
    characters, a required field blank (``missing_<field>``), a value that does not
    cast (``invalid_<field>``), a rating outside the configured range.

    Args:
        canonical_df: output of :func:`canonical_columns`.
        source: a key of ``BRONZE_SCHEMAS``.
        formats: timestamp patterns per column (default: ISO forms only).
        limits: field length and rating range (default: ``IngestConfig()``).

    Returns:
        Typed canonical columns plus ``_raw``, ``_source_file``, ``_reason``, ``_message``.
    """
    formats, limits = formats or {}, limits or IngestConfig()
    schema = BRONZE_SCHEMAS[source]
    names = schema.fieldNames()
    typed: dict[str, Column] = {}
    checks: list[tuple[Column, str, Column]] = [
        (F.col(BAD_ENCODING), "bad_encoding", F.lit("the line is not valid text in the configured encoding")),
        (F.greatest(*[F.coalesce(F.length(c), F.lit(0)) for c in names]) > limits.max_field_chars, "field_too_long",
         F.lit(f"a field is longer than {limits.max_field_chars} characters")),
        (F.concat_ws("", *names).rlike(_CONTROL), "control_characters",
         F.lit("a field holds control characters")),
    ]
    for field in schema.fields:
        text = F.trim(F.col(field.name))
        if isinstance(field.dataType, StringType):
            value = text
        elif isinstance(field.dataType, TimestampType):
            value = parse_timestamp_text(text, formats.get(field.name, ()))
        else:
            value = text.try_cast(field.dataType)
        typed[field.name] = F.when(~_blank(field.name), value)
        if not field.nullable:
            checks.append((_blank(field.name), f"missing_{field.name}", F.lit(f"{field.name} is empty")))
        if not isinstance(field.dataType, StringType):
            checks.append((~_blank(field.name) & value.isNull(), f"invalid_{field.name}",
                           F.lit(f"{field.name} is not a valid {field.dataType.simpleString()}")))
    if source == "ratings":
        checks.append((~typed[RATING].between(limits.rating_min, limits.rating_max), "rating_out_of_range",
                       F.lit(f"rating must be {limits.rating_min} to {limits.rating_max}")))
    first_failure = F.when(checks[0][0], F.lit(checks[0][1]))
    first_message = F.when(checks[0][0], checks[0][2])
    for failed, code, text_message in checks[1:]:
        first_failure = first_failure.when(failed, F.lit(code))
        first_message = first_message.when(failed, text_message)
    return canonical_df.select(
        RAW, SOURCE_FILE, *[typed[name].alias(name) for name in names],
        F.coalesce(F.col(REASON), first_failure).alias(REASON),
        F.coalesce(F.col(MESSAGE), first_message).alias(MESSAGE),
    )


def source_path(raw_dir: str, spec: SourceConfig) -> str:
    """Return the source's path: as configured if absolute or a URL, else under ``raw_dir``."""
    if "://" in spec.path or Path(spec.path).is_absolute():
        return spec.path
    return f"{raw_dir.rstrip('/')}/{spec.path}"


def read_source(spark: SparkSession, source: str, spec: SourceConfig, path: str | list[str]) -> DataFrame | None:
    """Read one raw source into canonical string columns with structural reasons.

    Args:
        spark: the session.
        source: a key of ``CANONICAL_COLUMNS``.
        spec: the source's configuration.
        path: the source's path, or the list of its files to read.

    Returns:
        The canonical frame, or None when the source has no lines or rows at all.

    Raises:
        IngestError: the path cannot be read or a required column is missing.
    """
    try:
        if spec.format in ("parquet", "delta"):
            table_df = spark.read.format(spec.format).load(path)
            source_file = F.lit(path) if spec.format == "delta" else F.col("_metadata.file_path")
            return canonical_columns(parse_table(table_df, source_file), source, spec, table_df.columns)
        lines_df = read_lines(spark, path, spec.encoding)
    except AnalysisException as error:
        detail = (str(error).strip().splitlines() or [""])[0]
        raise IngestError(f"source '{source}': cannot read {path}: {detail}") from None
    if spec.format == "json":
        keys = [spec.columns.get(c, c) for c in CANONICAL_COLUMNS[source]]
        return canonical_columns(parse_json_lines(lines_df, keys), source, spec, keys)
    header = first_line(lines_df) if spec.header else None
    if spec.header and header is None:
        return None
    fields = list(spec.fields) or split_header(header, spec.delimiter)
    parsed = parse_csv_lines(lines_df, len(fields), spec.delimiter, header)
    return canonical_columns(parsed, source, spec, fields)


def source_files(spark: SparkSession, source: str, spec: SourceConfig, path: str) -> DataFrame:
    """List a source's files as Spark's readers see them (hidden and ``_`` files left out).

    A Delta source is one entry, its path, without size or time, so it is read whole
    every run.

    Returns:
        ``_source_file``, ``file_size`` and ``modified_at``, one row per file.

    Raises:
        IngestError: the path does not exist or cannot be listed.
    """
    schema = StructType([f for f in INGESTED_FILES_SCHEMA.fields
                         if f.name in (SOURCE_FILE, "file_size", "modified_at")])
    if spec.format == "delta":
        return spark.createDataFrame([(path, None, None)], schema)
    try:
        listing = spark.read.format("binaryFile").load(path)
    except AnalysisException as error:
        detail = (str(error).strip().splitlines() or [""])[0]
        raise IngestError(f"source '{source}': cannot read {path}: {detail}") from None
    return listing.select(F.col("path").alias(SOURCE_FILE), F.col("length").alias("file_size"),
                          F.col("modificationTime").alias("modified_at"))


def source_hash(spec: SourceConfig) -> str:
    """Return a short hash of a source's settings (path, format, mapping, formats...)."""
    text = json.dumps(dataclasses.asdict(spec), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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


def _in_files(paths: list[str]) -> str:
    """Return a SQL predicate selecting the rows read from ``paths``."""
    return f"{SOURCE_FILE} IN ({', '.join(tables.sql_literal(p) for p in paths)})"


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


def empty_bronze(spark: SparkSession, source: str) -> DataFrame:
    """Return an empty frame shaped like a bronze table."""
    schema = StructType([*BRONZE_SCHEMAS[source].fields, StructField(SOURCE_FILE, StringType())])
    return spark.createDataFrame([], schema)


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
    lake = config.paths.lakehouse_dir
    counts: dict[str, int] = {}
    quarantined: list[DataFrame] = []
    checked_frames: list[DataFrame] = []
    files_read: list[Row] = []
    sources_read: list[str] = []
    incremental = config.ingest.incremental
    hashes = erase.erased_hashes(spark, lake)
    keyed = privacy.keyed_hash(privacy.load_secret(config.privacy)) if hashes is not None else None
    for source, spec in config.sources.items():
        path = source_path(config.paths.raw_dir, spec)
        fresh, seen_before = new_files(spark, config, source, source_files(spark, source, spec, path))
        paths = sorted(row[SOURCE_FILE] for row in fresh)  # a stable order, so reads are reproducible
        files_read += [Row(source=source, **row.asDict()) for row in fresh]
        counts[f"{source}.files"] = len(paths)
        log.info("source %s: %d new or changed files at %s", source, len(paths), path)
        canonical = read_source(spark, source, spec, path if spec.format == "delta" else paths) if paths else None
        if canonical is None:
            if paths:
                log.warning("source %s at %s is empty (no lines)", source, path)
            counts.update({f"{source}.read": 0, f"bronze.{source}": 0, f"quarantine.{source}": 0})
            if not tables.table_exists(spark, tables.BRONZE[source], lake):
                tables.write_table(empty_bronze(spark, source), tables.BRONZE[source], lake)
            continue
        sources_read.append(source)
        erased = 0
        if hashes is not None and CUSTOMER_ID in canonical.columns:
            erased_df = erase.erased_ids(canonical, hashes, keyed).persist()
            checked_frames.append(erased_df)
            erased_df = F.broadcast(erased_df)
            erased = canonical.join(erased_df, CUSTOMER_ID, "left_semi").count()
            canonical = canonical.join(erased_df, CUSTOMER_ID, "left_anti")
            counts[f"erased.{source}"] = erased
            log.info("source %s: %d rows of erased customers dropped", source, erased)
        checked = with_typed_columns(canonical, source, dict(spec.formats), config.ingest)
        checked = checked.persist(StorageLevel.MEMORY_AND_DISK)
        checked_frames.append(checked)
        required = REQUIRED_COLUMNS[source]
        stats = checked.groupBy(REASON).agg(F.count(F.lit(1)).alias("_n"), *[F.count(c).alias(c) for c in required])
        by_reason = {row[REASON]: row for row in stats.collect()}
        read = sum(row["_n"] for row in by_reason.values()) + erased
        if read == 0:
            log.warning("source %s at %s is empty (no data rows)", source, path)
        for column in required:
            if read and not sum(row[column] for row in by_reason.values()):
                raise IngestError(f"source '{source}' lacks required column '{column}': no row at {path} has it")
        accepted = tables.write_table(accepted_rows(checked, source), tables.BRONZE[source], lake,
                                      where=_in_files(paths) if seen_before else None)
        rejected = read - erased - (by_reason[None]["_n"] if None in by_reason else 0)
        if read != accepted + rejected + erased:
            raise IngestError(f"source '{source}': read {read} != accepted {accepted} + quarantined {rejected} "
                              f"+ erased {erased}")
        for reason, row in sorted((r, row) for r, row in by_reason.items() if r is not None):
            log.info("source %s: %d rows quarantined as %s", source, row["_n"], reason)
        counts.update({f"{source}.read": read, f"bronze.{source}": accepted, f"quarantine.{source}": rejected})
        quarantined.append(quarantine_rows(checked, source, run_id))
    union = spark.createDataFrame([], QUARANTINE_SCHEMA)
    for frame in quarantined:
        union = union.unionByName(frame)
    replaced = [row[SOURCE_FILE] for row in files_read if row["source"] in sources_read]
    if replaced or not incremental or not tables.table_exists(spark, tables.QUARANTINE, lake):
        where = _in_files(replaced) if incremental and replaced else None
        written = tables.write_table(union, tables.QUARANTINE, lake, where=where)
        expected = sum(v for k, v in counts.items() if k.startswith("quarantine."))
        if written != expected:
            raise IngestError(f"quarantine wrote {written} rows, expected {expected}")
        counts[tables.QUARANTINE.qualified] = written
    record_files(spark, config, files_read, run_id)
    for frame in checked_frames:
        frame.unpersist()
    return counts


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


def pending_files(spark: SparkSession, lakehouse_dir: str) -> DataFrame:
    """Return the ingested files whose rows ``prepare`` has not merged into silver yet."""
    return tables.read_table(spark, tables.INGESTED_FILES, lakehouse_dir).where(F.col("prepared_run_id").isNull())


def mark_prepared(spark: SparkSession, lakehouse_dir: str, files: list[str], run_id: str) -> None:
    """Record that ``prepare`` run ``run_id`` merged the rows of ``files`` into silver."""
    DeltaTable.forPath(spark, tables.INGESTED_FILES.path(lakehouse_dir)).update(
        F.col("prepared_run_id").isNull() & F.col(SOURCE_FILE).isin(files), {"prepared_run_id": F.lit(run_id)})

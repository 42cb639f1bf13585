"""Raw sources: where a source's files are, which files it has, and reading them into canonical columns."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from crm_spark.config import SourceConfig
from crm_spark.ingest.canonical import SourceError, canonical_columns
from crm_spark.ingest.parse import first_line, parse_csv_lines, parse_json_lines, parse_table, read_lines, split_header
from crm_spark.schemas import CANONICAL_COLUMNS, INGESTED_FILES_SCHEMA, SOURCE_FILE


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
        SourceError: the path cannot be read or a required column is missing.
    """
    try:
        if spec.format in ("parquet", "delta"):
            table_df = spark.read.format(spec.format).load(path)
            source_file = F.lit(path) if spec.format == "delta" else F.col("_metadata.file_path")
            return canonical_columns(parse_table(table_df, source_file), source, spec, table_df.columns)
        lines_df = read_lines(spark, path, spec.encoding)
    except AnalysisException as error:
        detail = (str(error).strip().splitlines() or [""])[0]
        raise SourceError(f"source '{source}': cannot read {path}: {detail}") from None
    if spec.format == "json":
        keys = [*[spec.columns.get(c, c) for c in CANONICAL_COLUMNS[source]], *spec.attributes]
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
        SourceError: the path does not exist or cannot be listed.
    """
    schema = StructType([f for f in INGESTED_FILES_SCHEMA.fields
                         if f.name in (SOURCE_FILE, "file_size", "modified_at")])
    if spec.format == "delta":
        return spark.createDataFrame([(path, None, None)], schema)
    try:
        listing = spark.read.format("binaryFile").load(path)
    except AnalysisException as error:
        detail = (str(error).strip().splitlines() or [""])[0]
        raise SourceError(f"source '{source}': cannot read {path}: {detail}") from None
    return listing.select(F.col("path").alias(SOURCE_FILE), F.col("length").alias("file_size"),
                          F.col("modificationTime").alias("modified_at"))


def source_hash(spec: SourceConfig) -> str:
    """Return a short hash of a source's settings (path, format, mapping, formats...)."""
    text = json.dumps(dataclasses.asdict(spec), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

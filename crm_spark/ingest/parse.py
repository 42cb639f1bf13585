"""Parsing raw sources into string fields: text read line by line (CSV or JSON lines) and
tables (Parquet, Delta), each row keeping its original text and structural reasons.

Every parsed frame has ``_raw`` (the original text), ``_source_file``, ``_bad_encoding``,
the fields ``_f0..`` and ``_reason``/``_message`` (null for a well-formed line).
"""

from __future__ import annotations

import csv
import re

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from crm_spark.schemas import SOURCE_FILE

_QUOTED = '"(?:[^"]|"")*"'
_CORRUPT = "_corrupt_record"
REASON = "_reason"
MESSAGE = "_message"
RAW = "_raw"
BAD_ENCODING = "_bad_encoding"
FIRST_BLOCK = "_first_block"


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
    """Return the column names of a CSV header line (a UTF-8 byte-order mark before the first is dropped)."""
    return [name.strip() for name in next(csv.reader([line.removeprefix("\ufeff")], delimiter=delimiter))]


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

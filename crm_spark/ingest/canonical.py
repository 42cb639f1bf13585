"""Canonical columns: a parsed source's fields mapped onto canonical names, cast to the bronze
types, and every row either accepted or given a reason code for the quarantine.

Reason codes: ``empty_line``, ``bad_encoding``, ``unbalanced_quote``,
``too_few_fields``, ``too_many_fields``, ``malformed_json``, ``field_too_long``,
``control_characters``, ``missing_<column>``, ``invalid_<column>``,
``rating_out_of_range``.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, TimestampType

from crm_spark.config import IngestConfig, SourceConfig
from crm_spark.ingest.parse import BAD_ENCODING, MESSAGE, RAW, REASON, field_name
from crm_spark.schemas import (
    BRONZE_SCHEMAS,
    CANONICAL_COLUMNS,
    ORDER_ID,
    RATING,
    REQUIRED_COLUMNS,
    RUN_ID,
    SOURCE_FILE,
)

_CONTROL = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]"


class IngestError(RuntimeError):
    """A source cannot be read at all, lacks a required column, or rows do not reconcile."""


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


def typed_columns(
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

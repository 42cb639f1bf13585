"""Canonical columns: a parsed source's fields mapped onto canonical names, cast to the bronze
types, and every row either accepted or given a reason code for the quarantine.

Reason codes: ``empty_line``, ``bad_encoding``, ``unbalanced_quote``,
``too_few_fields``, ``too_many_fields``, ``malformed_json``, ``field_too_long``,
``control_characters``, ``missing_<column>``, ``invalid_<column>``,
``rating_out_of_range``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DateType, DoubleType, StringType, StructType, TimestampType

from crm_spark.config import IngestConfig, SourceConfig
from crm_spark.dates import parse_date_text
from crm_spark.ingest.parse import BAD_ENCODING, MESSAGE, RAW, REASON, field_name
from crm_spark.schemas import (
    ATTRIBUTE_SQL_TYPES,
    AUTO,
    BOOLEAN,
    BOOLEAN_CODES,
    BRONZE_SCHEMAS,
    CANONICAL_COLUMNS,
    CATEGORICAL,
    DATE,
    INVALID_ATTRIBUTES,
    NUMERIC,
    ORDER_ID,
    RATING,
    REQUIRED_COLUMNS,
    RUN_ID,
    SOURCE_FILE,
    attribute_column,
)

_CONTROL = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]"
# An attribute is numeric when at least this share of its non-blank values are numbers.
NUMERIC_SHARE = 0.95
# An attribute whose non-blank values are mostly e-mail addresses or phone numbers is personal data.
PERSONAL_VALUE_SHARE = 0.5
_EMAIL_VALUE = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
_PHONE_VALUE = r"^(\+|00)?\(?[0-9][0-9 ()./-]{5,}[0-9]$"
_DATE_VALUE = r"^[0-9]{1,4}[./-][0-9]{1,2}[./-][0-9]{1,4}$"


class IngestError(RuntimeError):
    """A source cannot be read at all, lacks a required column, or rows do not reconcile."""


class SourceError(IngestError):
    """A source does not match its config: unreadable, lacking a column it must have, or holding personal data
    where the config promised none. A mistake in the inputs, not a failure of the run's code."""


@dataclass(frozen=True)
class Attribute:
    """A customer attribute: its column in the source, its column in the tables, its type and date patterns."""

    source_column: str
    column: str
    kind: str  # numeric, categorical, boolean or date; auto until resolved from the data
    formats: tuple[str, ...] = ()


def declared_attributes(spec: SourceConfig) -> list[Attribute]:
    """Return the attributes a source's config declares, in config order (``auto`` where no type is given)."""
    return [Attribute(column, attribute_column(column), kind or AUTO, tuple(spec.formats.get(column, ())))
            for column, kind in spec.attributes.items()]


def _text(attribute: Attribute) -> Column:
    """Return an attribute's trimmed text, null when blank."""
    text = F.trim(F.col(attribute.column))
    return F.when(text != "", text)


def personal_attributes(canonical_df: DataFrame, attributes: Sequence[Attribute]) -> list[str]:
    """Return the source columns of the attributes whose non-blank values are mostly e-mail addresses or
    phone numbers (dates like 2024-01-05 are not phone numbers). Only counts are computed; no value is kept."""
    aggregates = []
    for i, attribute in enumerate(attributes):
        text = _text(attribute)
        digits = F.length(F.regexp_replace(text, "[^0-9]", ""))
        phone = (text.rlike(_PHONE_VALUE) & text.rlike("[ ()+-]") & digits.between(7, 15) & ~text.rlike(_DATE_VALUE))
        aggregates += [F.count(text).alias(f"n{i}"),
                       F.count(F.when(text.rlike(_EMAIL_VALUE) | phone, 1)).alias(f"p{i}")]
    if not aggregates:
        return []
    row = canonical_df.agg(*aggregates).first()
    return [a.source_column for i, a in enumerate(attributes)
            if row[f"n{i}"] and row[f"p{i}"] > PERSONAL_VALUE_SHARE * row[f"n{i}"]]


def resolved_attributes(canonical_df: DataFrame, attributes: Sequence[Attribute], existing: StructType | None
                        ) -> list[Attribute]:
    """Resolve ``auto`` types: the type the bronze table already has, else numeric when at least
    ``NUMERIC_SHARE`` of the non-blank values are numbers, else categorical."""
    known = {f.name: f.dataType for f in existing.fields} if existing is not None else {}
    by_type = {t.simpleString(): kind for kind, t in ATTRIBUTE_SQL_TYPES.items()}
    pending = [a for a in attributes if a.kind == AUTO and a.column not in known]
    counts = canonical_df.agg(*[agg for i, a in enumerate(pending) for agg in (
        F.count(_text(a)).alias(f"n{i}"), F.count(_text(a).try_cast(DoubleType())).alias(f"d{i}"))]).first() \
        if pending else None
    resolved = []
    for attribute in attributes:
        kind = attribute.kind
        if kind == AUTO and attribute.column in known:
            kind = by_type.get(known[attribute.column].simpleString(), CATEGORICAL)
        elif kind == AUTO:
            i = pending.index(attribute)
            kind = NUMERIC if counts[f"n{i}"] and counts[f"d{i}"] >= NUMERIC_SHARE * counts[f"n{i}"] else CATEGORICAL
        resolved.append(dataclasses.replace(attribute, kind=kind))
    return resolved


def _typed_attribute(attribute: Attribute) -> Column:
    """Return an attribute's value in its type (null when blank or when it does not cast)."""
    text = _text(attribute)
    if attribute.kind == NUMERIC:
        return text.try_cast(DoubleType())
    if attribute.kind == BOOLEAN:
        code = F.lower(text)
        return F.when(code.isin(*BOOLEAN_CODES[True]), F.lit(True)).when(code.isin(*BOOLEAN_CODES[False]),
                                                                           F.lit(False)).cast(BooleanType())
    if attribute.kind == DATE:
        return parse_date_text(text, attribute.formats).cast(DateType())
    return text.cast(StringType())


def canonical_columns(parsed_df: DataFrame, source: str, spec: SourceConfig, fields: list[str]) -> DataFrame:
    """Map a parsed source's fields onto the canonical columns of ``source``, then its attributes.

    A canonical column takes the source field named in ``spec.columns`` (or named like
    the column itself, ignoring case), else the constant from ``spec.constants``; a
    missing ``order_id`` is derived from a hash of the line, so identical lines are
    one order line; any other missing optional column is null. Each attribute takes the
    field it names, under its snake_case column.

    Args:
        parsed_df: output of a ``parse_*`` function, fields ``_f0..``.
        source: a key of ``CANONICAL_COLUMNS``.
        spec: the source's configuration.
        fields: the source's field names, in ``_f`` order.

    Returns:
        ``_raw``, ``_source_file``, ``_bad_encoding``, canonical string columns,
        ``_reason`` and ``_message``.

    Raises:
        SourceError: a required column is neither in the source nor a constant, or an
            attribute's field is not in the source.
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
            raise SourceError(
                f"source '{source}' lacks required column '{column}' (source field '{wanted}' not found; map it "
                f"under sources.{source}.columns or set sources.{source}.constants.{column})")
        else:
            value = F.lit(None).cast("string")
        columns.append(value.alias(column))
    for attribute in declared_attributes(spec):
        position = exact.get(attribute.source_column, folded.get(attribute.source_column.lower()))
        if position is None:
            raise SourceError(f"source '{source}' lacks the attribute column '{attribute.source_column}' "
                              f"(sources.{source}.attributes)")
        columns.append(F.col(field_name(position)).alias(attribute.column))
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
    limits: IngestConfig | None = None, attributes: Sequence[Attribute] = (),
) -> DataFrame:
    """Cast canonical strings to the bronze types, giving a reason to rows that fail.

    Checks, first failure wins, after any structural reason from parsing: bytes not
    valid in the encoding, a field longer than ``limits.max_field_chars``, control
    characters, a required field blank (``missing_<field>``), a value that does not
    cast (``invalid_<field>``), a rating outside the configured range. An attribute
    value that does not cast to its type is nulled, not rejected: the row keeps the
    customer, and ``_invalid_attributes`` lists the attribute for the quality report.

    Args:
        canonical_df: output of :func:`canonical_columns`.
        source: a key of ``BRONZE_SCHEMAS``.
        formats: timestamp patterns per column (default: ISO forms only).
        limits: field length and rating range (default: ``IngestConfig()``).
        attributes: the source's attributes, types resolved (:func:`resolved_attributes`).

    Returns:
        Typed canonical columns, typed attributes and, with attributes,
        ``_invalid_attributes``, plus ``_raw``, ``_source_file``, ``_reason``, ``_message``.
    """
    formats, limits = formats or {}, limits or IngestConfig()
    schema = BRONZE_SCHEMAS[source]
    names = [*schema.fieldNames(), *[a.column for a in attributes]]
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
    attribute_columns: list[Column] = []
    if attributes:
        values = {a.column: _typed_attribute(a) for a in attributes}
        invalid = F.filter(F.array(*[F.when(_text(a).isNotNull() & values[a.column].isNull(), F.lit(a.column))
                                     for a in attributes]), lambda name: name.isNotNull())
        attribute_columns = [*[values[a.column].alias(a.column) for a in attributes],
                             F.when(F.size(invalid) > 0, invalid).alias(INVALID_ATTRIBUTES)]
    return canonical_df.select(
        RAW, SOURCE_FILE, *[typed[name].alias(name) for name in schema.fieldNames()], *attribute_columns,
        F.coalesce(F.col(REASON), first_failure).alias(REASON),
        F.coalesce(F.col(MESSAGE), first_message).alias(MESSAGE),
    )


def quarantine_rows(checked_df: DataFrame, source: str, run_id: str) -> DataFrame:
    """Return the rejected rows in the quarantine table's shape."""
    return checked_df.where(F.col(REASON).isNotNull()).select(
        F.lit(run_id).alias(RUN_ID), F.lit(source).alias("source"), SOURCE_FILE,
        F.col(REASON).alias("reason"), F.col(MESSAGE).alias("message"), F.col(RAW).alias("raw"),
    )


def accepted_rows(checked_df: DataFrame) -> DataFrame:
    """Return the accepted rows with the bronze columns (attributes too) and their source file."""
    return checked_df.where(F.col(REASON).isNull()).select(
        *[c for c in checked_df.columns if c not in (RAW, REASON, MESSAGE, SOURCE_FILE)], SOURCE_FILE)

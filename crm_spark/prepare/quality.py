"""Data-quality report: a profile of every source and each cleaning rule's count, per run.

Rows of the ``data_quality`` table are ``(dataset, column, metric, value, text)``:
``null_share``, ``distinct_count`` (approximate), ``min`` and ``max`` (in ``text``; not
for personal-data columns) per bronze column, added up from per-file profiles
(``bronze.file_profiles``), so a run profiles only the files ingested since the last
prepare; ``invalid_count`` and ``valid_share`` per cleaned customer column and per
customer attribute (values that did not cast to the attribute's type); ``quarantined``
per source and reason; ``hits`` per cleaning rule (dataset ``rules``).
Expectations from config are checked against these rows.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from crm_spark import tables
from crm_spark.config import EXPECTATION_PATTERN, Config
from crm_spark.schemas import (
    DATA_QUALITY_SCHEMA,
    EMAIL,
    FILE_PROFILES_SCHEMA,
    INVALID_ATTRIBUTES,
    PHONE,
    PII_COLUMNS,
    SOURCE_FILE,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measure:
    """One measured value of the data-quality report: a metric of a dataset's column."""

    dataset: str
    column: str
    metric: str
    value: float | None = None
    text: str | None = None

    @classmethod
    def of_row(cls, row: Row) -> Measure:
        """Return the measure of a ``data_quality`` table row."""
        return cls(row["dataset"], row["column"], row["metric"], row["value"], row["text"])

# Cleaned customer columns and the flag that marks a given value as invalid.
VALIDATED = {EMAIL: "email_invalid", PHONE: "phone_invalid", "gender": "gender_unknown",
             "birth_date": "birth_date_invalid", "age": "age_invalid", "label": "label_invalid"}


class QualityError(RuntimeError):
    """A data-quality expectation configured to fail the run was not met."""


# Bronze columns the profile leaves out: they say where a row came from and what ingest nulled.
BOOKKEEPING = (SOURCE_FILE, INVALID_ATTRIBUTES)


def file_profiles(df: DataFrame, dataset: str) -> DataFrame:
    """Return a ``FILE_PROFILES_SCHEMA`` row per source file of ``df`` and profiled column, in one pass.

    Each row holds the file's rows, the column's non-null values, a distinct-count sketch of
    its values as text (``hll_sketch_agg``), and its min and max as text; min and max of
    personal-data columns are left out, as the report is a gold table.
    """
    columns = [c for c in df.columns if c not in BOOKKEEPING]
    aggs = [F.count(F.lit(1)).alias("_rows")]
    for i, c in enumerate(columns):
        kept = c not in PII_COLUMNS
        aggs += [F.count(c).alias(f"n{i}"), F.hll_sketch_agg(F.col(c).cast("string")).alias(f"d{i}"),
                 (F.min(c) if kept else F.lit(None)).cast("string").alias(f"lo{i}"),
                 (F.max(c) if kept else F.lit(None)).cast("string").alias(f"hi{i}")]
    per_column = [F.struct(F.lit(c).alias("column"), F.col("_rows").alias("rows"), F.col(f"n{i}").alias("non_null"),
                           F.col(f"d{i}").alias("sketch"), F.col(f"lo{i}").alias("min"), F.col(f"hi{i}").alias("max"))
                  for i, c in enumerate(columns)]
    return df.groupBy(SOURCE_FILE).agg(*aggs).select(
        F.lit(dataset).alias("source"), SOURCE_FILE, F.inline(F.array(*per_column))).select(
        *[F.col(f.name).cast(f.dataType) for f in FILE_PROFILES_SCHEMA.fields])


def profile(profiles_df: DataFrame, schemas: dict[str, StructType]) -> tuple[list[Measure], dict[str, set[int]]]:
    """Return the rows, and the null share, approximate distinct count, min and max of every profiled
    column, of each source of ``schemas``, added up over its files' rows of ``profiles_df``
    (:func:`file_profiles`) in one pass.

    Args:
        profiles_df: file profiles.
        schemas: each source's bronze schema: min and max are compared as its column types.

    Returns:
        The measures, and per source the rows profiled for each of its columns (one number when
        every column was profiled over the same files).
    """
    columns = {name: [f for f in schema.fields if f.name not in BOOKKEEPING] for name, schema in schemas.items()}
    aggs = []
    for s, (name, fields) in enumerate(columns.items()):
        for i, field in enumerate(fields):
            of = (F.col("source") == name) & (F.col("column") == field.name)
            aggs += [F.sum(F.when(of, F.col("rows"))).alias(f"r{s}_{i}"),
                     F.sum(F.when(of, F.col("non_null"))).alias(f"n{s}_{i}"),
                     F.hll_sketch_estimate(F.hll_union_agg(F.when(of, F.col("sketch")))).alias(f"d{s}_{i}"),
                     F.min(F.when(of, F.col("min").try_cast(field.dataType))).cast("string").alias(f"lo{s}_{i}"),
                     F.max(F.when(of, F.col("max").try_cast(field.dataType))).cast("string").alias(f"hi{s}_{i}")]
    row = profiles_df.agg(*aggs).first()
    result, covered = [], {}
    for s, (name, fields) in enumerate(columns.items()):
        covered[name] = {row[f"r{s}_{i}"] or 0 for i in range(len(fields))}
        rows_n = max(covered[name])
        result.append(Measure(name, "*", "rows", float(rows_n)))
        for i, field in enumerate(fields):
            c = field.name
            result += [
                Measure(name, c, "null_share", (1.0 - row[f"n{s}_{i}"] / rows_n) if rows_n else None),
                Measure(name, c, "distinct_count", float(row[f"d{s}_{i}"] or 0)),
            ]
            if c not in PII_COLUMNS:
                result += [Measure(name, c, "min", text=row[f"lo{s}_{i}"]),
                           Measure(name, c, "max", text=row[f"hi{s}_{i}"])]
    return result, covered


def source_profile(spark: SparkSession, lake: str, bronze: dict[str, DataFrame], pending: dict[str, list[str]]
                   ) -> list[Measure]:
    """Return the profile measures of every source of ``bronze``, keeping ``bronze.file_profiles`` up to date.

    The ``pending`` files of each source (new, or read again, since the last prepare) are
    profiled and replace their rows of the table (every file is, when there is no table
    yet). A source whose profiled rows then differ from its bronze table's row count (rows
    erased, files gone, a new column) is profiled whole again. A day's run so reads its new
    files, however long bronze's history.

    Args:
        spark: the session.
        lake: the lakehouse root.
        bronze: the bronze table of each configured source.
        pending: per source, the files ``prepare`` has not merged yet.
    """
    schemas = {name: df.schema for name, df in bronze.items()}
    if tables.table_exists(spark, tables.FILE_PROFILES, lake):
        _write_profiles(lake, bronze, {name: pending[name] for name in bronze if pending.get(name)})
    else:
        _write_profiles(lake, bronze, dict.fromkeys(bronze))
    measures, covered = profile(tables.read_table(spark, tables.FILE_PROFILES, lake), schemas)
    stale = {name: None for name, df in bronze.items() if covered[name] != {df.count()}}
    if not stale:
        return measures
    log.info("profiling %s whole again: rows profiled differ from bronze", ", ".join(stale))
    _write_profiles(lake, bronze, stale)
    return profile(tables.read_table(spark, tables.FILE_PROFILES, lake), schemas)[0]


def _write_profiles(lake: str, bronze: dict[str, DataFrame], files: dict[str, list[str] | None]) -> None:
    """Profile ``files`` (per source; None for every file of it) and replace their rows of ``bronze.file_profiles``."""
    if not files:
        return
    profiled, replaced = [], []
    for name, paths in files.items():
        source = f"source = {tables.sql_literal(name)}"
        if paths is None:
            profiled.append(file_profiles(bronze[name], name))
            replaced.append(f"({source})")
        else:
            profiled.append(file_profiles(bronze[name].where(F.col(SOURCE_FILE).isin(paths)), name))
            replaced.append(f"({source} AND {tables.in_files(paths)})")
    written = tables.write_table(reduce(DataFrame.unionByName, profiled), tables.FILE_PROFILES, lake,
                                 where=" OR ".join(replaced))
    log.info("profiled %s: %d rows of %s", ", ".join(f"{name} ({len(paths) if paths else 'every'} files)"
                                                     for name, paths in files.items()),
             written, tables.FILE_PROFILES.qualified)


def validity(raw_df: DataFrame, cleaned_df: DataFrame, dataset: str) -> list[Measure]:
    """Return invalid counts and valid shares of the customer columns cleaning validates.

    ``valid_share`` is the share of given (non-blank) values that survived cleaning.
    """
    bad = cleaned_df.agg(*[F.sum(F.col(flag).cast("int")).alias(f"bad{i}")
                           for i, flag in enumerate(VALIDATED.values())]).first()
    given = raw_df.agg(*[F.count(F.when(F.trim(F.col(c)) != "", 1)).alias(f"given{i}")
                         for i, c in enumerate(VALIDATED)]).first()
    result: list[Measure] = []
    for i, column in enumerate(VALIDATED):
        invalid, total = int(bad[f"bad{i}"] or 0), int(given[f"given{i}"] or 0)
        result += [Measure(dataset, column, "invalid_count", float(invalid)),
                   Measure(dataset, column, "valid_share", (1.0 - invalid / total) if total else None)]
    return result


def attribute_validity(bronze_df: DataFrame, attributes: list[str], dataset: str) -> list[Measure]:
    """Return invalid counts and valid shares of the customer attributes bronze holds.

    An invalid value is one given but not of the attribute's type (ingest nulls it and
    lists the attribute in ``_invalid_attributes``); ``valid_share`` is over the values given.
    """
    present = [a for a in attributes if a in bronze_df.columns]
    if not present or INVALID_ATTRIBUTES not in bronze_df.columns:
        return []
    invalid = F.coalesce(F.col(INVALID_ATTRIBUTES), F.array().cast("array<string>"))
    row = bronze_df.agg(*[agg for i, a in enumerate(present) for agg in (
        F.count(F.when(F.array_contains(invalid, a), 1)).alias(f"bad{i}"), F.count(a).alias(f"ok{i}"))]).first()
    result: list[Measure] = []
    for i, attribute in enumerate(present):
        bad, good = row[f"bad{i}"], row[f"ok{i}"]
        result += [Measure(dataset, attribute, "invalid_count", float(bad)),
                   Measure(dataset, attribute, "valid_share", good / (good + bad) if good + bad else None)]
    return result


def quarantine_counts(quarantine_df: DataFrame) -> list[Measure]:
    """Return the quarantined rows per source and reason."""
    grouped = quarantine_df.groupBy("source", "reason").count().collect()
    return [Measure(r["source"], "*", f"quarantined.{r['reason']}", float(r["count"])) for r in grouped]


def rule_counts(counts: dict[str, int]) -> list[Measure]:
    """Return each cleaning rule's hits from prepare's ``rule.<name>`` counts."""
    return [Measure("rules", name.removeprefix("rule."), "hits", float(v))
            for name, v in sorted(counts.items()) if name.startswith("rule.")]


def report(spark: SparkSession, config: Config, run_id: str, measures: list[Measure]) -> DataFrame:
    """Return the measures as a ``data_quality`` frame of this run."""
    stamped = [(run_id, config.as_of_date, *dataclasses.astuple(m)) for m in measures]
    return spark.createDataFrame(stamped, DATA_QUALITY_SCHEMA)


_OPERATORS = {">=": operator.ge, "<=": operator.le}


def failed_expectations(measures: list[Measure], expectations: tuple[str, ...]) -> list[str]:
    """Return a message per expectation that is not met (a metric that is absent fails too)."""
    values = {(m.dataset, m.column, m.metric): m.value for m in measures}
    failures = []
    for expectation in expectations:
        match = EXPECTATION_PATTERN.match(expectation)
        key = (match["dataset"], match["column"], match["metric"])
        value = values.get(key)
        if value is None:
            failures.append(f"{expectation}: metric not measured in this run")
        elif not _OPERATORS[match["op"]](value, float(match["bound"])):
            failures.append(f"{expectation}: measured {value:.4f}")
    return failures


def check(measures: list[Measure], config: Config) -> None:
    """Warn about, or fail on, unmet expectations as ``quality.on_failure`` says.

    Raises:
        QualityError: an expectation is not met and ``on_failure`` is ``fail``.
    """
    failures = failed_expectations(measures, config.quality.expectations)
    for failure in failures:
        log.warning("data-quality expectation not met: %s", failure)
    if failures and config.quality.on_failure == "fail":
        raise QualityError(f"{len(failures)} data-quality expectation(s) not met; first: {failures[0]}")

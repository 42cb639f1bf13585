"""Data-quality report: a profile of every source and each cleaning rule's count, per run.

Rows of the ``data_quality`` table are ``(dataset, column, metric, value, text)``:
``null_share``, ``distinct_count`` (approximate), ``min`` and ``max`` (in ``text``; not
for personal-data columns) per bronze column; ``invalid_count`` and ``valid_share`` per cleaned customer column
and per customer attribute (values that did not cast to the attribute's type);
``quarantined`` per source and reason; ``hits`` per cleaning rule (dataset ``rules``).
Expectations from config are checked against these rows.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
from dataclasses import dataclass

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from crm_spark.config import EXPECTATION_PATTERN, Config
from crm_spark.schemas import (
    DATA_QUALITY_SCHEMA,
    EMAIL,
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


def profile(df: DataFrame, dataset: str) -> list[Measure]:
    """Return null share, approximate distinct count, min and max of every column, in one pass.

    Min and max of personal-data columns are not recorded: the report is a gold table.
    """
    columns = [c for c in df.columns if c not in (SOURCE_FILE, INVALID_ATTRIBUTES)]
    aggs = [F.count(F.lit(1)).alias("_rows")]
    for i, c in enumerate(columns):
        aggs += [F.count(F.col(c)).alias(f"n{i}"), F.approx_count_distinct(c).alias(f"d{i}"),
                 F.min(c).cast("string").alias(f"lo{i}"), F.max(c).cast("string").alias(f"hi{i}")]
    row = df.agg(*aggs).first()
    rows_n = row["_rows"]
    result = [Measure(dataset, "*", "rows", float(rows_n))]
    for i, c in enumerate(columns):
        result += [
            Measure(dataset, c, "null_share", (1.0 - row[f"n{i}"] / rows_n) if rows_n else None),
            Measure(dataset, c, "distinct_count", float(row[f"d{i}"])),
        ]
        if c not in PII_COLUMNS:
            result += [Measure(dataset, c, "min", text=row[f"lo{i}"]), Measure(dataset, c, "max", text=row[f"hi{i}"])]
    return result


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

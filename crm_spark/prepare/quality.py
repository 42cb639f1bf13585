"""Data-quality report: a profile of every source and each cleaning rule's count, per run.

Rows of the ``data_quality`` table are ``(dataset, column, metric, value, text)``:
``null_share``, ``distinct_count`` (approximate), ``min`` and ``max`` (in ``text``; not
for personal-data columns) per bronze column; ``invalid_count`` and ``valid_share`` per cleaned customer column;
``quarantined`` per source and reason; ``hits`` per cleaning rule (dataset ``rules``).
Expectations from config are checked against these rows.
"""

from __future__ import annotations

import logging
import operator

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import EXPECTATION_PATTERN, Config
from crm_spark.schemas import (
    AS_OF_DATE,
    DATA_QUALITY_SCHEMA,
    EMAIL,
    PHONE,
    PII_COLUMNS,
    RUN_ID,
    SOURCE_FILE,
)

log = logging.getLogger(__name__)

Row = tuple[str, str, str, float | None, str | None]  # dataset, column, metric, value, text
# Cleaned customer columns and the flag that marks a given value as invalid.
VALIDATED = {EMAIL: "email_invalid", PHONE: "phone_invalid", "gender": "gender_unknown",
             "birth_date": "birth_date_invalid", "age": "age_invalid", "label": "label_invalid"}


class QualityError(RuntimeError):
    """A data-quality expectation configured to fail the run was not met."""


def profile(df: DataFrame, dataset: str) -> list[Row]:
    """Return null share, approximate distinct count, min and max of every column, in one pass.

    Min and max of personal-data columns are not recorded: the report is a gold table.
    """
    columns = [c for c in df.columns if c != SOURCE_FILE]
    aggs = [F.count(F.lit(1)).alias("_rows")]
    for i, c in enumerate(columns):
        aggs += [F.count(F.col(c)).alias(f"n{i}"), F.approx_count_distinct(c).alias(f"d{i}"),
                 F.min(c).cast("string").alias(f"lo{i}"), F.max(c).cast("string").alias(f"hi{i}")]
    row = df.agg(*aggs).first()
    rows_n = row["_rows"]
    result: list[Row] = [(dataset, "*", "rows", float(rows_n), None)]
    for i, c in enumerate(columns):
        result += [
            (dataset, c, "null_share", (1.0 - row[f"n{i}"] / rows_n) if rows_n else None, None),
            (dataset, c, "distinct_count", float(row[f"d{i}"]), None),
        ]
        if c not in PII_COLUMNS:
            result += [(dataset, c, "min", None, row[f"lo{i}"]), (dataset, c, "max", None, row[f"hi{i}"])]
    return result


def validity(raw_df: DataFrame, cleaned_df: DataFrame, dataset: str) -> list[Row]:
    """Return invalid counts and valid shares of the customer columns cleaning validates.

    ``valid_share`` is the share of given (non-blank) values that survived cleaning.
    """
    bad = cleaned_df.agg(*[F.sum(F.col(flag).cast("int")).alias(f"bad{i}")
                           for i, flag in enumerate(VALIDATED.values())]).first()
    given = raw_df.agg(*[F.count(F.when(F.trim(F.col(c)) != "", 1)).alias(f"given{i}")
                         for i, c in enumerate(VALIDATED)]).first()
    result: list[Row] = []
    for i, column in enumerate(VALIDATED):
        invalid, total = int(bad[f"bad{i}"] or 0), int(given[f"given{i}"] or 0)
        result += [(dataset, column, "invalid_count", float(invalid), None),
                   (dataset, column, "valid_share", (1.0 - invalid / total) if total else None, None)]
    return result


def quarantine_counts(quarantine_df: DataFrame) -> list[Row]:
    """Return the quarantined rows per source and reason."""
    grouped = quarantine_df.groupBy("source", "reason").count().collect()
    return [(r["source"], "*", f"quarantined.{r['reason']}", float(r["count"]), None) for r in grouped]


def rule_counts(counts: dict[str, int]) -> list[Row]:
    """Return each cleaning rule's hits from prepare's ``rule.<name>`` counts."""
    return [("rules", name.removeprefix("rule."), "hits", float(v), None)
            for name, v in sorted(counts.items()) if name.startswith("rule.")]


def report(spark: SparkSession, config: Config, run_id: str, rows: list[Row]) -> DataFrame:
    """Return the rows as a ``data_quality`` frame of this run."""
    stamped = [(run_id, config.as_of_date, *row) for row in rows]
    return spark.createDataFrame(stamped, DATA_QUALITY_SCHEMA)


_OPERATORS = {">=": operator.ge, "<=": operator.le}


def failed_expectations(rows: list[Row], expectations: tuple[str, ...]) -> list[str]:
    """Return a message per expectation that is not met (a metric that is absent fails too)."""
    values = {(d, c, m): v for d, c, m, v, _ in rows}
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


def check(rows: list[Row], config: Config) -> None:
    """Warn about, or fail on, unmet expectations as ``quality.on_failure`` says.

    Raises:
        QualityError: an expectation is not met and ``on_failure`` is ``fail``.
    """
    failures = failed_expectations(rows, config.quality.expectations)
    for failure in failures:
        log.warning("data-quality expectation not met: %s", failure)
    if failures and config.quality.on_failure == "fail":
        raise QualityError(f"{len(failures)} data-quality expectation(s) not met; first: {failures[0]}")


def gate(spark: SparkSession, config: Config) -> dict[str, int]:
    """Fail unless the newest ``prepare`` run for ``as_of_date`` met every expectation.

    A scheduler runs this between ``prepare`` and ``train`` (whatever
    ``quality.on_failure`` says), so models are never trained on data that failed.

    Returns:
        ``quality_gate.expectations``: how many expectations were checked.

    Raises:
        QualityError: no ``prepare`` run succeeded for ``as_of_date``, or one of its
            expectations is not met.
    """
    lake = config.paths.lakehouse_dir
    prepared = None
    if tables.table_exists(spark, tables.RUNS, lake):
        prepared = tables.read_table(spark, tables.RUNS, lake).where(
            (F.col(AS_OF_DATE) == F.lit(config.as_of_date)) & (F.col("stage_status")["prepare"] == "succeeded")
        ).orderBy(F.col("finished_at").desc()).select(RUN_ID).first()
    if prepared is None:
        raise QualityError(f"no prepare run succeeded for {config.as_of_date}: nothing to check")
    quality_df = tables.read_table(spark, tables.DATA_QUALITY, lake).where(F.col(RUN_ID) == prepared[RUN_ID])
    rows = [(r["dataset"], r["column"], r["metric"], r["value"], r["text"]) for r in quality_df.collect()]
    failures = failed_expectations(rows, config.quality.expectations)
    if failures:
        raise QualityError(f"prepare run {prepared[RUN_ID]}: {len(failures)} data-quality expectation(s) not met; "
                           f"first: {failures[0]}")
    log.info("prepare run %s met all %d expectations", prepared[RUN_ID], len(config.quality.expectations))
    return {"quality_gate.expectations": len(config.quality.expectations)}

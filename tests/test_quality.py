"""Data-quality profile and expectations."""

from __future__ import annotations

import datetime as dt

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import QualityConfig
from crm_spark.prepare import quality
from crm_spark.prepare.quality import Measure
from crm_spark.schemas import RUNS_SCHEMA
from crm_spark.stages import quality_gate

from .conftest import AS_OF, make_config

PROFILED = "_source_file string, customer_id string, email string, price double, seen date"


def profile_rows(measures):
    return {(m.column, m.metric): (m.value, m.text) for m in measures}


def test_profile_adds_up_files_compares_as_the_column_type_and_keeps_personal_values_out(spark):
    frame = spark.createDataFrame([("a", "C1", "ann@x.com", 10.0, dt.date(2024, 5, 1)),
                                   ("b", "C2", None, 5.0, dt.date(2024, 12, 31)), ("b", "C3", None, None, None)],
                                  PROFILED)
    measures, covered = quality.profile(quality.file_profiles(frame, "customers"), {"customers": frame.schema})
    rows = profile_rows(measures)
    assert covered == {"customers": {3}}
    assert rows[("*", "rows")] == (3.0, None)
    assert rows[("email", "null_share")][0] == pytest.approx(2 / 3)
    # As text, "10.0" < "5.0": the files' min and max are compared as doubles.
    assert rows[("price", "min")] == (None, "5.0") and rows[("price", "max")] == (None, "10.0")
    assert rows[("seen", "min")] == (None, "2024-05-01") and rows[("seen", "max")] == (None, "2024-12-31")
    assert rows[("customer_id", "distinct_count")] == (3.0, None)
    assert ("email", "min") not in rows and ("email", "max") not in rows and ("_source_file", "rows") not in rows


def test_source_profile_reads_only_pending_files_and_profiles_a_source_again_when_rows_were_erased(spark, tmp_path):
    lake = str(tmp_path / "lakehouse")
    a1, a2 = ("a", "C1", "ann@x.com", 10.0, None), ("a", "C2", None, 7.0, dt.date(2024, 1, 2))
    b1, c1 = ("b", "C3", "bo@x.com", 1.0, None), ("c", "C4", None, 99.0, dt.date(2024, 3, 4))

    def day(rows, pending):
        frame = spark.createDataFrame(rows, PROFILED)
        measures = quality.source_profile(spark, lake, {"customers": frame}, {"customers": pending})
        history = DeltaTable.forPath(spark, tables.FILE_PROFILES.path(lake)).history(1).first()
        whole = quality.file_profiles(frame.withColumn("_source_file", F.lit("every")), "customers")
        assert measures == quality.profile(whole, {"customers": frame.schema})[0]
        return history["version"], history["operationMetrics"].get("numOutputRows")

    assert day([a1, a2, b1], ["a", "b"]) == (0, "8")  # no table yet: two files of four columns
    assert day([a1, a2, b1], [])[0] == 0  # nothing pending, nothing written
    assert day([a1, a2, b1, c1], ["c"]) == (1, "4")  # the new file only
    assert day([a2, b1, c1], []) == (2, "12")  # a row erased: every file again


def test_expectations_report_each_failure():
    measures = [Measure("customers", "email", "valid_share", 0.93), Measure("orders", "unit_price", "null_share", 0.0)]
    failures = quality.failed_expectations(measures, (
        "customers.email.valid_share >= 0.95", "orders.unit_price.null_share <= 0.0",
        "ratings.rating.null_share <= 0.0"))
    assert failures == ["customers.email.valid_share >= 0.95: measured 0.9300",
                        "ratings.rating.null_share <= 0.0: metric not measured in this run"]


def test_gate_checks_its_own_runs_prepare_or_the_newest_successful_one_of_the_date(spark, tmp_path):
    config = make_config(tmp_path, quality=QualityConfig(expectations=("customers.email.valid_share >= 0.9",),
                                                         on_failure="warn"))
    lake = config.paths.lakehouse_dir
    with pytest.raises(quality.QualityError, match="no prepare run succeeded"):
        quality_gate.run(spark, config, "gate")

    def prepared(run_id: str, finished: dt.datetime, status: str, valid_share: float) -> None:
        run = (run_id, AS_OF, "hash", ["prepare"], finished, finished, status, None, {}, {}, {},
               {"prepare": status}, {}, {}, "{}")
        tables.write_table(spark.createDataFrame([run], RUNS_SCHEMA), tables.RUNS, lake, run_id)
        measured = [Measure("customers", "email", "valid_share", valid_share)]
        tables.write_table(quality.report(spark, config, run_id, measured), tables.DATA_QUALITY, lake, run_id)

    prepared("old-good", dt.datetime(2025, 1, 1, 1), "succeeded", 0.95)
    assert quality_gate.run(spark, config, "gate") == {"quality_gate.expectations": 1}
    prepared("new-bad", dt.datetime(2025, 1, 1, 2), "succeeded", 0.5)
    prepared("newest-failed", dt.datetime(2025, 1, 1, 3), "failed", 0.99)
    with pytest.raises(quality.QualityError, match=r"^prepare run new-bad: 1 data-quality expectation\(s\) not met; "
                                                   r"first: customers.email.valid_share >= 0.9: measured 0.5000"):
        quality_gate.run(spark, config, "gate")
    # In a profile (crm-spark daily) the gate checks the prepare of its own run, still running.
    measured = [Measure("customers", "email", "valid_share", 0.97)]
    tables.write_table(quality.report(spark, config, "daily-run", measured), tables.DATA_QUALITY, lake, "daily-run")
    assert quality_gate.run(spark, config, "daily-run") == {"quality_gate.expectations": 1}

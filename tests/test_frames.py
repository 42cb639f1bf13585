"""Partitions for model fitting (the task slots of a master, the coalescing of fit inputs) and Spark work on a
thread of its own."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from pyspark.testing import assertDataFrameEqual

from crm_spark import logcontext
from crm_spark.frames import beside, for_fitting, local_threads, task_slots


@pytest.mark.parametrize(("master", "threads"), [
    ("local", 1), ("local[3]", 3), ("local[2,4]", 2), ("local[*]", os.cpu_count()),
    ("spark://host:7077", None), ("local-cluster[2,1,1024]", None), ("yarn", None),
])
def test_local_threads_reads_the_master(master, threads):
    assert local_threads(master) == threads


def test_fitting_frames_get_one_partition_per_250000_rows_within_the_task_slots(spark):
    assert task_slots(spark) == 2  # the test session is local[2]
    df = spark.range(100).repartition(8)
    small = for_fitting(df, 100)
    assert small.rdd.getNumPartitions() == 1
    assertDataFrameEqual(small, df)
    assert for_fitting(df, 600_000).rdd.getNumPartitions() == 2  # three wanted, two slots
    assert for_fitting(df.coalesce(1), 600_000).rdd.getNumPartitions() == 1  # never more than it has


def test_work_beside_runs_on_another_thread_with_the_callers_job_group_and_log_context(spark, caplog):
    def work(n: int) -> tuple:
        logging.getLogger("crm_spark.test").info("counting")
        return (threading.current_thread().name, spark.sparkContext.getLocalProperty("spark.jobGroup.id"),
                spark.range(n).count())

    def failing() -> None:
        raise ValueError("no such table")

    spark.sparkContext.setJobGroup("prepare", "beside test")
    try:
        with logcontext.stage("run-1", "prepare"), caplog.at_level(logging.INFO, logger="crm_spark.test"), \
                ThreadPoolExecutor(1, thread_name_prefix="beside") as pool:
            done, failed = beside(spark, pool, work, 7), beside(spark, pool, failing)
            assert done.result()[0].startswith("beside") and done.result()[1:] == ("prepare", 7)
            with pytest.raises(ValueError, match="no such table"):
                failed.result()
    finally:
        spark.sparkContext.setJobGroup("", "")
    assert [(r.run_id, r.stage, r.getMessage()) for r in caplog.records] == [("run-1", "prepare", "counting")]

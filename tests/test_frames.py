"""Partitions for model fitting: the task slots of a master and the coalescing of fit inputs."""

from __future__ import annotations

import os

import pytest
from pyspark.testing import assertDataFrameEqual

from crm_spark.frames import for_fitting, local_threads, task_slots


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

"""Resources are scoped: persisted frames are released, checkpoints removed, changed settings restored."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from crm_spark import runs, tables
from crm_spark.frames import persisted

from .conftest import make_config


def test_a_persisted_frame_is_released_when_its_block_fails(spark):
    frame = spark.range(3)
    with pytest.raises(RuntimeError, match="stage failed"):
        with persisted(frame) as kept:
            assert kept.count() == 3 and kept.storageLevel.useMemory
            raise RuntimeError("stage failed")
    assert not frame.storageLevel.useMemory and not frame.storageLevel.useDisk


def test_a_run_removes_the_checkpoints_left_behind(spark, tmp_path):
    folder = Path(spark.sparkContext.getCheckpointDir().removeprefix("file:"))
    # Still referenced, so Spark's cleaner keeps it: what entity resolution or ALS leaves until the run ends.
    left_behind = spark.range(10).checkpoint()
    assert left_behind.count() == 10 and list(folder.iterdir())
    runs.execute(spark, make_config(tmp_path), ["maintain"], run_id="checkpoints")
    assert list(folder.iterdir()) == []


def test_vacuum_sets_the_retention_check_back_to_what_it_was(spark, tmp_path):
    lake = str(tmp_path / "lakehouse")
    tables.write_table(spark.range(5).selectExpr("CAST(id AS STRING) AS customer_key"), tables.CUSTOMERS, lake)
    path = tables.CUSTOMERS.path(lake)
    spark.conf.unset(tables.RETENTION_CHECK)
    tables.vacuum(spark, path, 0)  # below Delta's limit: the check is lifted for the call
    assert spark.conf.get(tables.RETENTION_CHECK, None) is None
    spark.conf.set(tables.RETENTION_CHECK, "false")  # a session that had lifted it itself
    try:
        tables.vacuum(spark, path, 0)
        assert spark.conf.get(tables.RETENTION_CHECK) == "false"
    finally:
        spark.conf.unset(tables.RETENTION_CHECK)


def test_vacuums_on_threads_inside_one_lifted_retention_check_all_run_and_it_is_set_back(spark, tmp_path):
    lake = str(tmp_path / "lakehouse")
    paths = []
    for table in (tables.CUSTOMERS, tables.CUSTOMER_XREF, tables.PRODUCTS):
        tables.write_table(spark.range(5).selectExpr("CAST(id AS STRING) AS customer_key"), table, lake)
        tables.write_table(spark.range(2).selectExpr("CAST(id AS STRING) AS customer_key"), table, lake)
        paths.append(table.path(lake))
    spark.conf.unset(tables.RETENTION_CHECK)
    # Each VACUUM sets the check back when it ends; inside the block that is the block's value,
    # so a VACUUM that starts after another ended still runs with 0 hours.
    with tables.retention_allowed(spark, 0), ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda path: tables.vacuum(spark, path, 0), paths))
        assert spark.conf.get(tables.RETENTION_CHECK) == "false"
    assert spark.conf.get(tables.RETENTION_CHECK, None) is None
    for path in paths:  # only the files of the latest version are left
        assert len(list(Path(path).glob("*.parquet"))) == len(spark.read.format("delta").load(path).inputFiles())

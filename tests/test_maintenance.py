"""Table maintenance: compaction with Z-ORDER by customer key, then VACUUM."""

from __future__ import annotations

from pathlib import Path

from delta.tables import DeltaTable
from pyspark.testing import assertDataFrameEqual

from crm_spark import runs, tables

from .conftest import make_config


def data_files(path: str) -> set[str]:
    return {str(p) for p in Path(path).rglob("*.parquet")}


def test_optimize_zorders_compacts_and_vacuum_removes_old_files(spark, tmp_path):
    config = make_config(tmp_path)  # retention 0 hours, allowed explicitly
    lake = config.paths.lakehouse_dir
    for i in range(4):
        frame = spark.range(i * 50, (i + 1) * 50).selectExpr("CAST(id AS STRING) AS customer_key",
                                                               "CAST(id AS DOUBLE) AS churn_probability")
        if i == 0:
            tables.write_table(frame, tables.CUSTOMERS, lake)
        else:
            frame.write.format("delta").mode("append").save(tables.CUSTOMERS.path(lake))
    path = tables.CUSTOMERS.path(lake)
    before = spark.read.format("delta").load(path)
    expected = before.collect()
    old_files = data_files(path)
    assert len(old_files) >= 4

    result = runs.execute(spark, config, ["maintain"], run_id="maintain-run")

    assert result.row_counts["silver.customers.files_added"] == 1
    assert result.row_counts["silver.customers.files_removed"] == len(old_files)
    optimized = DeltaTable.forPath(spark, path).history().where("operation = 'OPTIMIZE'").collect()
    assert len(optimized) == 1 and "customer_key" in optimized[0]["operationParameters"]["zOrderBy"]
    remaining = data_files(path)
    assert len(remaining) == 1 and not remaining & old_files
    assertDataFrameEqual(spark.read.format("delta").load(path), expected)

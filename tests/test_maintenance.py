"""Table maintenance: compaction with Z-ORDER by customer key, VACUUM, and deletion vectors purged before it."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
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


def _people(spark, ids, tag="v1"):
    rows = [(f"k{i:03d}", f"{tag}-{i}@mail.test") for i in ids]
    return spark.createDataFrame(rows, "customer_key string, email string")


def test_a_merge_marks_the_rows_it_replaces_instead_of_rewriting_their_files(spark, tmp_path):
    lake = str(tmp_path / "lakehouse")
    path = tables.CUSTOMERS.path(lake)
    tables.write_table(_people(spark, range(200)).repartition(4), tables.CUSTOMERS, lake)
    old_files = data_files(path)
    assert len(old_files) == 4

    changes = _people(spark, [7], "v2").unionByName(_people(spark, [500]))
    assert tables.merge_table(changes, tables.CUSTOMERS, lake, ("customer_key",)) == \
        {"inserted": 1, "updated": 1, "deleted": 0}

    metrics = DeltaTable.forPath(spark, path).history(1).first()["operationMetrics"]
    assert (metrics["numTargetFilesRemoved"], metrics["numTargetDeletionVectorsAdded"]) == ("0", "1")
    assert old_files < data_files(path)  # every old file is still in use; the replaced row is marked in one
    expected = _people(spark, [i for i in range(200) if i != 7]).unionByName(changes)
    assertDataFrameEqual(spark.read.format("delta").load(path), expected)


def test_a_merge_of_the_changed_part_upserts_it_and_deletes_the_keys_given(spark, tmp_path):
    lake = str(tmp_path / "lakehouse")
    path = tables.CUSTOMERS.path(lake)
    tables.write_table(_people(spark, range(20)), tables.CUSTOMERS, lake)

    # k003 unchanged, k004 changed, k500 new; k009 and k010 gone, k011 untouched as it is not in the part.
    part = _people(spark, [3]).unionByName(_people(spark, [4], "v2")).unionByName(_people(spark, [500]))
    gone = spark.createDataFrame([("k009",), ("k010",)], "customer_key string")
    assert tables.merge_table(part, tables.CUSTOMERS, lake, ("customer_key",), deleted=gone) == \
        {"inserted": 1, "updated": 1, "deleted": 2}

    expected = _people(spark, [i for i in range(20) if i not in (4, 9, 10)]).unionByName(
        _people(spark, [4], "v2")).unionByName(_people(spark, [500]))
    assertDataFrameEqual(spark.read.format("delta").load(path), expected)
    assert spark.read.format("delta").load(path).columns == ["customer_key", "email"]  # no flag column left


def test_a_table_written_before_deletion_vectors_gets_them_at_its_next_merge(spark, tmp_path):
    lake = str(tmp_path / "lakehouse")
    path = tables.CUSTOMERS.path(lake)
    _people(spark, range(10)).write.format("delta").save(path)
    assert tables.DELETION_VECTORS not in DeltaTable.forPath(spark, path).detail().first()["properties"]

    tables.merge_table(_people(spark, [3], "v2"), tables.CUSTOMERS, lake, ("customer_key",))

    assert DeltaTable.forPath(spark, path).detail().first()["properties"][tables.DELETION_VECTORS] == "true"
    metrics = DeltaTable.forPath(spark, path).history(1).first()["operationMetrics"]
    assert metrics["numTargetDeletionVectorsAdded"] == "1"


def test_vacuum_purges_the_rows_deletion_vectors_mark_from_every_file(spark, tmp_path):
    lake = str(tmp_path / "lakehouse")
    path = tables.CUSTOMERS.path(lake)
    tables.write_table(_people(spark, range(50)).repartition(2), tables.CUSTOMERS, lake)
    DeltaTable.forPath(spark, path).delete("customer_key = 'k007'")
    assert DeltaTable.forPath(spark, path).history(1).first()["operationMetrics"]["numDeletionVectorsAdded"] == "1"

    tables.vacuum(spark, path, 0)

    values = [v for file in data_files(path) for row in pq.read_table(file).to_pylist() for v in row.values()]
    assert len(values) == 2 * 49 and "v1-7@mail.test" not in values
    assertDataFrameEqual(spark.read.format("delta").load(path), _people(spark, [i for i in range(50) if i != 7]))


def test_a_write_counts_the_rows_of_its_own_commit_and_none_when_it_commits_nothing(spark, tmp_path):
    lake = str(tmp_path / "lakehouse")
    path = tables.CHURN_SCORES.path(lake)

    def dated(day, ids):
        return spark.createDataFrame([(day, f"k{i}") for i in ids], "as_of_date string, customer_key string")

    assert tables.write_table(dated("2025-01-01", range(3)), tables.CHURN_SCORES, lake, "2025-01-01") == 3
    # An empty frame replacing no rows commits nothing: the earlier commit's 3 rows are not this write's.
    assert tables.write_table(dated("2025-01-02", []), tables.CHURN_SCORES, lake, "2025-01-02") == 0
    assert DeltaTable.forPath(spark, path).history().count() == 1
    assert tables.write_table(dated("2025-01-01", range(2)), tables.CHURN_SCORES, lake, "2025-01-01") == 2
    commits = DeltaTable.forPath(spark, path).history().orderBy("version").select("userMetadata").collect()
    assert len(commits) == 2 and all(c["userMetadata"].startswith("crm-spark write ") for c in commits)
    assert commits[0]["userMetadata"] != commits[1]["userMetadata"]

"""Benchmark: a day's MERGE into a silver order-lines table, with and without deletion vectors.

For each size given, writes an order-lines table (as ``silver.orders`` is written: one file
per task), then merges one day into it: ``--inserts`` new lines and ``--updates`` changed
ones spread over the whole table, the shape of the daily benchmark's day at 100,000
customers (4,312 new lines, 13 updated). Each MERGE runs once per setting, after a warm-up
MERGE, on a table written with that setting. Prints a table (seconds, data files removed,
bytes written) and writes it as JSON. Run from the repository root:

    .venv/bin/python benchmarks/merge.py --rows 1130000 11300000 --work /tmp/merge-bench \\
        [--json benchmarks/merge.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import load_config
from crm_spark.schemas import CUSTOMER_KEY, ORDER_LINE_ID, ORDER_TS, PRODUCT_ID, QUANTITY, UNIT_PRICE
from crm_spark.session import build_spark


def order_lines(spark: SparkSession, ids: DataFrame, quantity_offset: int = 0) -> DataFrame:
    """Return order lines for the ``id`` column of ``ids`` (about 11 lines per customer, 1,000 products)."""
    return ids.select(
        F.format_string("L%011d", "id").alias(ORDER_LINE_ID),
        F.format_string("ck_%010d", (F.col("id") / 11).cast("long")).alias(CUSTOMER_KEY),
        F.format_string("P%05d", F.col("id") % 1000).alias(PRODUCT_ID),
        (F.col("id") % 3 + 1 + quantity_offset).cast("int").alias(QUANTITY),
        (F.col("id") % 997 / 10).alias(UNIT_PRICE),
        F.timestamp_seconds(F.lit(1_700_000_000) + F.col("id") % 30_000_000).alias(ORDER_TS),
    )


def one_day(spark: SparkSession, rows: int, inserts: int, updates: int) -> DataFrame:
    """Return a day's lines: ``inserts`` new ones after the table's and ``updates`` spread evenly over it."""
    changed = spark.range(0, rows, max(1, rows // updates)).limit(updates)
    return order_lines(spark, changed, quantity_offset=1).unionByName(
        order_lines(spark, spark.range(rows, rows + inserts)))


def measure(spark: SparkSession, lake: str, rows: int, deletion_vectors: bool, inserts: int, updates: int) -> dict:
    """Write the table with the setting, MERGE one day into it and return the figures."""
    table = dataclasses.replace(tables.ORDERS, name=f"orders_{rows}_{int(deletion_vectors)}",
                                deletion_vectors=deletion_vectors)
    tables.write_table(order_lines(spark, spark.range(rows)).repartition(8), table, lake)
    day = one_day(spark, rows, inserts, updates).cache()
    day.count()
    started = time.monotonic()
    counts = tables.merge_table(day, table, lake, (ORDER_LINE_ID,), newer=f"s.{ORDER_TS} >= t.{ORDER_TS}")
    seconds = time.monotonic() - started
    day.unpersist()
    metrics = DeltaTable.forPath(spark, table.path(lake)).history(1).first()["operationMetrics"]
    return {"rows": rows, "deletion_vectors": deletion_vectors, "seconds": round(seconds, 1), **counts,
            "files_removed": int(metrics["numTargetFilesRemoved"]),
            "mb_written": round(int(metrics["numTargetBytesAdded"]) / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_130_000])
    parser.add_argument("--inserts", type=int, default=4_312)
    parser.add_argument("--updates", type=int, default=13)
    parser.add_argument("--work", default="/tmp/crm-spark-merge-bench")
    parser.add_argument("--json", default=None)
    parser.add_argument("--config", default="conf/local.yaml")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    lake = str(work / "lakehouse")
    config = load_config(args.config, [f"paths.lakehouse_dir={lake}", f"paths.checkpoint_dir={work}/checkpoints",
                                       f"paths.allowed_roots=['{work}', '.']"])
    spark = build_spark(config)
    measure(spark, lake, 10_000, True, 100, 5)  # warm-up: JVM, Delta and MERGE code paths
    measure(spark, lake, 10_000, False, 100, 5)
    results = []
    print(f"{'rows':>12} {'deletion vectors':>16} {'seconds':>8} {'inserted':>9} {'updated':>8} "
          f"{'files removed':>13} {'MB written':>10}")
    for rows in args.rows:
        for deletion_vectors in (False, True):
            r = measure(spark, lake, rows, deletion_vectors, args.inserts, args.updates)
            results.append(r)
            print(f"{r['rows']:>12,} {str(r['deletion_vectors']):>16} {r['seconds']:>8.1f} {r['inserted']:>9,} "
                  f"{r['updated']:>8,} {r['files_removed']:>13} {r['mb_written']:>10.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"inserts": args.inserts, "updates": args.updates,
                                               "results": results}, indent=2) + "\n", encoding="utf-8")
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Read-only views of the lakehouse for the command line: a table, the last runs, a run's metrics.

Every view drops personal columns (``tables.PERSONAL_TEXT_COLUMNS``) unless asked to keep
them, which only bronze and silver tables can hold.
"""

from __future__ import annotations

import difflib
import logging

import pandas as pd
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.schemas import AS_OF_DATE, MODEL, RUN_ID, SPLIT

PERSONAL_LAYERS = ("bronze", "silver")


class ViewError(ValueError):
    """A view was asked for something the lakehouse does not have (a table, a run, a filter)."""


def find_table(name: str) -> tables.Table:
    """Return the table called ``layer.name``, or ``name`` when only one layer has it.

    Raises:
        ViewError: no table or several tables have that name; the message lists the close ones.
    """
    by_name = {t.qualified: t for t in tables.ALL_TABLES}
    if name in by_name:
        return by_name[name]
    matches = [t for t in tables.ALL_TABLES if t.name == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ViewError(f"table '{name}' is in several layers: say {' or '.join(t.qualified for t in matches)}")
    close = difflib.get_close_matches(name, [*by_name, *(t.name for t in tables.ALL_TABLES)], n=1, cutoff=0.6)
    if close:
        suggestion = close[0] if close[0] in by_name else find_table(close[0]).qualified
        raise ViewError(f"no table '{name}'; did you mean '{suggestion}'?")
    raise ViewError(f"no table '{name}' (known: {', '.join(sorted(by_name))})")


def table_view(spark: SparkSession, lakehouse_dir: str, table: tables.Table, where: str | None = None,
               include_personal: bool = False) -> DataFrame:
    """Return a table's rows, filtered by a SQL condition, without personal columns unless asked.

    Args:
        spark: the session.
        lakehouse_dir: the lakehouse root.
        table: the table.
        where: a Spark SQL condition, e.g. ``"churn_probability > 0.8"``.
        include_personal: keep personal columns (bronze and silver only).

    Raises:
        ViewError: the table does not exist yet, or the condition does not parse or names an
            unknown column.
    """
    try:
        df = tables.read_table(spark, table, lakehouse_dir)
    except tables.TableMissing as missing:
        raise ViewError(str(missing)) from None
    if not (include_personal and table.layer in PERSONAL_LAYERS):
        df = df.drop(*tables.PERSONAL_TEXT_COLUMNS)
    if where:
        # PySpark logs an analysis error of its own before raising it; this one is reported in one line instead.
        quiet = logging.getLogger("SQLQueryContextLogger")
        level, quiet.level = quiet.level, logging.CRITICAL + 1
        try:
            df = df.where(F.expr(where))
            df.schema  # noqa: B018 - analyses the condition now, so a bad one is reported here
        except AnalysisException as error:
            raise ViewError(f"--where {where!r}: {str(error).splitlines()[0]}") from None
        finally:
            quiet.level = level
    return df


def runs_view(spark: SparkSession, lakehouse_dir: str, limit: int) -> pd.DataFrame:
    """Return the newest runs: id, date, status, start, wall seconds and each stage's seconds."""
    runs = table_view(spark, lakehouse_dir, tables.RUNS).orderBy(F.col("started_at").desc()).limit(limit)
    rows = []
    for row in runs.collect():
        finished = row["finished_at"]
        seconds = row["stage_seconds"] or {}
        rows.append({
            RUN_ID: row[RUN_ID], AS_OF_DATE: row[AS_OF_DATE], "status": row["status"],
            "started_at": row["started_at"].strftime("%Y-%m-%d %H:%M:%S"),
            "wall_s": round((finished - row["started_at"]).total_seconds(), 1) if finished else None,
            "stages": ", ".join(f"{stage} {seconds.get(stage, 0):.0f}s"
                                + (" (skipped)" if (row["stage_status"] or {}).get(stage) == "skipped" else "")
                                for stage in row["stages"]),
        })
    return pd.DataFrame(rows, columns=[RUN_ID, AS_OF_DATE, "status", "started_at", "wall_s", "stages"])


def metrics_view(spark: SparkSession, lakehouse_dir: str, run_id: str | None = None,
                 task: str | None = None) -> tuple[str, pd.DataFrame]:
    """Return a run's id and its metrics (task, model, metric, split, value), the newest run with metrics by default.

    Raises:
        ViewError: no metrics yet, or none of ``run_id`` (or of ``task``).
    """
    metrics = table_view(spark, lakehouse_dir, tables.MODEL_METRICS)
    if run_id is None:
        run_id = _newest_run(spark, lakehouse_dir, metrics)
    chosen = metrics.where(F.col(RUN_ID) == run_id)
    if task:
        chosen = chosen.where(F.col("task") == task)
    frame = chosen.select("task", MODEL, "metric", SPLIT, "value").orderBy("task", MODEL, "metric", SPLIT).toPandas()
    if frame.empty:
        known = [r[0] for r in metrics.select(RUN_ID).distinct().orderBy(F.col(RUN_ID).desc()).limit(5).collect()]
        raise ViewError(f"no metrics for run '{run_id}'{f' and task {task!r}' if task else ''} "
                        f"(newest runs with metrics: {', '.join(known) or 'none'})")
    return run_id, frame


def _newest_run(spark: SparkSession, lakehouse_dir: str, metrics: DataFrame) -> str:
    """Return the id of the newest run (by its start in ``gold.runs``, else by id) that has metrics."""
    ids = metrics.select(RUN_ID).distinct()
    if tables.table_exists(spark, tables.RUNS, lakehouse_dir):
        started = tables.read_table(spark, tables.RUNS, lakehouse_dir).select(RUN_ID, "started_at")
        ids = ids.join(started, RUN_ID, "left")
    else:
        ids = ids.withColumn("started_at", F.lit(None).cast("timestamp"))
    newest = ids.orderBy(F.col("started_at").desc_nulls_last(), F.col(RUN_ID).desc()).first()
    if newest is None:
        raise ViewError("gold.model_metrics holds no metrics yet: run the evaluate stage first")
    return newest[RUN_ID]

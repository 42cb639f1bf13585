"""Run stages in order, time them, and record each run in the ``runs`` table."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from crm_spark import logcontext, session, tables
from crm_spark.config import Config, as_dict
from crm_spark.errors import StageSkipped
from crm_spark.frames import beside
from crm_spark.schemas import AS_OF_DATE, RUN_ID, RUNS_SCHEMA

log = logging.getLogger(__name__)

Stage = Callable[[SparkSession, Config, str], dict[str, int]]

# Each stage's function, as "module.function" under crm_spark.stages, imported when the stage runs, so a
# command imports only the stages it runs: importing the CLI took 2.2-2.7 s with every stage (MLlib among
# them) and the report's matplotlib, against 0.9 s.
STAGES: dict[str, str] = {
    "generate": "generate.run",
    "next_day": "next_day.run",
    "ingest": "ingest.run",
    "prepare": "prepare.run",
    "quality_gate": "quality_gate.run",
    "features": "features.run",
    "training_features": "features.run_training",
    "select": "select.run",
    "train": "train.run",
    "score": "score.run",
    "recommend": "recommend.run",
    "serve": "recommend.serve",
    "campaigns": "campaigns.run",
    "evaluate": "evaluate.run",
    "maintain": "maintain.run",
}
PIPELINE = ("ingest", "prepare", "features", "training_features", "select", "train", "score", "recommend", "campaigns",
            "evaluate")
# Run profiles: the whole pipeline; a daily run that applies the registered models and fits none
# (the quality gate runs where quality.expectations are configured); a retraining run that adds
# the training cutoff's features to the ones a daily run wrote.
PROFILES = {
    "pipeline": PIPELINE,
    "daily": ("ingest", "prepare", "quality_gate", "features", "score", "serve", "campaigns"),
    "retrain": ("training_features", "select", "train", "recommend", "evaluate"),
}
# The tables each stage reads; their rows (of the run's dates, for dated tables) are its rows in.
STAGE_INPUTS: dict[str, tuple[tables.Table, ...]] = {
    "prepare": tuple(tables.BRONZE.values()),
    "features": (tables.CUSTOMERS, tables.ORDERS, tables.RATINGS),
    "training_features": (tables.CUSTOMERS, tables.ORDERS, tables.RATINGS),
    "select": (tables.CUSTOMER_FEATURES,),
    "train": (tables.CUSTOMER_FEATURES,),
    "score": (tables.CUSTOMER_FEATURES,),
    "recommend": (tables.ORDERS, tables.RATINGS),
    "serve": (tables.ORDERS, tables.RATINGS),
    "campaigns": (tables.CUSTOMER_FEATURES,),
    "evaluate": (tables.CHURN_HOLDOUT, tables.CLV_HOLDOUT, tables.PURCHASE_HOLDOUT, tables.RECOMMENDATION_HOLDOUT),
}
# The tables each stage writes (generate and next_day write raw files, not tables).
STAGE_OUTPUTS: dict[str, tuple[tables.Table, ...]] = {
    "ingest": (*tables.BRONZE.values(), tables.QUARANTINE, tables.INGESTED_FILES),
    "prepare": (tables.CUSTOMERS, tables.CUSTOMER_XREF, tables.CUSTOMER_RECORDS, tables.PRODUCTS, tables.ORDERS,
                tables.RATINGS, tables.DATA_QUALITY),
    "features": (tables.CUSTOMER_FEATURES,),
    "training_features": (tables.CUSTOMER_FEATURES,),
    "select": (tables.FEATURE_SELECTION,),
    "train": (tables.CHURN_HOLDOUT, tables.CLV_HOLDOUT, tables.PURCHASE_HOLDOUT, tables.MODEL_REGISTRY,
              tables.MODEL_EXPLANATIONS),
    "score": (tables.CHURN_SCORES, tables.CLV_PREDICTIONS, tables.CUSTOMER_SEGMENTS, tables.SEGMENT_PROFILES,
              tables.ANOMALIES),
    "recommend": (tables.RECOMMENDATIONS, tables.RECOMMENDATION_HOLDOUT, tables.RECOMMENDATION_RELEVANCE,
                  tables.RECOMMENDATION_TUNING, tables.RATING_HOLDOUT, tables.MODEL_REGISTRY, tables.RECOMMENDER_USERS),
    "serve": (tables.RECOMMENDATIONS,),
    "campaigns": (tables.CAMPAIGN_AUDIENCES, tables.CAMPAIGN_SUMMARY),
    "evaluate": (tables.MODEL_METRICS,),
}
TABLE_NAMES = frozenset(t.qualified for t in tables.ALL_TABLES)
# Called at a stage's start (status "running") and end: stage, its 1-based position, the stage count, the result.
Progress = Callable[[str, int, int, "RunResult"], None]
ABANDONED = "the run ended without recording an outcome (its process was killed or lost)"


@dataclass
class RunResult:
    """What a run did: per-stage wall time, row counts and outcome."""

    run_id: str
    status: str = "running"
    error: str | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    stage_status: dict[str, str] = field(default_factory=dict)
    rows_in: dict[str, int] = field(default_factory=dict)
    rows_out: dict[str, int] = field(default_factory=dict)


def new_run_id() -> str:
    """Return a sortable, unique run id (UTC time plus a random suffix)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def stage_function(stage: str) -> Stage:
    """Return the function that runs ``stage`` (a name from ``STAGES``), importing its module."""
    module, function = STAGES[stage].split(".")
    return getattr(importlib.import_module(f"crm_spark.stages.{module}"), function)


def writer_of(table: tables.Table) -> str | None:
    """Return the first pipeline stage that writes ``table``, or None."""
    return next((stage for stage in STAGE_OUTPUTS if table in STAGE_OUTPUTS[stage]), None)


def execute(spark: SparkSession, config: Config, stages: list[str], run_id: str | None = None,
            progress: Progress | None = None) -> RunResult:
    """Run ``stages`` in order and record the run in the ``runs`` table.

    The run is recorded as ``running`` while its first stage runs, on a thread of its own
    (the process's first Delta write pays for the JVM's warm-up, which the stage's work
    hides; later stages start once the row is written), and with its outcome after the
    last; runs still ``running`` from earlier are marked ``failed`` first, since only one
    run at a time may use a lakehouse. A failure to record is logged, not raised.

    A stage whose inputs are absent raises :class:`StageSkipped`; the run logs one line,
    records the stage and reason under ``skipped`` and goes on. A failing stage stops the
    run; the manifest records it as failed and the error is raised again. Either way the run's checkpoint files
    are removed at its end (stages pass data on in tables, never in checkpoints).

    Args:
        spark: the session.
        config: run configuration.
        stages: names from ``STAGES``.
        run_id: the run's id; a new one when omitted.
        progress: called as each stage starts and ends (see ``Progress``).

    Returns:
        The run's result.

    Raises:
        KeyError: an unknown stage name.
        Exception: whatever a stage raised, after the failure is recorded.
    """
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise KeyError(f"unknown stage '{unknown[0]}' (known: {', '.join(STAGES)})")
    result = RunResult(run_id=run_id or new_run_id())
    started = dt.datetime.now(dt.timezone.utc)
    recorder = ThreadPoolExecutor(1, thread_name_prefix="crm-spark-runs")
    opened = beside(spark, recorder, _open, spark, config, _manifest(config, stages, result, started))
    try:
        for position, stage in enumerate(stages, 1):
            if position > 1:
                opened.result()
            if progress:
                progress(stage, position, len(stages), result)
            with logcontext.stage(result.run_id, stage):
                _run_stage(spark, config, stage, result)
            if progress:
                progress(stage, position, len(stages), result)
        result.status = "succeeded"
    except BaseException as error:
        result.status = "failed"
        result.error = f"{type(error).__name__}: {error}"[:2000]
        raise
    finally:
        opened.result()
        recorder.shutdown()
        with logcontext.stage(result.run_id, "runs"):
            _record(spark, config, _manifest(config, stages, result, started))
            _clean_checkpoints(spark)
    return result


def _run_stage(spark: SparkSession, config: Config, stage: str, result: RunResult) -> None:
    """Run one stage and note its wall time, row counts and status (or skip) in ``result``."""
    log.info("stage %s: start", stage)
    spark.sparkContext.setJobGroup(stage, f"crm-spark {stage} {result.run_id}")
    result.stage_status[stage] = "failed"
    began = time.perf_counter()
    try:
        counts = stage_function(stage)(spark, config, result.run_id)
    except StageSkipped as skip:
        result.skipped[stage] = str(skip)
        result.stage_status[stage] = "skipped"
        log.warning("stage %s: skipped: %s", stage, skip)
        return
    except tables.TableMissing as missing:
        writer = writer_of(missing.table)
        if writer is None or writer == stage:
            raise
        raise tables.TableMissing(missing.table, f"stage {stage} needs table {missing.table.qualified}, which stage "
                                                 f"{writer} writes: run 'crm-spark {writer}' first") from None
    finally:
        result.stage_seconds[stage] = round(time.perf_counter() - began, 2)
    result.row_counts.update({k: int(v) for k, v in counts.items()})
    result.rows_in[stage] = _rows_in(spark, config, stage, counts)
    result.rows_out[stage] = sum(int(v) for k, v in counts.items() if k.split("@")[0] in TABLE_NAMES)
    result.stage_status[stage] = "succeeded"
    log.info("stage %s: done in %.1f s", stage, result.stage_seconds[stage])


def _manifest(config: Config, stages: list[str], result: RunResult, started: dt.datetime) -> tuple:
    """Return the run's manifest row as it stands (a ``RUNS_SCHEMA`` tuple of copies: the run goes on)."""
    finished = None if result.status == "running" else dt.datetime.now(dt.timezone.utc)
    return (
        result.run_id, config.as_of_date, config.config_hash(), list(stages), started, finished, result.status,
        result.error, dict(result.stage_seconds), dict(result.row_counts), dict(result.skipped),
        dict(result.stage_status), dict(result.rows_in), dict(result.rows_out),
        json.dumps(as_dict(config), sort_keys=True, default=str),
    )


def _open(spark: SparkSession, config: Config, row: tuple) -> None:
    """Mark abandoned runs failed, then write the run's ``running`` row (see :func:`execute`)."""
    with logcontext.stage(row[0], "runs"):
        spark.sparkContext.setJobGroup("runs", f"crm-spark runs {row[0]}")  # this thread's jobs
        try:
            _mark_abandoned(spark, config)
        except Exception:  # noqa: BLE001 - bookkeeping must not fail the run
            log.exception("could not mark abandoned runs as failed")
        _record(spark, config, row)


def _record(spark: SparkSession, config: Config, row: tuple) -> None:
    """Write (or replace) the run's manifest row; a failure to write is logged, not raised over the run's error."""
    try:
        spark.sparkContext.setJobGroup("runs", f"crm-spark runs {row[0]}")
        tables.write_table(spark.createDataFrame([row], RUNS_SCHEMA), tables.RUNS, config.paths.lakehouse_dir, row[0])
    except Exception:  # noqa: BLE001 - the run's own outcome must not be masked
        log.exception("could not record run %s in the runs table", row[0])


def _clean_checkpoints(spark: SparkSession) -> None:
    """Delete the run's checkpoint files; a failure to is logged, not raised over the run's outcome."""
    try:
        session.clean_checkpoints(spark)
    except Exception:  # noqa: BLE001 - leftover checkpoint files must not fail or mask the run
        log.exception("could not delete the run's checkpoint files")


def _rows_in(spark: SparkSession, config: Config, stage: str, counts: dict[str, int]) -> int:
    """Return the rows a stage read: raw rows for ingest, else the rows of its input tables."""
    if stage == "ingest":
        return sum(int(v) for k, v in counts.items() if k.endswith(".read"))
    lake, total = config.paths.lakehouse_dir, 0
    for table in STAGE_INPUTS.get(stage, ()):
        if tables.table_exists(spark, table, lake):
            df = tables.read_table(spark, table, lake)
            if table.scope == AS_OF_DATE:
                df = df.where(F.col(AS_OF_DATE).isin(config.as_of_date, config.training_cutoff))
            total += df.count()
    return total


def _mark_abandoned(spark: SparkSession, config: Config) -> None:
    """Mark runs still recorded as ``running`` (their process ended without a word) as failed."""
    lake = config.paths.lakehouse_dir
    if not tables.table_exists(spark, tables.RUNS, lake):
        return
    stale = F.col("status") == "running"
    lost = [r[RUN_ID] for r in tables.read_table(spark, tables.RUNS, lake).where(stale).select(RUN_ID).collect()]
    if lost:
        DeltaTable.forPath(spark, tables.RUNS.path(lake)).update(
            stale, {"status": F.lit("failed"), "error": F.lit(ABANDONED)})
        log.warning("runs %s were still marked running: marked failed", ", ".join(lost))

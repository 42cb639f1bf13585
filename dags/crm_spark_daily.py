"""Airflow DAG: crm-spark's daily run every night, and its retraining run and table maintenance once a week after it.

Each run covers the day that just ended: ``as_of_date`` is the logical date plus one
day (the end of the data interval), so features see every event of the logical date.

Tasks:
    daily: ``crm-spark daily`` in one ``spark-submit``: ingest, prepare, the quality gate
        (where the config has expectations), features, score, serve and campaigns, then
        the report. It applies the registered models and fits none.
    retrain_day: lets the run go on to ``retrain`` only when ``as_of_date`` falls on the
        retraining weekday; on other days ``retrain`` is skipped.
    retrain: ``crm-spark retrain`` in one ``spark-submit``: the training cutoff's features,
        select, train, recommend (with tuning) and evaluate, beside the features the daily
        task wrote, then the report. The
        next day's ``daily`` serves the new champions.
    maintain: ``crm-spark maintain`` on the same day, after ``retrain`` whether it
        succeeded or failed: OPTIMIZE and VACUUM every table. Each daily run adds small
        files to the tables it appends to or merges into (bronze and silver orders gain
        about 8 each at 100,000 customers); the weekly compaction keeps their number from
        growing run after run.

A task is a profile, not a stage: each ``spark-submit`` starts a JVM and a Spark session
(about 15-20 s on a small cluster), which a per-stage chain would pay eight times a day.
Retries stay safe at this grain: ingest and prepare are incremental and every other
stage replaces its date's or run's rows, so a retried profile never duplicates data.
Every task retries twice, five minutes apart. One DAG (instead of a daily and a weekly
one) orders the retraining after the same date's daily run without a cross-DAG sensor.

Environment (read when the DAG file is parsed):
    CRM_SPARK_HOME: the project checkout (default: the folder above this file).
    CRM_SPARK_CONFIG: the YAML config, relative to CRM_SPARK_HOME (default conf/cluster.yaml).
    CRM_SPARK_RETRAIN_WEEKDAY: the weekday of ``as_of_date`` that retrains, 0 Monday to 6
        Sunday (default 6).
    SPARK_MASTER: passed on to ``spark-submit.sh`` (its default is local[2]).
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG, chain

HOME = os.environ.get("CRM_SPARK_HOME", str(Path(__file__).resolve().parents[1]))
CONFIG = os.environ.get("CRM_SPARK_CONFIG", "conf/cluster.yaml")
RETRAIN_WEEKDAY = int(os.environ.get("CRM_SPARK_RETRAIN_WEEKDAY", "6"))
AS_OF_DATE = "{{ macros.ds_add(ds, 1) }}"


def task_command(job: str) -> str:
    """Return the shell command of a task: ``spark-submit.sh JOB`` for the run's day."""
    return (f"cd {shlex.quote(HOME)} && ./spark-submit.sh {job} --config {shlex.quote(CONFIG)} "
            f"--as-of-date {AS_OF_DATE}")


def is_retrain_day(logical_date: dt.datetime, **_: object) -> bool:
    """Return whether the run's ``as_of_date`` (the logical date plus one day) is the retraining weekday."""
    return (logical_date + dt.timedelta(days=1)).weekday() == RETRAIN_WEEKDAY


with DAG(
    dag_id="crm_spark_daily",
    description="crm-spark: the daily run (ingest to campaigns, no fitting) every night; retraining and maintenance "
                "once a week",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,  # one run at a time per lakehouse
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=5)},
    tags=["crm-spark"],
) as dag:
    chain(BashOperator(task_id="daily", bash_command=task_command("daily")),
          ShortCircuitOperator(task_id="retrain_day", python_callable=is_retrain_day),
          BashOperator(task_id="retrain", bash_command=task_command("retrain")),
          # all_done: a failed retraining leaves the tables to compact all the same.
          BashOperator(task_id="maintain", bash_command=task_command("maintain"), trigger_rule="all_done"))

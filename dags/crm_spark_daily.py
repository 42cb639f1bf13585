"""Airflow DAG: the crm-spark pipeline every night, one task per stage through ``spark-submit.sh``.

Each run covers the day that just ended: ``as_of_date`` is the logical date plus one
day (the end of the data interval), so features see every event of the logical date.
A ``quality_gate`` task between ``prepare`` and ``features`` stops the run before any
model is trained on data that failed its expectations; the last task writes the run's
HTML report (of the newest run of the date: the evaluate task's). Every task retries twice, five
minutes apart; ingest and prepare are incremental and the other stages replace their
date's rows, so a retried task never duplicates data.

Environment (read when the DAG file is parsed):
    CRM_SPARK_HOME: the project checkout (default: the folder above this file).
    CRM_SPARK_CONFIG: the YAML config, relative to CRM_SPARK_HOME (default conf/cluster.yaml).
    SPARK_MASTER: passed on to ``spark-submit.sh`` (its default is local[2]).
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, chain

HOME = os.environ.get("CRM_SPARK_HOME", str(Path(__file__).resolve().parents[1]))
CONFIG = os.environ.get("CRM_SPARK_CONFIG", "conf/cluster.yaml")
STAGES = ("ingest", "prepare", "quality_gate", "features", "select", "train", "score", "recommend", "campaigns",
          "evaluate", "report")
AS_OF_DATE = "{{ macros.ds_add(ds, 1) }}"


def stage_command(stage: str) -> str:
    """Return the shell command of one stage's task."""
    return (f"cd {shlex.quote(HOME)} && ./spark-submit.sh {stage} --config {shlex.quote(CONFIG)} "
            f"--as-of-date {AS_OF_DATE}")


with DAG(
    dag_id="crm_spark_daily",
    description="crm-spark: ingest, prepare, quality gate, features, models, recommendations, campaigns, "
                "evaluation, report",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,  # one run at a time per lakehouse
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=5)},
    tags=["crm-spark"],
) as dag:
    chain(*[BashOperator(task_id=stage, bash_command=stage_command(stage)) for stage in STAGES])

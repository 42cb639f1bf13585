"""The Airflow DAG loads in Airflow's own DagBag: the daily profile every day, the retraining profile and
table maintenance once a week."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crm_spark import runs

REPO = Path(__file__).resolve().parents[1]
# Runs in a child process: importing Airflow reconfigures logging for the whole interpreter.
LOAD = """
import datetime as dt, json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder="dags")
dag = bag.dags.get("crm_spark_daily")
tasks = {t.task_id: {"downstream": sorted(t.downstream_task_ids), "retries": t.retries,
                     "command": getattr(t, "bash_command", None),
                     "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule),
                     "skips_whatever_follows": getattr(t, "ignore_downstream_trigger_rules", None)}
         for t in dag.tasks} if dag else {}
# The logical dates 2026-06-06 (a Saturday, so as_of_date is a Sunday) to 2026-06-12.
retrain_days = [day for day in range(6, 13)
                if dag.get_task("retrain_day").python_callable(logical_date=dt.datetime(2026, 6, day))] if dag else []
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "tasks": tasks,
                  "order": [t.task_id for t in dag.topological_sort()] if dag else [],
                  "max_active_runs": dag.max_active_runs if dag else None, "schedule": str(dag.schedule),
                  "retrain_days": retrain_days}))
"""


@pytest.fixture(scope="module")
def dag(tmp_path_factory):
    pytest.importorskip("airflow", reason="Airflow is in the 'airflow' extra")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow")),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "false"}
    env.pop("CRM_SPARK_RETRAIN_WEEKDAY", None)
    done = subprocess.run([sys.executable, "-c", LOAD], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_dag_runs_the_daily_profile_then_retrains_and_maintains_once_a_week(dag):
    assert dag["errors"] == {}
    assert dag["order"] == ["daily", "retrain_day", "retrain", "maintain"]
    for upstream, downstream in itertools.pairwise(dag["order"]):
        assert dag["tasks"][upstream]["downstream"] == [downstream]
    assert dag["tasks"]["maintain"]["downstream"] == []
    # Maintenance follows a failed retraining too; on other days the short-circuit skips both.
    assert dag["tasks"]["maintain"]["trigger_rule"] == "all_done"
    assert dag["tasks"]["retrain_day"]["skips_whatever_follows"] is True
    assert (dag["max_active_runs"], dag["schedule"]) == (1, "@daily")
    assert dag["retrain_days"] == [6]  # only the run whose as_of_date is a Sunday retrains


def test_every_task_submits_its_job_for_the_day_after_the_logical_date_with_retries(dag):
    for name in ("daily", "retrain", "maintain"):
        task = dag["tasks"][name]
        assert task["retries"] == 2
        assert f"./spark-submit.sh {name} --config conf/cluster.yaml --as-of-date {{{{ macros.ds_add(ds, 1) }}}}" \
            in task["command"]
        assert (REPO / "jobs" / f"{name}.py").is_file()
    assert {"daily", "retrain"} <= set(runs.PROFILES)

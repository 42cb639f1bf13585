"""The Airflow DAG loads in Airflow's own DagBag with one task per stage, in pipeline order."""

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
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder="dags")
dag = bag.dags.get("crm_spark_daily")
tasks = {t.task_id: {"downstream": sorted(t.downstream_task_ids), "retries": t.retries,
                     "command": t.bash_command} for t in dag.tasks} if dag else {}
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "tasks": tasks,
                  "order": [t.task_id for t in dag.topological_sort()] if dag else [],
                  "max_active_runs": dag.max_active_runs if dag else None}))
"""


@pytest.fixture(scope="module")
def dag(tmp_path_factory):
    pytest.importorskip("airflow", reason="Airflow is in the 'airflow' extra")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow")),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "false"}
    done = subprocess.run([sys.executable, "-c", LOAD], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_dag_loads_with_a_task_per_stage_in_pipeline_order(dag):
    assert dag["errors"] == {}
    stages = list(runs.PIPELINE)
    stages.insert(stages.index("features"), "quality_gate")
    stages.append("report")
    assert dag["order"] == stages
    for upstream, downstream in itertools.pairwise(stages):
        assert dag["tasks"][upstream]["downstream"] == [downstream]
    assert dag["tasks"]["report"]["downstream"] == []
    assert dag["max_active_runs"] == 1


def test_every_task_submits_its_stage_for_the_day_after_the_logical_date_with_retries(dag):
    for stage, task in dag["tasks"].items():
        assert task["retries"] == 2
        assert f"./spark-submit.sh {stage} --config conf/cluster.yaml --as-of-date {{{{ macros.ds_add(ds, 1) }}}}" \
            in task["command"]
        assert (REPO / "jobs" / f"{'select_features' if stage == 'select' else stage}.py").is_file()

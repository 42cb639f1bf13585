"""Command line: help for every job, one-line config errors, failed runs recorded."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from crm_spark import cli, logcontext, runs, tables

from .conftest import make_config

ROOT = Path(__file__).resolve().parents[1]
JOBS = sorted(p.stem for p in (ROOT / "jobs").glob("*.py"))


def test_every_stage_has_a_job():
    assert JOBS == sorted(cli.JOB_FILES.get(stage, stage) for stage in cli.STAGE_HELP)


def test_stages_are_imported_when_they_run_not_with_the_cli():
    assert all(callable(runs.stage_function(stage)) for stage in runs.STAGES)
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, crm_spark.cli; print(sorted(m for m in sys.modules if m.startswith("
                               "('crm_spark.stages.', 'pyspark.ml', 'matplotlib'))))"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    assert loaded.stdout.split() == ["['crm_spark.stages.erase']"]  # erase: the CLI's own command


# Runs every job file as its own ``__main__`` with ``--help`` in one new interpreter (not one each:
# a start imports pyspark, about 1 s) and prints {job: [exit code or error, stdout]}.
HELP_SCRIPT = """
import contextlib, io, json, runpy, sys
found = {}
for job in sys.argv[1:]:
    sys.argv, out, code = [f"jobs/{job}.py", "--help"], io.StringIO(), None
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as done:
            code = done.code
        except Exception as error:  # a broken job file fails its own test only
            code = repr(error)
    found[job] = [code, out.getvalue()]
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def job_help() -> dict[str, list]:
    """Return each job file's ``--help`` exit code and output, from one new Python process."""
    done = subprocess.run([sys.executable, "-c", HELP_SCRIPT, *JOBS], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("job", JOBS)
def test_every_job_has_help(job, job_help):
    code, out = job_help[job]
    assert code == 0
    assert out.startswith(f"usage: jobs/{job}.py") and "--set KEY=VALUE" in out


def test_failed_stage_is_recorded_as_failed_and_names_the_stage_to_run(spark, tmp_path):
    config = make_config(tmp_path)
    calls = []
    needs = "stage features needs table silver.customers, which stage prepare writes: run 'crm-spark prepare' first"
    with pytest.raises(FileNotFoundError, match=needs):
        runs.execute(spark, config, ["features"], run_id="failing-run",
                     progress=lambda *call: calls.append((call[0], call[1], call[2], dict(call[3].stage_status))))
    row = tables.read_table(spark, tables.RUNS, config.paths.lakehouse_dir).where(
        F.col("run_id") == "failing-run").first()
    assert (row["status"], row["stages"], row["stage_status"]) == ("failed", ["features"], {"features": "failed"})
    assert row["error"] == f"TableMissing: {needs}"
    assert json.loads(row["config"])["paths"]["lakehouse_dir"] == config.paths.lakehouse_dir
    assert calls == [("features", 1, 1, {})]  # the start is reported; the failure ends the run


def test_log_lines_carry_run_id_and_stage_and_runs_hold_stage_status(spark, tmp_path, caplog):
    config = make_config(tmp_path)
    with caplog.at_level(logging.INFO, logger="crm_spark"):
        runs.execute(spark, config, ["score"], run_id="ctx-run")  # no model yet: skipped
    records = [r for r in caplog.records if r.name.startswith("crm_spark")]
    assert records and {(r.run_id, r.stage) for r in records} <= {("ctx-run", "score"), ("ctx-run", "runs")}
    lines = [logging.Formatter(logcontext.LOG_FORMAT).format(r) for r in records]
    assert sum("[ctx-run runs] crm_spark.tables: wrote 1 rows to gold.runs" in line for line in lines) == 2
    assert any("[ctx-run score] crm_spark.runs: stage score: start" in line for line in lines)
    assert logging.getLogger("x").makeRecord("x", logging.INFO, "f", 1, "m", (), None).run_id == logcontext.OUTSIDE
    row = tables.read_table(spark, tables.RUNS, config.paths.lakehouse_dir).where(
        F.col("run_id") == "ctx-run").first()
    assert (row["status"], row["stage_status"], sorted(row["skipped"])) == ("succeeded", {"score": "skipped"},
                                                                             ["score"])
    # Recorded as running first, before any stage had a status.
    first = spark.read.format("delta").option("versionAsOf", 0).load(tables.RUNS.path(config.paths.lakehouse_dir))
    assert [tuple(r) for r in first.select("run_id", "status", "stage_status", "finished_at").collect()] == [
        ("ctx-run", "running", {}, None)]

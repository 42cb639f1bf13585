"""Runs like production: incremental and idempotent, safe when killed, the same under spark-submit on a cluster.

One module fixture runs day N twice, then day N+1 incrementally in local mode, and
builds day N+1 from every file with ``spark-submit.sh pipeline`` on a standalone
cluster; the incremental, crash and cluster tests compare with those two lakehouses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyspark
import pytest
import yaml
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from crm_spark import runs, tables
from crm_spark.config import Config, GenerateConfig, as_dict
from crm_spark.schemas import AS_OF_DATE, CUSTOMER_KEY, RUN_ID, SOURCE_FILE

from .conftest import AS_OF, make_config

REPO = Path(__file__).resolve().parents[1]
STAGES = ["ingest", "prepare", "features", "training_features"]
LATE = "C000999999"
# What a run writes besides run-scoped tables; compared without the writing run's id.
DATA_TABLES = (*tables.BRONZE.values(), tables.QUARANTINE, tables.CUSTOMER_XREF, tables.CUSTOMER_RECORDS,
               tables.CUSTOMERS, tables.PRODUCTS, tables.ORDERS, tables.RATINGS, tables.CUSTOMER_FEATURES)


def write_config(config: Config, path: Path) -> Path:
    """Write ``config`` as the YAML file a job reads."""
    path.write_text(yaml.safe_dump(json.loads(json.dumps(as_dict(config), default=str))))
    return path


def content(spark: SparkSession, config: Config, table: tables.Table) -> DataFrame:
    """Return a table's rows without the id of the run that wrote them."""
    df = tables.read_table(spark, table, config.paths.lakehouse_dir)
    return df.drop(RUN_ID) if RUN_ID in df.columns else df


def snapshot(spark: SparkSession, config: Config) -> dict[tables.Table, DataFrame]:
    """Return every data table's current rows, materialized so later writes do not change them."""
    return {t: content(spark, config, t).localCheckpoint(eager=True) for t in DATA_TABLES}


def assert_same_data(spark: SparkSession, actual: Config, expected: Config) -> None:
    """Assert that two lakehouses hold the same data tables (features: of ``expected``'s dates)."""
    for table in DATA_TABLES:
        rows = content(spark, actual, table)
        if table == tables.CUSTOMER_FEATURES:
            rows = rows.where(F.col(AS_OF_DATE).isin(expected.as_of_date, expected.training_cutoff))
        assertDataFrameEqual(rows, content(spark, expected, table))


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check, what: str, seconds: float = 120) -> None:
    """Poll ``check`` until it returns true; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def master_state(ui_port: int) -> dict:
    """Return the standalone master's state from its web UI's JSON."""
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Start a standalone master and two 1-core workers on 127.0.0.1 from the installed
    pyspark; yield the master URL and the master's UI port; stop every process started."""
    spark_home = Path(pyspark.__file__).parent
    root = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_LOG_DIR": str(root / "logs"), "SPARK_WORKER_DIR": str(root / "work")}
    spark_class = str(spark_home / "bin" / "spark-class")
    master_port, ui_port, started = free_port(), free_port(), []

    def start(name: str, *args: str) -> None:
        log_file = (root / f"{name}.log").open("w")
        started.append(subprocess.Popen([spark_class, *args], env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True))

    try:
        start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(master_port),
              "--webui-port", str(ui_port))
        wait_for(lambda: master_state(ui_port)["status"] == "ALIVE", "the master")
        for i in range(2):
            start(f"worker{i}", "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{master_port}",
                  "--cores", "1", "--memory", "2g", "--host", "127.0.0.1", "--webui-port", str(free_port()),
                  "--work-dir", str(root / f"work{i}"))
        wait_for(lambda: master_state(ui_port)["aliveworkers"] == 2, "two workers")
        yield f"spark://127.0.0.1:{master_port}", ui_port
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        assert all(process.poll() is not None for process in started)


@pytest.fixture(scope="module")
def days(spark, cluster, tmp_path_factory):
    """Day N twice and day N+1 incrementally in local mode, then day N+1 built from every
    file by ``spark-submit.sh pipeline`` on the standalone cluster, in a second lakehouse."""
    root = tmp_path_factory.mktemp("production")
    day_n = make_config(root, generate=GenerateConfig(customers=400, products=60, partitions=2, next_day_share=0.1))
    runs.execute(spark, day_n, ["generate"])
    # A customer known on day N only by an order and a rating, whose record arrives on day N+1.
    raw = Path(day_n.paths.raw_dir)
    (raw / "orders" / "part-late.json").write_text(json.dumps(
        {"order_id": "OLATE", "customer_id": LATE, "product_id": "P000001", "quantity": 1, "unit_price": 9.5,
         "order_ts": "2024-11-02T10:00:00", "status": "completed"}) + "\n")
    spark.createDataFrame([(LATE, "P000002", 4, dt.datetime(2024, 11, 3))], "customer_id string, product_id string, "
                          "rating int, rated_ts timestamp").write.mode("append").parquet(str(raw / "ratings"))
    first = runs.execute(spark, day_n, STAGES)
    at_n = snapshot(spark, day_n)
    repeat = runs.execute(spark, day_n, STAGES)
    at_repeat = snapshot(spark, day_n)
    day_n1 = dataclasses.replace(day_n, as_of_date=AS_OF + dt.timedelta(days=1))
    (raw / "customers" / "part-late.csv").write_text(
        "customer_id,first_name,last_name,email,phone,gender,birth_date,city,country,signup_ts,updated_ts\n"
        f"{LATE},Lee,Late,lee.late@mail.test,,f,1980-01-01,Boston,US,2024-12-31 09:00:00,2024-12-31 09:00:00\n")
    quarantine = DeltaTable.forPath(spark, tables.QUARANTINE.path(day_n.paths.lakehouse_dir))
    quarantine_version = quarantine.history(1).first()["version"]
    next_day = runs.execute(spark, day_n1, ["next_day", *STAGES])
    quarantine_versions = (quarantine_version, quarantine.history(1).first()["version"])

    master, ui_port = cluster
    # The fewest model fits: the cluster run checks that every stage runs there, not the models' quality.
    # Executors run little code each: the quick JIT compiler serves them better than the optimizing one.
    on_cluster = dataclasses.replace(
        day_n1, paths=dataclasses.replace(day_n1.paths, lakehouse_dir=str(root / "cluster"),
                                          checkpoint_dir=str(root / "cluster-checkpoints")),
        train=dataclasses.replace(day_n1.train, classifiers=("logistic_regression",), lr_reg_params=(0.01,),
                                  segment_algorithms=("kmeans",), segment_k_min=3, segment_k_max=3,
                                  segment_restarts=1, clv_gbt_max_iter=5),
        recommend=dataclasses.replace(day_n1.recommend, tune=False, max_iter=5),
        spark=dataclasses.replace(day_n1.spark, extra={
            **day_n1.spark.extra, "spark.locality.wait": "0s",
            "spark.executor.extraJavaOptions":
                f"{day_n1.spark.extra['spark.executor.extraJavaOptions']} -XX:TieredStopAtLevel=1"}))
    # The driver JVM spark-submit starts gets the test sessions' Java options (collector, metaspace, later C2):
    # it used 215 CPU-seconds against 260 with the JVM's defaults (G1, HotSpot's thresholds).
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "CRM_SPARK_SUBMIT_ARGS": "--driver-memory 2g --executor-memory 1536m",
           "SPARK_SUBMIT_OPTS": day_n1.spark.extra["spark.driver.extraJavaOptions"]}
    began = time.monotonic()
    submitted = subprocess.run([str(REPO / "spark-submit.sh"), "pipeline", "--master", master, "--config",
                                str(write_config(on_cluster, root / "cluster.yaml"))],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=1200, check=False)
    return {"day_n": day_n, "at_n": at_n, "at_repeat": at_repeat, "first": first, "repeat": repeat,
            "day_n1": day_n1, "next_day": next_day, "rebuilt": on_cluster, "submitted": submitted,
            "cluster_seconds": time.monotonic() - began, "ui_port": ui_port, "master": master,
            "quarantine_versions": quarantine_versions}


def test_a_rerun_of_the_same_date_reads_no_file_and_leaves_every_table_as_it_was(spark, days):
    config = days["day_n"]
    assert days["first"].row_counts["orders.files"] > 0
    assert {k: v for k, v in days["repeat"].row_counts.items() if k.endswith(".files")} == {
        f"{source}.files": 0 for source in config.sources}
    assert not any(v for k, v in days["repeat"].row_counts.items() if k.startswith("merge.silver."))
    for table, rows in days["at_n"].items():
        assertDataFrameEqual(days["at_repeat"][table], rows)
    features = tables.read_table(spark, tables.CUSTOMER_FEATURES, config.paths.lakehouse_dir)
    assert features.where(F.col(AS_OF_DATE) == AS_OF).select(RUN_ID).distinct().collect() == [
        (days["repeat"].run_id,)]  # the re-run replaced the date's rows


def test_day_n_plus_1_appends_exactly_the_new_files_to_bronze(spark, days):
    config, result = days["day_n1"], days["next_day"]
    files = tables.read_table(spark, tables.INGESTED_FILES, config.paths.lakehouse_dir)
    for source in ("customers", "orders", "ratings"):
        new_files = [r[SOURCE_FILE] for r in files.where((F.col("source") == source)
                                                         & (F.col(RUN_ID) == result.run_id)).collect()]
        assert len(new_files) == result.row_counts[f"{source}.files"] > 0
        bronze = content(spark, config, tables.BRONZE[source])
        late = 1 if source == "customers" else 0  # the late customer's record
        assert bronze.where(F.col(SOURCE_FILE).isin(new_files)).count() == \
            result.row_counts[f"raw.{source}.next_day"] + late
        assertDataFrameEqual(bronze.where(~F.col(SOURCE_FILE).isin(new_files)), days["at_n"][tables.BRONZE[source]])
    # Nothing quarantined from new files: the quarantine table got no commit (its rows are compared with the rebuild).
    assert not any(v for k, v in result.row_counts.items() if k.startswith("quarantine."))
    before, after = days["quarantine_versions"]
    assert after == before


def test_day_n_plus_1_merged_into_silver_equals_a_rebuild_from_every_file(spark, days):
    assert days["submitted"].returncode == 0, days["submitted"].stderr[-5000:]
    incremental, rebuilt, counts = days["day_n1"], days["rebuilt"], days["next_day"].row_counts
    assert counts["merge.silver.orders.inserted"] == counts["raw.orders.next_day"]
    assert counts["merge.silver.orders.updated"] == 1  # the late customer's order line moves to its new key
    assert counts["merge.silver.customers.updated"] > 0  # customers who moved
    assert counts["merge.rekeyed_ids"] >= 1
    assert_same_data(spark, incremental, rebuilt)
    files = tables.read_table(spark, tables.INGESTED_FILES, incremental.paths.lakehouse_dir)
    assert files.where(F.col("prepared_run_id").isNull()).count() == 0


def test_a_run_killed_mid_write_leaves_committed_tables_and_a_rerun_matches(spark, days, tmp_path):
    reference = days["rebuilt"]
    root = Path(reference.paths.raw_dir).parent  # inside the config's allowed roots
    config = dataclasses.replace(reference, paths=dataclasses.replace(reference.paths,
                                                                      lakehouse_dir=str(root / "killed")))
    config_file = write_config(config, tmp_path / "config.yaml")
    lake = Path(config.paths.lakehouse_dir)
    writing = Path(tables.BRONZE["ratings"].path(str(lake)))  # ingest's last source
    log_path = tmp_path / "killed.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "crm_spark.cli", "pipeline", "--config", str(config_file), "--run-id", "killed"],
            cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    recorded = Path(tables.RUNS.path(str(lake))) / "_delta_log" / f"{0:020d}.json"  # the row saying running
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline and not (
            recorded.exists() and list(writing.glob("*.parquet"))):
        time.sleep(0.002)
    assert process.poll() is None, log_path.read_text()[-3000:]
    os.killpg(process.pid, signal.SIGKILL)  # the Python driver and its JVM, mid-way through the write
    assert process.wait() == -signal.SIGKILL

    # The interrupted write left data files but no commit; every committed table reads as committed.
    assert list(writing.glob("*.parquet")) and not DeltaTable.isDeltaTable(spark, str(writing))
    committed = [t for t in tables.ALL_TABLES if DeltaTable.isDeltaTable(spark, t.path(str(lake)))]
    assert {tables.BRONZE["customers"], tables.BRONZE["orders"], tables.RUNS} <= set(committed)
    assert tables.INGESTED_FILES not in committed  # the files are recorded last, so all are read again
    for table in committed:  # each holds exactly the rows of its one commit
        path = table.path(str(lake))
        assert DeltaTable.forPath(spark, path).history().count() == 1, table.qualified
        assert spark.read.format("delta").load(path).count() == tables.rows_written(spark, path) > 0, table.qualified
    for source in ("customers", "products", "orders"):
        assertDataFrameEqual(content(spark, config, tables.BRONZE[source]),
                             content(spark, reference, tables.BRONZE[source]))
    assert tables.read_table(spark, tables.RUNS, str(lake)).where(F.col(RUN_ID) == "killed").first()["status"] \
        == "running"

    runs.execute(spark, config, ["ingest"], run_id="rerun")
    for table in (*tables.BRONZE.values(), tables.QUARANTINE):
        assertDataFrameEqual(content(spark, config, table), content(spark, reference, table))
    manifest = tables.read_table(spark, tables.RUNS, str(lake)).where(F.col(RUN_ID) == "killed").first()
    assert (manifest["status"], manifest["error"]) == ("failed", runs.ABANDONED)


def test_the_pipeline_under_spark_submit_on_a_standalone_cluster_matches_local_mode(spark, days):
    done, config = days["submitted"], days["rebuilt"]
    print(f"pipeline on the cluster: {days['cluster_seconds']:.1f} s")
    assert done.returncode == 0, done.stderr[-5000:]
    assert f"master {days['master']}" in done.stderr
    (app,) = master_state(days["ui_port"])["completedapps"]
    assert app["memoryperexecutor"] == 1536  # CRM_SPARK_SUBMIT_ARGS reached spark-submit
    manifest = tables.read_table(spark, tables.RUNS, config.paths.lakehouse_dir).first()
    assert manifest["stages"] == list(runs.PIPELINE)
    assert set(manifest["stage_status"].values()) == {"succeeded"}, manifest["stage_status"]

    # The data tables are those of the local-mode run of the same files (day N+1 above).
    assert_same_data(spark, days["day_n1"], config)
    # The models' outputs are complete: every customer who has bought is scored with a
    # probability, and the held-out metrics and recommendations are written. Their quality
    # is tested on planted data elsewhere; about 60 held-out customers cannot measure it.
    features = content(spark, config, tables.CUSTOMER_FEATURES).where(
        (F.col(AS_OF_DATE) == config.as_of_date) & (F.col("frequency") > 0))
    scores = content(spark, config, tables.CHURN_SCORES)
    assertDataFrameEqual(scores.select(CUSTOMER_KEY), features.select(CUSTOMER_KEY))
    assert scores.where(~F.col("churn_probability").between(0, 1)).isEmpty()
    metrics = tables.read_table(spark, tables.MODEL_METRICS, config.paths.lakehouse_dir).where(
        (F.col("metric") == "auc") & (F.col("split") == "test"))
    assert {(r["task"], r["model"]) for r in metrics.collect()} >= {
        ("churn", "logistic_regression"), ("churn", "recency_baseline")}
    served = content(spark, config, tables.RECOMMENDATIONS).select(CUSTOMER_KEY).distinct()
    assert served.count() == content(spark, config, tables.CUSTOMERS).count()

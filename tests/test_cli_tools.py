"""The tools of the command line: config validate and show, dry runs, the viewers, and init."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from crm_spark import cli, runs, session, tables
from crm_spark.config import as_dict, flatten, load_config
from crm_spark.ingest import scaffold
from crm_spark.schemas import MODEL_METRICS_SCHEMA
from crm_spark.session import session_settings

from .conftest import AS_OF, make_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted([ROOT / "conf" / "local.yaml", ROOT / "conf" / "cluster.yaml",
                  *(ROOT / "conf" / "examples").glob("*.yaml")])


pytestmark = pytest.mark.usefixtures("restore_logging")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Return the exit code, stdout and stderr of ``crm-spark ARGV``."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_config_validate_checks_every_shipped_config_without_spark(capsys, monkeypatch, path):
    monkeypatch.chdir(ROOT)
    code, out, err = run(capsys, "config", "validate", "--config", str(path))
    assert (code, err) == (0, "")
    assert out.startswith(f"crm-spark config: {path} is valid (hash ")


def test_config_show_prints_a_config_that_loads_back_the_same(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    local = str(ROOT / "conf" / "local.yaml")
    code, out, _ = run(capsys, "config", "show", "--config", local, "--set", "train.seed=3")
    assert code == 0
    (tmp_path / "shown.yaml").write_text(out)
    expected = cli.resolve_paths(load_config(local, ["train.seed=3"]))  # show resolves paths as a run does
    assert load_config(tmp_path / "shown.yaml").config_hash() == expected.config_hash()
    code, out, _ = run(capsys, "config", "show", "--diff", "--config", local, "--set", "train.seed=3")
    diff = flatten(yaml.safe_load(out))
    assert code == 0 and diff["train.seed"] == 3 and diff["recommend.tune_ranks"] == [8, 16, 32, 64]
    assert "train.gbt_max_iter" not in diff and "spark.shuffle_partitions" not in diff  # defaults left out
    assert diff["as_of_date"] == "2025-01-01" and diff["paths.raw_dir"].endswith("data/raw")


def test_dry_run_lists_stages_tables_and_paths_and_starts_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "pipeline", "--config", str(ROOT / "conf" / "local.yaml"), "--dry-run",
                         "--generate", "--to", "features")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert [line.split(":")[0].strip() for line in lines if line[:3].strip().rstrip(".").isdigit()] == [
        "1. generate", "2. ingest", "3. prepare", "4. features"]
    assert f"      writes gold.customer_features: {tmp_path / 'lakehouse' / 'gold' / 'customer_features'}" in lines
    assert f"      reads raw orders (json): {tmp_path / 'data' / 'raw' / 'orders'}" in lines
    assert not (tmp_path / "data").exists() and not (tmp_path / "lakehouse").exists()


def test_stage_ranges_run_in_pipeline_order():
    args = cli.parser().parse_args(["pipeline", "--stages", "train,features,select-features"])
    assert cli.plan(args) == ["features", "select", "train"]
    args = cli.parser().parse_args(["pipeline", "--generate", "--from", "features", "--to", "train"])
    assert cli.plan(args) == ["features", "training_features", "select", "train"]
    args = cli.parser().parse_args(["feature-selection"])
    assert (args.command, cli.plan(args)) == ("select", ["select"])
    args = cli.parser().parse_args(["daily", "--next-day"])
    assert cli.plan(args) == ["next_day", "ingest", "prepare", "quality_gate", "features", "score", "serve",
                              "campaigns"]
    args = cli.parser().parse_args(["retrain"])
    assert cli.plan(args) == ["training_features", "select", "train", "recommend", "evaluate"]
    args = cli.parser().parse_args(["retrain", "--from", "train"])
    assert cli.plan(args) == ["train", "recommend", "evaluate"]


def test_daily_runs_its_quality_gate_only_where_expectations_are_configured(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the example's files are in the repository; a dry run writes nothing
    config = "conf/examples/orders_only.yaml"
    for overrides, gate in (([], True), (["--set", "quality.expectations=[]"], False)):
        code, out, err = run(capsys, "daily", "--config", config, "--dry-run", *overrides)
        assert (code, err) == (0, "")
        listed = [line.split(":")[0].split(". ")[1] for line in out.splitlines()
                  if line[:3].strip().rstrip(".").isdigit()]
        assert listed == ["ingest", "prepare", *(["quality_gate"] if gate else []), "features", "score", "serve",
                          "campaigns"]


@pytest.fixture
def lake_config(spark, session_root, tmp_path):
    """A config file for the session's Spark settings with its own lakehouse, and the config itself."""
    base = make_config(session_root)
    config = dataclasses.replace(base, paths=dataclasses.replace(
        base.paths, lakehouse_dir=str(tmp_path / "lakehouse"), allowed_roots=(str(session_root), str(tmp_path))))
    path = tmp_path / "config.yaml"
    path.write_text(cli.config_text(config, diff=False))
    return str(path), config


def test_runs_metrics_and_show_read_the_lakehouse_without_personal_columns(spark, capsys, lake_config, tmp_path):
    path, config = lake_config
    lake = config.paths.lakehouse_dir
    runs.execute(spark, config, ["score"], run_id="viewed-run")  # no model yet: skipped
    metrics = [("viewed-run", AS_OF, "churn", "logistic_regression", "auc", 0.81, "test", "viewed-run"),
               ("viewed-run", AS_OF, "churn", "logistic_regression", "f1", 0.42, "test", "viewed-run"),
               ("older-run", AS_OF, "churn", "logistic_regression", "auc", 0.5, "test", "older-run")]
    for run_id in ("older-run", "viewed-run"):
        rows = [row for row in metrics if row[0] == run_id]
        tables.write_table(spark.createDataFrame(rows, MODEL_METRICS_SCHEMA), tables.MODEL_METRICS, lake, run_id)
    people = spark.createDataFrame([("k1", "ann@example.com", "Bonn"), ("k2", "bob@example.com", "Köln")],
                                   "customer_key string, email string, city string")
    tables.write_table(people, tables.CUSTOMERS, lake)

    code, out, _ = run(capsys, "runs", "--config", path)
    assert code == 0 and "viewed-run" in out and "succeeded" in out and re.search(r"score \d+s \(skipped\)", out)

    code, out, _ = run(capsys, "metrics", "--config", path)
    assert code == 0 and out.startswith("metrics of run viewed-run\n")
    shown = pd.read_fwf(pd.io.common.StringIO(out.split("\n", 1)[1]))
    assert shown[["metric", "value"]].values.tolist() == [["auc", 0.81], ["f1", 0.42]]
    code, out, err = run(capsys, "metrics", "--config", path, "--run-id", "no-such-run")
    assert code == 2 and "no metrics for run 'no-such-run' (newest runs with metrics: viewed-run, older-run)" in err

    code, out, _ = run(capsys, "show", "--config", path, "silver.customers")
    assert code == 0 and "Bonn" in out and "@" not in out and "email" not in out
    code, out, _ = run(capsys, "show", "--config", path, "silver.customers", "--include-personal", "--limit", "1",
                       "--where", "city = 'Bonn'")
    assert code == 0 and "ann@example.com" in out and "bob" not in out
    csv_file = tmp_path / "auc.csv"
    code, out, _ = run(capsys, "show", "--config", path, "model_metrics", "--where", "metric = 'auc'",
                       "--csv", str(csv_file))
    assert code == 0 and out.startswith("crm-spark show: wrote 2 rows of gold.model_metrics")
    assert sorted(pd.read_csv(csv_file)["value"]) == [0.5, 0.81]
    code, _, err = run(capsys, "show", "--config", path, "model_metrics", "--where", "no_such_column > 1")
    assert code == 2 and err.startswith("crm-spark: error: --where 'no_such_column > 1': ") and len(
        err.strip().splitlines()) == 1
    code, _, err = run(capsys, "show", "--config", path, "gold.churn_scores")
    assert code == 2 and "table gold.churn_scores not found" in err


# ---- init ----------------------------------------------------------------------------------------------------

AWKWARD = (
    "\ufeffOrder No;Client;Article;Qty;Price (EUR);Ordered at;Notes\r\n"
    "A-1;c 001;P1;2;9.99;3/14/2024 9:05;\"first; with a semicolon\"\r\n"
    "\r\n"
    "A-1;c 001;P2;1;19.50;3/14/2024 9:05;\r\n"
    "A-2;c 002;P1;1;9.99;12/1/2024 17:45;gift\r\n"
    "A-3;c 003;P3;5;1.25;12/31/2024 23:59;\r\n"
)


def init(capsys, tmp_path, *files: str) -> tuple[str, dict]:
    out_file = tmp_path / "mine.yaml"
    code, out, err = run(capsys, "init", "--output", str(out_file), "--force", "--from", *files)
    assert code == 0 and out == out_file.read_text() and "crm-spark init: wrote" in err
    return out, yaml.safe_load(out)


def test_init_on_the_example_files_proposes_what_their_configs_say(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text, proposed = init(capsys, tmp_path, str(ROOT / "examples" / "orders_only" / "transactions.csv"))
    orders = proposed["sources"]["orders"]
    assert (orders["format"], orders["delimiter"], orders["encoding"], orders["header"]) == (
        "csv", ";", "ISO-8859-1", True)
    assert orders["columns"] == {"customer_id": "Kundennr", "unit_price": "Betrag", "order_ts": "Datum"}
    assert (orders["formats"], orders["constants"]) == ({"order_ts": ["dd.MM.yyyy"]}, {"quantity": "1"})
    assert "# left out: Filiale" in text and load_config(tmp_path / "mine.yaml").sources["orders"].path == \
        "transactions.csv"

    text, proposed = init(capsys, tmp_path, str(ROOT / "examples" / "ratings_users" / "u.data"),
                          str(ROOT / "examples" / "ratings_users" / "u.user"))
    ratings, customers = proposed["sources"]["ratings"], proposed["sources"]["customers"]
    assert (ratings["header"], ratings["delimiter"], ratings["fields"], ratings["formats"]) == (
        False, "\t", ["customer_id", "product_id", "rating", "rated_ts"], {"rated_ts": ["epoch"]})
    assert (customers["delimiter"], customers["fields"][:3]) == ("|", ["customer_id", "age", "gender"])
    assert "check: no header; customer_id, product_id, rating, rated_ts guessed from the values" in text
    newest = max(int(line.split("\t")[3]) for line in
                 (ROOT / "examples" / "ratings_users" / "u.data").read_text().splitlines()[:scaffold.SAMPLE_ROWS])
    newest_day = dt.datetime.fromtimestamp(newest, dt.timezone.utc).date()
    assert proposed["as_of_date"] == newest_day + dt.timedelta(days=1)
    load_config(tmp_path / "mine.yaml")

    _, proposed = init(capsys, tmp_path, str(ROOT / "examples" / "subscription" / "customers.csv"))
    customers = proposed["sources"]["customers"]
    assert customers["columns"] == {"customer_id": "customerID", "label": "Churn"}
    assert list(customers["attributes"])[:3] == ["SeniorCitizen", "Partner", "Dependents"]
    assert load_config(tmp_path / "mine.yaml").attribute_columns[-1] == "total_charges"


def test_init_reads_json_lines_and_parquet(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "events.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"user": "u1", "sku": "S1", "qty": 1, "amount": 3.5, "ts": "2024-05-01T10:00:00"},
        {"user": "u2", "sku": "S2", "qty": 2, "amount": 1.0, "ts": "2024-05-02T11:30:00"}]) + "\n")
    pd.DataFrame({"product_id": ["S1", "S2"], "genre": ["toys", "books"], "price": [3.5, 1.0]}).to_parquet(
        tmp_path / "catalogue.parquet")
    _, proposed = init(capsys, tmp_path, "orders=events.jsonl", "catalogue.parquet")
    orders, products = proposed["sources"]["orders"], proposed["sources"]["products"]
    assert (orders["format"], orders["columns"]) == ("json", {
        "customer_id": "user", "product_id": "sku", "quantity": "qty", "unit_price": "amount", "order_ts": "ts"})
    assert "formats" not in orders  # ISO times need no pattern
    assert (products["format"], products["columns"]) == ("parquet", {"category": "genre"})
    assert proposed["as_of_date"] == dt.date(2024, 5, 3)


def test_init_on_an_awkward_file_gives_a_config_that_ingests_it(spark, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "export"
    raw.mkdir()
    (raw / "Bestellungen Export.CSV").write_bytes(AWKWARD.encode("utf-8"))
    text, proposed = init(capsys, tmp_path, str(raw / "Bestellungen Export.CSV"))
    orders = proposed["sources"]["orders"]
    assert (orders["delimiter"], orders["encoding"], orders["formats"]) == (
        ";", "UTF-8", {"order_ts": ["M/d/yyyy H:mm"]})
    assert orders["columns"] == {"order_id": "Order No", "customer_id": "Client", "product_id": "Article",
                                 "quantity": "Qty", "unit_price": "Price (EUR)", "order_ts": "Ordered at"}
    assert "# left out: Notes" in text
    config = cli.resolve_paths(load_config(tmp_path / "mine.yaml", [f"paths.lakehouse_dir={tmp_path / 'lake'}",
                                                  f"paths.checkpoint_dir={tmp_path / 'ckpt'}"]))
    runs.execute(spark, dataclasses.replace(config, spark=make_config(tmp_path).spark), ["ingest"], "init-run")
    bronze = tables.read_table(spark, tables.BRONZE["orders"], config.paths.lakehouse_dir)
    assertDataFrameEqual(bronze.select("order_id", "customer_id", "quantity", F.to_date("order_ts").alias("day")),
                         spark.createDataFrame([("A-1", "c 001", 2, dt.date(2024, 3, 14)),
                                                ("A-1", "c 001", 1, dt.date(2024, 3, 14)),
                                                ("A-2", "c 002", 1, dt.date(2024, 12, 1)),
                                                ("A-3", "c 003", 5, dt.date(2024, 12, 31))],
                                               "order_id string, customer_id string, quantity int, day date"))
    assert proposed["as_of_date"] == dt.date(2025, 1, 1)
    assert as_dict(config)["sources"]["orders"]["path"] == "Bestellungen Export.CSV"


def test_spark_progress_bar_shows_on_a_terminal_unless_configured(tmp_path, monkeypatch):
    config = make_config(tmp_path)
    for terminal, setting, shown in ((True, None, "true"), (False, None, "false"), (True, False, "false"),
                                     (False, True, "true")):
        monkeypatch.setattr("sys.stderr.isatty", lambda terminal=terminal: terminal)
        chosen = dataclasses.replace(config, spark=dataclasses.replace(config.spark, console_progress=setting))
        assert session_settings(chosen)["spark.ui.showConsoleProgress"] == shown


def test_the_driver_runs_the_parallel_collector_unless_other_java_options_name_one(tmp_path, monkeypatch):
    config = make_config(tmp_path)
    for variable in ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "SPARK_SUBMIT_OPTS"):
        monkeypatch.delenv(variable, raising=False)

    def driver_options(extra: dict[str, str]) -> str | None:
        return session_settings(dataclasses.replace(config, spark=dataclasses.replace(config.spark, extra=extra))).get(
            "spark.driver.extraJavaOptions")

    assert driver_options({}) == "-XX:+UseParallelGC"
    assert driver_options({"spark.driver.extraJavaOptions": "-Xlog:gc:file=gc.log"}) == \
        "-XX:+UseParallelGC -Xlog:gc:file=gc.log"
    assert driver_options({"spark.driver.extraJavaOptions": "-XX:+UseG1GC -Xss4m"}) == "-XX:+UseG1GC -Xss4m"
    assert driver_options({"spark.driver.defaultJavaOptions": "-XX:+UseZGC"}) is None
    monkeypatch.setenv("JAVA_TOOL_OPTIONS", "-XX:+UseG1GC")  # the JVM would refuse to start with two collectors
    assert driver_options({"spark.driver.extraJavaOptions": "-Xss4m"}) == "-Xss4m"


def test_the_jars_resolved_for_the_delta_package_are_noted_and_used_while_all_are_there(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    package = "io.delta:delta-spark_4.2_2.13:0.0.0"
    assert session.resolved_jars(package) is None
    jars = [tmp_path / "io.delta_delta-spark_4.2_2.13-0.0.0.jar", tmp_path / "io.delta_delta-storage-0.0.0.jar"]
    for jar in jars:
        jar.write_bytes(b"")
    session.remember_jars(package, jars[1].as_uri())  # without the package's own jar: not noted
    assert session.resolved_jars(package) is None
    session.remember_jars(package, ",".join(jar.as_uri() for jar in jars) + ",spark://driver:7078/jars/c.jar")
    assert session.resolved_jars(package) == [jar.as_uri() for jar in jars]
    assert session.resolved_jars("io.delta:delta-spark_4.2_2.13:9.9.9") is None
    jars[1].unlink()  # a cleaned Ivy cache: the package is resolved again
    assert session.resolved_jars(package) is None


def test_a_class_archive_is_named_by_java_spark_and_jars_and_given_to_the_jvm_unless_options_name_one(
        tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for variable in ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "SPARK_SUBMIT_OPTS", "SPARK_CONF_DIR"):
        monkeypatch.delenv(variable, raising=False)
    archive = session.class_archive(["file:/jars/a.jar"])
    assert archive.parent == tmp_path / "cache" / "crm-spark" and archive.suffix == ".jsa"
    assert session.class_archive(["file:/jars/a.jar"]) == archive
    assert session.class_archive(["file:/jars/b.jar"]) != archive
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))  # its files join the class path
    assert session.class_archive(["file:/jars/a.jar"]) != archive
    monkeypatch.delenv("SPARK_CONF_DIR")

    def options(write: bool = True, enabled: bool = True, extra: dict[str, str] | None = None) -> str:
        config = make_config(tmp_path)
        spark_config = dataclasses.replace(config.spark, class_archive=enabled, extra=extra or {})
        return session.class_archive_options(dataclasses.replace(config, spark=spark_config), archive, write)

    assert options() == f"-XX:ArchiveClassesAtExit={archive}.{os.getpid()}.partial -Xlog:cds*=off"
    assert options(write=False) == ""
    assert archive.parent.is_dir()  # made for the JVM, which writes the file but not its folder
    archive.write_bytes(b"")
    assert options() == options(write=False) == f"-XX:SharedArchiveFile={archive} -Xlog:cds*=off"
    assert options(enabled=False) == ""
    assert options(extra={"spark.driver.extraJavaOptions": "-Xshare:off"}) == ""
    monkeypatch.setenv("JAVA_TOOL_OPTIONS", f"-XX:SharedArchiveFile={tmp_path}/other.jsa")
    assert options() == ""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a cache"))  # Spark would split the option at the space
    assert session.class_archive(["file:/jars/a.jar"]) is None
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))  # no Java runtime there
    assert session.class_archive(["file:/jars/a.jar"]) is None



def test_the_java_version_is_that_of_java_home_else_of_the_java_on_the_path(tmp_path, monkeypatch):
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    (home / "release").write_text('IMPLEMENTOR="Someone"\nJAVA_VERSION="25.0.3"\nJAVA_VERSION_DATE="2026-04-21"\n')
    monkeypatch.setenv("JAVA_HOME", str(home))
    assert (session.java_home(), session.java_version()) == (str(home), "25.0.3")
    (home / "bin" / "java").write_text("#!/bin/sh\n")
    (home / "bin" / "java").chmod(0o755)
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere") + os.pathsep + str(home / "bin"))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "java").symlink_to(home / "bin" / "java")  # as Debian links its alternatives
    assert (session.java_home(), session.java_version()) == (str(home), "25.0.3")
    (home / "release").unlink()
    assert session.java_version() is None
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert (session.java_home(), session.java_version()) == (None, None)

def test_a_new_session_starts_from_the_noted_jars_writes_a_class_archive_and_the_next_jvm_maps_it(
        spark, tmp_path, monkeypatch):
    config = make_config(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("PYSPARK_GATEWAY_PORT", None)
    class_log = tmp_path / "classes.log"

    def start(*lines: str, extra: str = "{}") -> list[str]:
        script = (f"from crm_spark.config import load_config; from crm_spark import session\n"
                  f"spark = session.build_spark(load_config({str(ROOT / 'conf' / 'local.yaml')!r}, "
                  f"['spark.master=local[1]', 'paths.checkpoint_dir={tmp_path}/checkpoints', "
                  f"'paths.allowed_roots=[\"{tmp_path}\", \".\"]', {'spark.extra=' + extra!r}]), "
                  f"write_class_archive=True)\n" + "\n".join(lines) + "\nsession.finish_class_archive(spark)\n")
        done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                              timeout=600, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.splitlines()

    session.remember_jars(config.spark.delta_package, spark.conf.get("spark.jars"))
    assert start(f"spark.range(3).write.format('delta').save({str(tmp_path / 'table')!r})",
                 "print('packages', spark.conf.get('spark.jars.packages', None))",
                 f"print('rows', spark.read.format('delta').load({str(tmp_path / 'table')!r}).count())")[-2:] == [
        "packages None", "rows 3"]
    cache = tmp_path / "cache" / "crm-spark"
    assert [p.suffix for p in cache.glob("classes-*")] == [".jsa"]  # written, and no partial file left
    # The next JVM loads Spark's classes from the archive (the JVM's class log says where each came from).
    extra = json.dumps({"spark.driver.extraJavaOptions": f"-Xlog:class+load=info:file={class_log}"})
    assert start(f"print('rows', spark.read.format('delta').load({str(tmp_path / 'table')!r}).count())",
                 extra=extra)[-1] == "rows 3"
    loaded = class_log.read_text(encoding="utf-8")
    assert "org.apache.spark.SparkContext source: shared objects file (top)" in loaded
    assert [p.suffix for p in cache.glob("classes-*")] == [".jsa"]  # mapped, not written again


def test_a_stage_run_before_the_one_that_feeds_it_names_that_stage(spark, capsys, lake_config):
    path, config = lake_config
    code, _, err = run(capsys, "features", "--config", path, "--log-level", "WARNING", "--run-id", "too-early")
    assert code == 2 and err.strip().splitlines() == [
        "crm-spark: error: stage features needs table silver.customers, which stage prepare writes: "
        "run 'crm-spark prepare' first"]
    row = tables.read_table(spark, tables.RUNS, config.paths.lakehouse_dir).where(F.col("run_id") == "too-early")
    assert row.first()["status"] == "failed"


def test_every_command_in_the_readme_parses():
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    commands = [line.split("crm-spark ", 1)[1] for line in lines if line.startswith((".venv/bin/crm-spark ",
                                                                                    "crm-spark "))]
    assert len(commands) >= 15
    for command in commands:
        if command.strip() == "--version":
            continue
        args = cli.parser().parse_args(shlex.split(command))  # exits (fails the test) on any mistake
        assert args.group == "tool" or cli.plan(args)  # stage ranges name known stages in order


def test_a_source_unlike_its_config_is_one_line_with_exit_code_2(spark, capsys, lake_config, tmp_path):
    path, _ = lake_config
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "orders.csv").write_text("customer_id,quantity,order_ts\nc1,1,2024-01-01\n")
    code, _, err = run(capsys, "ingest", "--config", path, "--log-level", "WARNING",
                       "--set", f"paths.raw_dir={tmp_path / 'raw'}",
                       "--set", "sources={orders: {path: orders.csv, format: csv}}")
    assert code == 2 and err.strip().splitlines() == [
        "crm-spark: error: source 'orders' lacks required column 'unit_price' (source field 'unit_price' not found; "
        "map it under sources.orders.columns or set sources.orders.constants.unit_price)"]

"""Benchmark: the full run and an incremental daily run of the synthetic demo at a given size, each
as its own ``crm-spark`` process, beside a single-process pandas + scikit-learn version of the
daily path on the same raw files.

Steps, each timed with the peak resident memory of the driver's Python process, its JVM and
the Python workers sampled twice a second (not the configured heap), and the largest heap the
driver JVM kept after a garbage collection (from its ``-Xlog:gc`` log): the JVM's resident
memory grows towards its heap limit whatever it holds, the heap after a collection follows what
it holds. The driver JVM's CPU time is sampled too, split by its threads' names into the JIT
compilers', the garbage collector's and the rest (a new JVM compiles Spark's code, and the code
Spark generates, again in every run). Each run's stage lines are echoed as they come, and its whole
output (the log lines with their times) is kept in ``<work>/logs/<json name>-<step>.log``:

1. ``generate`` (skipped with ``--reuse`` when the work folder already has generated files; the
   folder's customer-key secret is kept, so the splits and metrics of two runs compare);
2. ``pipeline`` without generate: the full run, as of ``as_of_date`` (skipped with
   ``--daily-only``, which starts from a copy of the last full run's lakehouse);
3. ``next_day``: the demo's activity of ``as_of_date`` appended as new raw files;
4. ``daily`` as of the next day: ingest and prepare only the new files, features, score, serve
   from the registered models, campaigns and the report, fitting nothing;
5. the pandas baseline as of the next day: every raw order read, recency, frequency and
   spend per customer, a logistic-regression churn model fitted at the training cutoff and
   applied at the date, and the ten most popular products each customer has not bought,
   written as Parquet.

Prints one table (wall time, peak memory, rows per second of raw order lines) under the Java version
the runs started (``JAVA_HOME``'s, else the ``PATH``'s) and what the machine's cores were worth before
and after the runs (``machine.py``: a record of the machine; times compare only from one machine), the stage times
of the full and daily runs with their headline metrics, and each run's time outside its stages
(start-up to the first stage, between stages, after the last stage), and writes them as JSON. With
``--spark-jobs`` each run also keeps Spark's event log (in ``<work>/events/``), and prints, per stage,
its Spark jobs, the seconds in which at least one ran, the seconds none did (the driver planning,
working on Delta logs or in Python) and its tasks' CPU time: ``spark_jobs.py``'s summary, kept in the
JSON too; and each run's JVM CPU time split into its tasks', the JIT compilers', the garbage collector's
and the rest (the driver's). From the repository root:

    .venv/bin/python benchmarks/daily.py [--customers 100000] [--work /tmp/crm-daily-bench] [--reuse]
        [--daily-only] [--spark-jobs] [--json benchmarks/daily.json] [--set key=value ...]

scikit-learn comes with the ``dev`` extra (``make test`` installs it); it is never a runtime dependency.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
from machine import calibrate, describe
from spark_jobs import per_stage, read_jobs

from crm_spark.config import load_config
from crm_spark.session import DRIVER_OPTIONS, java_version

REPO = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"^  (\w+)\s+(succeeded|skipped|failed)\s+([\d.]+)\s+([\d,]+)\s+([\d,]+)$")
METRIC_LINE = re.compile(r"^  (\w+)\s+(\S+)\s+(\w+)\s+(-?[\d.]+|n/a)$")
PROGRESS_LINE = re.compile(r"^\[\d+/\d+\] ")  # "[3/10] features ...", "[3/10] features succeeded in 21.3s"
GC_PAUSE = re.compile(r"Pause .*\s\d+M->(\d+)M\(\d+M\)")  # "... Pause Young (Normal) ... 2236M->886M(2784M) 20ms"
MB = 1024 * 1024
# The JVM's own threads by the start of their names (Linux keeps 15 characters): HotSpot's JIT
# compilers, and the collector's workers (the parallel collector's, or G1's).
JVM_THREADS = {"jit": ("C1 CompilerThre", "C2 CompilerThre"), "gc": ("GC Thread", "G1 ")}


def jvm_thread_seconds(jvm: psutil.Process) -> dict[tuple[int, int], tuple[str, float]]:
    """Return the CPU seconds each live thread of ``jvm`` has used, keyed by (pid, thread id), with its kind
    (``jit``, ``gc`` or ``other``) from its name in ``/proc``."""
    seconds = {}
    for thread in jvm.threads():
        try:
            name = Path(f"/proc/{jvm.pid}/task/{thread.id}/comm").read_text(encoding="utf-8")
        except OSError:  # ended since, or no /proc
            continue
        kind = next((k for k, prefixes in JVM_THREADS.items() if name.startswith(prefixes)), "other")
        seconds[(jvm.pid, thread.id)] = (kind, thread.user_time + thread.system_time)
    return seconds


def work_settings(work: Path, customers: int, overrides: list[str]) -> list[str]:
    """Return the config overrides that put every path of a run under ``work``, with ``overrides`` last."""
    return [f"paths.truth_dir={work}/truth", f"paths.lakehouse_dir={work}/lakehouse",
            f"paths.checkpoint_dir={work}/checkpoints", f"paths.allowed_roots=['{work}']",
            f"privacy.secret_file={work}/.secrets/customer-key.secret", f"generate.customers={customers}", *overrides]


def start_from_generated(work: Path) -> None:
    """Replace the raw files with a copy of the generated ones (modification times kept, so the files
    of a copied lakehouse count as ingested), and remove the lakehouse and the run's other folders."""
    for folder in ("raw", "lakehouse", "checkpoints", "baseline"):
        shutil.rmtree(work / folder, ignore_errors=True)
    shutil.copytree(work / "generated", work / "raw")


def start_from_full_run(work: Path) -> None:
    """Start from the generated files and a copy of the lakehouse of the work folder's last full run."""
    if not (work / "lakehouse-full").exists():
        sys.exit(f"this needs an earlier full run's {work / 'lakehouse-full'}: run benchmarks/daily.py once")
    start_from_generated(work)
    shutil.copytree(work / "lakehouse-full", work / "lakehouse")


def measured(command: list[str], log: Path) -> dict:
    """Run ``command``, sampling the peak memory of its process tree; return times, peaks and its output.

    Every line of the output is written to ``log`` as it comes, after the seconds since the start.
    """
    began = time.perf_counter()
    process = psutil.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    progress_at: list[float] = []  # when each progress line came: the first ends the start-up, the last the stages

    def read() -> None:
        with log.open("w", encoding="utf-8") as kept:
            for line in process.stdout:
                lines.append(line)
                kept.write(f"{time.perf_counter() - began:8.2f} {line}")
                kept.flush()
                if PROGRESS_LINE.match(line):
                    progress_at.append(time.perf_counter() - began)
                    print(f"  {line.rstrip()}", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    peaks = {"python": 0, "jvm": 0, "workers": 0}
    jvm_seconds: dict[int, float] = {}  # per JVM: its CPU seconds, ended threads included
    thread_seconds: dict[tuple[int, int], tuple[str, float]] = {}  # the last reading of every thread seen
    while process.poll() is None:
        try:
            now = {"python": process.memory_info().rss, "jvm": 0, "workers": 0}
            for child in process.children(recursive=True):
                with_rss = child.memory_info().rss
                if "java" in child.name():
                    now["jvm"] += with_rss
                    times = child.cpu_times()
                    jvm_seconds[child.pid] = times.user + times.system
                    thread_seconds.update(jvm_thread_seconds(child))
                else:
                    now["workers"] += with_rss
        except psutil.Error:
            now = {}
        peaks = {k: max(v, now.get(k, 0)) for k, v in peaks.items()}
        time.sleep(0.5)
    reader.join()
    seconds = time.perf_counter() - began
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{''.join(lines[-40:])}")
    stages = {m[1]: {"seconds": float(m[3]), "rows_in": int(m[4].replace(",", "")),
                     "rows_out": int(m[5].replace(",", ""))} for m in map(STAGE_LINE.match, lines) if m}
    metrics = {f"{m[1]}/{m[2]}/{m[3]}": None if m[4] == "n/a" else float(m[4])
               for m in map(METRIC_LINE.match, lines) if m and not STAGE_LINE.match(m[0])}
    outside = {"startup_seconds": round(progress_at[0], 1),
               "after_stages_seconds": round(seconds - progress_at[-1], 1)} if progress_at else {}
    cpu = {f"jvm_{kind}_cpu_seconds": round(sum(s for k, s in thread_seconds.values() if k == kind), 1)
           for kind in JVM_THREADS}
    return {"seconds": round(seconds, 1), **{f"peak_{k}_mb": round(v / MB) for k, v in peaks.items()},
            "jvm_cpu_seconds": round(sum(jvm_seconds.values()), 1), **cpu, **outside, "stages": stages,
            "metrics": metrics}


def heap_after_gc(log: Path) -> int | None:
    """Return the largest heap, in MB, that a ``-Xlog:gc`` log shows left after a collection (None without one)."""
    if not log.exists():
        return None
    return max((int(m[1]) for m in map(GC_PAUSE.search, log.read_text().splitlines()) if m), default=None)


def read_orders(raw: Path) -> pd.DataFrame:
    """Return every parsable order line of the raw JSON-lines files (a bad line is skipped, as ingest quarantines)."""
    frames = []
    for path in sorted(glob.glob(str(raw / "orders" / "*"))):
        if Path(path).name.startswith(("_", ".")):
            continue
        try:
            frames.append(pd.read_json(path, lines=True, dtype=False))
        except ValueError:
            good = []
            for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    good.append(json.loads(line))
                except ValueError:
                    continue
            frames.append(pd.DataFrame(good))
    return pd.concat(frames, ignore_index=True)


def baseline(raw: Path, as_of: dt.date, horizon_days: int, out: Path) -> dict:
    """The daily path in pandas + scikit-learn, in this process: returns its wall time and order lines read."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    began = time.perf_counter()
    orders = read_orders(raw)
    lines = len(orders)
    orders["order_ts"] = pd.to_datetime(orders["order_ts"], errors="coerce")
    orders["amount"] = pd.to_numeric(orders["quantity"], errors="coerce") * pd.to_numeric(orders["unit_price"],
                                                                                          errors="coerce")
    orders = orders[(orders["status"] == "completed") & orders["customer_id"].notna() & orders["order_ts"].notna()]
    cutoff = as_of - dt.timedelta(days=horizon_days)

    def features(date: dt.date) -> pd.DataFrame:
        past = orders[orders["order_ts"] < pd.Timestamp(date)]
        grouped = past.groupby("customer_id")
        return pd.DataFrame({
            "recency_days": (pd.Timestamp(date) - grouped["order_ts"].max()).dt.days,
            "frequency": grouped["order_id"].nunique(),
            "monetary": grouped["amount"].sum(),
            "tenure_days": (pd.Timestamp(date) - grouped["order_ts"].min()).dt.days,
        })

    train = features(cutoff)
    horizon = orders[(orders["order_ts"] >= pd.Timestamp(cutoff)) & (orders["order_ts"] < pd.Timestamp(as_of))]
    churned = ~train.index.isin(horizon["customer_id"].unique())
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(train.fillna(0), churned)
    current = features(as_of)
    scores = pd.DataFrame({"customer_id": current.index,
                           "churn_probability": model.predict_proba(current.fillna(0))[:, 1]})
    past = orders[orders["order_ts"] < pd.Timestamp(as_of)].dropna(subset=["product_id"])
    ranked = past["product_id"].value_counts().index.to_numpy()
    seen = past.groupby("customer_id")["product_id"].agg(set)
    recs = [(customer, product, rank) for customer, bought in seen.items()
            for rank, product in enumerate((p for p in ranked if p not in bought), 1) if rank <= 10]
    recommendations = pd.DataFrame(recs, columns=["customer_id", "product_id", "rank"])
    out.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(out / "churn_scores.parquet")
    recommendations.to_parquet(out / "recommendations.parquet")
    return {"seconds": round(time.perf_counter() - began, 1), "order_lines": lines, "customers_scored": len(scores),
            "customers_served": int(recommendations["customer_id"].nunique())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000, help="customers to generate (default 100000)")
    parser.add_argument("--work", default="/tmp/crm-daily-bench", help="folder of the raw files and the lakehouse")
    parser.add_argument("--reuse", action="store_true", help="reuse the work folder's generated files if it has them")
    parser.add_argument("--daily-only", action="store_true",
                        help="start from the lakehouse of the work folder's last full run: next_day, daily, baseline")
    parser.add_argument("--spark-jobs", action="store_true",
                        help="keep Spark's event logs and count each stage's jobs and the seconds they ran")
    parser.add_argument("--json", default="benchmarks/daily.json", help="where to write the figures")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every run, e.g. spark.master=local[2] (repeatable)")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    config = load_config(str(REPO / "conf" / "local.yaml"), args.overrides)
    as_of, next_day = config.as_of_date, config.as_of_date + dt.timedelta(days=1)
    settings = work_settings(work, args.customers, args.overrides)

    steps: dict[str, dict] = {}
    machine = {"before": calibrate()}  # a record of the machine the figures come from

    def step(name: str, command: str, date: dt.date, raw: str = "raw") -> None:
        gc_log = work / "gc" / f"{Path(args.json).stem}-{name}.log"  # another --json keeps this one
        run_log = work / "logs" / gc_log.name
        for log in (gc_log, run_log):
            log.parent.mkdir(parents=True, exist_ok=True)
        gc_log.unlink(missing_ok=True)
        options = f"{config.spark.extra.get(DRIVER_OPTIONS, '')} -Xlog:gc:file={gc_log}".strip()
        events, event_log = work / "events" / gc_log.stem, []
        if args.spark_jobs:  # an uncompressed event log, for spark_jobs
            shutil.rmtree(events, ignore_errors=True)
            events.mkdir(parents=True)
            event_log = [f"spark.extra.spark.eventLog.{key}={value}" for key, value in (
                ("enabled", "true"), ("compress", "false"), ("dir", events.as_uri()))]
        argv = [str(REPO / ".venv" / "bin" / "crm-spark"), command, "--config", "conf/local.yaml", "--as-of-date",
                date.isoformat(), *[part for setting in [f"paths.raw_dir={work}/{raw}", *settings,
                                                         f"spark.extra.{DRIVER_OPTIONS}={json.dumps(options)}",
                                                         *event_log]
                                    for part in ("--set", setting)]]
        print(f"{name} ...", flush=True)
        steps[name] = {**measured(argv, run_log), "peak_heap_after_gc_mb": heap_after_gc(gc_log)}
        if args.spark_jobs:  # the one application's log: a folder of rolled files
            steps[name]["spark_jobs"] = per_stage(read_jobs(next(events.iterdir())))
        print(f"{name}: {steps[name]['seconds']:.1f} s", flush=True)
        Path(args.json).write_text(json.dumps({"customers": args.customers, "steps": steps}, indent=2))  # so far

    if not args.daily_only and not (args.reuse and (work / "generated").exists()):
        # The secret stays: customer keys, and so the train, validation and test splits, stay the same, so
        # the metrics of runs on data generated anew with the same seed can be compared.
        for path in work.glob("*"):
            if path.name != ".secrets":
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        step("generate", "generate", as_of, "generated")
    if args.daily_only:
        start_from_full_run(work)
    else:
        start_from_generated(work)
        step("full", "pipeline", as_of)
        shutil.rmtree(work / "lakehouse-full", ignore_errors=True)
        shutil.copytree(work / "lakehouse", work / "lakehouse-full")  # for --daily-only
    step("next_day", "next_day", next_day)
    step("daily", "daily", next_day)
    steps["baseline"] = baseline(work / "raw", next_day, config.churn_horizon_days, work / "baseline")
    lines = steps["baseline"]["order_lines"]
    machine["after"] = calibrate()

    java = java_version()
    print(f"\n{args.customers:,} customers, {lines:,} raw order lines, as of {as_of} and {next_day}, "
          f"Java {java or 'of unknown version'}")
    for when, found in machine.items():
        print(f"machine {when} the runs: {describe(found)}")
    print(f"{'step':<12} {'wall s':>8} {'python MB':>10} {'JVM MB':>8} {'heap after GC MB':>17} {'workers MB':>11} "
          f"{'JVM CPU s':>10} {'JIT s':>7} {'GC s':>6} {'order lines/s':>14}")
    for name, step in steps.items():
        rate = f"{lines / step['seconds']:,.0f}" if name in ("full", "daily", "baseline") else ""
        print(f"{name:<12} {step['seconds']:>8.1f} {step.get('peak_python_mb', ''):>10} "
              f"{step.get('peak_jvm_mb', ''):>8} {step.get('peak_heap_after_gc_mb') or '':>17} "
              f"{step.get('peak_workers_mb', ''):>11} {step.get('jvm_cpu_seconds', ''):>10} "
              f"{step.get('jvm_jit_cpu_seconds', ''):>7} {step.get('jvm_gc_cpu_seconds', ''):>6} {rate:>14}")
    print(f"daily / pandas baseline: {steps['daily']['seconds'] / steps['baseline']['seconds']:.2f}x")
    for name, step in steps.items():  # the stage times inside each process (generate's is its one stage)
        if step.get("stages"):
            times = ", ".join(f"{stage} {s['seconds']:.1f}s" for stage, s in step["stages"].items())
            print(f"\n{name} stages: {times}")
            between = step["seconds"] - step["startup_seconds"] - step["after_stages_seconds"] - sum(
                s["seconds"] for s in step["stages"].values())
            print(f"{name} outside stages: start-up {step['startup_seconds']:.1f}s, between stages {between:.1f}s, "
                  f"after the last stage {step['after_stages_seconds']:.1f}s")
        if step.get("spark_jobs"):
            # A stage's time without a job is its wall time less its busy time (not spark_jobs.py's span less
            # it: a thread a stage started may run a job of its group later). The run records are no stage.
            jobs = ", ".join(f"{stage} {s['jobs']} ({s['busy_seconds']:.1f}s busy" + (
                f", {step['stages'][stage]['seconds'] - s['busy_seconds']:.1f}s without a job"
                if stage in step["stages"] else "") + f", {s['task_cpu_seconds']:.1f}s of task CPU)"
                for stage, s in step["spark_jobs"].items())
            print(f"{name} Spark jobs per stage: {jobs}")
            tasks = sum(s["task_cpu_seconds"] for s in step["spark_jobs"].values())
            jit, gc = step["jvm_jit_cpu_seconds"], step["jvm_gc_cpu_seconds"]
            print(f"{name} JVM CPU {step['jvm_cpu_seconds']:.1f}s: tasks {tasks:.1f}s, JIT {jit:.1f}s, GC {gc:.1f}s, "
                  f"the rest {step['jvm_cpu_seconds'] - tasks - jit - gc:.1f}s (the driver: planning, Delta logs, "
                  f"scheduling)")
    for metric, value in steps.get("full", {}).get("metrics", {}).items():
        print(f"  {metric:<60} {value}")
    Path(args.json).write_text(json.dumps({"customers": args.customers, "order_lines": lines, "as_of_date": str(as_of),
                                           "java": java, "machine": machine, "steps": steps}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

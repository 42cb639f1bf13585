"""Command line: ``crm-spark STAGE [options]`` and the entry point of every job."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from crm_spark import logcontext, runs, tables
from crm_spark.config import Config, ConfigError, as_dict, flatten, load_config
from crm_spark.schemas import MODEL, SPLIT, TEST
from crm_spark.session import build_spark
from crm_spark.stages import erase

log = logging.getLogger(__name__)

STAGE_HELP = {
    "pipeline": "run ingest through evaluate (with --generate, generate first)",
    "generate": "write the synthetic raw data and its ground truth",
    "next_day": "append the synthetic activity of the day before as_of_date as new raw files",
    "ingest": "raw files -> bronze tables and quarantine",
    "prepare": "bronze -> silver: clean, standardize, de-duplicate",
    "quality_gate": "fail unless the newest prepare run for as_of_date met every data-quality expectation",
    "features": "silver -> customer_features as of as_of_date and the training cutoff",
    "select": "chi-square and correlation feature selection -> feature_selection",
    "train": "classifiers, customer value regressors and segmentations -> models registry and explanations",
    "score": "champions, no retraining -> churn_scores, clv_predictions, customer_segments, profiles, anomalies",
    "recommend": "tuned ALS recommendations, holdout lists and rating predictions",
    "evaluate": "held-out metrics of every model -> model_metrics",
    "maintain": "OPTIMIZE (Z-ORDER by customer_key where present) and VACUUM every table; not part of pipeline",
    "erase": "erase customers (--ids / --ids-file, source ids) from every table; logged in erasure_log",
}
DEFAULT_CONFIG = "conf/local.yaml"
# Job file of each stage where the names differ (jobs/select.py would shadow Python's select).
JOB_FILES = {"select": "select_features"}


def parser(stage: str | None = None) -> argparse.ArgumentParser:
    """Return the argument parser; with ``stage`` fixed, as a job's parser."""
    description = STAGE_HELP.get(stage or "", "crm-spark: customer intelligence on Spark and Delta Lake")
    prog = f"jobs/{JOB_FILES.get(stage, stage)}.py" if stage else "crm-spark"
    p = argparse.ArgumentParser(prog=prog, description=description)
    if stage is None:
        p.add_argument("stage", choices=list(STAGE_HELP), help="; ".join(f"{k}: {v}" for k, v in STAGE_HELP.items()))
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config file (default {DEFAULT_CONFIG})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set generate.customers=5000 (repeatable)")
    p.add_argument("--as-of-date", help="shorthand for --set as_of_date=YYYY-MM-DD")
    p.add_argument("--run-id", help="id of this run (default: UTC time plus a random suffix)")
    if stage in (None, "pipeline"):
        p.add_argument("--generate", action="store_true", help="generate the synthetic data first")
        p.add_argument("--next-day", action="store_true",
                       help="append the synthetic activity of the day before as_of_date first (after --generate)")
    if stage in (None, "erase"):
        p.add_argument("--ids", action="append", default=[], metavar="ID[,ID...]",
                       help="erase: customer ids as they appear in the sources (repeatable)")
        p.add_argument("--ids-file", help="erase: a file with one customer id per line")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def _absolute(config: Config) -> Config:
    """Make relative local paths absolute, so every executor sees the same folder."""
    def fix(path: str | None) -> str | None:
        if path is None or "://" in path:
            return path
        return str(Path(path).expanduser().resolve())

    paths = config.paths
    return dataclasses.replace(config, paths=dataclasses.replace(
        paths, raw_dir=fix(paths.raw_dir), lakehouse_dir=fix(paths.lakehouse_dir),
        checkpoint_dir=fix(paths.checkpoint_dir), truth_dir=fix(paths.truth_dir)))


HEADLINE_METRICS = r"^(auc|f1|rmse|r2|silhouette|adjusted_rand_index|catalogue_coverage|precision_at_\d+|ndcg_at_\d+)$"


def summary(spark: SparkSession, config: Config, run_id: str) -> str:
    """Return a short text summary of the run: table locations and headline metrics."""
    lake = config.paths.lakehouse_dir
    lines = [f"run {run_id}: tables under {lake}"]
    for layer in ("bronze", "silver", "gold", "models"):
        names = [t.name for t in tables.ALL_TABLES if t.layer == layer and tables.table_exists(spark, t, lake)]
        if names:
            lines.append(f"  {layer}: {', '.join(names)}")
    if tables.table_exists(spark, tables.MODEL_METRICS, lake):
        metrics = tables.read_table(spark, tables.MODEL_METRICS, lake).where(
            (F.col("run_id") == run_id) & F.col("metric").rlike(HEADLINE_METRICS)
            & F.col(SPLIT).isin(TEST, "all", "serving"))
        for row in metrics.orderBy("task", MODEL, "metric").collect():
            value = "n/a" if row["value"] is None else f"{row['value']:.4f}"
            lines.append(f"  {row['task']:<15} {row['model']:<20} {row['metric']:<20} {value}")
    return "\n".join(lines)


def _erase(config: Config, args: argparse.Namespace) -> int:
    """Run an erasure request and print what it did (counts only, no ids)."""
    try:
        ids = erase.read_ids(args.ids, args.ids_file)
    except (erase.ErasureError, OSError) as error:
        print(f"crm-spark: erase: {error}", file=sys.stderr)
        return 2
    spark = build_spark(config)
    run_id = args.run_id or runs.new_run_id()
    began = time.perf_counter()
    result = erase.run(spark, config, ids, run_id)
    print(f"crm-spark erase {run_id}: {result.ids_requested} ids, {result.records} linked records, "
          f"{result.keys} customer keys, {sum(result.rows_deleted.values())} rows deleted in "
          f"{time.perf_counter() - began:.1f}s")
    for table, rows in sorted(result.rows_deleted.items()):
        print(f"  {table:<40} {rows}")
    return 0


def main(argv: Sequence[str] | None = None, stage: str | None = None) -> int:
    """Parse arguments, load config, build the session and run the stage(s).

    Args:
        argv: arguments (default ``sys.argv[1:]``).
        stage: the stage when called from ``jobs/<stage>.py``; otherwise the first argument.

    Returns:
        The process exit code: 0 on success, 2 for a configuration error, 1 for a failed run.
    """
    args = parser(stage).parse_args(argv)
    stage = stage or args.stage
    logcontext.install()
    logging.basicConfig(level=args.log_level, format=logcontext.LOG_FORMAT, stream=sys.stderr, force=True)
    overrides = list(args.overrides) + ([f"as_of_date={args.as_of_date}"] if args.as_of_date else [])
    try:
        config = _absolute(load_config(args.config, overrides))
    except ConfigError as error:
        print(f"crm-spark: config error: {error}", file=sys.stderr)
        return 2
    for key, value in sorted(flatten(as_dict(config)).items()):
        log.info("config %s = %s", key, value)

    if stage == "erase":
        return _erase(config, args)
    stages = list(runs.PIPELINE) if stage == "pipeline" else [stage]
    if stage == "pipeline" and args.next_day:
        stages.insert(0, "next_day")
    if stage == "pipeline" and args.generate:
        stages.insert(0, "generate")
    spark = build_spark(config)
    try:
        result = runs.execute(spark, config, stages, args.run_id)
    except Exception as error:  # noqa: BLE001 - reported as one line plus the log's traceback
        log.exception("run failed")
        first_line = (str(error).strip().splitlines() or [""])[0]
        print(f"crm-spark: {stage} failed: {type(error).__name__}: {first_line}", file=sys.stderr)
        return 1
    print(f"crm-spark {stage}: {result.status} in {sum(result.stage_seconds.values()):.1f}s")
    print(f"  {'stage':<10} {'status':<10} {'seconds':>8} {'rows in':>12} {'rows out':>12}")
    for name, seconds in result.stage_seconds.items():
        print(f"  {name:<10} {result.stage_status.get(name, ''):<10} {seconds:>8.1f} "
              f"{result.rows_in.get(name, 0):>12,} {result.rows_out.get(name, 0):>12,}")
    for skipped, reason in result.skipped.items():
        print(f"  skipped {skipped}: {reason}")
    print(summary(spark, config, result.run_id))
    return 0


if __name__ == "__main__":
    sys.exit(main())

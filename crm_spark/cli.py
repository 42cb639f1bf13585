"""Command line: ``crm-spark COMMAND [options]`` and the entry point of every job.

Commands are the pipeline's stages (run in one process, in order), and tools that start
no pipeline: ``config validate|show``, ``init``, ``show``, ``runs`` and ``metrics``.
Exit codes: 0 success; 1 a run failed (recorded in ``gold.runs``); 2 a mistake in the
command line, the config or the inputs it names (a stage run before the one that feeds
it, a source unlike its config), or a missing Java, reported in one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib.metadata
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, Sequence

import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from crm_spark import logcontext, runs, tables, views
from crm_spark.config import Config, ConfigError, as_dict, flatten, load_config
from crm_spark.config.coerce import did_you_mean, set_dotted
from crm_spark.errors import JavaMissing
from crm_spark.ingest import scaffold
from crm_spark.ingest.canonical import SourceError
from crm_spark.ingest.sources import source_path
from crm_spark.schemas import MODEL, SPLIT, TEST
from crm_spark.session import build_spark, finish_class_archive
from crm_spark.stages import erase
from crm_spark.synth.generate import raw_dir_problem

log = logging.getLogger(__name__)

# Each stage's help line and an example (CONFIG stands for --config FILE).
STAGE_HELP = {
    "pipeline": ("run ingest through evaluate in one process, then write the report (--generate first on the demo)",
                 "crm-spark pipeline --generate"),
    "daily": ("the daily run in one process, fitting no model: ingest, prepare, quality_gate (with expectations), "
              "features, score, serve, campaigns, then the report", "crm-spark daily --as-of-date 2025-01-02"),
    "retrain": ("the retraining run on the features a daily run wrote: training_features, select, train, recommend, "
                "evaluate, then the report", "crm-spark retrain --as-of-date 2025-01-05"),
    "generate": ("write the synthetic demo's raw files and their ground truth", "crm-spark generate"),
    "next_day": ("append the demo's activity of the day before as_of_date as new raw files",
                 "crm-spark next_day --as-of-date 2025-01-02"),
    "ingest": ("raw files -> bronze tables, bad rows to bronze.quarantine with a reason", "crm-spark ingest"),
    "prepare": ("bronze -> silver: clean, standardize, de-duplicate customers", "crm-spark prepare"),
    "quality_gate": ("fail unless the newest prepare of as_of_date met every quality expectation",
                     "crm-spark quality_gate"),
    "features": ("silver -> gold.customer_features as of as_of_date", "crm-spark features"),
    "training_features": ("silver -> gold.customer_features as of the training cutoff, which fitting reads",
                          "crm-spark training_features"),
    "select": ("chi-square and correlation feature selection -> gold.feature_selection", "crm-spark select"),
    "train": ("churn classifiers, value models, segments -> models.registry", "crm-spark train"),
    "score": ("apply the registered champions, no retraining -> churn scores, value, segments, anomalies",
              "crm-spark score --as-of-date 2025-01-02"),
    "recommend": ("tune and serve recommendations (ALS, EASE, their blend) -> gold.recommendations",
                  "crm-spark recommend"),
    "serve": ("serve the registered recommender without refitting, changed customers folded in -> "
              "gold.recommendations", "crm-spark serve --as-of-date 2025-01-02"),
    "campaigns": ("campaign audiences with offers -> gold.campaign_audiences and CSV/Parquet exports",
                  "crm-spark campaigns"),
    "evaluate": ("held-out metrics of every model -> gold.model_metrics", "crm-spark evaluate"),
    "maintain": ("OPTIMIZE and VACUUM every table (not part of pipeline)", "crm-spark maintain"),
    "report": ("write the run's HTML report from the gold and models tables (pipeline ends with it)",
               "crm-spark report --run-id 20250101T020000Z-1a2b3c4d"),
    "erase": ("erase customers by source id from every table, logged in gold.erasure_log",
              "crm-spark erase --ids C000123,C000456"),
}
TOOL_HELP = {
    "config": ("check or print the resolved config without starting Spark",
               "crm-spark config validate --config conf/mine.yaml"),
    "init": ("write a starting config for your own files", "crm-spark init --from customers.csv orders.csv"),
    "show": ("print rows of a table (no personal columns)",
             "crm-spark show churn_scores --where 'churn_probability > 0.8' --limit 20"),
    "runs": ("list the last runs with their status and stage times", "crm-spark runs --limit 5"),
    "metrics": ("print the metrics of a run (the newest by default)", "crm-spark metrics --task churn"),
}
# Other spellings accepted for a stage.
ALIASES = {
    "select": ("select_features", "select-features", "feature_selection", "feature-selection"),
    "next_day": ("next-day",),
    "quality_gate": ("quality-gate",),
}
DEFAULT_CONFIG = "conf/local.yaml"
# Job file of each stage where the names differ (jobs/select.py would shadow Python's select).
JOB_FILES = {"select": "select_features"}
HEADLINE_METRICS = r"^(auc|f1|rmse|r2|silhouette|adjusted_rand_index|catalogue_coverage|precision_at_\d+|ndcg_at_\d+)$"
# Stages that write synthetic raw files, and whether they may start an empty raw folder.
SYNTHETIC_STAGES = {"generate": True, "next_day": False}


class UsageError(Exception):
    """A mistake in the command line or what it names; reported in one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line with a suggestion, and exit code 2."""

    def error(self, message: str) -> NoReturn:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            known = re.findall(r"'([^']*)'", choice.group(2))
            message = f"unknown {'command' if self.prog == 'crm-spark' else 'choice'} '{choice.group(1)}'" \
                      f"{did_you_mean(choice.group(1), known)}"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    try:
        return importlib.metadata.version("crm-spark")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config file (default {DEFAULT_CONFIG})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set generate.customers=5000 (repeatable)")
    p.add_argument("--as-of-date", help="shorthand for --set as_of_date=YYYY-MM-DD")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="log level of crm-spark's own lines (default WARNING for tools, INFO for stages)")


def _stage_arguments(p: argparse.ArgumentParser, stage: str) -> None:
    _config_arguments(p)
    p.set_defaults(log_level="INFO")
    p.add_argument("--run-id", help="id of this run (default: UTC time plus a random suffix)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the stages with the tables and paths they read and write, then exit before Spark")
    if stage == "pipeline":
        p.add_argument("--generate", action="store_true", help="generate the synthetic demo data first")
    if stage in ("pipeline", "daily"):
        p.add_argument("--next-day", action="store_true",
                       help="append the demo's activity of the day before as_of_date first (after --generate)")
    if stage in runs.PROFILES:
        p.add_argument("--stages", help=f"run only these stages, in pipeline order, e.g. features,select,train "
                                        f"(known: {', '.join(runs.STAGES)})")
        p.add_argument("--from", dest="first", metavar="STAGE", help="start the pipeline at this stage")
        p.add_argument("--to", dest="last", metavar="STAGE", help="end the pipeline at this stage")
    if stage == "report":
        p.set_defaults(log_level="WARNING")
    if stage == "erase":
        p.add_argument("--ids", action="append", default=[], metavar="ID[,ID...]",
                       help="customer ids as they appear in the sources (repeatable)")
        p.add_argument("--ids-file", help="a file with one customer id per line")


def _tool_arguments(p: argparse.ArgumentParser, tool: str) -> None:
    if tool == "init":
        p.add_argument("--from", dest="files", nargs="+", required=True, metavar="[SOURCE=]FILE",
                       help="your files; prefix one with customers=, orders=, products= or ratings= to say what "
                            "it holds")
        p.add_argument("--output", default="conf/mine.yaml", help="config file to write (default conf/mine.yaml)")
        p.add_argument("--force", action="store_true", help="overwrite the output file")
        return
    _config_arguments(p)
    if tool == "config":
        p.add_argument("action", choices=["validate", "show"], help="validate: check only; show: print it")
        p.add_argument("--diff", action="store_true", help="show: only the values that differ from the defaults")
    elif tool == "show":
        p.add_argument("table", help="a table, as layer.name or name, e.g. gold.churn_scores or churn_scores")
        p.add_argument("--where", help="a Spark SQL condition, e.g. \"segment = 2\"")
        p.add_argument("--limit", type=int, default=20, help="rows to print or write (default 20)")
        p.add_argument("--csv", metavar="FILE", help="write the rows to this CSV file instead of printing them")
        p.add_argument("--include-personal", action="store_true",
                       help="keep personal columns (bronze and silver tables only)")
    elif tool == "runs":
        p.add_argument("--limit", type=int, default=10, help="runs to list (default 10)")
    elif tool == "metrics":
        p.add_argument("--run-id", help="the run (default: the newest run with metrics)")
        p.add_argument("--task", help="only this task, e.g. churn, clv, recommendation")


def parser(stage: str | None = None) -> argparse.ArgumentParser:
    """Return the argument parser; with ``stage`` fixed, the parser of ``jobs/<stage>.py``."""
    if stage is not None:
        help_line, example = STAGE_HELP[stage]
        prog = f"jobs/{JOB_FILES.get(stage, stage)}.py"
        p = _Parser(prog=prog, description=help_line,
                    epilog=f"example: {example.replace(f'crm-spark {stage}', f'python {prog}')}")
        _stage_arguments(p, stage)
        return p
    width = max(len(name) for name in [*STAGE_HELP, *TOOL_HELP]) + 2
    listing = "\n".join(
        [f"{title}:\n" + "\n".join(f"  {name:<{width}}{help_line}" for name, (help_line, _) in entries.items())
         for title, entries in (("stages (pipeline runs ingest to evaluate, in this order)", STAGE_HELP),
                                ("tools (no pipeline run)", TOOL_HELP))])
    p = _Parser(prog="crm-spark", formatter_class=argparse.RawDescriptionHelpFormatter,
                usage="crm-spark COMMAND [options]   (crm-spark COMMAND --help: its options and an example)",
                description=f"crm-spark: customer intelligence on Apache Spark and Delta Lake.\n\n{listing}",
                epilog="examples:\n"
                       "  make run                                        the demo: generate, then every stage\n"
                       "  crm-spark init --from my/customers.csv my/orders.csv\n"
                       "  crm-spark config validate --config conf/mine.yaml\n"
                       "  crm-spark pipeline --config conf/mine.yaml --dry-run\n"
                       "  crm-spark pipeline --config conf/mine.yaml --from features --to train\n"
                       "  crm-spark show gold.churn_scores --limit 5\n\n"
                       "exit codes: 0 success; 1 a run failed (see crm-spark runs and the log); 2 a mistake in the\n"
                       "command line, the config or the inputs it names (a stage run before the one that feeds it\n"
                       "included), or no Java")
    p.add_argument("--version", action="version", version=f"crm-spark {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser,
                           help=argparse.SUPPRESS)
    for group, entries in (("stage", STAGE_HELP), ("tool", TOOL_HELP)):
        for name, (help_line, example) in entries.items():
            child = sub.add_parser(name, aliases=ALIASES.get(name, ()), prog=f"crm-spark {name}",
                                   description=help_line, epilog=f"example: {example}")
            child.set_defaults(command=name, group=group)
            (_stage_arguments if group == "stage" else _tool_arguments)(child, name)
    return p


def resolve_paths(config: Config) -> Config:
    """Make relative local paths absolute, so every executor sees the same folder."""
    def fix(path: str | None) -> str | None:
        if path is None or "://" in path:
            return path
        return str(Path(path).expanduser().resolve())

    paths = config.paths
    return dataclasses.replace(config, paths=dataclasses.replace(
        paths, raw_dir=fix(paths.raw_dir), lakehouse_dir=fix(paths.lakehouse_dir),
        checkpoint_dir=fix(paths.checkpoint_dir), truth_dir=fix(paths.truth_dir), export_dir=fix(paths.export_dir),
        report_dir=fix(paths.report_dir)))


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
    lines.append("  see them with: crm-spark runs; crm-spark metrics; crm-spark show TABLE")
    return "\n".join(lines)


def plan(args: argparse.Namespace) -> list[str]:
    """Return the stages a stage command runs, in order.

    Raises:
        UsageError: ``--stages``, ``--from`` or ``--to`` name an unknown stage or an empty range.
    """
    if args.command not in runs.PROFILES:
        return [args.command]
    spelled = {alias: stage for stage, aliases in ALIASES.items() for alias in aliases}

    def known(name: str, option: str) -> str:
        name = spelled.get(name.strip(), name.strip())
        if name not in runs.STAGES:
            raise UsageError(f"{option}: unknown stage '{name}'{did_you_mean(name, runs.STAGES)}")
        return name

    if args.stages and (args.first or args.last):
        raise UsageError("give --stages or --from/--to, not both")
    if args.stages:
        chosen = {known(name, "--stages") for name in args.stages.split(",") if name.strip()}
        if not chosen:
            raise UsageError("--stages lists no stage")
        return [stage for stage in runs.STAGES if stage in chosen]
    stages = list(runs.PROFILES[args.command])
    if getattr(args, "next_day", False):
        stages.insert(0, "next_day")
    if getattr(args, "generate", False):
        stages.insert(0, "generate")
    order = [*stages, *[s for s in runs.STAGES if s not in stages]]
    first = order.index(known(args.first, "--from")) if args.first else 0
    last = order.index(known(args.last, "--to")) if args.last else len(stages) - 1
    if first > last:
        raise UsageError(f"--from {order[first]} comes after --to {order[last]}")
    return order[first:last + 1]


def check_needs(config: Config, stages: list[str]) -> None:
    """Check, before Spark starts, what the stages need from the config.

    Raises:
        UsageError: a synthetic-data stage without a truth folder or with a raw folder it
            did not write, a quality gate without expectations, or a local source path
            that matches nothing.
    """
    if "quality_gate" in stages and not config.quality.expectations:
        raise UsageError("quality_gate checks quality.expectations, and the config lists none")
    if "ingest" in stages and not set(SYNTHETIC_STAGES) & set(stages):
        for name, spec in config.sources.items():
            path = source_path(config.paths.raw_dir, spec)
            if "://" not in path and not glob.glob(path):
                raise UsageError(f"sources.{name}.path: nothing at {path}")
    for stage, may_create in SYNTHETIC_STAGES.items():
        if stage not in stages:
            continue
        if stage == "generate" and not config.paths.truth_dir:
            raise UsageError("generate needs paths.truth_dir (a folder for the ground truth of the synthetic data)")
        problem = raw_dir_problem(config.paths.raw_dir, create=may_create, truth_dir=config.paths.truth_dir)
        if problem:
            raise UsageError(f"{stage}: {problem}")


def dry_run(config: Config, stages: list[str]) -> str:
    """Return what a run would do: each stage with the tables (and paths) it reads and writes."""
    lake = config.paths.lakehouse_dir
    lines = [f"crm-spark dry run: {len(stages)} stages, as_of_date {config.as_of_date}, "
             f"training cutoff {config.training_cutoff}, lakehouse {lake}"]
    for position, stage in enumerate(stages, 1):
        lines.append(f"{position:>2}. {stage}: {STAGE_HELP[stage][0]}")
        if stage in ("ingest", *SYNTHETIC_STAGES):
            verb = "reads" if stage == "ingest" else "writes"
            for name, spec in config.sources.items():
                lines.append(f"      {verb} raw {name} ({spec.format}): {source_path(config.paths.raw_dir, spec)}")
            if stage == "generate":
                lines.append(f"      writes the ground truth: {config.paths.truth_dir}")
        for verb, mapping in (("reads", runs.STAGE_INPUTS), ("writes", runs.STAGE_OUTPUTS)):
            for table in mapping.get(stage, ()):
                lines.append(f"      {verb} {table.qualified}: {table.path(lake)}")
    return "\n".join(lines)


def _load(args: argparse.Namespace) -> Config:
    """Load the config the arguments name.

    Raises:
        ConfigError: a config mistake, in one line.
    """
    overrides = list(args.overrides)
    if args.as_of_date is not None:
        if not args.as_of_date.strip():
            raise ConfigError("--as-of-date is empty: give a date as YYYY-MM-DD")
        overrides.append(f"as_of_date={args.as_of_date}")
    return resolve_paths(load_config(args.config, overrides))


def _plain(value: Any) -> Any:
    """Return config values as YAML-friendly plain types (tuples as lists, dates as text)."""
    return json.loads(json.dumps(value, default=str))


def config_text(config: Config, diff: bool) -> str:
    """Return the resolved config as YAML; with ``diff``, only the values that differ from the defaults."""
    resolved = _plain(as_dict(config))
    if not diff:
        return yaml.safe_dump(resolved, sort_keys=False)
    defaults = flatten(_plain(as_dict(Config(as_of_date=None, paths=None))))
    changed: dict[str, Any] = {}
    for key, value in flatten(resolved).items():
        if key not in defaults or defaults[key] != value:
            set_dotted(changed, key, value)
    return yaml.safe_dump(changed, sort_keys=False) if changed else "# every value is a default\n"


def _progress(stage: str, position: int, total: int, result: runs.RunResult) -> None:
    """Print one line as a stage starts and one as it ends."""
    status = result.stage_status.get(stage)
    if status is None:
        print(f"[{position}/{total}] {stage} ...", flush=True)
    else:
        print(f"[{position}/{total}] {stage} {status} in {result.stage_seconds.get(stage, 0):.1f}s", flush=True)


def _run_stages(config: Config, args: argparse.Namespace, stages: list[str]) -> int:
    spark = build_spark(config, write_class_archive=True)
    try:
        return _run_and_print(spark, config, args, stages)
    finally:
        finish_class_archive(spark)


def _run_and_print(spark: SparkSession, config: Config, args: argparse.Namespace, stages: list[str]) -> int:
    log.info("config %s (hash %s), as_of_date %s", args.config, config.config_hash(), config.as_of_date)
    log.debug("resolved config: %s", json.dumps(as_dict(config), sort_keys=True, default=str))
    try:
        result = runs.execute(spark, config, stages, args.run_id, progress=_progress)
    except (tables.TableMissing, SourceError) as mistake:
        # A stage run before the one that feeds it, or a source unlike its config: no traceback.
        raise UsageError(str(mistake)) from None
    except Exception as error:  # noqa: BLE001 - reported as one line plus the log's traceback
        log.exception("run failed")
        first_line = (str(error).strip().splitlines() or [""])[0]
        print(f"crm-spark: {args.command} failed: {type(error).__name__}: {first_line}", file=sys.stderr)
        return 1
    print(f"crm-spark {args.command}: {result.status} in {sum(result.stage_seconds.values()):.1f}s")
    print(f"  {'stage':<12} {'status':<10} {'seconds':>8} {'rows in':>12} {'rows out':>12}")
    for name, seconds in result.stage_seconds.items():
        print(f"  {name:<12} {result.stage_status.get(name, ''):<10} {seconds:>8.1f} "
              f"{result.rows_in.get(name, 0):>12,} {result.rows_out.get(name, 0):>12,}")
    for skipped, reason in result.skipped.items():
        print(f"  skipped {skipped}: {reason}")
    print(summary(spark, config, result.run_id))
    if args.command not in runs.PROFILES:
        return 0
    if result.stage_status.get("campaigns") == "succeeded":
        print(f"campaign lists: {config.paths.exports.rstrip('/')}/{config.as_of_date.isoformat()}/")
    return _report(spark, config, result.run_id)


def _report(spark: SparkSession, config: Config, run_id: str | None) -> int:
    """Write the run's report and print where it is."""
    from crm_spark.report import page  # matplotlib: imported by the commands that draw

    try:
        location = page.write_report(spark, config, run_id)
    except LookupError as error:
        raise UsageError(f"report: {error}") from None
    except Exception as error:  # noqa: BLE001 - reported as one line plus the log's traceback
        log.exception("report failed")
        print(f"crm-spark: report failed: {type(error).__name__}: {(str(error).splitlines() or [''])[0]}",
              file=sys.stderr)
        return 1
    print(f"report: {location}")
    return 0


def _erase(config: Config, args: argparse.Namespace) -> int:
    """Run an erasure request and print what it did (counts only, no ids)."""
    try:
        ids = erase.read_ids(args.ids, args.ids_file)
    except (erase.ErasureError, OSError) as error:
        raise UsageError(f"erase: {error}") from None
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


def _init(args: argparse.Namespace) -> int:
    """Write a starting config for the user's files (see :mod:`crm_spark.ingest.scaffold`)."""
    output = Path(args.output)
    if output.exists() and not args.force:
        raise UsageError(f"init: {output} exists; give --force to overwrite it or --output another file")
    proposals: dict[str, scaffold.Proposal] = {}
    for item in args.files:
        source, sep, file_name = item.partition("=")
        if not sep or source not in scaffold.SOURCE_WORDS:
            source, file_name = None, item
        try:
            proposal = scaffold.propose(scaffold.sniff(file_name), source)
        except scaffold.ScaffoldError as error:
            raise UsageError(f"init: {error}") from None
        if proposal.source in proposals:
            raise UsageError(f"init: {proposals[proposal.source].sniffed.path} and {file_name} both look like "
                             f"{proposal.source}; say what each holds, e.g. products={file_name}")
        proposals[proposal.source] = proposal
    raw_dir = Path(os.path.commonpath([p.sniffed.path.resolve().parent for p in proposals.values()]))
    text = scaffold.render(list(proposals.values()), raw_dir, output.parent)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(text, end="")
    print(f"crm-spark init: wrote {output} ({len(proposals)} sources; read the {text.count('# check:')} lines marked "
          f"'check:'), then: crm-spark config validate --config {output}", file=sys.stderr)
    return 0


def _print_frame(frame: Any) -> None:
    import pandas as pd

    with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_colwidth", 60):
        print(frame.to_string(index=False) if not frame.empty else "(no rows)")


def _tool(config: Config, args: argparse.Namespace) -> int:
    """Run a tool that reads the lakehouse: ``show``, ``runs`` or ``metrics``."""
    lake = config.paths.lakehouse_dir
    table = views.find_table(args.table) if args.command == "show" else None
    if getattr(args, "limit", 1) < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    spark = build_spark(config)
    if args.command == "show":
        rows = views.table_view(spark, lake, table, args.where, args.include_personal).limit(args.limit).toPandas()
        if args.csv:
            rows.to_csv(args.csv, index=False)
            print(f"crm-spark show: wrote {len(rows)} rows of {table.qualified} to {args.csv}")
        else:
            _print_frame(rows)
    elif args.command == "runs":
        _print_frame(views.runs_view(spark, lake, args.limit))
    else:
        run_id, frame = views.metrics_view(spark, lake, args.run_id, args.task)
        print(f"metrics of run {run_id}")
        _print_frame(frame)
    return 0


def main(argv: Sequence[str] | None = None, stage: str | None = None) -> int:
    """Parse arguments, load config and run the command.

    Args:
        argv: arguments (default ``sys.argv[1:]``).
        stage: the stage when called from ``jobs/<stage>.py``; otherwise the first argument.

    Returns:
        The process exit code: 0 on success, 1 for a failed run, 2 for a mistake in the
        command line, the config or the inputs it names (a stage run before the one that
        feeds it, a source unlike its config), or a missing Java.
    """
    args = parser(stage).parse_args(argv)
    if stage is not None:
        args.command, args.group = stage, "stage"
    logcontext.install()
    logging.basicConfig(level=args.log_level if hasattr(args, "log_level") else "WARNING",
                        format=logcontext.LOG_FORMAT, stream=sys.stderr, force=True)
    try:
        if args.command == "init":
            return _init(args)
        stages = plan(args) if args.group == "stage" else []
        config = _load(args)
        if args.command in runs.PROFILES and not getattr(args, "stages", None) and not config.quality.expectations:
            stages = [stage for stage in stages if stage != "quality_gate"]  # a profile's gate needs expectations
        if args.command == "config" and args.action == "validate":
            print(f"crm-spark config: {args.config} is valid (hash {config.config_hash()}, "
                  f"{len(config.sources)} sources: {', '.join(config.sources)})")
            return 0
        if args.command == "config":
            print(config_text(config, args.diff), end="")
            return 0
        if args.group == "tool":
            return _tool(config, args)
        check_needs(config, stages)
        if args.dry_run:
            print(dry_run(config, stages))
            return 0
        if args.command == "erase":
            return _erase(config, args)
        if args.command == "report":
            return _report(build_spark(config), config, args.run_id)
        return _run_stages(config, args, stages)
    except (ConfigError, UsageError, views.ViewError) as error:
        kind = "config error" if isinstance(error, ConfigError) else "error"
        print(f"crm-spark: {kind}: {error}", file=sys.stderr)
        return 2
    except JavaMissing as error:
        print(f"crm-spark: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

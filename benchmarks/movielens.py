"""Benchmark: top-10 recommendations on the public MovieLens 100K ratings by the usual protocol
(a per-user random 75/25 split, k = 10, items seen in training removed), over several seeds,
run through ``conf/examples/movielens.yaml`` as a user would.

MovieLens 100K is not in this repository (its licence does not allow redistribution): give
the folder holding its ``u.data`` (user, item, rating, Unix time; tab-separated) and ``u.user``
(user|age|gender|occupation|zip). Some PyPI packages ship them, for example ``recbole``'s
wheel (``pip download --no-deps recbole``), whose ``dataset_example/ml-100k`` has them with a
header line and tab-separated users; ``--data`` takes either layout. Ingest and prepare run
once; recommend and evaluate run once per seed (the seed draws the split and seeds ALS).
Prints the mean and spread of every metric of each family and of popularity, which family
won on validation, and the tuning and stage times; writes them as JSON. From the repository root:

    .venv/bin/python benchmarks/movielens.py --data DIR [--seeds 0,1,2] [--work /tmp/movielens-bench]
        [--json benchmarks/movielens.json] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

from pyspark.sql import functions as F

from crm_spark import logcontext, runs, tables
from crm_spark.config import load_config
from crm_spark.session import build_spark

REPO = Path(__file__).resolve().parents[1]
METRICS = ("precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10", "catalogue_coverage")


def movielens_files(source: Path, raw: Path) -> None:
    """Write ``u.data`` and ``u.user`` in the MovieLens 100K layout into ``raw`` from ``source``:
    the original files, or recbole's ``ml-100k.inter`` and ``ml-100k.user`` (header line, tabs)."""
    raw.mkdir(parents=True, exist_ok=True)
    if (source / "u.data").exists():
        (raw / "u.data").write_bytes((source / "u.data").read_bytes())
        (raw / "u.user").write_bytes((source / "u.user").read_bytes())
        return
    ratings = (source / "ml-100k.inter").read_text().splitlines()[1:]
    users = (source / "ml-100k.user").read_text().splitlines()[1:]
    (raw / "u.data").write_text("\n".join(ratings) + "\n")
    (raw / "u.user").write_text("\n".join(line.replace("\t", "|") for line in users) + "\n")


def spread(values: list[float]) -> str:
    """Return ``mean ± standard deviation`` of ``values``."""
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {deviation:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder of u.data and u.user (or ml-100k.inter and .user)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--work", default="/tmp/movielens-bench", help="raw copy and lakehouse go here")
    parser.add_argument("--json", default="benchmarks/movielens.json")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    logcontext.install()
    logging.basicConfig(level=logging.INFO, format=logcontext.LOG_FORMAT, stream=sys.stderr, force=True)
    work = Path(args.work).resolve()
    movielens_files(Path(args.data), work / "raw")
    base = [f"paths.raw_dir={work / 'raw'}", f"paths.lakehouse_dir={work / 'lakehouse'}",
            f"paths.checkpoint_dir={work / 'checkpoints'}", f"paths.allowed_roots=['{work}']",
            f"privacy.secret_file={work / 'secret.key'}", "privacy.create_secret=true", "ingest.incremental=false",
            *args.overrides]
    config = load_config(REPO / "conf" / "examples" / "movielens.yaml", base)
    spark = build_spark(config)
    runs.execute(spark, config, ["ingest", "prepare"], "movielens-prepare")
    lake = config.paths.lakehouse_dir
    figures: dict[str, dict] = {"seeds": {}}
    for seed in [int(s) for s in args.seeds.split(",")]:
        run_id = f"movielens-seed-{seed}"
        seeded = load_config(REPO / "conf" / "examples" / "movielens.yaml", [*base, f"recommend.seed={seed}"])
        began = time.perf_counter()
        runs.execute(spark, seeded, ["recommend"], run_id)
        recommend_seconds = time.perf_counter() - began
        runs.execute(spark, seeded, ["evaluate"], f"{run_id}-evaluate")
        rows = tables.read_table(spark, tables.MODEL_METRICS, lake).where(
            (F.col("run_id") == f"{run_id}-evaluate") & (F.col("task") == "recommendation")).collect()
        tuning = tables.read_table(spark, tables.RECOMMENDATION_TUNING, lake).where(F.col("run_id") == run_id)
        champion = tuning.where("chosen").first()
        figures["seeds"][seed] = {
            "test": {f"{r['model']}/{r['metric']}": r["value"] for r in rows if r["split"] == "test"},
            "champion": champion["model"] if champion else None,
            "champion_validation_ndcg_at_10": champion["value"] if champion else None,
            "tuning_seconds": tuning.agg(F.sum("seconds")).first()[0], "tuning_trials": tuning.count(),
            "recommend_stage_seconds": recommend_seconds,
        }
        print(f"seed {seed}: champion {figures['seeds'][seed]['champion']}, recommend stage "
              f"{recommend_seconds:.0f} s (tuning {figures['seeds'][seed]['tuning_seconds']:.0f} s)", flush=True)
    seeds = list(figures["seeds"].values())
    models = sorted({key.split("/")[0] for s in seeds for key in s["test"]})
    print(f"\nMovieLens 100K, per-user random 75/25, k = 10, {len(seeds)} seeds: mean ± standard deviation (test)")
    print(f"{'model':<10}" + "".join(f"{m:>22}" for m in METRICS))
    figures["summary"] = {}
    for model in models:
        values = {m: [s["test"][f"{model}/{m}"] for s in seeds if f"{model}/{m}" in s["test"]] for m in METRICS}
        figures["summary"][model] = {m: {"mean": statistics.mean(v), "stdev": statistics.stdev(v) if len(v) > 1
                                         else 0.0} for m, v in values.items() if v}
        print(f"{model:<10}" + "".join(f"{spread(v) if v else '-':>22}" for v in values.values()))
    print(f"champions on validation: {', '.join(str(s['champion']) for s in seeds)}; recommend stage "
          f"{spread([s['recommend_stage_seconds'] for s in seeds])} s, tuning "
          f"{spread([s['tuning_seconds'] for s in seeds])} s")
    Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    print(f"wrote {args.json}")
    spark.stop()


if __name__ == "__main__":
    main()

"""Recommendations from explicit ratings in the MovieLens 100K layout, by the usual protocol:
a per-user random 75/25 split, k = 10, items seen in training removed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import functions as F

from crm_spark import runs, tables
from crm_spark.config import load_config
from crm_spark.synth import movielens

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration
# The settings the default search (11 trials) chooses on this data; the pipeline test covers the search.
CHOSEN = ("recommend.tune=false", "recommend.rank=16", "recommend.reg_param=0.2", "recommend.alpha=1.0")


@pytest.fixture(scope="module")
def benchmark(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("movielens")
    movielens.write(root / "raw")
    config = load_config(REPO / "conf" / "examples" / "movielens.yaml", [
        f"paths.raw_dir={root / 'raw'}", f"paths.lakehouse_dir={root / 'lakehouse'}",
        f"paths.checkpoint_dir={root / 'checkpoints'}", f"paths.allowed_roots=['{root}']",
        f"privacy.secret_file={root / 'secret.key'}", "privacy.create_secret=true",
        *CHOSEN])
    # No features stage: every user has ratings, so none needs the cold-start groups it feeds.
    runs.execute(spark, config, ["ingest", "prepare", "recommend", "evaluate"], "movielens")
    metrics = tables.read_table(spark, tables.MODEL_METRICS, config.paths.lakehouse_dir).where(
        (F.col("run_id") == "movielens") & (F.col("task") == "recommendation"))
    values = {(r["model"], r["metric"], r["split"]): r["value"] for r in metrics.collect()}
    return config, values


def test_als_with_the_tuned_settings_beats_the_published_benchmark_table(benchmark):
    _, values = benchmark
    als = {metric: value for (model, metric, split), value in values.items() if model == "als" and split == "test"}
    popular = {metric: value for (model, metric, split), value in values.items()
               if model == "popular" and split == "test"}
    assert als["precision_at_10"] >= 0.42, als
    assert als["ndcg_at_10"] >= 0.48, als
    assert als["ndcg_at_10"] >= 1.5 * popular["ndcg_at_10"], (als, popular)
    assert als["catalogue_coverage"] > 3 * popular["catalogue_coverage"]
    assert als["novelty"] > popular["novelty"] and als["distribution_entropy"] > popular["distribution_entropy"]


def test_holdout_is_a_quarter_of_each_user_and_never_recommended_from_training(spark, benchmark):
    config, _ = benchmark
    lake = config.paths.lakehouse_dir
    relevant = tables.read_table(spark, tables.RECOMMENDATION_RELEVANCE, lake)
    ratings = tables.read_table(spark, tables.RATINGS, lake)
    per_user = ratings.groupBy("customer_key").agg(F.count("*").alias("n")).join(
        relevant.groupBy("customer_key").agg(F.count("*").alias("held")), "customer_key")
    assert per_user.where(F.col("held") != F.round(F.col("n") * 0.25)).count() == 0
    training = ratings.join(relevant, ["customer_key", "product_id"], "left_anti")
    holdout = tables.read_table(spark, tables.RECOMMENDATION_HOLDOUT, lake)
    assert holdout.join(training, ["customer_key", "product_id"]).count() == 0
    served = tables.read_table(spark, tables.RECOMMENDATIONS, lake)
    assert served.join(ratings, ["customer_key", "product_id"]).count() == 0
    assert {r[0] for r in served.select("source").distinct().collect()} == {"als"}

"""One SparkSession per test process (``make test`` runs two, with pytest-xdist), built by the project's own builder."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from crm_spark.config import (
    CampaignConfig,
    CampaignsConfig,
    Config,
    GenerateConfig,
    PathsConfig,
    PrivacyConfig,
    RecommendConfig,
    SparkConfig,
    TrainConfig,
)
from crm_spark.session import build_spark

AS_OF = dt.date(2025, 1, 1)
# HotSpot's tier-4 (C2) thresholds at about three times their defaults (5000, 600, 15000, 40000).
LATER_C2 = ("-XX:Tier4InvocationThreshold=15000 -XX:Tier4MinInvocationThreshold=2000 "
            "-XX:Tier4CompileThreshold=45000 -XX:Tier4BackEdgeThreshold=120000")


def make_config(root: Path, **sections) -> Config:
    """Return a test configuration with every path under ``root``."""
    paths = PathsConfig(
        raw_dir=str(root / "raw"), lakehouse_dir=str(root / "lakehouse"),
        checkpoint_dir=str(root / "checkpoints"), truth_dir=str(root / "truth"), allowed_roots=(str(root),),
    )
    # Small grids and fewer iterations: the tests check behaviour and quality, not the breadth of the search.
    sections.setdefault("train", TrainConfig(lr_reg_params=(0.001, 0.01), lr_elastic_nets=(0.0,), dt_max_depths=(4, 6),
                                             dt_min_instances=(20,), gbt_max_depths=(3,), gbt_max_iter=5,
                                             clv_gbt_max_iter=5, segment_k_max=4, segment_restarts=1))
    sections.setdefault("recommend", RecommendConfig(max_iter=8, tune_ranks=(8, 16), tune_reg_params=(0.05, 0.2),
                                                     tune_alphas=(3.0,), tune_confidences=("linear",),
                                                     tune_max_iters=(8,), tune_ease_regs=(10.0, 100.0),
                                                     tune_blend_shares=(0.5,)))
    sections.setdefault("privacy", PrivacyConfig(secret_file=str(root / "secret.key"), create_secret=True,
                                                 vacuum_retention_hours=0, allow_short_retention=True))
    spark_cfg = SparkConfig(
        master="local[2]", shuffle_partitions=2, ui_enabled=False, log_level="ERROR",
        # For one JVM that runs half the suite: the parallel collector costs less CPU than G1 on
        # two cores; a heap and metaspace large enough (two such JVMs, the cluster test's four and
        # the processes tests start fit in 24 GB), and fewer finished jobs kept for the
        # (disabled) UI, spare it full collections. On test-sized data, compiling generated code
        # for every new plan costs more than it saves: expressions and plans are interpreted
        # instead (a pipeline run on the orders-only example: 60 s against 46 s). The optimizing
        # compiler (C2) waits for about three times the default calls and loops: in a JVM that runs test
        # after test it compiles about a third less, and the quick compiler's code runs meanwhile
        # (tests/test_minimal_sources.py: 361.5 JVM CPU-seconds against 416.6, C2 82.8 against 127.6,
        # 333 s against 348 s). The suite keeps both cores busy, so CPU saved is time saved.
        extra={"spark.driver.memory": "4g", "spark.sql.warehouse.dir": str(root / "warehouse"),
               "spark.driver.extraJavaOptions": "-XX:+UseParallelGC -XX:MetaspaceSize=512m " + LATER_C2,
               "spark.executor.extraJavaOptions": "-XX:+UseParallelGC",
               "spark.ui.retainedJobs": "100", "spark.ui.retainedStages": "100",
               "spark.sql.ui.retainedExecutions": "20",
               "spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"},
    )
    sections.setdefault("generate", GenerateConfig(customers=2000, products=150, partitions=2))
    # One campaign: tests/test_campaigns.py checks several, on planted data.
    sections.setdefault("campaigns", CampaignsConfig(definitions={"win_back": CampaignConfig(
        "churn_probability >= 0.5", success_rate=0.2, contact_cost=1.0, max_customers=200, offers=3)}))
    return Config(as_of_date=AS_OF, paths=paths, spark=spark_cfg, **sections)


@pytest.fixture(scope="session", autouse=True)
def _fixed_key_secret():
    """Key customers with one fixed secret in every test and in the processes tests start.

    Customer keys decide the hash-based held-out splits, so a new random secret per
    lakehouse would give every run different test customers and different metrics.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PrivacyConfig.secret_env, "crm-spark-tests-fixed-key-secret")
        yield


@pytest.fixture(scope="session")
def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a temporary folder that lives for the whole test session."""
    return tmp_path_factory.mktemp("crm")


@pytest.fixture(scope="session")
def spark(session_root: Path) -> SparkSession:
    """Yield the session-wide SparkSession (local[2], 2 shuffle partitions, UI off)."""
    session = build_spark(make_config(session_root))
    yield session
    session.stop()


@pytest.fixture(autouse=True)
def _clear_cache(request: pytest.FixtureRequest):
    """Drop cached frames after each test that used Spark."""
    yield
    if "spark" in request.fixturenames:
        request.getfixturevalue("spark").catalog.clearCache()


@pytest.fixture
def restore_logging():
    """Undo the logging set-up ``cli.main`` does: remove the handlers it added (their stream is pytest's
    capture, closed after the test) and restore the root level. pytest's own handlers are left to pytest,
    which adds and removes them around each phase of a test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)

"""No mix of sources crashes a stage: each stage runs, or is skipped with a one-line reason, on minimal exports."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from crm_spark import runs, tables
from crm_spark.config import PrepareConfig, RecommendConfig, SourceConfig, TrainConfig

from .conftest import make_config

CUSTOMERS = 120
RAN, SKIPPED = "succeeded", "skipped"
# The light models of these runs: they check which stages run, not the models' quality.
TRAIN = TrainConfig(classifiers=("logistic_regression", "decision_tree"), lr_reg_params=(0.01,),
                    lr_elastic_nets=(0.0,), dt_max_depths=(3,), dt_min_instances=(5,), clv_gbt_max_iter=3,
                    segment_algorithms=("kmeans",), segment_k_min=2, segment_k_max=2, segment_restarts=1)
RECOMMEND = RecommendConfig(tune=False, max_iter=3, rank=4, cold_start_min_customers=5)


def churned(i: int) -> bool:
    """A label with both classes, tied to the customer's number (and so to the planted attributes)."""
    return i % 3 == 0 or i % 7 == 0


def customers_csv(columns: dict, rows: int = CUSTOMERS) -> str:
    """Return a customer export with ``columns`` (name -> value of customer ``i``)."""
    lines = [",".join(columns)] + [",".join(str(value(i)) for value in columns.values()) for i in range(rows)]
    return "\n".join(lines) + "\n"


def orders_csv(rows: int = CUSTOMERS) -> str:
    """Return order lines of the first half of the customers, over 2024, with products."""
    lines = ["order_id,customer_id,product_id,quantity,unit_price,order_ts,status"]
    for i in range(rows // 2):
        for n in range(1 + i % 4):
            day = dt.date(2024, 1, 1) + dt.timedelta(days=(37 * i + 53 * n) % 360)
            lines.append(f"O{i}-{n},C{i},P{(i + n) % 9},{1 + n % 2},{5.0 + i % 11:.2f},{day}T10:00:00,completed")
    return "\n".join(lines) + "\n"


def ratings_csv(rows: int = CUSTOMERS) -> str:
    """Return ratings of every third customer, over 2024."""
    lines = ["customer_id,product_id,rating,rated_ts"]
    for i in range(0, rows, 3):
        for n in range(3):
            lines.append(f"C{i},P{(2 * i + n) % 9},{1 + (i + n) % 5},2024-{1 + (i + n) % 12:02d}-15 09:00:00")
    return "\n".join(lines) + "\n"


IDENTITY = {"customer_id": lambda i: f"C{i}"}
LABEL = {"label": lambda i: "yes" if churned(i) else "no"}
CASES = {
    # name: (files, settings of the customer source, outcomes of select, train, score, recommend, evaluate)
    "id, gender and a churn flag, mapped": ({"customers.csv": customers_csv(
        {"Kunde": IDENTITY["customer_id"], "Geschlecht": lambda i: "weiblich" if i % 3 == 0 else "männlich",
         "Churn": LABEL["label"]})}, {"columns": {"customer_id": "Kunde", "gender": "Geschlecht", "label": "Churn"}},
        (RAN, RAN, RAN, SKIPPED, RAN)),
    "numeric attributes only": ({"customers.csv": customers_csv(
        {**IDENTITY, "fee": lambda i: 10 + 5 * churned(i) + i % 4, "visits": lambda i: i % 5, **LABEL})},
        {"attributes": {"fee": None, "visits": "numeric"}}, (RAN, RAN, RAN, SKIPPED, RAN)),
    # An id and a label only takes the same path: no candidate feature varies.
    "one constant attribute": ({"customers.csv": customers_csv({**IDENTITY, "plan": lambda i: "basic", **LABEL})},
                               {"attributes": {"plan": None}}, (SKIPPED, SKIPPED, SKIPPED, SKIPPED, RAN)),
    "a label with one class": ({"customers.csv": customers_csv(
        {**IDENTITY, "gender": lambda i: "FM"[i % 2], "label": lambda i: "no"})}, {},
        (SKIPPED, SKIPPED, SKIPPED, SKIPPED, RAN)),
    "customers without orders beside buyers, with ratings": ({
        "customers.csv": customers_csv({**IDENTITY, "plan": lambda i: "AB"[i % 2], **LABEL}),
        "orders.csv": orders_csv(), "ratings.csv": ratings_csv()}, {"attributes": {"plan": "categorical"}},
        (RAN, RAN, RAN, RAN, RAN)),
}  # ratings and a customer table without orders: tests/test_examples.py (ratings_users)


@pytest.mark.parametrize("case", list(CASES))
def test_every_stage_runs_or_is_skipped_with_a_reason(spark, tmp_path, case):
    files, settings, outcomes = CASES[case]
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, text in files.items():
        (raw / name).write_text(text, encoding="utf-8")
    sources = {Path(name).stem: SourceConfig(name, "csv", **(settings if name == "customers.csv" else {}))
               for name in files}
    # No fuzzy matching: these exports carry no names to match, and the run is quicker.
    config = dataclasses.replace(make_config(tmp_path, train=TRAIN, recommend=RECOMMEND,
                                             prepare=PrepareConfig(fuzzy_matching=False)), sources=sources)
    result = runs.execute(spark, config, list(runs.PIPELINE), "minimal")

    stages = ("select", "train", "score", "recommend", "evaluate")
    assert result.status == "succeeded"
    assert {s: result.stage_status[s] for s in ("ingest", "prepare", "features")} == dict.fromkeys(
        ("ingest", "prepare", "features"), RAN)
    assert {s: result.stage_status[s] for s in stages} == dict(zip(stages, outcomes, strict=True))
    for stage, reason in result.skipped.items():  # one line that says why
        assert reason and "\n" not in reason and "Traceback" not in reason, (stage, reason)
    lake = config.paths.lakehouse_dir
    if result.stage_status["score"] == RAN:
        scores = tables.read_table(spark, tables.CHURN_SCORES, lake)
        assert scores.count() == CUSTOMERS and scores.where(~F.col("churn_probability").between(0, 1)).isEmpty()
    auc = tables.read_table(spark, tables.MODEL_METRICS, lake).where(
        "task = 'churn' AND metric = 'auc' AND split = 'test'").select("model").distinct()
    trained = ["decision_tree", "logistic_regression"] if result.stage_status["train"] == RAN else []
    assert sorted(r[0] for r in auc.collect()) == trained

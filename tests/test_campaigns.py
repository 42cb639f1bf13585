"""Campaigns on planted gold tables: eligibility, budgets, ranking by expected value, offers, exclusivity,
exports with formula escaping, and erasure."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from crm_spark import tables
from crm_spark.campaigns import audiences, export
from crm_spark.config import CampaignConfig, CampaignsConfig, ConfigError, load_config
from crm_spark.stages import campaigns, erase

from .conftest import AS_OF, make_config

# Planted customers: key -> (churn probability, lifetime value, rfm segment, anomalous).
PLANTED = {
    "ck_01": (0.9, 1000.0, "at_risk", False),
    "ck_02": (0.8, 2000.0, "at_risk", False),
    "ck_03": (0.95, 5000.0, "at_risk", True),  # the most valuable at risk, but anomalous
    "ck_04": (0.6, 100.0, "champions", False),
    "ck_05": (0.45, 3000.0, "champions", False),
    "ck_06": (0.1, 4000.0, "champions", False),
    "ck_07": (0.2, 600.0, "champions", False),
    "ck_08": (0.3, 50.0, "hibernating", False),
    "ck_09": (0.51, 1.0, "hibernating", False),  # eligible for win-back, but its contact is worth less than it costs
}
PRODUCT_NAMES = {"P1": '=HYPERLINK("http://example.invalid")', "P2": "+cmd", "P3": "-2 for 1", "P4": "@SUM(A1)",
                 "P5": "Plain mug"}
DEFINITIONS = {
    "win_back": CampaignConfig("churn_probability >= 0.5", objective="retention", success_rate=0.5,
                               contact_cost=1.0, max_customers=2, offers=2),
    "loyalty": CampaignConfig("rfm_segment = 'champions'", objective="growth", success_rate=0.1,
                              contact_cost=1.0, max_cost=2.0, offers=1),
    "everyone": CampaignConfig("frequency >= 1", objective="growth", success_rate=0.1, contact_cost=1.0,
                               max_customers=100, offers=0, exclude_anomalies=False),
}


def _plant(spark, lake: str) -> None:
    keys = sorted(PLANTED)
    write = tables.DatedWriter(lake, AS_OF, "planted")
    write(spark.createDataFrame([(k, 10.0, 3.0, 100.0, 400.0) for k in keys],
                                "customer_key string, recency_days double, frequency double, monetary double, "
                                "tenure_days double"), tables.CUSTOMER_FEATURES)
    write(spark.createDataFrame([(k, PLANTED[k][0]) for k in keys], "customer_key string, churn_probability double"),
          tables.CHURN_SCORES)
    write(spark.createDataFrame([(k, PLANTED[k][1], PLANTED[k][1] / 4) for k in keys],
                                "customer_key string, lifetime_value double, predicted_spend double"),
          tables.CLV_PREDICTIONS)
    write(spark.createDataFrame([(k, 1, PLANTED[k][2], 3, 3, 3) for k in keys],
                                "customer_key string, segment int, rfm_segment string, r_score int, f_score int, "
                                "m_score int"), tables.CUSTOMER_SEGMENTS)
    write(spark.createDataFrame([("customer", None, k, 7.0, "far from its segment") for k in keys if PLANTED[k][3]],
                                "level string, order_id string, customer_key string, score double, reason string"),
          tables.ANOMALIES)
    write(spark.createDataFrame([(k, f"P{r}", 1.0 / r, r, "als") for k in keys for r in range(1, 6)],
                                "customer_key string, product_id string, score double, rank int, source string"),
          tables.RECOMMENDATIONS)
    # Customer ck_01 has two source records (the smaller id is exported), bought P1 before the date and
    # cancelled an order of P2 (not bought).
    xref = [(f"C{k[3:]}", k, f"C{k[3:]}") for k in keys] + [("C99", "ck_01", "C01")]
    tables.write_table(spark.createDataFrame(xref, "customer_id string, customer_key string, cluster_id string"),
                       tables.CUSTOMER_XREF, lake)
    tables.write_table(spark.createDataFrame(
        [("O1", "ck_01", "P1", "2024-06-01 10:00:00", "completed"), ("O2", "ck_02", "P3", "2025-02-01 10:00:00",
                                                                     "completed"),
         ("O3", "ck_01", "P2", "2024-07-01 10:00:00", "cancelled")],
        "order_id string, customer_key string, product_id string, order_ts string, status string").withColumn(
        "order_ts", F.to_timestamp("order_ts")), tables.ORDERS, lake)
    tables.write_table(spark.createDataFrame(list(PRODUCT_NAMES.items()), "product_id string, name string"),
                       tables.PRODUCTS, lake)


@pytest.fixture(scope="module")
def planted(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("campaigns")
    config = dataclasses.replace(make_config(root), campaigns=CampaignsConfig(
        definitions=DEFINITIONS, priority=("win_back", "loyalty")))
    _plant(spark, config.paths.lakehouse_dir)
    counts = campaigns.run(spark, config, "campaign-run")
    return config, counts


def _audiences(spark, config):
    return tables.read_table(spark, tables.CAMPAIGN_AUDIENCES, config.paths.lakehouse_dir).where(
        F.col("as_of_date") == AS_OF)


def _expected(name: str, taken: set[str]) -> list[tuple[str, float]]:
    """The audience worked out by hand from the planted values: eligible, worth it, best first, within budget."""
    cfg = DEFINITIONS[name]
    rows = []
    for key, (churn, value, rfm, anomalous) in PLANTED.items():
        eligible = {"win_back": churn >= 0.5, "loyalty": rfm == "champions", "everyone": True}[name]
        if not eligible or key in taken or (anomalous and cfg.exclude_anomalies):
            continue
        keep = churn if cfg.objective == "retention" else 1 - churn
        worth = keep * cfg.success_rate * value - cfg.contact_cost
        if worth > 0:
            rows.append((key, worth))
    rows.sort(key=lambda r: (-r[1], r[0]))
    limit = min(x for x in (cfg.max_customers, cfg.max_cost and int(cfg.max_cost / cfg.contact_cost)) if x)
    return rows[:limit]


def test_audiences_respect_eligibility_budget_value_order_and_priority(spark, planted):
    config, counts = planted
    win_back = _expected("win_back", set())
    loyalty = _expected("loyalty", {k for k, _ in win_back})
    everyone = _expected("everyone", set())
    assert [k for k, _ in win_back] == ["ck_02", "ck_01"]  # ck_03 is worth more but anomalous
    assert [k for k, _ in loyalty] == ["ck_06", "ck_05"]  # by expected value; ck_04 and ck_07 are over budget
    expected = [(k, name, rank, worth) for name, rows in (("win_back", win_back), ("loyalty", loyalty),
                                                          ("everyone", everyone))
                for rank, (k, worth) in enumerate(rows, 1)]
    actual = _audiences(spark, config).select("customer_key", "campaign", "rank", "expected_value")
    assertDataFrameEqual(actual, spark.createDataFrame(expected, actual.schema), rtol=1e-9)
    assert counts["campaign.win_back"] == 2 and counts["campaign.loyalty"] == 2
    # A campaign outside the priority order shares customers with the others (ck_03 too: it keeps anomalies).
    assert {k for k, _ in everyone} >= {"ck_01", "ck_02", "ck_03", "ck_06"}
    summary = {r["campaign"]: r for r in tables.read_table(spark, tables.CAMPAIGN_SUMMARY,
                                                          config.paths.lakehouse_dir).collect()}
    assert (summary["loyalty"]["eligible"], summary["loyalty"]["chosen"], summary["loyalty"]["budget_customers"]) \
        == (4, 2, 2)
    assert summary["loyalty"]["curve_customers"][-1] == 4
    assert summary["win_back"]["expected_value_total"] == pytest.approx(sum(w for _, w in win_back))
    assert summary["win_back"]["cost_total"] == 2.0


def test_offers_follow_the_recommendations_and_skip_what_was_bought(spark, planted):
    config, _ = planted
    offers = {(r["customer_key"], r["campaign"]): list(r["offers"]) for r in _audiences(spark, config).collect()}
    assert offers[("ck_01", "win_back")] == ["P2", "P3"]  # P1 was bought before the date, P2 only cancelled
    assert offers[("ck_02", "win_back")] == ["P1", "P2"]  # P3 is bought after the date: not yet known
    assert offers[("ck_06", "loyalty")] == ["P1"]
    assert offers[("ck_06", "everyone")] == []
    reasons = {(r["customer_key"], r["campaign"]): r["reason"] for r in _audiences(spark, config).collect()}
    assert reasons[("ck_01", "win_back")] == "churn risk 90%, lifetime value 1000.00, RFM at risk, segment 1"


def test_summaries_add_up_every_campaign_at_once_and_keep_one_nobody_qualified_for(spark):
    worth = spark.createDataFrame([("a", "c1", 4.0), ("b", "c1", 2.0), ("c", "c2", 1.0)],
                                  "customer_key string, campaign string, expected_value double")
    cfg = CampaignConfig("true", contact_cost=0.5, max_customers=1)
    actual = audiences.summaries(worth, worth.where(F.col("customer_key") != "b"),
                                 {"c1": cfg, "c2": cfg, "nobody": cfg}, ["c2"], points=3)
    # c1's cuts (a third and two thirds of the way) are 2.0 and 4.0: customer a is the first step, b the second.
    assertDataFrameEqual(actual, spark.createDataFrame([
        ("c1", 2, 1, 1, 4.0, 0.5, [1, 2], [4.0, 6.0], None), ("c2", 1, 1, 1, 1.0, 0.5, [1], [1.0], 1),
        ("nobody", 0, 0, 1, 0.0, 0.0, [], [], None)], actual.schema))


def test_value_percentiles_are_the_share_of_cut_points_below_each_value(spark):
    rows = [(f"c{v}", float(v), float(v % 7)) for v in range(1, 201)] + [("none", None, None)]
    frame = spark.createDataFrame(rows, "customer_key string, lifetime_value double, predicted_spend double")
    cuts = frame.agg(*[F.percentile_approx(c, audiences.PERCENTILES, 1000).alias(c)
                       for c in ("lifetime_value", "predicted_spend")]).first()
    assert len(set(cuts["predicted_spend"])) == 7  # repeated cut points: a value counts each one below it

    def share(value: float | None, column: str) -> float | None:
        return None if value is None else sum(cut < value for cut in cuts[column]) / 100

    expected = [(key, lv, ps, share(lv, "lifetime_value"), share(ps, "predicted_spend")) for key, lv, ps in rows]
    assert {e[3] for e in expected} >= {0.0, 0.5, 0.99}
    assertDataFrameEqual(audiences.with_percentiles(frame), spark.createDataFrame(
        expected, "customer_key string, lifetime_value double, predicted_spend double, "
                  "lifetime_value_percentile double, predicted_spend_percentile double"))


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_exports_carry_source_ids_offers_and_escape_formulas(spark, planted):
    config, _ = planted
    folder = Path(config.paths.exports) / AS_OF.isoformat()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{name}.{ext}" for name in DEFINITIONS for ext in ("csv", "parquet"))
    rows = _csv(folder / "win_back.csv")
    assert [(r["customer_id"], r["rank"], r["offer_1"], r["offer_1_name"], r["offer_2_name"]) for r in rows] == [
        ("C02", "1", "P1", '\'=HYPERLINK("http://example.invalid")', "'+cmd"),
        ("C01", "2", "P2", "'+cmd", "'-2 for 1"),  # C01, the smaller of ck_01's two source ids
    ]
    assert set(rows[0]) == {"customer_id", "campaign", "rank", "expected_value", "reason", "offer_1",
                            "offer_1_name", "offer_2", "offer_2_name"}
    parquet = pd.read_parquet(folder / "win_back.parquet")
    assert parquet["offer_1_name"].tolist() == [r["offer_1_name"] for r in rows]
    assert _csv(folder / "everyone.csv")[0].keys() == {"customer_id", "campaign", "rank", "expected_value", "reason"}


def test_an_export_of_the_same_date_replaces_the_earlier_one(spark, planted):
    config, _ = planted
    fewer = dataclasses.replace(config, campaigns=CampaignsConfig(definitions={"loyalty": DEFINITIONS["loyalty"]}))
    campaigns.run(spark, fewer, "campaign-rerun")
    folder = Path(config.paths.exports) / AS_OF.isoformat()
    assert sorted(p.name for p in folder.iterdir()) == ["loyalty.csv", "loyalty.parquet"]
    assert [r["customer_id"] for r in _csv(folder / "loyalty.csv")] == ["C06", "C05"]
    campaigns.run(spark, config, "campaign-run")  # as before, for the tests after this one


def test_erased_customers_leave_the_audiences_and_the_exports(spark, planted):
    config, _ = planted
    erase.run(spark, config, ["C99"], "erase-campaign")  # ck_01's second record: the person goes
    keys = {r["customer_key"] for r in _audiences(spark, config).collect()}
    assert "ck_01" not in keys and "ck_02" in keys
    folder = Path(config.paths.exports) / AS_OF.isoformat()
    exported = "".join(p.read_text() for p in folder.glob("*.csv"))
    assert "C01" not in exported and "C99" not in exported and "C02" in exported
    campaigns.run(spark, config, "campaign-after-erasure")
    assert "ck_01" not in {r["customer_key"] for r in _audiences(spark, config).collect()}
    assert "C01" not in "".join(p.read_text() for p in folder.glob("*.csv"))


def test_a_rule_naming_an_unknown_column_is_a_config_error(spark, planted):
    config, _ = planted
    broken = dataclasses.replace(config, campaigns=CampaignsConfig(definitions={
        "typo": CampaignConfig("churn_probabilty > 0.5", max_customers=10)}))
    with pytest.raises(ConfigError, match=r"campaigns.definitions.typo.eligible.*churn_probabilty"):
        campaigns.run(spark, broken, "campaign-typo")


@pytest.mark.parametrize("overrides, message", [
    ([], "needs a budget: set max_customers, max_cost or both"),
    (["max_customers=5", "objective=retension"], "'campaigns.definitions.w.objective'.*did you mean 'retention'"),
    (["max_customers=5", "offers=50"], r"within \[0, recommend.top_k = 10\]"),
    (["max_cost=10", "contact_cost=0"], "needs a positive max_cost and contact_cost"),
    (["max_customers=5", "success_rate=1.5"], r"success_rate' must be in \(0, 1\]"),
])
def test_campaign_config_mistakes_are_named(overrides, message):
    config_file = Path(__file__).resolve().parents[1] / "conf" / "local.yaml"
    settings = ["campaigns.definitions.w.eligible='frequency > 0'",
                *(f"campaigns.definitions.w.{o}" for o in overrides)]
    with pytest.raises(ConfigError, match=message):
        load_config(config_file, settings)


def test_campaign_names_and_priority_are_checked():
    config_file = Path(__file__).resolve().parents[1] / "conf" / "local.yaml"
    with pytest.raises(ConfigError, match="lower-case letters, digits and _"):
        load_config(config_file, ["campaigns.definitions.Bad-Name.eligible='true'",
                                  "campaigns.definitions.Bad-Name.max_customers=1"])
    with pytest.raises(ConfigError, match="'campaigns.priority' names 'win_bak'.*did you mean 'win_back'"):
        load_config(config_file, ["campaigns.priority=[win_bak]"])


def test_export_escaping_covers_every_formula_start(spark):
    values = ["=1+1", "+1", "-1", "@A1", "\tx", "\rx", "plain", "a=b", None]
    df = spark.createDataFrame([(v,) for v in values], "v string").select(export.escape_formula(F.col("v")).alias("v"))
    assert [r["v"] for r in df.collect()] == ["'=1+1", "'+1", "'-1", "'@A1", "'\tx", "'\rx", "plain", "a=b", None]

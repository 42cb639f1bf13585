"""Configuration loading: types, unknown keys, missing values, overrides, bounds."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crm_spark.config import ConfigError, load_config

MINIMAL = """
as_of_date: 2025-01-01
paths:
  raw_dir: data/raw
  lakehouse_dir: lakehouse
  checkpoint_dir: data/checkpoints
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_minimal_config_gets_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.as_of_date == dt.date(2025, 1, 1)
    assert config.training_cutoff == dt.date(2024, 10, 3)
    assert config.generate.customers == 100_000
    assert config.paths.truth_dir is None


def test_overrides_parse_values_and_nested_keys(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), ["generate.customers=5000", "as_of_date=2024-06-30",
                                                    "spark.extra={spark.driver.memory: 2g}"])
    assert (config.generate.customers, config.as_of_date, dict(config.spark.extra)) == (
        5000, dt.date(2024, 6, 30), {"spark.driver.memory": "2g"})


def test_one_spark_setting_is_overridden_beside_the_configs_others(tmp_path):
    path = write(tmp_path, MINIMAL + "spark:\n  extra:\n    spark.driver.memory: 2g\n    spark.ui.port: 4050\n")
    config = load_config(path, ["spark.extra.spark.sql.shuffle.partitions=4", "spark.extra.spark.driver.memory=3g"])
    assert dict(config.spark.extra) == {"spark.driver.memory": "3g", "spark.ui.port": "4050",
                                        "spark.sql.shuffle.partitions": "4"}
    assert dict(load_config(write(tmp_path, MINIMAL), ["spark.extra.spark.x.y=z"]).spark.extra) == {"spark.x.y": "z"}
    with pytest.raises(ConfigError, match="'spark.extra' must be a mapping to set spark.extra.spark.x"):
        load_config(path, ["spark.extra=3", "spark.extra.spark.x=1"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["generate.custmers=5"], "unknown config key 'generate.custmers'"),
        (["generate.customers=many"], "config key 'generate.customers' must be int, got 'many'"),
        (["generate.customers=true"], "config key 'generate.customers' must be int, got True"),
        (["as_of_date=yesterday"], "config key 'as_of_date' must be date (YYYY-MM-DD), got 'yesterday'"),
        (["train.segment_k_min=1"], "config key 'train.segment_k_min' must be within [2, 100], got 1"),
        (["paths=3"], "'paths' must be a mapping"),
        (["novalue"], "override 'novalue' must look like key.sub=value"),
        (["recommend.holdout=later"], "config key 'recommend.holdout' must be one of ('time', 'random')"),
        (["recommend.tune_ranks=[]"], "config key 'recommend.tune_ranks' must list positive values"),
        (["recommend.max_per_category=0"], "config key 'recommend.max_per_category' must be positive or null"),
        (["recommend.models=[als, slim]"], "config key 'recommend.models' must list some of ('als', 'ease')"),
        (["recommend.models=[]"], "config key 'recommend.models' must list some of ('als', 'ease')"),
        (["recommend.confidence=square"], "config key 'recommend.confidence' must be one of ('linear', 'log')"),
        (["recommend.tune_blend_shares=[0.5, 1.0]"], "config key 'recommend.tune_blend_shares' must list values "
                                                      "between 0 and 1"),
        (["recommend.tune_ease_regs=[0]"], "config key 'recommend.tune_ease_regs' must list positive values"),
        (["ingest.rating_min=5", "ingest.rating_max=0.5"],
         "config key 'ingest.rating_max' (0.5) must exceed 'ingest.rating_min' (5.0)"),
        (["train.label=guess"], "config key 'train.label' must be one of ('auto', 'horizon', 'column')"),
        (["select.correlation_method=kendall"], "config key 'select.correlation_method' must be one of"),
        (["select.max_correlation=1.5"], "config key 'select.max_correlation' must be within [0.0, 1.0]"),
        (["train.dt_max_depths=[]"], "config key 'train.dt_max_depths' must list values within [1, 30], got []"),
        (["train.lr_elastic_nets=[0.5, 2]"], "config key 'train.lr_elastic_nets' must list values within [0.0, 1.0]"),
        (["recommend.feedback=explicit", "recommend.interactions=purchases"],
         "config key 'recommend.feedback' is explicit, which needs ratings"),
    ],
)
def test_bad_values_name_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, MINIMAL), overrides)
    assert str(caught.value).startswith(message)


def test_missing_required_key_is_named(tmp_path):
    text = MINIMAL.replace("  lakehouse_dir: lakehouse\n", "")
    with pytest.raises(ConfigError, match="missing required config key 'paths.lakehouse_dir'"):
        load_config(write(tmp_path, text))


def test_shipped_configs_load():
    root = Path(__file__).resolve().parents[1] / "conf"
    for name in ("local.yaml", "cluster.yaml"):
        assert load_config(root / name).recommend.top_k == 10


def test_config_hash_is_the_same_for_the_same_values_and_changes_with_any_value(tmp_path):
    path = write(tmp_path, MINIMAL)
    reference = load_config(path).config_hash()
    # The same values written in another order, with a default spelled out, hash the same...
    (tmp_path / "same.yaml").write_text("train:\n  seed: 7\npaths:\n  checkpoint_dir: data/checkpoints\n"
                                        "  raw_dir: data/raw\n  lakehouse_dir: lakehouse\nas_of_date: 2025-01-01\n")
    assert load_config(tmp_path / "same.yaml").config_hash() == reference
    # ... and in another interpreter, whatever its string hash seed.
    other = subprocess.run(
        [sys.executable, "-c", "import sys; from crm_spark.config import load_config; "
                               "print(load_config(sys.argv[1]).config_hash())", str(path)],
        env={**os.environ, "PYTHONHASHSEED": "12345"}, capture_output=True, text=True, check=True, timeout=120)
    assert other.stdout.strip() == reference
    # One changed value anywhere, nested and in lists and mappings too, gives another hash.
    changes = ["train.seed=8", "as_of_date=2025-01-02", "recommend.tune_ranks=[4, 8]", "paths.truth_dir=data/truth",
               "spark.extra={spark.driver.memory: 2g}", "prepare.phone_trunk_prefix='0'",
               "quality.expectations=['orders.unit_price.null_share <= 0.0']"]
    hashes = {load_config(path, [change]).config_hash() for change in changes}
    assert len(hashes) == len(changes) and reference not in hashes


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sources={}"], "config key 'sources' must name at least one of"),
        (["sources.shops.path=x", "sources.shops.format=csv"], "unknown source 'sources.shops'"),
        (["sources.orders.format=xml"], "config key 'sources.orders.format' must be one of"),
        (["sources.orders.encoding=EBCDIC"], "config key 'sources.orders.encoding' must be one of"),
        (["sources.orders.delimiter=';;'"], "config key 'sources.orders.delimiter' must be one character"),
        (["sources.orders.columns={amount: Betrag}"],
         "config key 'sources.orders.columns.amount' is not a canonical column of orders"),
        (["sources.ratings.format=csv", "sources.ratings.header=false"],
         "config key 'sources.ratings.fields' must list the columns"),
        (["quality.expectations=[email valid >= 0.9]"], "config key 'quality.expectations' has 'email valid >= 0.9'"),
        (["quality.on_failure=explode"], "config key 'quality.on_failure' must be one of"),
        (["sources.orders.attributes={Store: categorical}"],
         "config key 'sources.orders.attributes': only the customers source has attributes"),
        (["sources.customers={path: c.csv, format: csv, attributes: {Plan: text}}"],
         "config key 'sources.customers.attributes.Plan' must be one of ('numeric', 'categorical', 'boolean', "
         "'date', 'auto') or empty, got 'text'"),
        (["sources.customers={path: c.csv, format: csv, attributes: {E-Mail: }}"],
         "config key 'sources.customers.attributes.E-Mail' names personal data"),
        (["sources.customers={path: c.csv, format: csv, attributes: {Customer Name: categorical}}"],
         "config key 'sources.customers.attributes.Customer Name' names personal data"),
        (["sources.customers={path: c.csv, format: csv, columns: {gender: Sex}, attributes: {Sex: }}"],
         "config key 'sources.customers.attributes.Sex' is already a canonical column of customers"),
        (["sources.customers={path: c.csv, format: csv, attributes: {Frequency: numeric}}"],
         "config key 'sources.customers.attributes.Frequency' would become the feature 'frequency', which the "
         "pipeline computes itself"),
        (["sources.customers={path: c.csv, format: csv, attributes: {Plan Type: , plan_type: }}"],
         "config key 'sources.customers.attributes.plan_type' and 'Plan Type' would both become the feature "
         "'plan_type'"),
    ],
)
def test_bad_sources_and_expectations_name_the_key(tmp_path, overrides, message):
    text = MINIMAL + "sources:\n  orders: {path: orders, format: json}\n  ratings: {path: ratings, format: parquet}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), overrides)
    assert str(caught.value).startswith(message)


def test_attributes_need_no_type_and_keep_business_words(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), [
        "sources={customers: {path: c.csv, format: csv, attributes: {PhoneService: boolean, MonthlyCharges: , "
        "Plan name: categorical, Opened: date}, formats: {Opened: [dd.MM.yyyy]}}}"])
    assert dict(config.sources["customers"].attributes) == {"PhoneService": "boolean", "MonthlyCharges": None,
                                                            "Plan name": "categorical", "Opened": "date"}
    assert config.attribute_columns == ["phone_service", "monthly_charges", "plan_name", "opened"]


def test_sources_parse_lists_and_mappings(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), [
        "sources={ratings: {path: u.data, format: csv, header: false, delimiter: '\t', "
        "fields: [user, item, rating, ts], columns: {customer_id: user, product_id: item, rated_ts: ts}, "
        "formats: {rated_ts: [epoch]}}}"])
    ratings = config.sources["ratings"]
    assert (list(config.sources), ratings.fields, ratings.delimiter, dict(ratings.formats)) == (
        ["ratings"], ("user", "item", "rating", "ts"), "\t", {"rated_ts": ("epoch",)})

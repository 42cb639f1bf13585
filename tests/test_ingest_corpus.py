"""A corpus of bad raw input through the ingest stage: nothing is lost, every reject has a reason."""

from __future__ import annotations

import dataclasses

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from crm_spark import tables
from crm_spark.config import SourceConfig
from crm_spark.ingest.canonical import IngestError
from crm_spark.stages import ingest
from tests.conftest import make_config

HEADER = b"customer_id,first_name,last_name,email,phone,gender,birth_date,city,country,signup_ts,updated_ts"
GOOD = b"C1,Ann,Lee,ann@x.com,415-555-0100,F,1980-01-02,Austin,US,2023-01-01,2023-01-02"
INJECTION = b"C2,\"=cmd|' /C calc'!A0\",Lee,,,,,,,,"
CORPUS = [
    (GOOD, None),
    (INJECTION, None),
    (b"C3,Ann,Lee", "too_few_fields"),
    (b"C4,Ann,Lee,,,,,,,,,extra", "too_many_fields"),
    (b'"C5,Ann,Lee,,,,,,,,', "unbalanced_quote"),
    (b"C6,Jos\xe9,Lee,,,,,,,,", "bad_encoding"),
    (b"C7,Ann\x07,Lee,,,,,,,,", "control_characters"),
    (b"C8," + b"A" * 5_000_000 + b",Lee,,,,,,,,", "field_too_long"),
    (b",Ann,Lee,,,,,,,,", "missing_customer_id"),
    (b"", "empty_line"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    raw = root / "raw"
    (raw / "customers").mkdir(parents=True)
    (raw / "customers" / "part-0.csv").write_bytes(b"\n".join([HEADER] + [line for line, _ in CORPUS]) + b"\n")
    (raw / "customers" / "part-1.csv").write_bytes(HEADER + b"\n")
    (raw / "products.csv").write_bytes(b"product_id,name,category,price\n")
    (raw / "orders.json").write_text(
        '{"order_id": "O1", "customer_id": "C1", "product_id": "P1", "quantity": 2, "unit_price": 9.5, '
        '"order_ts": "2024-01-02T00:00:00"}\n'
        '{"order_id": "O2", "customer_id": "C1", "product_id": "P1", "quantity": "two", "unit_price": 9.5, '
        '"order_ts": "2024-01-02T00:00:00"}\n'
        '{"order_id": "O3", "customer_id": "C1", "prod\n')
    sources = {"customers": SourceConfig("customers", "csv"), "products": SourceConfig("products.csv", "csv"),
               "orders": SourceConfig("orders.json", "json")}
    return make_config(root, sources=sources)


def test_bad_inputs_reconcile_with_reason_codes(spark, corpus):
    counts = ingest.run(spark, corpus, "corpus-run")
    assert counts == {
        "customers.files": 2, "customers.read": len(CORPUS), "bronze.customers": 2,
        "quarantine.customers": len(CORPUS) - 2, "products.files": 1, "products.read": 0, "bronze.products": 0,
        "quarantine.products": 0, "orders.files": 1, "orders.read": 3, "bronze.orders": 1, "quarantine.orders": 2,
        "bronze.quarantine": len(CORPUS),
    }
    lake = corpus.paths.lakehouse_dir
    quarantine = tables.read_table(spark, tables.QUARANTINE, lake)
    rejected = quarantine.where(F.col("source") == "customers").select(
        F.substring("raw", 1, 4).alias("start"), "reason", F.length("raw").alias("length"))
    expected = spark.createDataFrame(
        [(line.decode("utf-8", "replace")[:4], reason, len(line.decode("utf-8", "replace")))
         for line, reason in CORPUS if reason],
        "start string, reason string, length int")
    assertDataFrameEqual(rejected, expected)
    assert quarantine.where(F.col("message").isNull() | F.col("_source_file").isNull()).isEmpty()
    orders = quarantine.where(F.col("source") == "orders").select("reason")
    assertDataFrameEqual(orders, spark.createDataFrame([("invalid_quantity",), ("malformed_json",)], "reason string"))
    accepted = tables.read_table(spark, tables.BRONZE["customers"], lake).select("customer_id", "first_name")
    assertDataFrameEqual(accepted, spark.createDataFrame([("C1", "Ann"), ("C2", "=cmd|' /C calc'!A0")],
                                                         "customer_id string, first_name string"))


def test_unreadable_path_and_missing_column_stop_with_one_line(spark, corpus):
    missing_path = dataclasses.replace(corpus, sources={"products": SourceConfig("nowhere/*.csv", "csv")})
    with pytest.raises(IngestError, match=r"^source 'products': cannot read .*nowhere"):
        ingest.run(spark, missing_path, "r")
    renamed = SourceConfig("customers", "csv", columns={"customer_id": "client_no"})
    with pytest.raises(IngestError, match=r"^source 'customers' lacks required column 'customer_id' "
                                                 r"\(source field 'client_no' not found"):
        ingest.run(spark, dataclasses.replace(corpus, sources={"customers": renamed}), "r")

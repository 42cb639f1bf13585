"""Ingest parsing: every line becomes a typed row or a quarantine row with a reason."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from crm_spark.config import SourceConfig
from crm_spark.ingest import canonical, parse

HEADER = "order_id,customer_id,product_id,quantity,unit_price,order_ts,status"


ORDER_FIELDS = HEADER.split(",")


def lines(spark, *texts):
    return spark.createDataFrame([(t, "f.csv", False) for t in texts],
                                 "_raw string, _source_file string, _bad_encoding boolean")


def checked_csv(raw, source="orders", fields=ORDER_FIELDS, spec=None):
    spec = spec or SourceConfig("f.csv", "csv")
    mapped = canonical.canonical_columns(parse.parse_csv_lines(raw, len(fields), ",", HEADER), source, spec, fields)
    return canonical.typed_columns(mapped, source)


def test_csv_lines_are_typed_or_given_a_reason(spark):
    raw = lines(
        spark,
        HEADER,
        'O1,C1,P1,2,9.5,2024-01-02 03:04:05,completed',
        'O2,C1,"P,2",1,1.25,2024-01-02T00:00:00,',
        'O3,C1,P1,two,9.5,2024-01-02,completed',
        'O4,,P1,1,9.5,2024-01-02,completed',
        'O5,C1,P1,1,9.5',
        'O6,C1,P1,1,9.5,2024-01-02,completed,extra',
        '"O7,C1,P1,1,9.5,2024-01-02,completed',
        '   ',
    )
    checked = checked_csv(raw)
    result = checked.select("order_id", "product_id", "quantity", "unit_price", "order_ts", "_reason")
    expected = spark.createDataFrame(
        [
            ("O1", "P1", 2, 9.5, dt.datetime(2024, 1, 2, 3, 4, 5), None),
            ("O2", "P,2", 1, 1.25, dt.datetime(2024, 1, 2), None),
            ("O3", "P1", None, 9.5, dt.datetime(2024, 1, 2), "invalid_quantity"),
            ("O4", "P1", 1, 9.5, dt.datetime(2024, 1, 2), "missing_customer_id"),
            ("O5", "P1", 1, 9.5, None, "too_few_fields"),
            ("O6", "P1", 1, 9.5, dt.datetime(2024, 1, 2), "too_many_fields"),
            ("O7,C1,P1,1,9.5,2024-01-02,completed", None, None, None, None, "unbalanced_quote"),
            (None, None, None, None, None, "empty_line"),
        ],
        "order_id string, product_id string, quantity int, unit_price double, order_ts timestamp, _reason string",
    )
    assertDataFrameEqual(result, expected)


def test_json_lines_and_rating_range(spark):
    raw = lines(
        spark,
        '{"customer_id": "C1", "product_id": "P1", "rating": 5, "rated_ts": "2024-01-01 00:00:00"}',
        '{"customer_id": "C1", "product_id": "P2", "rating": 7}',
        '{"customer_id": "C1", "product_id": "P3", "rat',
        '{"customer_id": "C2", "product_id": "P3"}',
        '{"customer_id": "C2", "product_id": "P4", "rating": "4.5"}',
    )
    keys = ["customer_id", "product_id", "rating", "rated_ts"]
    spec = SourceConfig("r.json", "json")
    checked = canonical.typed_columns(
        canonical.canonical_columns(parse.parse_json_lines(raw, keys), "ratings", spec, keys), "ratings")
    expected = spark.createDataFrame(
        [("P1", 5.0, None), ("P2", 7.0, "rating_out_of_range"), (None, None, "malformed_json"),
         ("P3", None, "missing_rating"), ("P4", 4.5, None)],
        "product_id string, rating double, _reason string",
    )
    assertDataFrameEqual(checked.select("product_id", "rating", "_reason"), expected)


def test_quarantine_keeps_original_text(spark):
    raw = lines(spark, 'O1,C1,P1,1,9.5,2024-01-02,completed', 'O5,C1,P1,1,9.5')
    checked = checked_csv(raw)
    expected = spark.createDataFrame(
        [("r1", "orders", "f.csv", "too_few_fields", "expected 7 fields, found 5", "O5,C1,P1,1,9.5")],
        "run_id string, source string, _source_file string, reason string, message string, raw string",
    )
    assertDataFrameEqual(canonical.quarantine_rows(checked, "orders", "r1"), expected)
    assert canonical.accepted_rows(checked).select("order_id").collect() == [("O1",)]


def test_missing_required_column_is_one_clear_error(spark):
    frame = spark.range(1).select(F.lit("C1").alias("customer_id"), F.lit("P1").alias("product_id"))
    parsed = parse.parse_table(frame, F.lit("r.parquet"))
    with pytest.raises(canonical.IngestError) as caught:
        canonical.canonical_columns(parsed, "ratings", SourceConfig("r", "parquet"), frame.columns)
    assert str(caught.value) == (
        "source 'ratings' lacks required column 'rating' (source field 'rating' not found; map it under "
        "sources.ratings.columns or set sources.ratings.constants.rating)")


def test_mapping_constants_formats_and_derived_order_id(spark):
    raw = lines(spark, "Kunde;Datum;Betrag", "K1;31.12.2024;12.5", "K1;31.12.2024;12.5", "K2;2024-13-01;3")
    spec = SourceConfig("t.csv", "csv", delimiter=";", columns={"customer_id": "kunde", "order_ts": "Datum",
                                                                 "unit_price": "Betrag"},
                        formats={"order_ts": ("dd.MM.yyyy",)}, constants={"quantity": "1", "status": "completed"})
    fields = ["Kunde", "Datum", "Betrag"]
    parsed = parse.parse_csv_lines(raw, 3, ";", "Kunde;Datum;Betrag")
    checked = canonical.typed_columns(canonical.canonical_columns(parsed, "orders", spec, fields), "orders",
                                      dict(spec.formats))
    result = checked.select("customer_id", "product_id", "quantity", "unit_price", "order_ts", "status", "_reason")
    expected = spark.createDataFrame(
        [("K1", None, 1, 12.5, dt.datetime(2024, 12, 31), "completed", None)] * 2
        + [("K2", None, 1, 3.0, None, "completed", "invalid_order_ts")],
        "customer_id string, product_id string, quantity int, unit_price double, order_ts timestamp, "
        "status string, _reason string")
    assertDataFrameEqual(result, expected)
    ids = checked.select("order_id").distinct().collect()
    assert len(ids) == 2 and all(row[0].startswith("o_") for row in ids)


def test_epoch_timestamps(spark):
    text = spark.createDataFrame([("881250949",), ("x",)], "t string")
    result = text.select(canonical.parse_timestamp_text(F.col("t"), ("epoch",)).alias("ts"))
    assertDataFrameEqual(result, spark.createDataFrame([(dt.datetime(1997, 12, 4, 15, 55, 49),), (None,)],
                                                       "ts timestamp"))


ATTRIBUTE_HEADER = "customer_id,Plan Type,MonthlyFee,Since,HasPartner,Visits"


def checked_customers(spark, *rows, attributes=None, existing=None):
    """Return typed customer rows with attributes, their types resolved from the rows (or ``existing``)."""
    spec = SourceConfig("c.csv", "csv", attributes=attributes or {
        "Plan Type": None, "MonthlyFee": None, "Since": "date", "HasPartner": "boolean", "Visits": "numeric"})
    fields = ATTRIBUTE_HEADER.split(",")
    mapped = canonical.canonical_columns(parse.parse_csv_lines(lines(spark, *rows), len(fields), ",", None),
                                         "customers", spec, fields)
    resolved = canonical.resolved_attributes(mapped, canonical.declared_attributes(spec), existing)
    return resolved, canonical.typed_columns(mapped, "customers", attributes=resolved)


def test_attributes_are_typed_inferred_and_invalid_values_nulled_not_rejected(spark):
    resolved, checked = checked_customers(
        spark, "C1,Gold,19.5,2020-03-01,yes,3", "C2,basic, ,01.02.2021,No,x", "C3,,12,not a date,maybe,7")
    assert [(a.column, a.kind) for a in resolved] == [
        ("plan_type", "categorical"), ("monthly_fee", "numeric"), ("since", "date"), ("has_partner", "boolean"),
        ("visits", "numeric")]
    expected = spark.createDataFrame(
        [("C1", "Gold", 19.5, dt.date(2020, 3, 1), True, 3.0, None, None),
         ("C2", "basic", None, dt.date(2021, 2, 1), False, None, ["visits"], None),  # " " is missing, "x" invalid
         ("C3", None, 12.0, None, None, 7.0, ["since", "has_partner"], None)],
        "customer_id string, plan_type string, monthly_fee double, since date, has_partner boolean, visits double, "
        "_invalid_attributes array<string>, _reason string")
    assertDataFrameEqual(checked.select(*expected.columns), expected)


def test_an_attribute_keeps_the_type_bronze_already_has(spark):
    existing = spark.createDataFrame([], "customer_id string, monthly_fee string").schema
    resolved, _ = checked_customers(spark, "C1,Gold,19.5,2020-03-01,yes,3", existing=existing)
    assert {a.column: a.kind for a in resolved}["monthly_fee"] == "categorical"  # numbers, but text in bronze


def test_attributes_holding_contacts_are_refused_and_a_missing_one_is_named(spark):
    spec = SourceConfig("c.csv", "csv", attributes={"Contact": None, "Hotline": None, "Opened": None})
    fields = ["customer_id", "Contact", "Hotline", "Opened"]
    raw = lines(spark, "C1,ann@x.com,+1 415 555 0100,2024-01-05", "C2,bo@y.org,(415) 555-0199,2024-02-01")
    mapped = canonical.canonical_columns(parse.parse_csv_lines(raw, 4, ",", None), "customers", spec, fields)
    # E-mail addresses and phone numbers are personal data; dates are not phone numbers.
    assert canonical.personal_attributes(mapped, canonical.declared_attributes(spec)) == ["Contact", "Hotline"]
    with pytest.raises(canonical.IngestError, match=r"^source 'customers' lacks the attribute column 'Tier' "):
        canonical.canonical_columns(parse.parse_csv_lines(raw, 4, ",", None), "customers",
                                    SourceConfig("c.csv", "csv", attributes={"Tier": None}), fields)

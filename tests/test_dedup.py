"""Exact de-duplication: edges, transitive components, golden records."""

from __future__ import annotations

import datetime as dt

from pyspark.testing import assertDataFrameEqual

from crm_spark.prepare import dedup

SCHEMA = ("customer_id string, first_name string, last_name string, email string, phone string, gender string, "
          "birth_date date, city string, country string, signup_ts timestamp, updated_ts timestamp, "
          "email_invalid boolean, phone_invalid boolean, gender_unknown boolean, birth_date_invalid boolean")


def customers(spark):
    t = dt.datetime
    return spark.createDataFrame(
        [
            # C1 and C2 share an email; C2 and C3 share a phone: one person, transitively.
            ("C1", "Ann", "Lee", "ann@x.com", None, "F", dt.date(1980, 1, 1), "Austin", "US",
             t(2022, 1, 1), t(2022, 1, 2), False, True, False, False),
            ("C2", "Anne", "Lee", "ann@x.com", "+14155550100", "U", None, None, "US",
             t(2023, 1, 1), t(2023, 1, 2), False, False, True, False),
            ("C3", "Ann", None, None, "+14155550100", "U", None, "Boston", "US",
             t(2023, 6, 1), t(2023, 6, 2), False, False, False, False),
            ("C4", "Bob", "Ray", "bob@x.com", "+14155550111", "M", None, "Dallas", "US",
             t(2022, 5, 1), t(2022, 5, 1), False, False, False, False),
        ],
        SCHEMA,
    )


def test_components_are_transitive(spark):
    frame = customers(spark)
    vertices = frame.selectExpr("customer_id as id")
    components = dedup.connected_components(vertices, dedup.match_edges(frame))
    expected = spark.createDataFrame([("C1", "C1"), ("C2", "C1"), ("C3", "C1"), ("C4", "C4")],
                                     "id string, component string")
    assertDataFrameEqual(components, expected)


def test_golden_record_takes_latest_known_values(spark):
    frame = customers(spark)
    components = spark.createDataFrame([("C1", "C1"), ("C2", "C1"), ("C3", "C1"), ("C4", "C4")],
                                       "id string, component string")
    xref = dedup.xref(components)
    golden = dedup.golden_records(frame, xref).drop("customer_key")
    t = dt.datetime
    expected = spark.createDataFrame(
        [
            ("Ann", "Lee", "ann@x.com", "+14155550100", dt.date(1980, 1, 1), "Boston", "US", "F",
             t(2022, 1, 1), t(2023, 6, 2), 3, False, True, True, False),
            ("Bob", "Ray", "bob@x.com", "+14155550111", None, "Dallas", "US", "M",
             t(2022, 5, 1), t(2022, 5, 1), 1, False, False, False, False),
        ],
        "first_name string, last_name string, email string, phone string, birth_date date, city string, "
        "country string, gender string, signup_ts timestamp, updated_ts timestamp, n_records long, "
        "email_invalid boolean, phone_invalid boolean, gender_unknown boolean, birth_date_invalid boolean",
    )
    assertDataFrameEqual(golden, expected)
    keys = xref.select("customer_key").distinct().collect()
    assert len(keys) == 2 and all(k[0].startswith("ck_") and len(k[0]) == 27 for k in keys)

"""Data-quality profile and expectations."""

from __future__ import annotations

import pytest

from crm_spark.prepare import quality


def test_profile_counts_and_keeps_personal_values_out(spark):
    frame = spark.createDataFrame([("C1", "ann@x.com", 3.0), ("C2", None, 5.0), ("C3", None, None)],
                                  "customer_id string, email string, price double")
    rows = {(c, m): (v, t) for _, c, m, v, t in quality.profile(frame, "customers")}
    assert rows[("*", "rows")] == (3.0, None)
    assert rows[("email", "null_share")][0] == pytest.approx(2 / 3)
    assert rows[("price", "min")] == (None, "3.0") and rows[("price", "max")] == (None, "5.0")
    assert rows[("customer_id", "distinct_count")] == (3.0, None)
    assert ("email", "min") not in rows and ("email", "max") not in rows


def test_expectations_report_each_failure():
    rows = [("customers", "email", "valid_share", 0.93, None), ("orders", "unit_price", "null_share", 0.0, None)]
    failures = quality.failed_expectations(rows, (
        "customers.email.valid_share >= 0.95", "orders.unit_price.null_share <= 0.0",
        "ratings.rating.null_share <= 0.0"))
    assert failures == ["customers.email.valid_share >= 0.95: measured 0.9300",
                        "ratings.rating.null_share <= 0.0: metric not measured in this run"]

"""Cleaning rules on small inline frames."""

from __future__ import annotations

import dataclasses
import datetime as dt

from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from crm_spark.config import PrepareConfig
from crm_spark.prepare import clean, silver
from crm_spark.schemas import CLEANED_BY, CUSTOMER_FLAGS, PHONE

from .conftest import AS_OF, make_config

CUSTOMER_COLUMNS = ("customer_id string, first_name string, last_name string, email string, phone string, "
                    "gender string, birth_date string, city string, country string, signup_ts string, "
                    "updated_ts string, age string, label string")
FLAG_COLUMNS = ", ".join(f"{flag} boolean" for flag in CUSTOMER_FLAGS)


def test_clean_customers_standardizes_and_flags(spark):
    raw = spark.createDataFrame(
        [
            (" C1 ", "  mARY ", "smith", " Mary.Smith@Example.COM ", "+1 (415) 555-0100", "female",
             "02.03.1985", "new york", "USA", "2023-01-02 10:00:00", "2023-01-05T08:30:00", None, "yes"),
            ("C2", "JOHN", "o'neil", "john@", "555-0100", "X", "1796-05-04", None, "us", "2023-02-01", None,
             "230", "maybe"),
            ("C3", "", "Lee", None, "14155550199", "M", "2030-01-01", "Austin", "Canada", "garbage", None,
             "41", "0"),
            ("C4", "\uff2d\uff41\uff52\uff59", "=cmd|' /C calc'!A0", None, None, "Frau", None, "Bo\u0301gota",
             None, None, None, None, None),
        ],
        CUSTOMER_COLUMNS,
    )
    expected = spark.createDataFrame(
        [
            ("C1", "Mary", "Smith", "mary.smith@example.com", "+14155550100", "F", dt.date(1985, 3, 2),
             "New York", "US", dt.datetime(2023, 1, 2, 10), dt.datetime(2023, 1, 5, 8, 30), 39, 1.0,
             False, False, False, False, False, False, False, False),
            ("C2", "John", "O'neil", None, None, "U", None, None, "US", dt.datetime(2023, 2, 1), None, None, None,
             False, False, True, True, True, True, True, True),
            ("C3", None, "Lee", None, "+14155550199", "M", None, "Austin", "CANADA", None, None, 41, 0.0,
             False, False, False, False, False, True, False, False),
            ("C4", "Mary", None, None, None, "F", None, "B\u00f3gota", None, None, None, None, None,
             True, True, False, False, False, False, False, False),
        ],
        "customer_id string, first_name string, last_name string, email string, phone string, gender string, "
        "birth_date date, city string, country string, signup_ts timestamp, updated_ts timestamp, age int, "
        "label double, " + FLAG_COLUMNS,
    )
    assertDataFrameEqual(clean.clean_customers(raw, dt.date(2025, 1, 1)), expected)


def test_phones_become_canonical_for_the_configured_country(spark):
    german = PrepareConfig(phone_country_code="49", phone_national_pattern="[1-9][0-9]{5,11}", phone_trunk_prefix="0")
    phones = spark.createDataFrame([(p,) for p in ("030 1234567", "+49 30 1234567", "0049 30 1234567",
                                                   "+1 415 555 0100", "12", "")], "p string")
    result = phones.select("p", clean.clean_phone(F.col("p"), german).alias("phone"))
    expected = spark.createDataFrame(
        [("030 1234567", "+49301234567"), ("+49 30 1234567", "+49301234567"), ("0049 30 1234567", "+49301234567"),
         ("+1 415 555 0100", "+14155550100"), ("12", None), ("", None)], "p string, phone string")
    assertDataFrameEqual(result, expected)


def test_gender_codes_map_to_canonical_set(spark):
    codes = spark.createDataFrame([(c,) for c in ("F", "m", "Female", "Frau", "homme", "W", "masculino", "女",
                                                  "?", "", None)], "g string")
    result = codes.select("g", clean.clean_gender(F.col("g")).alias("gender"))
    expected = spark.createDataFrame(
        [("F", "F"), ("m", "M"), ("Female", "F"), ("Frau", "F"), ("homme", "M"), ("W", "F"), ("masculino", "M"),
         ("女", "F"), ("?", "U"), ("", "U"), (None, "U")],
        "g string, gender string",
    )
    assertDataFrameEqual(result, expected)


def test_orders_keep_latest_line_and_normalize_status(spark):
    orders = spark.createDataFrame(
        [
            ("O1", "C1", "P1", 1, 9.999, dt.datetime(2024, 1, 1), " Completed ", "f1"),
            ("O1", "C1", "P1", 2, 9.999, dt.datetime(2024, 1, 2), "completed", "f2"),
            ("O2", "C1", "P2", 1, 5.0, dt.datetime(2024, 1, 3), None, "f1"),
            ("O3", "C1", "P2", -2, 5.005, dt.datetime(2024, 1, 4), "completed", "f1"),
        ],
        "order_id string, customer_id string, product_id string, quantity int, unit_price double, "
        "order_ts timestamp, status string, _source_file string",
    )
    expected = spark.createDataFrame(
        [
            ("O1", "C1", "P1", 2, 10.0, dt.datetime(2024, 1, 2), "completed", False, "O1:P1"),
            ("O2", "C1", "P2", 1, 5.0, dt.datetime(2024, 1, 3), "unknown", False, "O2:P2"),
            ("O3", "C1", "P2", 2, 5.01, dt.datetime(2024, 1, 4), "returned", True, "O3:P2"),
        ],
        "order_id string, customer_id string, product_id string, quantity int, unit_price double, "
        "order_ts timestamp, status string, is_return_quantity boolean, order_line_id string",
    )
    assertDataFrameEqual(clean.clean_orders(orders), expected)


def test_customer_records_are_cleaned_once_and_all_again_when_a_rule_changes(spark, tmp_path):
    config = make_config(tmp_path)
    columns = f"{CUSTOMER_COLUMNS}, _source_file string"
    first = [("C1", "mary", "smith", "m@x.com", "4155550100", "f", "1985-03-02", "austin", "us", "2023-01-02", None,
              None, None, "a.csv"),
             ("C2", "JOHN", "lee", "j@", "555-0100", "m", "02.03.1796", None, None, None, None, "41", "yes", "a.csv")]
    day_1 = spark.createDataFrame(first, columns)
    day_2 = spark.createDataFrame([*first, ("C3", "ann", "ray", None, "(212) 555-0123", None, None, "Reno", "US",
                                            None, None, None, None, "b.csv")], columns)

    def stored(df, prepare):
        return clean.customer_records(df, prepare).withColumn(CLEANED_BY, F.lit(clean.cleaning_rules(prepare)))

    assert silver.cleaned_records(spark, config, day_1, None)[1] == 2
    records, cleaned = silver.cleaned_records(spark, config, day_2, ["b.csv"])  # only the new file's row
    assert cleaned == 1
    assertDataFrameEqual(records, stored(day_2, config.prepare))
    assertDataFrameEqual(clean.checked_on(records.drop("_source_file", CLEANED_BY), AS_OF),
                         clean.clean_customers(day_2.drop("_source_file"), AS_OF))

    german = dataclasses.replace(config, prepare=PrepareConfig(
        phone_country_code="49", phone_national_pattern="[1-9][0-9]{5,11}", phone_trunk_prefix="0"))
    records, cleaned = silver.cleaned_records(spark, german, day_2, [])  # no new file, but other rules
    assert cleaned == 3
    assertDataFrameEqual(records, stored(day_2, german.prepare))
    assert sorted(r[PHONE] for r in records.collect() if r[PHONE]) == ["+492125550123", "+494155550100", "+495550100"]

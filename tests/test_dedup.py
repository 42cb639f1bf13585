"""Entity resolution: exact edges, blocked fuzzy edges, transitive components, golden records."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import random

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from crm_spark import privacy
from crm_spark.config import PrepareConfig
from crm_spark.prepare import dedup
from crm_spark.schemas import CUSTOMER_FLAGS

FLAGS = ", ".join(f"{flag} boolean" for flag in CUSTOMER_FLAGS)
SCHEMA = ("customer_id string, first_name string, last_name string, email string, phone string, gender string, "
          "birth_date date, city string, country string, signup_ts timestamp, updated_ts timestamp, age int, "
          "label double, " + FLAGS)
NO_FLAGS = (False,) * len(CUSTOMER_FLAGS)
SECRET = b"a-test-secret-of-enough-length"


def customers(spark):
    t = dt.datetime
    return spark.createDataFrame(
        [
            # C1 and C2 share an email; C2 and C3 share a phone: one person, transitively.
            ("C1", "Ann", "Lee", "ann@x.com", None, "F", dt.date(1980, 1, 1), "Austin", "US",
             t(2022, 1, 1), t(2022, 1, 2), 44, None, *NO_FLAGS[:-1], True),
            ("C2", "Anne", "Lee", "ann@x.com", "+14155550100", "U", None, "Boston", "US",
             t(2023, 1, 1), t(2023, 1, 2), None, 1.0, *NO_FLAGS),
            ("C3", "Ann", None, None, "+14155550100", "U", None, "Boston", "USA",
             t(2023, 6, 1), t(2023, 6, 2), None, None, *NO_FLAGS),
            ("C4", "Bob", "Ray", "bob@x.com", "+14155550111", "M", None, "Dallas", "US",
             t(2022, 5, 1), t(2022, 5, 1), None, 0.0, *NO_FLAGS),
        ],
        SCHEMA,
    )


@pytest.mark.parametrize("driver_edges", [0, dedup.DRIVER_EDGES], ids=["propagated in Spark", "joined on the driver"])
def test_components_are_transitive(spark, driver_edges):
    frame = customers(spark)
    vertices = frame.selectExpr("customer_id as id")
    components = dedup.connected_components(vertices, dedup.match_edges(frame), driver_edges=driver_edges)
    expected = spark.createDataFrame([("C1", "C1"), ("C2", "C1"), ("C3", "C1"), ("C4", "C4")],
                                     "id string, component string")
    assertDataFrameEqual(components, expected)


def test_components_joined_on_the_driver_equal_those_propagated_in_spark(spark):
    rng = random.Random(7)
    ids = [f"V{n:03d}" for n in range(300)]
    # Chains whose smallest member comes last, so a label travels the whole chain, and random links.
    edges = [(ids[n], ids[n - 1]) for n in range(60, 0, -1)] + [(rng.choice(ids), rng.choice(ids)) for _ in range(120)]
    vertices = spark.createDataFrame([(v,) for v in ids], "id string")
    edges_df = spark.createDataFrame(edges, "src string, dst string").where("src != dst")
    on_driver = dedup.connected_components(vertices, edges_df)
    in_spark = dedup.connected_components(vertices, edges_df, max_iterations=100, driver_edges=0)
    assertDataFrameEqual(on_driver, in_spark)
    assert on_driver.where("id = 'V060'").first()["component"] == "V000"
    assert on_driver.select("component").distinct().count() < len(ids) - 60


def test_smallest_members_labels_every_endpoint_with_its_components_least_id():
    edges = [("d", "c"), ("c", "b"), ("b", "a"), ("x", "y"), ("y", "x"), ("e", "e")]
    assert dedup.smallest_members(edges) == {"a": "a", "b": "a", "c": "a", "d": "a", "e": "e", "x": "x", "y": "x"}


def test_golden_record_survivorship(spark):
    frame = customers(spark)
    components = spark.createDataFrame([("C1", "C1"), ("C2", "C1"), ("C3", "C1"), ("C4", "C4")],
                                       "id string, component string")
    xref = dedup.xref(components, privacy.keyed_hash(SECRET))
    golden = dedup.golden_records(frame, xref).select(
        "first_name", "last_name", "email", "phone", "birth_date", "age", "label", "city", "country", "gender",
        "signup_ts", "updated_ts", "n_records", "label_invalid")
    t = dt.datetime
    expected = spark.createDataFrame(
        [
            ("Ann", "Lee", "ann@x.com", "+14155550100", dt.date(1980, 1, 1), 44, 1.0, "Boston", "US", "F",
             t(2022, 1, 1), t(2023, 6, 2), 3, True),
            ("Bob", "Ray", "bob@x.com", "+14155550111", None, None, 0.0, "Dallas", "US", "M",
             t(2022, 5, 1), t(2022, 5, 1), 1, False),
        ],
        "first_name string, last_name string, email string, phone string, birth_date date, age int, label double, "
        "city string, country string, gender string, signup_ts timestamp, updated_ts timestamp, n_records long, "
        "label_invalid boolean",
    )
    assertDataFrameEqual(golden, expected)
    keys = {r["customer_id"]: r["customer_key"] for r in xref.collect()}
    expected_key = "ck_" + hmac.new(SECRET, b"C1", hashlib.sha256).hexdigest()[:24]
    assert keys == {"C1": expected_key, "C2": expected_key, "C3": expected_key,
                    "C4": "ck_" + hmac.new(SECRET, b"C4", hashlib.sha256).hexdigest()[:24]}


def test_name_similarity_tolerates_typos_and_accents(spark):
    pairs = spark.createDataFrame(
        [("James", "Jmaes"), ("José", "Jose"), ("Smith", "Smith"), ("Mary", "Mark"), ("Ann", None)],
        "a string, b string")
    result = pairs.select("a", F.round(dedup.name_similarity(F.col("a"), F.col("b")), 2).alias("s"))
    expected = spark.createDataFrame([("James", 0.9), ("José", 1.0), ("Smith", 1.0), ("Mary", 0.75), ("Ann", 0.0)],
                                     "a string, s double")
    assertDataFrameEqual(result, expected)


def test_fuzzy_matches_need_similar_names_and_corroboration(spark):
    born = dt.date(1980, 1, 1)
    records = spark.createDataFrame(
        [
            ("A1", "James", "Smith", "Austin", None, "M", born),
            ("A2", "Jmaes", "Smith", "Austin", "+14155550123", "M", born),   # typo: same person
            ("A3", "Smith", "James", "Austin", None, "U", born),            # swapped names: same person
            ("A4", "James", "Smith", "Denver", None, "M", born),            # other city, no phone: not linked
            ("A5", "Mary", "Smith", "Austin", None, "F", born),             # other first name and gender
            ("A6", "James", "Smith", "Austin", None, "M", dt.date(1981, 1, 1)),  # other birth date: other block
        ],
        "customer_id string, first_name string, last_name string, city string, phone string, gender string, "
        "birth_date date")
    pairs, sizes = dedup.candidate_pairs(dedup.blocks(records), max_block_size=50)
    assert pairs.where("src = 'A1' and dst = 'A6'").isEmpty()
    assert sizes.agg(F.max("size")).first()[0] == 5
    edges = dedup.fuzzy_edges(records, pairs, PrepareConfig()).select("src", "dst")
    expected = spark.createDataFrame([("A1", "A2"), ("A1", "A3"), ("A2", "A3")], "src string, dst string")
    assertDataFrameEqual(edges, expected)
    capped, _ = dedup.candidate_pairs(dedup.blocks(records), max_block_size=3)
    assert capped.isEmpty()


def test_resolving_only_what_changed_equals_resolving_every_record(spark):
    rules = PrepareConfig(max_block_size=4)
    keyed_hash = privacy.keyed_hash(SECRET)
    t, born, lee = dt.datetime(2024, 1, 1), dt.date(1980, 1, 1), dt.date(1990, 1, 1)

    def record(cid, first, last, email=None, phone=None, birth=None, city="Austin"):
        return (cid, first, last, email, phone, "U", birth, city, "US", t, t, None, None, *NO_FLAGS)

    before = [
        record("C1", "Ann", "Ash", email="a@x.com", phone="+14155550101"),
        record("C2", "Ann", "Ash", email="a@x.com"),
        record("C3", "Bo", "Birch", phone="+14155550102"),
        record("C4", "James", "Smith", birth=born), record("C5", "Jmaes", "Smith", birth=born),
        record("C6", "Cy", "Cole", email="c@x.com"), record("C7", "Cy", "Cole", email="c@x.com"),
        *[record(f"C{n}", "Dee", "Lee", birth=lee) for n in range(8, 12)],  # a block of 4: compared
        record("C20", "Eve", "Elm", email="e@x.com"),
        record("C50", "Flo", "Fir", email="f@y.com"), record("C51", "Flo", "Fir", email="f@y.com"),  # untouched
    ]
    after = [
        *[r for r in before if r[0] != "C7"],  # C7's only record is gone: C6 stands alone
        record("C30", "Ann", "Ash", email="z@x.com", phone="+14155550102"),  # joins C3 by phone
        record("C31", "Bo", "Birch", email="a@x.com"),  # joins C1 and C2 by email
        record("C32", "Jamse", "Smith", birth=born),  # a typo of C4 and C5
        record("C33", "Dee", "Lee", birth=lee),  # the block grows to 5: no longer compared, the Lees split
        record("C20", "Eve", "Elm", email="f@x.com"),  # a second record of C20 with a new email
        record("C40", "New", "Person", email="n@x.com"),
    ]
    previous, _ = dedup.resolve(spark.createDataFrame(before, SCHEMA), rules, keyed_hash)
    assert previous.select("customer_key").distinct().count() == 7
    everything = spark.createDataFrame(after, SCHEMA)
    changed = spark.createDataFrame([("C30",), ("C31",), ("C32",), ("C33",), ("C20",), ("C40",)], "customer_id string")
    incremental, counts, again = dedup.resolve_changed(everything, previous, changed, rules, keyed_hash)
    full, _ = dedup.resolve(everything, rules, keyed_hash)
    assertDataFrameEqual(incremental, full)
    assert counts["dedup.records_resolved"] == len(after) - 2  # all but the untouched C50 and C51
    # The ids resolved again: those records and C7, whose record is gone; every other row is the previous one's.
    assertDataFrameEqual(again, spark.createDataFrame(
        [(i,) for i in {r[0] for r in after} - {"C50", "C51"} | {"C7"}], "customer_id string"))
    assertDataFrameEqual(incremental.join(again, "customer_id", "left_anti"),
                         previous.join(again, "customer_id", "left_anti"))
    assert full.select("customer_key").distinct().count() == 12

"""Customer features as of a date, and the churn label that follows the cutoff."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from crm_spark.config import TrainConfig
from crm_spark.features.customer import buyers, customer_features
from crm_spark.features.labels import with_churn_label, with_split
from crm_spark.features.purchase_summary import purchase_summaries
from crm_spark.models.lifetime import summaries_of, with_purchase_summary
from crm_spark.schemas import PURCHASE_SUMMARY

AS_OF = dt.date(2024, 7, 1)
ORDER_SCHEMA = ("order_id string, customer_key string, product_id string, quantity int, unit_price double, "
                "order_ts timestamp, status string")


def frames(spark):
    t = dt.datetime
    customers = spark.createDataFrame(
        [("k1", t(2023, 1, 1), dt.date(1990, 7, 1), 99, "F"), ("k2", t(2024, 6, 1), None, None, "U"),
         ("k3", t(2024, 7, 1), dt.date(2000, 1, 1), None, "M")],
        "customer_key string, signup_ts timestamp, birth_date date, age int, gender string",
    )
    orders = spark.createDataFrame(
        [
            ("o1", "k1", "p1", 2, 10.0, t(2024, 1, 1), "completed"),
            ("o2", "k1", "p2", 1, 30.0, t(2024, 5, 31), "completed"),
            ("o3", "k1", "p1", 5, 10.0, t(2024, 6, 1), "cancelled"),
            ("o4", "k1", "p2", 1, 30.0, t(2024, 3, 1), "returned"),
        ],
        ORDER_SCHEMA,
    )
    ratings = spark.createDataFrame(
        [("k1", "p1", 4, t(2024, 2, 1)), ("k1", "p2", 2, t(2024, 6, 2)), ("k2", "p1", 2, t(2024, 6, 15))],
        "customer_key string, product_id string, rating int, rated_ts timestamp",
    )
    products = spark.createDataFrame([("p1", "books"), ("p2", "home")], "product_id string, category string")
    return customers, orders, ratings, products


def test_features_use_only_events_before_as_of(spark):
    customers, orders, ratings, products = frames(spark)
    expected = spark.createDataFrame(
        [
            ("k1", AS_OF, 31.0, 2.0, 50.0, 25.0, 1.0, 547.0, 30.0 * 2 / 182, 151.0, 1.0, 1.0, 30.0, 0.25, 2.0,
             3.0, 1.0 / 5, 30.0, 0.5, 0.5, "F"),
            ("k2", AS_OF, None, 0.0, 0.0, None, None, 30.0, None, None, 0.0, 0.0, 0.0, None, 1.0, 2.0, -1.0 / 4,
             None, 0.0, 0.0, "U"),
        ],
        "customer_key string, as_of_date date, recency_days double, frequency double, monetary double, "
        "avg_basket double, basket_lines double, tenure_days double, orders_per_30d double, interpurchase_days double, "
        "frequency_recent double, frequency_trend double, monetary_recent double, return_rate double, "
        "n_ratings double, avg_rating double, rating_deviation double, age_band double, share_books double, "
        "share_home double, gender string",
    )
    result = customer_features(customers, orders, ratings, products, AS_OF, ["books", "home"])
    assertDataFrameEqual(result, expected)

    # Events on or after the as-of date change nothing.
    t = dt.datetime
    future_orders = orders.unionByName(spark.createDataFrame(
        [("o9", "k1", "p2", 9, 99.0, t(2024, 7, 1), "completed"),
         ("o10", "k2", "p1", 1, 5.0, t(2024, 8, 1), "completed")], ORDER_SCHEMA))
    future_ratings = ratings.unionByName(spark.createDataFrame(
        [("k2", "p1", 5, t(2024, 7, 1))], "customer_key string, product_id string, rating int, rated_ts timestamp"))
    later = customer_features(customers, future_orders, future_ratings, products, AS_OF, ["books", "home"])
    assertDataFrameEqual(later, expected)


@pytest.mark.parametrize("cutoff", [dt.date(2024, 1, 1), dt.date(2024, 3, 1), dt.date(2024, 5, 31),
                                    dt.date(2024, 6, 2), dt.date(2024, 6, 15)])
def test_any_event_on_or_after_a_cutoff_leaves_its_features_unchanged(spark, cutoff):
    customers, orders, ratings, products = frames(spark)
    # p_alive too: BG/NBD is fitted on the purchases before the cutoff only.
    before = customer_features(customers, orders, ratings, products, cutoff, ["books", "home"]).transform(
        with_purchase_summary, orders, cutoff, TrainConfig())
    at_or_after = F.col("order_ts") >= F.lit(cutoff).cast("timestamp")
    changed_orders = orders.select(
        "order_id", "customer_key", "product_id",
        F.when(at_or_after, F.col("quantity") * 7).otherwise(F.col("quantity")).alias("quantity"),
        F.when(at_or_after, F.col("unit_price") + 1).otherwise(F.col("unit_price")).alias("unit_price"),
        "order_ts",
        F.when(at_or_after, F.lit("returned")).otherwise(F.col("status")).alias("status"),
    ).unionByName(spark.createDataFrame([("o20", "k2", "p2", 3, 8.0, dt.datetime.combine(cutoff, dt.time()),
                                          "completed")], ORDER_SCHEMA))
    rated_later = F.col("rated_ts") >= F.lit(cutoff).cast("timestamp")
    changed_ratings = ratings.select(
        "customer_key", "product_id", F.when(rated_later, F.lit(1)).otherwise(F.col("rating")).alias("rating"),
        "rated_ts")
    after = customer_features(customers, changed_orders, changed_ratings, products, cutoff, ["books", "home"]
                              ).transform(with_purchase_summary, changed_orders, cutoff, TrainConfig())
    assertDataFrameEqual(after, before)


def test_features_carry_the_purchase_summary_the_lifetime_models_read(spark):
    customers, orders, ratings, products = frames(spark)
    cfg = TrainConfig()
    features = customer_features(customers, orders, ratings, products, AS_OF, ["books", "home"]).transform(
        with_purchase_summary, orders, AS_OF, cfg)
    # k1 bought on 1 January and 31 May (two purchase days, 151 days apart; the observation ends on
    # 30 June, 181 days after the first); k2 has bought nothing and has no summary.
    expected = spark.createDataFrame([("k1", 1.0, 151 / 7, 181 / 7, 30.0), ("k2", None, None, None, None)],
                                     "customer_key string, repeat_purchases double, recency_periods double, "
                                     "age_periods double, repeat_order_value double")
    assertDataFrameEqual(features.select("customer_key", *PURCHASE_SUMMARY), expected)
    # Read from the features, not from the orders given (without o2, k1 would have no repeat purchase)...
    other_orders = orders.where(F.col("order_id") != "o2")
    assertDataFrameEqual(summaries_of(features, other_orders, AS_OF, cfg),
                         purchase_summaries(orders, AS_OF, cfg.clv_period_days, cfg.clv_period_bins))
    # ... unless the features were written before they carried it: then from the orders.
    assertDataFrameEqual(summaries_of(features.drop(*PURCHASE_SUMMARY), other_orders, AS_OF, cfg),
                         purchase_summaries(other_orders, AS_OF, cfg.clv_period_days, cfg.clv_period_bins))


def test_churn_label_comes_from_the_horizon_after_cutoff(spark):
    customers, orders, ratings, products = frames(spark)
    cutoff = dt.date(2024, 3, 1)
    features = customer_features(customers, orders, ratings, products, cutoff, ["books", "home"])
    labelled = features.transform(buyers).transform(with_churn_label, orders, cutoff, horizon_days=60)
    # k1 bought before the cutoff and not in [Mar 1, Apr 30): churned. k2 and k3 had no
    # purchase before the cutoff (k2 signed up later) and are not in the training population.
    assertDataFrameEqual(labelled.select("customer_key", "label"),
                         spark.createDataFrame([("k1", 1.0)], "customer_key string, label double"))
    kept = features.transform(buyers).transform(with_churn_label, orders, cutoff, horizon_days=100)
    assertDataFrameEqual(kept.select("customer_key", "label"),
                         spark.createDataFrame([("k1", 0.0)], "customer_key string, label double"))


def test_split_is_pinned_by_key_and_seed(spark):
    keys = spark.createDataFrame([(f"ck_{i:02d}",) for i in range(20)], "customer_key string")
    # A customer's split depends on its key and the seed alone, in every session and stage: these are pinned.
    held_out = {"ck_02": "validation", "ck_03": "test", "ck_12": "test", "ck_13": "validation", "ck_15": "test",
                "ck_16": "validation", "ck_19": "test"}
    expected = spark.createDataFrame([(f"ck_{i:02d}", held_out.get(f"ck_{i:02d}", "train")) for i in range(20)],
                                     "customer_key string, split string")
    assertDataFrameEqual(with_split(keys, 0.2, 0.2, seed=7), expected)
    # Another seed holds out other customers.
    reseeded = with_split(keys, 0.2, 0.2, seed=8).where("split = 'test'")
    assertDataFrameEqual(reseeded, spark.createDataFrame(
        [(k, "test") for k in ("ck_00", "ck_05", "ck_07", "ck_12", "ck_15", "ck_18")],
        "customer_key string, split string"))


def test_split_shares_follow_the_configured_shares(spark):
    keys = spark.range(20000).select(F.concat(F.lit("ck_"), F.col("id").cast("string")).alias("customer_key"))
    shares = {r["split"]: r["count"] / 20000 for r in with_split(keys, 0.15, 0.15, seed=7).groupBy("split")
              .count().collect()}
    assert abs(shares["train"] - 0.70) < 0.02 and abs(shares["test"] - 0.15) < 0.02

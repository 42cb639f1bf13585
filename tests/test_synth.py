"""The generator: deterministic by seed whatever the partitioning, with planted structure."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual
from scipy.stats import poisson as poisson_law

from crm_spark.config import GenerateConfig
from crm_spark.synth import activity, people
from crm_spark.synth.random import pick, poisson_draws, poisson_thresholds, uniform, uniform_draws, uniform_prefix
from crm_spark.synth.world import CATEGORIES, GROUPS, ORDER_STATUS_WEIGHTS

END = dt.date(2025, 1, 1)


def records(spark, cfg):
    """Return the generated persons and their customer records, each computed once and kept
    with its partitioning (the tests build further frames on them)."""
    persons = people.persons(spark, cfg, END, 90).localCheckpoint()
    return persons, people.customer_records(persons, cfg, END).localCheckpoint()


def test_same_seed_same_data_for_any_partitioning(spark):
    cfg = GenerateConfig(customers=150, products=40, partitions=1, seed=5)
    persons_a, records_a = records(spark, cfg)
    persons_b, records_b = records(spark, dataclasses.replace(cfg, partitions=3))
    assertDataFrameEqual(persons_a, persons_b)
    assertDataFrameEqual(records_a, records_b)
    products = activity.products(spark, cfg)
    lines_a = activity.order_lines(persons_a, records_a, products, cfg)
    lines_b = activity.order_lines(persons_b, records_b, products, cfg)
    assertDataFrameEqual(lines_a, lines_b)
    _, other_seed = records(spark, dataclasses.replace(cfg, seed=6))
    assert other_seed.select("email").exceptAll(records_a.select("email")).count() > 0


def test_poisson_thresholds_draw_as_the_looped_inversion_does():
    u = np.random.default_rng(5).uniform(size=5_000)
    for mean in [0.3, 2.5, 30.0, *[g.basket_lines - 1.0 for g in GROUPS]]:
        counted = np.searchsorted(poisson_thresholds(mean, 20), u, side="right")
        np.testing.assert_array_equal(counted, poisson_draws(np.full(u.size, mean), u, 20))
    # The cap binds: a mean of 30 is drawn above 20 most of the time, and both return 20 then.
    assert (np.searchsorted(poisson_thresholds(30.0, 20), u, side="right") == 20).sum() > 4_000


@pytest.mark.parametrize("seed", [42, -7, 2**40])  # 2**40 is a long literal, hashed as one
def test_uniform_draws_equal_sparks_uniform(spark, seed):
    keys = spark.range(-3_000, 3_000).select(F.col("id"), (F.col("id") * 7_919 % 301).cast("int").alias("k"))
    expected = keys.select("id", "k", uniform(seed, "pools", F.col("id"), F.col("k")).alias("u")).toPandas()
    prefix = spark.range(1).select(uniform_prefix(seed, "pools")).first()[0]
    drawn = uniform_draws(prefix, expected["id"].to_numpy(np.int64), expected["k"].to_numpy(np.int32))
    np.testing.assert_array_equal(drawn, expected["u"].to_numpy())
    # A column of persons against a row of candidates broadcasts, as the pools draw them.
    pairs = spark.createDataFrame([(p, c) for p in (5, -9) for c in (1, 2, 3)], "p long, c int")
    grid = pairs.select(uniform(seed, "pools", F.col("p"), F.col("c"))).toPandas().to_numpy().reshape(2, 3)
    np.testing.assert_array_equal(
        uniform_draws(prefix, np.array([[5], [-9]], np.int64), np.arange(1, 4, dtype=np.int32)), grid)


def test_padded_writes_what_format_string_writes(spark):
    numbers = spark.createDataFrame([(n,) for n in (0, 7, 42, 99_999, 100_000, 123_456_789, 10**12)], "n long")
    for width in (1, 5, 9):
        assertDataFrameEqual(numbers.select(people.padded(F.col("n"), width).alias("text")),
                             numbers.select(F.format_string(f"%0{width}d", "n").alias("text")))


def test_poisson_draws_are_the_inverse_cdf_up_to_the_cap():
    rng = np.random.default_rng(11)
    means = rng.choice([0.0, 0.3, 2.5, 30.0, 150.0, 199.0], size=60_000)
    u = rng.uniform(size=means.size)
    draws = poisson_draws(means, u, 400)
    np.testing.assert_array_equal(draws, poisson_law.ppf(u, means))
    # Means of 30 with a cap of 20: the cap is the draw wherever the quantile is above it.
    capped = poisson_draws(np.full(5_000, 30.0), u[:5_000], 20)
    np.testing.assert_array_equal(capped, np.minimum(poisson_law.ppf(u[:5_000], 30.0), 20))
    # Above a mean of 200 the draw is approximately normal: its mean is the law's, its spread
    # (from a logistic approximation of the normal quantile) within 10 % of the law's 30.
    large = poisson_draws(np.full(50_000, 900.0), rng.uniform(size=50_000), 400)
    assert abs(large.mean() - 900) < 1 and abs(large.std() / 30 - 1) < 0.1


def test_planted_shares_and_churn_timing(spark):
    cfg = GenerateConfig(customers=5000, products=60, partitions=2, seed=3)
    persons, customer_records = records(spark, cfg)
    stats = customer_records.agg(
        F.avg(F.col("is_duplicate").cast("double")).alias("duplicates"),
        F.avg(F.col("dirt").isNotNull().cast("double")).alias("dirty"),
    ).first()
    assert 0.04 < stats["duplicates"] < 0.06 and 0.01 < stats["dirty"] < 0.03
    cutoff = END - dt.timedelta(days=90)
    churn = persons.agg(F.avg(F.col("churned").cast("double")).alias("share"),
                        F.min("churn_date").alias("first"), F.max("churn_date").alias("last")).first()
    assert 0.15 < churn["share"] < 0.45 and churn["first"] == churn["last"] == cutoff
    # Churners place no order after the cutoff.
    assert persons.where(F.col("churned") & (F.col("n_post") > 0)).count() == 0


def test_order_lines_draw_each_order_and_basket_as_planted(spark):
    cfg = GenerateConfig(customers=600, products=50, partitions=2, seed=9, duplicate_share=0.3)
    persons, customer_records = records(spark, cfg)
    products = activity.products(spark, cfg)
    lines = activity.order_lines(persons, customer_records, products, cfg).localCheckpoint()
    orders = lines.groupBy("person_id", "order_id").agg(
        F.count_distinct("customer_id", "order_ts", "status", F.coalesce("anomaly", F.lit(""))).alias("versions"),
        F.count("*").alias("lines"), F.count_distinct("product_id").alias("products"),
        F.first("customer_id").alias("customer_id"), F.first("order_ts").alias("order_ts"),
        F.first("status").alias("status"))
    # Every order is one record, time and status, with no product twice; each person has their planted count.
    assert orders.where((F.col("versions") != 1) | (F.col("lines") != F.col("products"))).count() == 0
    assertDataFrameEqual(orders.groupBy("person_id").agg(F.count("*").cast("int").alias("n_orders")),
                         persons.where("n_orders > 0").select("person_id", "n_orders"))
    # The time and status are the uniforms of (person, order number) that Spark's own hash gives.
    k = F.substring("order_id", -5, 5).cast("int")
    window = F.element_at("order_windows", (k / 10_000).cast("int") + 1)
    expected_ts = F.timestamp_seconds(F.unix_timestamp(window["start"].cast("timestamp")) + F.floor(
        uniform(cfg.seed, "ots", F.col("person_id"), k) * window["days"] * 86_400))
    expected_status = pick(uniform(cfg.seed, "status", F.col("person_id"), k), list(ORDER_STATUS_WEIGHTS),
                           list(ORDER_STATUS_WEIGHTS.values()))
    drawn = orders.join(persons, "person_id").select(
        "order_id", "order_ts", "status", expected_ts.alias("expected_ts"), expected_status.alias("expected_status"))
    assertDataFrameEqual(drawn.select("order_id", "order_ts", "status"),
                         drawn.select("order_id", F.col("expected_ts").alias("order_ts"),
                                      F.col("expected_status").alias("status")))
    # A person's orders go to their duplicate record only from its signup day on, and some do.
    on_dup = orders.join(customer_records.where("is_duplicate").select(
        "customer_id", F.to_date("signup_ts").alias("signup")), "customer_id")
    assert on_dup.count() > 0 and on_dup.where(F.to_date("order_ts") < F.col("signup")).count() == 0
    # Each group's purchases follow its planted category mix (taste and popularity blur it).
    bought = lines.join(products.select("product_id", "category"), "product_id").join(persons, "person_id") \
        .groupBy("group").pivot("category", list(CATEGORIES)).count().fillna(0).orderBy("group").toPandas()
    for g, group in enumerate(GROUPS):
        assert np.corrcoef(group.category_weights, bought.loc[g, list(CATEGORIES)].to_numpy(float))[0, 1] > 0.3
    # Baskets are larger in groups with a larger planted basket.
    baskets = orders.join(persons, "person_id").groupBy("group").agg(F.avg("lines").alias("lines"))
    sizes = [row["lines"] for row in baskets.orderBy("group").collect()]
    assert np.argsort(sizes).tolist() == np.argsort([g.basket_lines for g in GROUPS]).tolist()

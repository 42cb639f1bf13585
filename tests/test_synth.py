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
from crm_spark.synth.random import constant_poisson, poisson, poisson_draws, uniform, uniform_draws, uniform_prefix
from crm_spark.synth.world import GROUPS

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
    lines_a = activity.order_lines(persons_a, records_a, activity.pools(persons_a, products, cfg), products, cfg)
    lines_b = activity.order_lines(persons_b, records_b, activity.pools(persons_b, products, cfg), products, cfg)
    assertDataFrameEqual(lines_a, lines_b)
    _, other_seed = records(spark, dataclasses.replace(cfg, seed=6))
    assert other_seed.select("email").exceptAll(records_a.select("email")).count() > 0


def test_constant_poisson_draws_as_the_looped_inversion_does(spark):
    means = [0.3, 2.5, 30.0, *[g.basket_lines - 1.0 for g in GROUPS]]
    rows = spark.range(5_000).crossJoin(spark.createDataFrame([(float(m),) for m in means], "mean double"))
    u = uniform(7, "poisson", F.col("id"))
    looped = rows.select("id", "mean", poisson(F.col("mean"), u, 20).alias("k"))
    compiled = rows.select("id", "mean", F.element_at(F.array(*[constant_poisson(m, u, 20) for m in means]),
                                                      F.array_position(F.array(*map(F.lit, means)), F.col("mean"))
                                                      .cast("int")).alias("k"))
    assertDataFrameEqual(compiled, looped)
    # The cap binds: a mean of 30 is drawn above 20 most of the time, and both return 20 then.
    assert looped.where((F.col("mean") == 30.0) & (F.col("k") == 20)).count() > 4_000


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

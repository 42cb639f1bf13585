"""Segment selection, RFM scores, the adjusted Rand index and anomaly scores on hand-built cases."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.linalg import Vectors
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from crm_spark.config import TrainConfig
from crm_spark.metrics.clustering import adjusted_rand_index
from crm_spark.models import anomalies, sample_clustering, segments


def test_adjusted_rand_index_matches_hand_computation(spark):
    df = spark.createDataFrame([(0, "a"), (0, "a"), (1, "b"), (1, "c")], "segment int, group string")
    assert adjusted_rand_index(df, "segment", "group") == pytest.approx(4 / 7)
    relabelled = spark.createDataFrame([(5, "a"), (5, "a"), (9, "b"), (9, "b")], "segment int, group string")
    assert adjusted_rand_index(relabelled, "segment", "group") == pytest.approx(1.0)


def test_k_is_chosen_by_silhouette_for_each_algorithm(spark):
    rng = np.random.default_rng(1)
    centres = [(0, 0), (10, 0), (0, 10)]
    rows = [(f"c{i}", float(x + rng.normal(0, 0.5)), float(y + rng.normal(0, 0.5)))
            for i, (x, y) in enumerate(centres * 30)]
    df = spark.createDataFrame(rows, "customer_key string, a double, b double")
    config = TrainConfig(segment_k_min=2, segment_k_max=4, segment_restarts=1, seed=3)
    fitted = segments.fit_best(df, ["a", "b"], config)
    assert sorted((s.algorithm, s.k) for s in fitted) == [("bisecting_kmeans", 3), ("kmeans", 3)]
    assert fitted[0].silhouette >= fitted[1].silhouette > 0.8
    assigned = segments.assign(fitted[0].model, df)
    assert assigned.select("segment").distinct().count() == 3
    assert len(segments.centres(fitted[0].model)) == 3


def test_k_chosen_on_a_sample_is_judged_on_every_customer(spark):
    rng = np.random.default_rng(2)
    centres = [(0, 0), (10, 0), (0, 10)]
    rows = [(f"c{i}", f"g{i % 3}", float(x + rng.normal(0, 0.5)), float(y + rng.normal(0, 0.5)))
            for i, (x, y) in enumerate(centres * 60)]
    df = spark.createDataFrame(rows, "customer_key string, group string, a double, b double")
    config = TrainConfig(segment_k_min=2, segment_k_max=4, segment_restarts=2, segment_sample=45, seed=3)
    fitted = segments.fit_best(df, ["a", "b"], config)
    assert sorted((s.algorithm, s.k) for s in fitted) == [("bisecting_kmeans", 3), ("kmeans", 3)]
    for segmentation in fitted:  # every customer, not only the sample's, lands with its planted group
        assigned = segments.assign(segmentation.model, df).join(df.select("customer_key", "group"), "customer_key")
        assert assigned.count() == 180
        assert adjusted_rand_index(assigned, "segment", "group") == pytest.approx(1.0)
        assert segmentation.silhouette > 0.8
        # The silhouette is the kept model's on every customer, not the sample's.
        every = ClusteringEvaluator(featuresCol="features", predictionCol="segment").evaluate(
            segmentation.model.transform(df))
        assert segmentation.silhouette == pytest.approx(every)


def test_the_sample_silhouette_is_that_of_mllib_clustering_evaluator(spark):
    rng = np.random.default_rng(4)
    points = np.vstack([rng.normal(centre, 1.0, size=(40, 3)) for centre in (0.0, 2.0, 5.0)] + [[[9.0, 9.0, 9.0]]])
    labels = np.array([0] * 40 + [1] * 40 + [2] * 40 + [3])  # a last point alone in its cluster
    labels[::7] = 1  # and points that sit in the wrong cluster, so some silhouettes are negative
    df = spark.createDataFrame([(Vectors.dense(p.tolist()), int(c)) for p, c in zip(points, labels, strict=True)],
                               ["features", "segment"])
    expected = ClusteringEvaluator(featuresCol="features", predictionCol="segment").evaluate(df)
    assert sample_clustering.silhouette(points, labels) == pytest.approx(expected, rel=1e-9)
    assert sample_clustering.silhouette(points, np.zeros(len(points), dtype=int)) == -1.0


@pytest.mark.parametrize("bisecting", [False, True])
def test_a_sample_fit_finds_planted_groups_and_keeps_its_cheapest_seed(bisecting):
    rng = np.random.default_rng(5)
    sizes, centres = (60, 30, 20), ((0, 0), (10, 0), (0, 10))
    points = np.vstack([rng.normal(c, 0.5, size=(n, 2)) for c, n in zip(centres, sizes, strict=True)])
    planted = np.repeat(np.arange(3), sizes)
    best = sample_clustering.fit(points, 3, bisecting, range(0, 2), iterations=20)
    # The same partition as the planted one, whatever the labels are called: each group has one label of its own.
    pairs = set(zip(planted.tolist(), best.labels.tolist(), strict=True))
    assert len(pairs) == 3 and len({label for _, label in pairs}) == 3
    # On points without groups the seeds settle in different optima, and the cheapest one is kept.
    noise = rng.uniform(size=(300, 2))
    each = [sample_clustering.fit(noise, 5, bisecting, range(seed, seed + 1), iterations=20).cost
            for seed in range(0, 6)]
    assert len(set(each)) > 1
    assert sample_clustering.fit(noise, 5, bisecting, range(0, 6), iterations=20).cost == min(each)


def test_a_sample_fit_asks_for_no_more_clusters_than_the_points_allow():
    points = np.array([[0.0, 0.0], [1.0, 1.0], [4.0, 2.0]])
    assert len(set(sample_clustering.fit(points, 5, False, range(1), iterations=10).labels)) == 3
    same = np.ones((4, 2))  # points that cannot be split
    assert set(sample_clustering.fit(same, 3, True, range(1), iterations=10).labels) == {0}


def test_rfm_scores_and_named_segments(spark):
    rows = [(f"c{i}", float(i * 10), float(10 - i), float(100 - i * 5)) for i in range(10)]
    buyers = spark.createDataFrame(rows, "customer_key string, recency_days double, frequency double, "
                                         "monetary double")
    result = {r["customer_key"]: (r["r_score"], r["f_score"], r["m_score"], r["rfm_segment"])
              for r in segments.rfm_segments(buyers).collect()}
    assert result["c0"] == (5, 5, 5, "champions")
    assert result["c9"] == (1, 1, 1, "hibernating")
    assert result["c5"][3] == "need_attention"


PRODUCTS = ("P1", "P2", "P3", "P4")


def _lines(spark, extra):
    base = [(f"O{i}", "k1" if i % 2 else "k2", "P1", 1 + i % 2, 10.0 * (0.9 if i % 5 == 0 else 1.0))
            for i in range(40)]
    return spark.createDataFrame(base + extra, "order_id string, customer_key string, product_id string, "
                                              "quantity int, unit_price double")


def test_orders_with_huge_quantity_or_price_are_flagged_with_a_reason(spark):
    lines = _lines(spark, [("Q", "k1", "P1", 120, 10.0), ("X", "k2", "P1", 1, 250.0), ("N", None, "P1", 500, 1.0)])
    flagged = anomalies.order_anomalies(lines, threshold=4.0, floor=0.5)
    assertDataFrameEqual(flagged.select("level", "order_id", "customer_key"), spark.createDataFrame(
        [("order", "Q", "k1"), ("order", "X", "k2")], "level string, order_id string, customer_key string"))
    reasons = {r["order_id"]: r["reason"] for r in flagged.collect()}
    # k1 buys 2 units each time and k2 buys 1, so the product's usual (median log) quantity is sqrt(2).
    assert reasons["Q"] == "quantity 120 of product P1 is 84.9x the usual 1.4"
    assert reasons["X"].startswith("unit price 250.00 of product P1 is 25.0x its usual 10.00")


def test_an_order_is_scored_and_explained_by_its_worst_line(spark):
    # k3 has too few lines for a history of its own, so each line is judged against product P1:
    # its usual log quantity is the mean of log 1 and log 2 (22 lines of one unit, 20 of two, two
    # huge), with every small line log(2)/2 away from it; its usual price is 10, with no spread.
    lines = _lines(spark, [("M", "k3", "P1", 1, 10.0), ("M", "k3", "P1", 200, 10.0),
                           ("W", "k3", "P1", 100, 10.0), ("W", "k3", "P1", 1, 300.0)])
    flagged = {r["order_id"]: r for r in anomalies.order_anomalies(lines, threshold=4.0, floor=0.5).collect()}
    assert sorted(flagged) == ["M", "W"]
    assert flagged["M"]["reason"].startswith("quantity 200 of product P1 is ")
    # W's price line (z = log(30) / 0.5 = 6.8) is less unusual than its quantity line.
    assert flagged["W"]["reason"] == "quantity 100 of product P1 is 70.7x the usual 1.4"
    half_log2 = math.log(2) / 2
    assert flagged["W"]["score"] == pytest.approx((math.log(100) - half_log2) / (anomalies.MAD_TO_SD * half_log2))


def test_an_order_whose_worst_lines_tie_is_explained_by_the_same_line_whatever_their_order(spark):
    # P2 to P4's lines copy P1's, so an order of 200 units of each scores the same on all four lines.
    base = _lines(spark, [])
    lines = functools.reduce(DataFrame.unionByName, [base.withColumn("product_id", F.lit(p)) for p in PRODUCTS])
    reasons = []
    for order, partitions in ((("P1", "P2", "P3", "P4"), 3), (("P1", "P4", "P3", "P2"), 1),
                              (("P3", "P2", "P4", "P1"), 3), (("P4", "P2", "P1", "P3"), 1)):
        tie = spark.createDataFrame([("T", "k3", p, 200, 10.0) for p in order], lines.schema)
        flagged = anomalies.order_anomalies(lines.unionByName(tie).repartition(partitions), threshold=4.0, floor=0.5)
        reasons += [(r["order_id"], r["reason"]) for r in flagged.collect()]
    assert reasons == [("T", "quantity 200 of product P4 is 100.0x the usual 2.0")] * 4


def test_customers_far_from_their_segment_centre_are_flagged(spark):
    rows = [(f"c{i}", 0, Vectors.dense([0.1 * (i % 5), 0.0])) for i in range(20)]
    rows.append(("far", 0, Vectors.dense([9.0, 9.0])))
    assigned = spark.createDataFrame(rows, ["customer_key", "segment", "features"])
    flagged = anomalies.customer_anomalies(assigned, [np.array([0.2, 0.0])], threshold=4.0)
    assert [(r["level"], r["customer_key"]) for r in flagged.collect()] == [("customer", "far")]
    assert "the usual distance to the centre of segment 0" in flagged.first()["reason"]


def test_reference_medians_and_mads_are_those_of_spark_median(spark):
    # Groups of one to seven rows of two columns, odd and even counts, with ties in each column and
    # in their pairs: the counted values must give F.median's values exactly, MAD included.
    rng = np.random.default_rng(4)
    rows = [(f"g{g}", float(x), float(y)) for g in range(1, 8) for x, y in zip(
        rng.choice([0.5, 1.0, 2.5, 4.0, 7.25], size=g), rng.choice([-1.0, 0.0, 3.5], size=g), strict=True)]
    df = spark.createDataFrame(rows, "g string, x double, y double")
    expected = df.groupBy("g").agg(F.count("x").cast("int").alias("q_n"))
    for column, prefix in (("x", "q"), ("y", "r")):
        medians = df.groupBy("g").agg(F.median(column).alias(f"{prefix}_median"))
        expected = expected.join(df.join(medians, "g").groupBy("g", f"{prefix}_median").agg(
            F.median(F.abs(F.col(column) - F.col(f"{prefix}_median"))).alias(f"{prefix}_mad")), "g")
    assertDataFrameEqual(
        anomalies._reference(df, "g", {"x": "q", "y": "r"}).select(
            "g", "q_median", "q_mad", "q_n", "r_median", "r_mad", "r_n"),
        expected.select("g", "q_median", "q_mad", "q_n", "r_median", "r_mad", F.col("q_n").alias("r_n")))

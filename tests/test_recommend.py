"""Recommendation helpers and ranking metrics on hand-checked cases."""

from __future__ import annotations

import math

import pytest
from pyspark.testing import assertDataFrameEqual

from crm_spark.evaluate import classification, ranking
from crm_spark.recommend.als import popular_unseen


def test_popular_unseen_skips_bought_products(spark):
    users = spark.createDataFrame([("a",), ("b",)], "customer_key string")
    seen = spark.createDataFrame([("a", "p1"), ("a", "p3")], "customer_key string, product_id string")
    popularity = spark.createDataFrame([("p1", 9.0), ("p2", 8.0), ("p3", 7.0), ("p4", 1.0)],
                                       "product_id string, score double")
    result = popular_unseen(users, seen, popularity, k=2, max_seen=2)
    expected = spark.createDataFrame(
        [("a", "p2", 8.0, 1), ("a", "p4", 1.0, 2), ("b", "p1", 9.0, 1), ("b", "p2", 8.0, 2)],
        "customer_key string, product_id string, score double, rank int",
    )
    assertDataFrameEqual(result.select("customer_key", "product_id", "score", "rank"), expected)


def test_ranking_metrics_match_hand_computation(spark):
    items = spark.createDataFrame([(f"p{i}", i) for i in range(1, 6)], "product_id string, item int")
    recs = spark.createDataFrame([("a", "p1", 1), ("a", "p2", 2), ("b", "p3", 1), ("b", "p4", 2)],
                                 "customer_key string, product_id string, rank int")
    relevant = spark.createDataFrame([("a", "p2"), ("b", "p5"), ("c", "p1")], "customer_key string, product_id string")
    frame = ranking.ranking_frame(recs, relevant, items)
    metrics = ranking.ranking_metrics(frame, k=2)
    # a: one hit at rank 2 of 1 relevant; b: no hit; c: no recommendations at all.
    assert metrics["precision_at_k"] == pytest.approx((1 / 2) / 3)
    assert metrics["recall_at_k"] == pytest.approx(1 / 3)
    assert metrics["ndcg_at_k"] == pytest.approx((1 / math.log2(3)) / 3)
    assert ranking.catalogue_coverage(recs, items) == pytest.approx(4 / 5)


def test_confusion_metrics(spark):
    frame = spark.createDataFrame([(1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.0, 0.0), (1.0, 1.0)],
                                  "label double, prediction double")
    metrics = classification.confusion_metrics(frame)
    assert (metrics["accuracy"], metrics["precision"], metrics["recall"]) == pytest.approx((0.6, 2 / 3, 2 / 3))
    assert metrics["f1"] == pytest.approx(2 / 3)
    nothing_predicted = classification.confusion_metrics(frame.selectExpr("label", "0.0 as prediction"))
    assert math.isnan(nothing_predicted["precision"]) and nothing_predicted["recall"] == 0.0

"""Recommendation helpers and ranking metrics on hand-checked cases."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from pyspark.testing import assertDataFrameEqual

from crm_spark.config import RecommendConfig
from crm_spark.metrics import classification, ranking
from crm_spark.recommend import item_item, top_k
from crm_spark.recommend.als import AlsParams, als_scorer, fit
from crm_spark.recommend.cold_start import cold_start
from crm_spark.recommend.families import Fitting, Recommender
from crm_spark.recommend.fold_in import fold_in, fold_in_users
from crm_spark.recommend.holdout import split_at_random, split_by_time
from crm_spark.recommend.interactions import interactions
from crm_spark.recommend.popularity import group_popular, popular_unseen
from crm_spark.recommend.rating_model import rating_holdout
from crm_spark.recommend.top_k import cap_per_category, top_k_unseen


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
    assert ranking.ranking_metrics(frame, k=2, names=("ndcg_at_k",)) == {"ndcg_at_k": metrics["ndcg_at_k"]}
    assert ranking.catalogue_coverage(recs, items) == pytest.approx(4 / 5)


def test_confusion_metrics(spark):
    frame = spark.createDataFrame([(1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.0, 0.0), (1.0, 1.0)],
                                  "label double, prediction double")
    metrics = classification.confusion_metrics(frame)
    assert (metrics["accuracy"], metrics["precision"], metrics["recall"]) == pytest.approx((0.6, 2 / 3, 2 / 3))
    assert metrics["f1"] == pytest.approx(2 / 3)
    nothing_predicted = classification.confusion_metrics(frame.selectExpr("label", "0.0 as prediction"))
    assert math.isnan(nothing_predicted["precision"]) and nothing_predicted["recall"] == 0.0


def events(spark, rows):
    return spark.createDataFrame(
        [(c, p, dt.datetime.fromisoformat(ts), v) for c, p, ts, v in rows],
        "customer_key string, product_id string, event_ts timestamp, value double")


def test_random_split_holds_out_a_share_of_each_customer_and_keeps_one(spark):
    rows = [(c, f"p{i}", "2024-01-01", 1.0) for c, n in (("a", 8), ("b", 2), ("c", 1)) for i in range(n)]
    frame = events(spark, rows)
    train, relevant = split_at_random(frame, 0.25, seed=3)
    # round(8 * 0.25) = 2 of a's products, round(2 * 0.25) = 1 of b's, and not c's single product. Which
    # ones the seeded hash picks is pinned, so the held-out data is the same in every session.
    pairs = "customer_key string, product_id string"
    assertDataFrameEqual(relevant, spark.createDataFrame([("a", "p1"), ("a", "p2"), ("b", "p1")], pairs))
    assertDataFrameEqual(train.select("customer_key", "product_id"), frame.select("customer_key", "product_id")
                         .subtract(relevant))
    assertDataFrameEqual(split_at_random(frame, 0.25, seed=4)[1],
                         spark.createDataFrame([("a", "p1"), ("a", "p3"), ("b", "p0")], pairs))


def test_time_split_keeps_new_products_of_known_customers(spark):
    frame = events(spark, [
        ("a", "p1", "2024-01-01", 1.0), ("a", "p1", "2024-11-01", 1.0), ("a", "p2", "2024-11-02", 1.0),
        ("a", "p3", "2025-01-05", 1.0), ("new", "p1", "2024-11-03", 1.0)])
    train, relevant = split_by_time(frame, dt.date(2024, 10, 1), dt.date(2025, 1, 1))
    assertDataFrameEqual(relevant, spark.createDataFrame([("a", "p2")], "customer_key string, product_id string"))
    assert [r["product_id"] for r in train.collect()] == ["p1"]


def test_rating_holdout_predicts_each_held_out_rating_once_per_model(spark):
    frame = events(spark, [
        ("a", "p1", "2024-05-01", 5.0), ("a", "p2", "2024-05-02", 3.0), ("b", "p1", "2024-05-03", 4.0),
        ("b", "p3", "2024-05-04", 2.0), ("c", "p2", "2024-05-05", 4.0), ("c", "p3", "2024-05-06", 1.0),
        ("a", "p3", "2024-11-01", 2.0), ("c", "p1", "2024-11-02", 5.0)])
    items = spark.createDataFrame([("p1", 0), ("p2", 1), ("p3", 2)], "product_id string, item int")
    predicted = rating_holdout(frame, items, RecommendConfig(), dt.date(2024, 10, 1), dt.date(2025, 1, 1), (1, 5), 2)
    # The item-mean baseline: the mean of each product's training ratings.
    assertDataFrameEqual(predicted.where("model = 'item_mean'"), spark.createDataFrame(
        [("a", "p3", 2.0, 1.5, "item_mean"), ("c", "p1", 5.0, 4.5, "item_mean")], predicted.schema))
    als = predicted.where("model = 'als'").collect()
    assert sorted((r["customer_key"], r["product_id"], r["rating"]) for r in als) == [("a", "p3", 2.0),
                                                                                      ("c", "p1", 5.0)]
    assert all(1.0 <= r["prediction"] <= 5.0 for r in als)


def test_recency_weighted_confidence(spark):
    frame = events(spark, [("a", "p1", "2024-12-31", 1.0), ("a", "p1", "2024-07-04", 1.0),
                           ("a", "p2", "2024-07-04", 1.0), ("b", "p2", "2024-12-31", 4.0)])
    weighted = {(r[0], r[1]): r[2] for r in interactions(frame, False, 180.0).collect()}
    assert weighted == pytest.approx({("a", "p1"): 1.5, ("a", "p2"): 0.5, ("b", "p2"): 1.0}, abs=1e-6)
    counted = {(r[0], r[1]): r[2] for r in interactions(frame, False, None).collect()}
    assert counted == {("a", "p1"): 2.0, ("a", "p2"): 1.0, ("b", "p2"): 1.0}
    assert {(r[0], r[1]): r[2] for r in interactions(frame, True, None).collect()}[("b", "p2")] == 4.0


def test_blocked_top_k_matches_brute_force_and_skips_seen_and_excluded(spark, monkeypatch):
    rng = np.random.default_rng(0)
    pairs = [(int(u), int(i), float(rng.integers(1, 4))) for u in range(12) for i in rng.choice(20, 6, replace=False)]
    frame = spark.createDataFrame(pairs, "user int, item int, strength float")
    model = fit(frame, AlsParams(rank=4, reg_param=0.1, alpha=2.0, max_iter=5), False, 2, seed=1)
    monkeypatch.setattr(top_k, "BLOCK_CELLS", 60)  # three users per block
    result = top_k_unseen(als_scorer(model), frame.select("user"), frame, k=3, excluded_items=(0, 1))
    users = {r[0]: np.array(r[1]) for r in model.userFactors.collect()}
    items = {r[0]: np.array(r[1]) for r in model.itemFactors.collect()}
    seen = {(u, i) for u, i, _ in pairs}
    expected = []
    for user, factors in users.items():
        scored = sorted(((-float(np.float32(factors) @ np.float32(vec)), item) for item, vec in items.items()
                         if (user, item) not in seen and item not in (0, 1)))[:3]
        expected += [(user, item, rank) for rank, (_, item) in enumerate(scored, 1)]
    assertDataFrameEqual(result.select("user", "item", "rank"),
                         spark.createDataFrame(expected, "user int, item int, rank int"))


def test_category_cap_and_group_popular_cold_start(spark):
    recs = spark.createDataFrame([("a", f"p{i}", 10.0 - i, i) for i in range(1, 7)],
                                 "customer_key string, product_id string, score double, rank int")
    categories = spark.createDataFrame([("p1", "x"), ("p2", "x"), ("p3", "x"), ("p4", "y"), ("p5", None)],
                                       "product_id string, category string")
    capped = cap_per_category(recs, categories, cap=2, k=4)
    assert [(r["product_id"], r["rank"]) for r in capped.orderBy("rank").collect()] == [
        ("p1", 1), ("p2", 2), ("p4", 3), ("p5", 4)]
    pairs = spark.createDataFrame([("a", "p1"), ("b", "p1"), ("b", "p2"), ("c", "p3"), ("d", "p3"), ("e", "p3")],
                                  "customer_key string, product_id string")
    # f has no history: g3 has one customer with history, too few for a list of its own.
    groups = spark.createDataFrame([("a", "g1"), ("b", "g1"), ("c", "g2"), ("d", "g2"), ("e", "g3"), ("f", "g3")],
                                   "customer_key string, group string")
    lists = group_popular(pairs, groups, k=1, min_customers=2)
    assertDataFrameEqual(lists.select("group", "product_id", "score", "rank"), spark.createDataFrame(
        [("g1", "p1", 2.0, 1), ("g2", "p3", 2.0, 1)], "group string, product_id string, score double, rank int"))


def test_cold_start_serves_a_groups_list_when_it_has_one_and_the_overall_list_otherwise(spark):
    pairs = spark.createDataFrame([("a", "p1"), ("b", "p1"), ("b", "p2"), ("c", "p3"), ("d", "p3"), ("e", "p3"),
                                   ("k", "p2"), ("l", "p2")], "customer_key string, product_id string")
    # g3 has one customer with history, too few for a list of its own; h has no group, j a null one.
    groups = spark.createDataFrame([("a", "g1"), ("b", "g1"), ("c", "g2"), ("d", "g2"), ("e", "g3"), ("f", "g3"),
                                    ("g", "g1"), ("i", "g2"), ("j", None), ("k", None), ("l", None)],
                                   "customer_key string, group string")
    cold = spark.createDataFrame([(c,) for c in "fghij"], "customer_key string")
    overall = [("p2", 3.0, 1, "popular"), ("p3", 3.0, 2, "popular")]  # a tie goes to the smaller product id
    expected = [(c, *row) for c in "fhj" for row in overall] + [
        ("g", "p1", 2.0, 1, "segment_popular"), ("g", "p2", 1.0, 2, "segment_popular"),
        ("i", "p3", 2.0, 1, "segment_popular")]  # g2's customers with history bought one product
    schema = "customer_key string, product_id string, score double, rank int, source string"
    assertDataFrameEqual(cold_start(pairs, cold, groups, k=2, min_customers=2), spark.createDataFrame(expected, schema))
    assertDataFrameEqual(cold_start(pairs, cold, None, k=2, min_customers=2),
                         spark.createDataFrame([(c, *row) for c in "fghij" for row in overall], schema))


def test_entropy_and_novelty(spark):
    recs = spark.createDataFrame([("a", "p1", 0.5), ("b", "p1", 0.5), ("a", "p2", 0.25), ("b", "p3", 0.125)],
                                 "customer_key string, product_id string, popularity double")
    assert ranking.distribution_entropy(recs) == pytest.approx(1.5)
    assert ranking.novelty(recs) == pytest.approx((1 + 1 + 2 + 3) / 4)


def _interaction_matrix(rng: np.random.Generator, users: int, items: int, per_user: int) -> np.ndarray:
    matrix = np.zeros((users, items))
    for user in range(users):
        matrix[user, rng.choice(items, per_user, replace=False)] = 1.0
    return matrix


def test_ease_cooccurrence_and_weights_match_a_ridge_regression_per_item(spark):
    rng = np.random.default_rng(5)
    matrix = _interaction_matrix(rng, 30, 8, 3)
    matrix[:, 6] = 0.0  # an item nobody has: outside the item ids
    frame = spark.createDataFrame([(int(u), int(i), 1.0) for u, i in zip(*np.nonzero(matrix), strict=True)],
                                  "user int, item int, strength float")
    ids = item_item.item_ids_of(frame)
    assert ids.tolist() == [0, 1, 2, 3, 4, 5, 7]
    x = matrix[:, ids]
    gram = item_item.cooccurrence(frame.repartition(3), ids)
    np.testing.assert_array_equal(gram, x.T @ x)
    weights = item_item.ease_weights(gram, reg=2.0)
    # Each item's column is the ridge regression of that item on every other item.
    expected = np.zeros_like(weights)
    for j in range(len(ids)):
        others = [c for c in range(len(ids)) if c != j]
        a = x[:, others]
        expected[others, j] = np.linalg.solve(a.T @ a + 2.0 * np.eye(len(others)), a.T @ x[:, j])
    np.testing.assert_allclose(weights, expected, rtol=1e-4, atol=1e-6)


def test_ease_and_blend_top_k_match_brute_force(spark):
    rng = np.random.default_rng(6)
    matrix = _interaction_matrix(rng, 16, 12, 4)
    frame = spark.createDataFrame([(int(u), int(i), 1.0) for u, i in zip(*np.nonzero(matrix), strict=True)],
                                  "user int, item int, strength float")
    cfg = RecommendConfig(feedback="implicit")
    fitting = Fitting(spark, frame, cfg, blocks=2)
    assert [fitting.skip_reason(model) for model in ("als", "ease", "blend")] == [None, None, None]
    too_many = "EASE needs an item-item matrix of 12 items, more than recommend.ease_max_items (11)"
    assert Fitting(spark, frame, RecommendConfig(ease_max_items=11), 2).skip_reason("blend") == too_many
    assert Fitting(spark, frame, RecommendConfig(feedback="explicit"), 2).skip_reason("ease").startswith(
        "EASE learns from implicit feedback")
    weights = item_item.ease_weights(matrix.T @ matrix, reg=3.0)
    als_model = fitting.als_model(AlsParams(rank=3, reg_param=0.1, alpha=2.0, max_iter=5))
    factors = {r[0]: np.array(r[1]) for r in als_model.userFactors.collect()}
    item_factors = np.array([r[1] for r in als_model.itemFactors.orderBy("id").collect()])
    partner = fitting.als_model(AlsParams(rank=2, reg_param=0.1, alpha=2.0, max_iter=5))
    partner_factors = {r[0]: np.array(r[1]) for r in partner.userFactors.collect()}
    partner_items = np.array([r[1] for r in partner.itemFactors.orderBy("id").collect()])

    def standardized(row: np.ndarray) -> np.ndarray:
        return (row - row.mean()) / row.std()

    for spec, scores in (
        (Recommender("ease", ease_reg=3.0), lambda u: matrix[u] @ weights),
        (Recommender("blend", als=AlsParams(3, 0.1, 2.0, 5), ease_reg=3.0, als_share=0.25),
         lambda u: 0.25 * standardized(item_factors @ factors[u]) + 0.75 * standardized(matrix[u] @ weights)),
        (Recommender("blend", als=AlsParams(3, 0.1, 2.0, 5), ease_reg=3.0, als_share=0.5,
                     partner=AlsParams(2, 0.1, 2.0, 5)),
         lambda u: 0.25 * standardized(item_factors @ factors[u]) + 0.25 * standardized(
             partner_items @ partner_factors[u]) + 0.5 * standardized(matrix[u] @ weights)),
    ):
        result = top_k_unseen(fitting.scorer(spec), frame.select("user"), frame, k=3)
        expected = []
        for user in range(len(matrix)):
            ranked = sorted((-float(s), i) for i, s in enumerate(scores(user)) if not matrix[user, i])[:3]
            expected += [(user, item, rank) for rank, (_, item) in enumerate(ranked, 1)]
        assertDataFrameEqual(result.select("user", "item", "rank"),
                             spark.createDataFrame(expected, "user int, item int, rank int"))


@pytest.mark.parametrize(("confidence", "explicit"), [("linear", False), ("log", False), ("linear", True)])
def test_folding_in_a_trained_customer_gives_back_the_models_factor(spark, confidence, explicit):
    rng = np.random.default_rng(8)
    matrix = _interaction_matrix(rng, 40, 15, 3) * rng.integers(1, 4, size=(40, 15))  # repeat purchases: strengths
    frame = spark.createDataFrame([(int(u), int(i), float(matrix[u, i])) for u, i in zip(*np.nonzero(matrix),
                                                                                          strict=True)],
                                  "user int, item int, strength float")
    params = AlsParams(rank=4, reg_param=0.05, alpha=3.0, max_iter=8, confidence=confidence)
    model = fit(frame, params, explicit=explicit, blocks=2, seed=1)
    trained = {r["id"]: np.array(r["features"]) for r in model.userFactors.collect()}
    folded = {r["user"]: np.array(r["features"])
              for r in fold_in_users(model.itemFactors, frame, params, explicit).collect()}
    assert folded.keys() == trained.keys()
    # Spark's last step is this same solve in double precision, stored as float: the factors
    # agree to float rounding (measured largest difference 0 and 6e-8, factors near 1), far
    # inside 1e-5; reg 0.06 instead of 0.05 moves them by 5e-3, alpha 3.3 instead of 3 by 2.5e-2.
    for user, factor in trained.items():
        np.testing.assert_allclose(folded[user], factor, rtol=0, atol=1e-5 * max(1.0, np.abs(factor).max()))


def test_a_new_purchase_folded_in_raises_what_others_bought_with_it(spark):
    # Two tastes: items 0-4 are bought together, items 5-9 together.
    rng = np.random.default_rng(9)
    rows = [(u, i, 1.0) for u in range(60) for i in (range(5) if u % 2 else range(5, 10)) if rng.random() < 0.7]
    frame = spark.createDataFrame(rows, "user int, item int, strength float")
    params = AlsParams(rank=2, reg_param=0.05, alpha=5.0, max_iter=10)
    model = fit(frame, params, explicit=False, blocks=2, seed=1)
    item_factors = np.array([r["features"] for r in model.itemFactors.orderBy("id").collect()])
    gram = item_factors.T @ item_factors
    # A customer who bought items 5 and 6, then buys item 0 and 1 as well.
    before, after = fold_in(item_factors, gram, [np.array([5, 6]), np.array([5, 6, 0, 1])],
                            [np.ones(2), np.ones(4)], params)
    share = [float(np.mean(item_factors[2:5] @ f) - np.mean(item_factors[7:10] @ f)) for f in (before, after)]
    assert share[0] < 0 < share[1]  # the other items of the first taste now score above the second's

"""BG/NBD and Gamma-Gamma: likelihoods by hand, parameter recovery on simulated customers, and the
Spark prediction formulas against a straightforward Python implementation."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual
from scipy.special import hyp2f1

from crm_spark.config import TrainConfig
from crm_spark.features.purchase_summary import purchase_summaries, with_actual_purchases
from crm_spark.models import bgnbd, gamma_gamma, lifetime, likelihood
from crm_spark.models.likelihood import Fit
from crm_spark.schemas import (
    AGE_PERIODS,
    CUSTOMER_KEY,
    EXPECTED_ORDER_VALUE,
    EXPECTED_PURCHASES,
    LIFETIME_VALUE,
    P_ALIVE,
    RECENCY_PERIODS,
    REPEAT_ORDER_VALUE,
    REPEAT_PURCHASES,
)
from crm_spark.synth.purchase_process import simulate_bgnbd

PARAMS = bgnbd.BgNbd(r=0.243, alpha=4.414, a=0.793, b=2.426)  # CDNOW's published values
VALUE = gamma_gamma.GammaGamma(p=6.25, q=3.74, v=15.44)


def test_log_likelihoods_match_hand_computed_customers():
    r, alpha, a, b = PARAMS.r, PARAMS.alpha, PARAMS.a, PARAMS.b
    # No repeat purchase in T = 10: L = (alpha / (alpha + T))^r.
    # One repeat purchase at t_x = 2: L = r alpha^r b / (a + b) [(alpha + T)^-(r+1) + a / b (alpha + t_x)^-(r+1)].
    expected = [r * math.log(alpha / (alpha + 10)),
                math.log(r * alpha ** r * b / (a + b) * ((alpha + 10) ** -(r + 1) + a / b * (alpha + 2) ** -(r + 1)))]
    actual = bgnbd.log_likelihood(PARAMS, np.array([0.0, 1.0]), np.array([0.0, 2.0]), np.array([10.0, 10.0]))
    assert actual == pytest.approx(expected, rel=1e-12)
    # One repeat purchase of value m: L = Gamma(p+q) / (Gamma(p) Gamma(q)) v^q m^(p-1) / (m + v)^(p+q).
    p, q, v, m = VALUE.p, VALUE.q, VALUE.v, 20.0
    by_hand = math.log(math.gamma(p + q) / (math.gamma(p) * math.gamma(q)) * v ** q * m ** (p - 1) / (m + v) ** (p + q))
    assert gamma_gamma.log_likelihood(VALUE, np.array([1.0]), np.array([m]))[0] == pytest.approx(by_hand, rel=1e-12)


def test_bgnbd_recovers_simulated_parameters_from_distinct_rows():
    """20,000 simulated customers (8,575 distinct rows): each parameter within 10 % (measured: 0.2-2.1 %)."""
    x, t_x, age = simulate_bgnbd(20_000, *dataclasses.astuple(PARAMS), seed=1)
    rows, counts = np.unique(np.stack([x, t_x, age], axis=1), axis=0, return_counts=True)
    fitted = bgnbd.fit(rows[:, 0], rows[:, 1], rows[:, 2], counts.astype(float))
    assert fitted.distinct_rows == len(rows) < 20_000
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fitted.params, name) == pytest.approx(getattr(PARAMS, name), rel=0.10), fitted.params
    assert fitted.log_likelihood >= bgnbd.log_likelihood(PARAMS, x, t_x, age).sum()  # the optimum, not a stop short


def test_bgnbd_gradient_is_the_log_likelihoods():
    """The exact gradient against central differences, per customer and parameter, at the
    published values and out where a and b are in the thousands."""
    x, t_x, age = np.array([0.0, 1.0, 3.0, 12.0]), np.array([0.0, 2.0, 7.5, 30.0]), np.array([10.0, 10.0, 38.0, 31.0])
    of = bgnbd.likelihood_of(x, t_x, age)
    for params in (PARAMS, bgnbd.BgNbd(r=2.5, alpha=23.0, a=40.0, b=9000.0)):
        values = np.array(dataclasses.astuple(params))
        _, gradient = of(params)
        for j in range(4):
            step = np.where(np.arange(4) == j, values * 1e-6, 0.0)
            central = (of(bgnbd.BgNbd(*(values + step)))[0] - of(bgnbd.BgNbd(*(values - step)))[0]) / (2 * step[j])
            assert gradient[:, j] == pytest.approx(central, rel=1e-5, abs=1e-9), (params, j)


def test_bgnbd_likelihood_keeps_its_digits_where_dropout_hardly_varies():
    """With a and b in the trillions the beta of the dropout is a point mass at p = a / (a + b):
    L = Gamma(r + x) alpha^r / Gamma(r) [(1 - p)^x (alpha + T)^-(r+x) + p (1 - p)^(x-1) (alpha + t_x)^-(r+x)],
    the second term for x > 0 only. Log-gammas of 10^12 differ in their third decimal from rounding alone."""
    r, alpha, p, size = 2.5, 23.0, 0.0046, 1e12
    x, t_x, age = np.array([0.0, 1.0, 5.0, 40.0]), np.array([0.0, 3.0, 20.0, 50.0]), np.array([30.0, 30.0, 40.0, 52.0])
    point_mass = [math.lgamma(r + n) - math.lgamma(r) + r * math.log(alpha) + math.log(
        (1 - p) ** n * (alpha + a) ** -(r + n) + (p * (1 - p) ** (n - 1) * (alpha + tx) ** -(r + n) if n else 0.0))
        for n, tx, a in zip(x, t_x, age, strict=True)]
    actual = bgnbd.log_likelihood(bgnbd.BgNbd(r, alpha, p * size, (1 - p) * size), x, t_x, age)
    assert actual == pytest.approx(point_mass, abs=1e-8)


def test_bgnbd_fits_customers_whose_dropout_hardly_varies():
    """Dropout beta(500, 9,500): p 0.05 give or take 0.002. The likelihood rises towards a and b
    without bound along a ridge, where the search without the exact gradient stopped short and
    fell back to Nelder-Mead (8 s here, 300 s at 620,000 rows; now 0.05 s). The fit follows the
    ridge: the gradient flat, the likelihood above the truth's, r, alpha and the mean dropout
    recovered (measured within 0.3, 1.4 and 1.9 %)."""
    truth = bgnbd.BgNbd(r=2.5, alpha=23.0, a=500.0, b=9500.0)
    x, t_x, age = simulate_bgnbd(20_000, *dataclasses.astuple(truth), seed=4)
    rows, counts = np.unique(np.stack([x, t_x, age], axis=1), axis=0, return_counts=True)
    fitted = bgnbd.fit(rows[:, 0], rows[:, 1], rows[:, 2], counts.astype(float))
    params = fitted.params
    assert (params.r, params.alpha) == pytest.approx((truth.r, truth.alpha), rel=0.10), params
    assert params.a / (params.a + params.b) == pytest.approx(truth.a / (truth.a + truth.b), rel=0.10), params
    assert fitted.log_likelihood >= bgnbd.log_likelihood(truth, x, t_x, age).sum()
    _, gradient = bgnbd.likelihood_of(rows[:, 0], rows[:, 1], rows[:, 2])(params)
    log_gradient = (counts / counts.sum()) @ gradient * np.array(dataclasses.astuple(params))
    assert np.abs(log_gradient).max() < likelihood.GRADIENT_TOLERANCE


def test_bgnbd_needs_whole_repeat_purchases():
    with pytest.raises(ValueError, match="whole numbers"):
        bgnbd.likelihood_of(np.array([0.0, 1.5]), np.array([0.0, 1.0]), np.array([5.0, 5.0]))


def test_gamma_gamma_recovers_simulated_parameters():
    """20,000 repeat customers with 2-20 purchases: q and the mean order value p v / (q - 1) within 5 %
    (measured: under 0.1 %). p and v trade off along a ridge of the likelihood, so each is only held
    within 25 % (measured: 4.1 % here; up to 23 % with other seeds, at a higher likelihood than the truth's)."""
    rng = np.random.default_rng(0)
    x = rng.integers(2, 21, 20_000).astype(float)
    scale = rng.gamma(VALUE.q, 1 / VALUE.v, 20_000)
    m = np.array([rng.gamma(VALUE.p, 1 / scale[i], int(x[i])).mean() for i in range(len(x))])
    fitted = gamma_gamma.fit(x, m, np.ones_like(x)).params
    mean = VALUE.p * VALUE.v / (VALUE.q - 1)
    assert fitted.q == pytest.approx(VALUE.q, rel=0.05)
    assert fitted.p * fitted.v / (fitted.q - 1) == pytest.approx(mean, rel=0.05)
    assert (fitted.p, fitted.v) == pytest.approx((VALUE.p, VALUE.v), rel=0.25)
    assert gamma_gamma.log_likelihood(fitted, x, m).sum() >= gamma_gamma.log_likelihood(VALUE, x, m).sum()


def reference_expected_purchases(params: bgnbd.BgNbd, t: float, x: float, t_x: float, age: float) -> float:
    """Equation 10 of Fader, Hardie and Lee 2005 as printed, with scipy's hypergeometric function."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = t / (alpha + age + t)
    head = (a + b + x - 1) / (a - 1) * (1 - ((alpha + age) / (alpha + age + t)) ** (r + x)
                                         * hyp2f1(r + x, b + x, a + b + x - 1, z))
    odds = a / (b + x - 1) * ((alpha + age) / (alpha + t_x)) ** (r + x) if x > 0 else 0.0
    return head / (1 + odds)


def test_the_series_sums_the_terms_each_element_needs_up_to_the_cap():
    # 2F1(u, c; c; z) = (1 - z)^-u, so weighted by (1 - z)^u the series sums to 1, whatever c, once each
    # element has the terms it needs: from a few at z = 0.05 to about 14,000 at u = 40 and z = 0.99.
    z = np.array([[0.05, 0.5, 0.9], [0.3, 0.7, 0.99]])
    u, c = np.array([[0.5], [40.0]]), np.array([[3.0], [7.5]])
    assert bgnbd.weighted_hyp2f1(u, c, c, z, u, 100_000) == pytest.approx(np.ones_like(z), rel=1e-10)
    # Capped at three terms: the first three negative binomial probabilities of (u, z).
    first_three = (1 - z) ** u * (1 + u * z + u * (u + 1) / 2 * z**2)
    assert bgnbd.weighted_hyp2f1(u, c, c, z, u, 3) == pytest.approx(first_three, rel=1e-12)


# The dropout probability beta(a, b) wide (CDNOW's), narrow around 5 % and nearly fixed at 0.5 %: the
# series of the expected purchases needs u z / (1 - z) terms for u = a - 1 in one form and r + x in
# the other, so a large a takes the other form (Euler's form alone gave 20.0 and 201.0 purchases in 90 days
# for the first customer under the last two, against 0.49 and 0.79).
@pytest.mark.parametrize("params", [PARAMS, bgnbd.BgNbd(r=1.2, alpha=30.0, a=500.0, b=9500.0),
                                    bgnbd.BgNbd(r=0.8, alpha=12.0, a=1e9, b=2e11)], ids=["cdnow", "narrow", "ridge"])
def test_spark_predictions_match_a_python_implementation(spark, params):
    cfg = TrainConfig(clv_period_days=7, clv_months=3, clv_monthly_discount_rate=0.02, clv_margin=0.3)
    customers = [(0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 38.9, 0.0), (2.0, 30.4, 38.9, 22.35), (1.0, 1.7, 38.9, 11.77),
                 (25.0, 38.0, 38.9, 40.0), (60.0, 50.0, 52.0, 15.0)]
    frame = spark.createDataFrame([(f"k{i}", *c) for i, c in enumerate(customers)],
                                  f"{CUSTOMER_KEY} string, {REPEAT_PURCHASES} double, {RECENCY_PERIODS} double, "
                                  f"{AGE_PERIODS} double, {REPEAT_ORDER_VALUE} double")
    model = lifetime.LifetimeModel(Fit(params, 0.0, 0, 0.0), Fit(VALUE, 0.0, 0, 0.0))
    rows = {r[CUSTOMER_KEY]: r for r in lifetime.predict(model, frame, 90, cfg).collect()}
    per_month = 365.25 / 12 / 7
    for i, (x, t_x, age, m) in enumerate(customers):
        row = rows[f"k{i}"]
        odds = params.a / (params.b + x - 1) * ((params.alpha + age) / (params.alpha + t_x)) ** (params.r + x)
        assert row[P_ALIVE] == pytest.approx(1 / (1 + odds) if x > 0 else 1.0, rel=1e-12)
        expected = reference_expected_purchases(params, 90 / 7, x, t_x, age)
        assert row[EXPECTED_PURCHASES] == pytest.approx(expected, rel=1e-9), (i, expected)
        value = VALUE.p * (VALUE.v + x * m) / (VALUE.p * x + VALUE.q - 1)
        assert row[EXPECTED_ORDER_VALUE] == pytest.approx(value, rel=1e-12)
        monthly = [reference_expected_purchases(params, k * per_month, x, t_x, age) if k else 0.0 for k in range(4)]
        clv = sum((monthly[k] - monthly[k - 1]) / 1.02 ** k for k in range(1, 4)) * value * 0.3
        assert row[LIFETIME_VALUE] == pytest.approx(clv, rel=1e-9), (i, clv)


def test_summaries_count_purchase_days_and_value_repeat_days_only(spark):
    orders = spark.createDataFrame([
        # two orders on the first day are one purchase of 30; repeat days of 20 and 40
        ("k1", "o1", 1, 10.0, dt.datetime(2024, 1, 1, 9), "completed"),
        ("k1", "o2", 2, 10.0, dt.datetime(2024, 1, 1, 17), "completed"),
        ("k1", "o3", 1, 20.0, dt.datetime(2024, 1, 15, 9), "completed"),
        ("k1", "o4", 4, 10.0, dt.datetime(2024, 1, 29, 9), "completed"),
        ("k1", "o5", 1, 99.0, dt.datetime(2024, 1, 30, 9), "cancelled"),  # not a purchase
        ("k1", "o6", 1, 50.0, dt.datetime(2024, 2, 1, 9), "completed"),  # on the as-of date: the horizon
        ("k2", "o7", 1, 5.0, dt.datetime(2024, 1, 24, 9), "completed"),
        (None, "o8", 1, 5.0, dt.datetime(2024, 1, 2, 9), "completed"),  # an unknown customer
    ], f"{CUSTOMER_KEY} string, order_id string, quantity int, unit_price double, order_ts timestamp, status string")
    summaries = purchase_summaries(orders, dt.date(2024, 2, 1), period_days=7)
    # The observation ends on 31 January: T of k1 = 30 days, of k2 = 7 days.
    assertDataFrameEqual(summaries, spark.createDataFrame(
        [("k1", 2.0, 4.0, 30 / 7, 30.0), ("k2", 0.0, 0.0, 1.0, 0.0)],
        f"{CUSTOMER_KEY} string, {REPEAT_PURCHASES} double, {RECENCY_PERIODS} double, {AGE_PERIODS} double, "
        f"{REPEAT_ORDER_VALUE} double"))
    # Binned by week, at the middle of each: k1's 28 and 30 days are both in week 4; k2's 7 days in week 1.
    assertDataFrameEqual(purchase_summaries(orders, dt.date(2024, 2, 1), period_days=7, period_bins=True),
                         spark.createDataFrame([("k1", 2.0, 4.5, 4.5, 30.0), ("k2", 0.0, 0.0, 1.5, 0.0)],
                                               summaries.schema))
    actual = with_actual_purchases(summaries, orders, dt.date(2024, 2, 1), 30).select(CUSTOMER_KEY, "actual_purchases")
    assertDataFrameEqual(actual, spark.createDataFrame([("k1", 1.0), ("k2", 0.0)],
                                                       f"{CUSTOMER_KEY} string, actual_purchases double"))


def test_period_bins_bound_the_distinct_rows_and_keep_the_parameters_close():
    # Days (1/7 week) as a transaction log gives them, against the same customers binned by week.
    x, t_x, age = simulate_bgnbd(40_000, *dataclasses.astuple(PARAMS), seed=3, step=1 / 7)
    binned_t_x, binned_age = np.where(x > 0, np.floor(t_x + 1e-9) + 0.5, 0.0), np.floor(age + 1e-9) + 0.5
    fits = {}
    for name, times in {"days": (t_x, age), "bins": (binned_t_x, binned_age)}.items():
        rows, counts = np.unique(np.stack([x, *times], axis=1), axis=0, return_counts=True)
        fits[name] = bgnbd.fit(rows[:, 0], rows[:, 1], rows[:, 2], counts.astype(float))
    # T takes 27 values (26.5 to 52.5), t_x at most 53: rows are bounded by the calendar, not the customers.
    assert fits["bins"].distinct_rows <= len(np.unique(x)) * 27 * 53
    assert fits["bins"].distinct_rows * 2 < fits["days"].distinct_rows
    exact, binned = dataclasses.astuple(fits["days"].params), dataclasses.astuple(fits["bins"].params)
    assert binned == pytest.approx(exact, rel=0.04)  # measured 0.1-1.6 % at 100,000 and 1,000,000 customers


def test_fitting_from_spark_summaries_keeps_the_driver_work_to_distinct_rows(spark):
    x, t_x, age = simulate_bgnbd(3000, *dataclasses.astuple(PARAMS), seed=2)
    values = np.where(x > 0, 10 + (np.arange(len(x)) % 40), 0.0)
    frame = spark.createDataFrame([(f"k{i}", float(x[i]), float(t_x[i]), float(age[i]), float(values[i]))
                                   for i in range(len(x))],
                                  f"{CUSTOMER_KEY} string, {REPEAT_PURCHASES} double, {RECENCY_PERIODS} double, "
                                  f"{AGE_PERIODS} double, {REPEAT_ORDER_VALUE} double")
    model = lifetime.fit(frame, TrainConfig())
    distinct = frame.select(REPEAT_PURCHASES, RECENCY_PERIODS, AGE_PERIODS).distinct().count()
    assert model.purchases.distinct_rows == distinct < 3000
    rows, counts = np.unique(np.stack([x, t_x, age], axis=1), axis=0, return_counts=True)
    direct = bgnbd.fit(rows[:, 0], rows[:, 1], rows[:, 2], counts.astype(float))
    assert model.purchases.log_likelihood == pytest.approx(direct.log_likelihood, rel=1e-9)
    assert lifetime.LifetimeModel.from_params(model.params()) == model
    repeat = frame.where(F.col(REPEAT_PURCHASES) > 0)
    assert model.value.distinct_rows == repeat.select(REPEAT_PURCHASES, REPEAT_ORDER_VALUE).distinct().count()

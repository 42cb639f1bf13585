"""BG/NBD (Fader, Hardie and Lee 2005): whether a customer is still alive and how often they
will buy, fitted by maximum likelihood on the distinct (x, t_x, T) summaries and their counts (so the
driver's work grows with the distinct summaries, which binned periods bound by the calendar),
with the exact gradient; predictions in Spark built-ins, but for the expected purchases' series,
summed on the driver per distinct (x, T)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from scipy.special import digamma, gammaln

from crm_spark.models.likelihood import Fit, distinct_rows, maximize
from crm_spark.schemas import AGE_PERIODS, RECENCY_PERIODS, REPEAT_PURCHASES

BG_NBD = "bg_nbd"
SUMMARY = (REPEAT_PURCHASES, RECENCY_PERIODS, AGE_PERIODS)
SERIES_TOLERANCE = 1e-12  # the hypergeometric series stops once its remaining terms sum below this


@dataclass(frozen=True)
class BgNbd:
    """Parameters: purchase rates are gamma(r, alpha) across customers, the chance of dropping
    out after a purchase is beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


def log_likelihood(params: BgNbd, x: np.ndarray, t_x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Return each customer's log-likelihood (equation 6 of Fader, Hardie and Lee 2005)."""
    return likelihood_of(x, t_x, t)(params)[0]


def likelihood_of(x: np.ndarray, t_x: np.ndarray, t: np.ndarray) -> Callable[[BgNbd], tuple[np.ndarray, np.ndarray]]:
    """Return the per-customer log-likelihood of the summaries ``(x, t_x, T)`` and its gradient
    (a column per parameter: r, alpha, a, b) as a function of the parameters.

    The terms of the distinct values of x, of t_x and of T are computed once per call and
    gathered per row, so an optimizer's many calls cost a few array operations per row
    rather than six log-gammas and three logarithms.

    The beta part, B(a, b + x) / B(a, b), is the product over k < x of (b + k) / (a + b + k),
    summed as logarithms, rather than a difference of log-gammas: where the dropout
    probability hardly varies across customers, the likelihood's maximum lies out where a and
    b are in the millions, and there a difference of log-gammas of that size keeps too few
    digits for the optimizer to find it.

    Raises:
        ValueError: an ``x`` (repeat purchases) is not a whole number.
    """
    xs, x_at = np.unique(x, return_inverse=True)
    if np.any(xs != np.floor(xs)) or np.any(xs < 0):
        raise ValueError("BG/NBD's repeat purchases are counts: whole numbers from 0")
    recencies, t_x_at = np.unique(t_x, return_inverse=True)
    ages, t_at = np.unique(t, return_inverse=True)
    counts = xs.astype(int)
    k = np.arange(counts.max(initial=0))
    repeat = x > 0
    shape_power = np.where(xs > 0, xs - 1, 0.0)  # b + x - 1 of repeat customers (x = 0 rows take no a4)

    def cumulated(terms: np.ndarray) -> np.ndarray:
        """Return, for each distinct x, the sum of ``terms`` over k < x."""
        return np.concatenate([[0.0], np.cumsum(terms)])[counts]

    def of(params: BgNbd) -> tuple[np.ndarray, np.ndarray]:
        r, alpha, a, b = params.r, params.alpha, params.a, params.b
        per_x = gammaln(r + xs) - gammaln(r) + r * np.log(alpha) - cumulated(np.log1p(a / (b + k)))
        exponent = r + x
        log_age, log_recency = np.log(alpha + ages)[t_at], np.log(alpha + recencies)[t_x_at]
        a3 = -exponent * log_age
        with np.errstate(divide="ignore", invalid="ignore"):
            a4 = np.where(repeat, (np.log(a) - np.log(b + shape_power))[x_at] - exponent * log_recency, -np.inf)
        both = np.logaddexp(a3, a4)
        recent = np.exp(a4 - both)  # the share of the likelihood from dropping out after the last purchase
        gradient = np.stack([
            (digamma(r + xs) - digamma(r))[x_at] + np.log(alpha) - (1 - recent) * log_age - recent * log_recency,
            r / alpha - exponent * ((1 - recent) / (alpha + ages)[t_at] + recent / (alpha + recencies)[t_x_at]),
            -cumulated(1 / (a + b + k))[x_at] + recent / a,
            cumulated(1 / (b + k) - 1 / (a + b + k))[x_at] - recent / (b + shape_power)[x_at],
        ], axis=1)
        return per_x[x_at] + both, gradient

    return of


def fit(x: np.ndarray, t_x: np.ndarray, t: np.ndarray, counts: np.ndarray, penalizer: float = 0.0) -> Fit:
    """Maximize the log-likelihood of customers summarized as distinct ``(x, t_x, T)`` with ``counts``
    (see :func:`~crm_spark.models.likelihood.maximize`), with its exact gradient.

    Raises:
        ValueError: there are no customers, an ``x`` is not a whole number, or the optimizer did
            not converge.
    """
    if counts.sum() <= 0:
        raise ValueError("BG/NBD needs at least one customer with a purchase")
    start = np.array([1.0, max(float(np.average(t, weights=counts)), 1e-3), 1.0, 1.0])
    of = likelihood_of(x, t_x, t)
    found, seconds = maximize(lambda p: of(BgNbd(*p)), start, counts, penalizer, jac=True)
    params = BgNbd(*(float(v) for v in found))
    return Fit(params, float((counts * of(params)[0]).sum()), len(counts), seconds)


def _dropout_odds(params: BgNbd) -> Column:
    """Return the odds that a customer has dropped out (0 without repeat purchases)."""
    x, t_x, t = (F.col(c) for c in SUMMARY)
    ratio = (F.lit(params.alpha) + t) / (F.lit(params.alpha) + t_x)
    return F.when(x > 0, F.lit(params.a) / (F.lit(params.b) + x - 1) * F.pow(ratio, F.lit(params.r) + x)).otherwise(
        F.lit(0.0))


def p_alive(params: BgNbd) -> Column:
    """Return the probability that a customer with summary ``(x, t_x, T)`` is still alive."""
    return F.lit(1.0) / (F.lit(1.0) + _dropout_odds(params))


def weighted_hyp2f1(p: np.ndarray, q: np.ndarray, c: np.ndarray, z: np.ndarray, u: np.ndarray,
                    max_terms: int) -> np.ndarray:
    """Return (1 - z)^u 2F1(p, q; c; z) for 0 < z < 1 by its series, where each term's ratio to the
    one before, (p + k) (q + k) / ((c + k) (k + 1)) z, is at most (u + k) / (k + 1) z.

    The weight is the first term, so the terms are bounded by the negative binomial
    probabilities of (u, z) and neither overflow nor leave a difference of huge numbers. Each
    element sums the terms its ``u`` and ``z`` need for ``SERIES_TOLERANCE`` (at most ``max_terms``):
    past the peak, about u z / (1 - z) terms in, the ratio falls below sqrt(z) (z itself when
    u <= 1), and the tail then shrinks geometrically. The elements are ordered by the terms they
    need, so each step of the sum works on those still summing only.

    Args:
        p, q, c, z, u: arrays of one shape.
        max_terms: the most terms summed.

    Returns:
        An array of that shape.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(u <= 1, z, np.sqrt(z))
        peak = np.maximum(0.0, (u * rate - 1) / (1.0 - rate))
        needed = np.ceil(peak + np.log(SERIES_TOLERANCE * (1.0 - rate)) / np.log(rate))
    terms = np.where(np.isnan(needed), max_terms, np.clip(needed, 1, max_terms)).astype(np.int64).ravel()
    order = np.argsort(-terms, kind="stable")  # the longest sums first: the elements summing are a prefix
    p, q, c, z, u = (np.broadcast_to(v, needed.shape).ravel()[order] for v in (p, q, c, z, u))
    term, total = np.exp(u * np.log1p(-z)), np.zeros(len(order))
    still = np.sort(terms)  # ascending: the elements past the count of those <= k still sum at step k
    for k in range(int(still[-1]) if len(still) else 0):
        n = len(still) - int(np.searchsorted(still, k, side="right"))
        total[:n] += term[:n]
        term[:n] *= (p[:n] + k) * (q[:n] + k) / ((c[:n] + k) * (k + 1)) * z[:n]
    summed = np.empty(len(order))
    summed[order] = total
    return summed.reshape(needed.shape)


def alive_divisor(params: BgNbd) -> Column:
    """Return one plus the odds that a customer has dropped out: expected purchases are the
    columns of :func:`with_purchases_if_alive` divided by it."""
    return F.lit(1.0) + _dropout_odds(params)


def purchases_if_alive(summaries_df: DataFrame, params: BgNbd, periods: dict[str, float],
                       max_terms: int) -> DataFrame:
    """Return each distinct ``(repeat_purchases, age_periods)`` of ``summaries_df`` with a column
    per entry of ``periods`` (name: periods ahead): the numerator of equation 10 of Fader, Hardie
    and Lee 2005, (a + b + x - 1) / (a - 1) (1 - (1 - z)^(r + x) 2F1(r + x, b + x; a + b + x - 1; z))
    with z = periods / (alpha + T + periods). It depends on x and T only, so it is computed once
    per distinct pair, on the driver: the pairs are few (the calendar bounds T), and numpy sums
    the series in a fraction of the time Spark's ``aggregate`` over a sequence took (README,
    "Churn, value, segments and anomalies").

    The series needs about u z / (1 - z) terms for u = r + x. Euler's transformation
    (1 - z)^(r + x) 2F1(r + x, b + x; a + b + x - 1; z) = (1 - z)^(a - 1) 2F1(a + b - 1 - r, a - 1; a + b + x - 1; z)
    gives one with u = a - 1, so each pair sums whichever is shorter: the transformed one for
    frequent buyers when the dropout distribution is wide (a small), the one as printed when a
    is large, where the dropout probability hardly varies across customers.
    """
    pair = (REPEAT_PURCHASES, AGE_PERIODS)
    (x, age), _ = distinct_rows(summaries_df.dropna(subset=list(pair)), pair)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, age, ahead = x[:, None], age[:, None], np.array(list(periods.values()), dtype=float)[None, :]
    euler = a - 1 <= r + x
    p, q = np.where(euler, a + b - 1 - r, r + x), np.where(euler, a - 1, b + x)
    c, u = a + b + x - 1, np.minimum(a - 1, r + x)
    z = ahead / (alpha + age + ahead)
    numerators = np.where(ahead > 0, c / (a - 1) * (1.0 - weighted_hyp2f1(p, q, c, z, u, max_terms)), 0.0)
    schema = ", ".join(f"`{name}` double" for name in (*pair, *periods))
    return summaries_df.sparkSession.createDataFrame(np.hstack([x, age, numerators]).tolist(), schema)

"""Gamma-Gamma (Fader, Hardie and Lee 2005): the value of a customer's purchases, fitted on the
repeat customers' (x, mean repeat value) by maximum likelihood, with the expected value of
their future purchases in Spark built-ins."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column
from pyspark.sql import functions as F
from scipy.special import gammaln

from crm_spark.models.likelihood import Fit, maximize
from crm_spark.schemas import REPEAT_ORDER_VALUE, REPEAT_PURCHASES

GAMMA_GAMMA = "gamma_gamma"


@dataclass(frozen=True)
class GammaGamma:
    """Parameters: a purchase's value is gamma(p, nu) around the customer's own scale nu, which is
    gamma(q, v) across customers."""

    p: float
    q: float
    v: float


def log_likelihood(params: GammaGamma, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Return each repeat customer's log-likelihood of its mean repeat value ``m`` over ``x`` purchases."""
    p, q, v = params.p, params.q, params.v
    px = p * x
    return (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + (px - 1) * np.log(m) + px * np.log(x)
            - (px + q) * np.log(x * m + v))


def fit(x: np.ndarray, m: np.ndarray, counts: np.ndarray, penalizer: float = 0.0) -> Fit:
    """Maximize the log-likelihood of repeat customers summarized as distinct ``(x, m)`` with ``counts``
    (customers without a repeat purchase or with a non-positive mean value are left out).

    Raises:
        ValueError: no customer has a repeat purchase of positive value, or no convergence.
    """
    keep = (x > 0) & (m > 0)
    x, m, counts = x[keep], m[keep], counts[keep]
    if counts.sum() <= 0:
        raise ValueError("Gamma-Gamma needs at least one customer with a repeat purchase of positive value")
    start = np.array([1.0, 1.0, max(float(np.average(m, weights=counts)), 1e-3)])
    found, seconds = maximize(lambda p: log_likelihood(GammaGamma(*p), x, m), start, counts, penalizer)
    params = GammaGamma(*(float(v) for v in found))
    return Fit(params, float((counts * log_likelihood(params, x, m)).sum()), len(counts), seconds)


def expected_order_value(params: GammaGamma) -> Column:
    """Return the expected value of a customer's future purchases: p (v + x m) / (p x + q - 1),
    which is the population mean p v / (q - 1) for a customer without repeat purchases."""
    p, q, v = F.lit(params.p), F.lit(params.q), F.lit(params.v)
    x, m = F.col(REPEAT_PURCHASES), F.col(REPEAT_ORDER_VALUE)
    return p * (v + x * m) / (p * x + q - 1)

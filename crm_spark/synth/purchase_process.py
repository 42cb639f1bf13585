"""Customers drawn from the BG/NBD purchase process, to check that fitting recovers what was planted."""

from __future__ import annotations

import numpy as np


def simulate_bgnbd(n: int, r: float, alpha: float, a: float, b: float, seed: int,
                   age_range: tuple[float, float] = (26.0, 52.0), step: float = 0.1
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (x, t_x, T) of ``n`` customers, times rounded to ``step`` periods (1/7 of a week: days).

    Each customer buys at a rate drawn from gamma(r, alpha) from a first purchase at time 0
    until the end of an observation drawn uniformly from ``age_range``, and may drop out
    after each repeat purchase with a probability drawn from beta(a, b).
    """
    rng = np.random.default_rng(seed)
    rate = rng.gamma(r, 1 / alpha, n)
    dropout = rng.beta(a, b, n)
    age = np.round(rng.uniform(*age_range, n) / step) * step
    x, t_x, t = np.zeros(n), np.zeros(n), rng.exponential(1 / rate)
    active = t <= age
    while active.any():  # every customer at once, one purchase per pass
        x[active], t_x[active] = x[active] + 1, t[active]
        active &= rng.random(n) >= dropout
        t = t + rng.exponential(1 / rate)
        active &= t <= age
    return x, np.round(t_x / step) * step, age

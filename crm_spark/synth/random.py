"""Deterministic random columns from hashes of a seed, a salt and row keys.

A value depends only on (seed, salt, keys), never on partitioning or execution order,
so the generated data is the same for any number of partitions or executors.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType

_MODULUS = 2**52
# The primes of XXH64, as Spark's XXH64 uses them.
_PRIME_1, _PRIME_2, _PRIME_3, _PRIME_4, _PRIME_5 = (np.uint64(p) for p in (
    0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5))


def uniform(seed: int, salt: str, *keys: Column) -> Column:
    """Return a column uniform on (0, 1), fixed by ``seed``, ``salt`` and ``keys``."""
    hashed = F.xxhash64(F.lit(seed), F.lit(salt), *keys)
    return (F.pmod(hashed, F.lit(_MODULUS)) + F.lit(0.5)) / F.lit(float(_MODULUS))


def uniform_prefix(seed: int, salt: str) -> Column:
    """Return the hash :func:`uniform` goes on from to hash its keys, for :func:`uniform_draws`.

    Spark's ``xxhash64`` hashes its arguments in turn, each with the hash of those before
    as its seed, so this constant is the state after ``seed`` and ``salt``.
    """
    return F.xxhash64(F.lit(seed), F.lit(salt))


def _rotate_left(x: np.ndarray, bits: int) -> np.ndarray:
    return (x << np.uint64(bits)) | (x >> np.uint64(64 - bits))


def _mix(h: np.ndarray) -> np.ndarray:
    h = (h ^ (h >> np.uint64(33))) * _PRIME_2
    h = (h ^ (h >> np.uint64(29))) * _PRIME_3
    return h ^ (h >> np.uint64(32))


def uniform_draws(prefix: int, *keys: np.ndarray) -> np.ndarray:
    """Return :func:`uniform` in numpy: the same doubles for the same keys.

    XXH64 of one 32- or 64-bit value, as Spark's ``XXH64.hashInt`` and ``hashLong`` compute
    it, applied key after key (unsigned 64-bit arithmetic wraps as Java's ``long`` does).

    Args:
        prefix: the value of :func:`uniform_prefix` for the seed and salt.
        keys: integer arrays that broadcast together; ``int32`` ones hash as Spark's ``int``,
            ``int64`` ones as its ``long``.

    Returns:
        Uniforms on (0, 1), shaped as the keys broadcast.
    """
    # The state grows as the keys broadcast: a key that varies along fewer axes (a person against
    # each of their candidates) is hashed once per value, not once per element of the result.
    h = np.full((1,) * max(k.ndim for k in keys), prefix & (2**64 - 1), dtype=np.uint64)
    for key in keys:
        if key.dtype == np.int32:
            h = h + _PRIME_5 + np.uint64(4)
            h = h ^ (key.astype(np.uint32).astype(np.uint64) * _PRIME_1)
            h = _mix(_rotate_left(h, 23) * _PRIME_2 + _PRIME_3)
        elif key.dtype == np.int64:
            h = h + _PRIME_5 + np.uint64(8)
            h = h ^ (_rotate_left(key.view(np.uint64) * _PRIME_2, 31) * _PRIME_1)
            h = _mix(_rotate_left(h, 27) * _PRIME_1 + _PRIME_4)
        else:
            raise TypeError(f"keys hash as int32 or int64, not {key.dtype}")
    return ((h & np.uint64(_MODULUS - 1)).astype(np.float64) + 0.5) / float(_MODULUS)


def normal(seed: int, salt: str, *keys: Column) -> Column:
    """Return a standard normal column (Box-Muller on two hashed uniforms)."""
    u1 = uniform(seed, f"{salt}/1", *keys)
    u2 = uniform(seed, f"{salt}/2", *keys)
    return F.sqrt(F.lit(-2.0) * F.log(u1)) * F.cos(F.lit(2 * math.pi) * u2)


def poisson_draws(mean: np.ndarray, u: np.ndarray, max_k: int) -> np.ndarray:
    """Return Poisson draws with ``mean`` by inverting the CDF at the uniforms ``u``.

    Each draw is the least ``k`` whose CDF exceeds ``u``, summed term by term up to
    ``mean + 10 sd + 10`` steps (capped by ``max_k``, the draw when none exceeds it).
    Means above 200 use the normal approximation, where the exact CDF underflows.

    Args:
        mean: non-negative Poisson means.
        u: uniforms on (0, 1), as many as ``mean``.
        max_k: largest value returned by the exact branch.

    Returns:
        The draws, as 32-bit integers.
    """
    steps = np.minimum(max_k, np.ceil(mean + 10.0 * np.sqrt(mean) + 10.0)).astype(np.int64)
    pmf = np.exp(-mean)
    cdf = pmf.copy()
    draw = np.where(u < cdf, 0, -1)
    for i in range(1, int(steps.max(initial=0)) + 1):
        pmf = pmf * mean / i
        cdf = cdf + pmf
        draw = np.where((draw < 0) & (i <= steps) & (u < cdf), i, draw)
    exact = np.where(draw < 0, steps, draw)
    z = np.log(u / (1.0 - u)) / 1.702  # the quantile of u by a logistic approximation of probit
    approx = np.maximum(0.0, np.floor(mean + np.sqrt(mean) * z + 0.5))  # rounded half up, as Spark's round
    return np.where(mean > 200, approx, exact).astype(np.int32)


@F.pandas_udf(IntegerType())
def _poisson_udf(mean: pd.Series, u: pd.Series, max_k: pd.Series) -> pd.Series:
    return pd.Series(poisson_draws(mean.to_numpy(), u.to_numpy(), int(max_k.to_numpy().max(initial=0))))


def poisson(mean: Column, u: Column, max_k: int) -> Column:
    """Return a Poisson draw with a per-row ``mean`` at uniform ``u`` (see :func:`poisson_draws`).

    The loop runs in numpy over Arrow batches: Spark's ``aggregate`` over a sequence, the
    built-in way, is interpreted and took 12-16 s for the three draws of 100,000 persons
    against 1-5 s here.

    Args:
        mean: the Poisson mean (non-negative).
        u: a uniform (0, 1) column.
        max_k: largest value returned by the exact branch.

    Returns:
        An integer column.
    """
    return _poisson_udf(mean.cast("double"), u, F.lit(max_k))


def poisson_thresholds(mean: float, max_k: int) -> np.ndarray:
    """Return the CDF values of a Poisson law with a constant ``mean``, as :func:`poisson_draws` sums them.

    The draw at uniform ``u`` is the number of values ``u`` reaches (the CDF never decreases),
    up to the same cap: ``np.searchsorted(thresholds, u, side="right")``. Means above 200,
    which :func:`poisson_draws` approximates, are not supported.
    """
    if mean > 200:
        raise ValueError(f"a constant Poisson mean above 200 is drawn by poisson_draws, not {mean}")
    steps = min(max_k, math.ceil(mean + 10.0 * math.sqrt(mean) + 10.0))
    pmf = cdf = math.exp(-mean)
    thresholds = [cdf]
    for i in range(1, steps):
        pmf = pmf * mean / i
        cdf = cdf + pmf
        thresholds.append(cdf)
    return np.array(thresholds)


def cumulative_weights(weights: list[float]) -> list[float]:
    """Return the cumulative shares :func:`pick` compares its uniform with (all but the last, which is 1).

    The choice at uniform ``u`` is the number of them ``u`` reaches: ``np.searchsorted(shares, u, side="right")``
    in numpy.
    """
    total = sum(weights)
    return list(itertools.accumulate(weight / total for weight in weights[:-1]))


def pick(u: Column, options: list, weights: list[float] | None = None) -> Column:
    """Return one of ``options`` chosen by uniform ``u`` with the given weights.

    The choice is the number of cumulative weights ``u`` reaches, so ``u`` appears outside
    any branch and Spark computes it once per row.
    """
    reached = F.lit(0)
    for cumulative in cumulative_weights(weights or [1.0] * len(options)):
        reached = reached + (u >= F.lit(cumulative)).cast("int")
    return F.element_at(F.array(*[F.lit(option) for option in options]), reached + 1)

"""Deterministic random columns from hashes of a seed, a salt and row keys.

A value depends only on (seed, salt, keys), never on partitioning or execution order,
so the generated data is the same for any number of partitions or executors.
"""

from __future__ import annotations

import itertools
import math

from pyspark.sql import Column
from pyspark.sql import functions as F

_MODULUS = 2**52


def uniform(seed: int, salt: str, *keys: Column) -> Column:
    """Return a column uniform on (0, 1), fixed by ``seed``, ``salt`` and ``keys``."""
    hashed = F.xxhash64(F.lit(seed), F.lit(salt), *keys)
    return (F.pmod(hashed, F.lit(_MODULUS)) + F.lit(0.5)) / F.lit(float(_MODULUS))


def normal(seed: int, salt: str, *keys: Column) -> Column:
    """Return a standard normal column (Box-Muller on two hashed uniforms)."""
    u1 = uniform(seed, f"{salt}/1", *keys)
    u2 = uniform(seed, f"{salt}/2", *keys)
    return F.sqrt(F.lit(-2.0) * F.log(u1)) * F.cos(F.lit(2 * math.pi) * u2)


def poisson(mean: Column, u: Column, max_k: int) -> Column:
    """Return a Poisson draw with ``mean`` by inverting its CDF at uniform ``u``.

    Means above 200 use the normal approximation, where the exact CDF underflows.

    Args:
        mean: the Poisson mean (non-negative).
        u: a uniform (0, 1) column.
        max_k: largest value returned by the exact branch.

    Returns:
        An integer column.
    """
    start = F.struct(
        F.exp(-mean).alias("pmf"),
        F.exp(-mean).alias("cdf"),
        F.when(u < F.exp(-mean), F.lit(0)).otherwise(F.lit(-1)).alias("k"),
    )

    def step(acc: Column, i: Column) -> Column:
        pmf = acc["pmf"] * mean / i
        cdf = acc["cdf"] + pmf
        k = F.when(acc["k"] >= 0, acc["k"]).when(u < cdf, i).otherwise(F.lit(-1))
        return F.struct(pmf.alias("pmf"), cdf.alias("cdf"), k.alias("k"))

    # Iterate only as far as the mean makes plausible (mean + 10 sd), capped by max_k.
    steps = F.least(F.lit(max_k), F.ceil(mean + F.lit(10.0) * F.sqrt(mean) + F.lit(10.0)).cast("int"))
    exact = F.aggregate(F.sequence(F.lit(1), steps), start, step)["k"]
    exact = F.when(exact < 0, steps).otherwise(exact)
    # Normal approximation: the quantile of u via a logistic approximation of probit.
    z = F.log(u / (F.lit(1.0) - u)) / F.lit(1.702)
    approx = F.greatest(F.lit(0), F.round(mean + F.sqrt(mean) * z).cast("int"))
    return F.when(mean > 200, approx).otherwise(exact).cast("int")


def constant_poisson(mean: float, u: Column, max_k: int) -> Column:
    """Return the draw of :func:`poisson` for a constant ``mean``, without its loop.

    The CDF is summed here in the order :func:`poisson` sums it (the same IEEE arithmetic;
    only ``exp`` may differ from the JVM's in the last bit), and the draw is the number of
    its values ``u`` reaches (the CDF never decreases), up to the same cap. Spark compiles
    the comparisons, where :func:`poisson`'s ``aggregate`` is interpreted.
    """
    if mean > 200:
        return poisson(F.lit(float(mean)), u, max_k)
    steps = min(max_k, math.ceil(mean + 10.0 * math.sqrt(mean) + 10.0))
    pmf = cdf = math.exp(-mean)
    reached = (u >= F.lit(cdf)).cast("int")
    for i in range(1, steps):
        pmf = pmf * mean / i
        cdf = cdf + pmf
        reached = reached + (u >= F.lit(cdf)).cast("int")
    return reached


def pick(u: Column, options: list, weights: list[float] | None = None) -> Column:
    """Return one of ``options`` chosen by uniform ``u`` with the given weights.

    The choice is the number of cumulative weights ``u`` reaches, so ``u`` appears outside
    any branch and Spark computes it once per row.
    """
    weights = weights or [1.0] * len(options)
    total = sum(weights)
    reached = F.lit(0)
    for cumulative in itertools.accumulate(weight / total for weight in weights[:-1]):
        reached = reached + (u >= F.lit(cumulative)).cast("int")
    return F.element_at(F.array(*[F.lit(option) for option in options]), reached + 1)

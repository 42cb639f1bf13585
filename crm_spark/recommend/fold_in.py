"""Fold-in: a customer's ALS factor computed against a fitted model's fixed item factors, so a
customer whose history changed since the fit, or who is new, is served without refitting.

Implicit ALS (Hu, Koren and Volinsky 2008, as Spark fits it) gives a customer with items
``i`` of strengths ``r_i`` the factor ``x = (YᵀY + Σ α r_i y_i y_iᵀ + λ n I)⁻¹ Σ (1 + α r_i) y_i``,
with ``n`` the customer's items: Spark scales the regularization by it. Explicit ALS fits the
values themselves: ``x = (Σ y_i y_iᵀ + λ n I)⁻¹ Σ r_i y_i``. Spark's last step of each
iteration is exactly this solve for every customer, so folding in a customer from the
training data gives back the model's own factor.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.recommend.als import LOG, AlsParams
from crm_spark.recommend.interactions import ITEM, STRENGTH, USER


def fold_in(item_factors: np.ndarray, gram: np.ndarray, positions: list[np.ndarray], strengths: list[np.ndarray],
            params: AlsParams, explicit: bool = False) -> np.ndarray:
    """Return the ALS factor of each customer against fixed item factors.

    Args:
        item_factors: ``(items, rank)`` factors of the fitted model.
        gram: ``item_factorsᵀ item_factors`` (computed once per model).
        positions: per customer, the rows of ``item_factors`` of their items.
        strengths: per customer, the strengths of those items (before the confidence transform).
        params: the model's settings (alpha, reg_param and the confidence transform).
        explicit: the model fits the strengths as values (ratings) instead of confidences.

    Returns:
        ``(customers, rank)`` float32 factors; a customer without items gets zeros.
    """
    rank = item_factors.shape[1]
    factors = np.zeros((len(positions), rank), dtype=np.float64)
    for row, (where, strength) in enumerate(zip(positions, strengths, strict=True)):
        if not len(where):
            continue
        y = item_factors[where]
        if explicit:
            system = y.T @ y + params.reg_param * len(where) * np.eye(rank)
            factors[row] = np.linalg.solve(system, y.T @ strength)
            continue
        values = np.log1p(strength) if params.confidence == LOG else strength
        confidence = params.alpha * np.abs(values)
        system = gram + (y.T * confidence) @ y + params.reg_param * np.count_nonzero(values > 0) * np.eye(rank)
        factors[row] = np.linalg.solve(system, y.T @ np.where(values > 0, 1.0 + confidence, 0.0))
    return factors.astype(np.float32)


def fold_in_users(item_factors_df: DataFrame, indexed_df: DataFrame, params: AlsParams,
                  explicit: bool = False) -> DataFrame:
    """Return ``(user, features)``: every customer of ``indexed_df`` folded into a fitted model.

    The item factors travel to each task once (``items × rank`` floats, bounded by the
    catalogue); customers are solved in blocks, each on the executor holding them.

    Args:
        item_factors_df: the model's ``itemFactors`` (``id``, ``features``).
        indexed_df: ``(user, item, strength)`` interactions; items the model does not know are left out.
        params: the model's settings.
        explicit: the model fits the strengths as values (see :func:`fold_in`).
    """
    frame = item_factors_df.orderBy("id").toPandas()
    item_ids = frame["id"].to_numpy(dtype=np.int64)
    matrix = np.stack(frame["features"].to_numpy()).astype(np.float64) if len(item_ids) else np.zeros((0, 0))
    gram = matrix.T @ matrix
    histories = indexed_df.groupBy(USER).agg(F.collect_list(F.struct(ITEM, STRENGTH)).alias("history"))

    def solve(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            positions, strengths = [], []
            for history in batch["history"]:
                items = np.array([h[ITEM] for h in history], dtype=np.int64)
                found = np.searchsorted(item_ids, items)
                known = (found < len(item_ids)) & (item_ids[np.minimum(found, len(item_ids) - 1)] == items)
                positions.append(found[known])
                strengths.append(np.array([h[STRENGTH] for h in history], dtype=np.float64)[known])
            factors = fold_in(matrix, gram, positions, strengths, params, explicit)
            yield pd.DataFrame({USER: batch[USER].to_numpy(dtype=np.int32), "features": list(factors)})

    return histories.mapInPandas(solve, f"{USER} int, features array<float>")

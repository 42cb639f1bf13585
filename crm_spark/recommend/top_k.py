"""Top-k serving: each customer's best-scored products they have not seen, scored by any fitted
recommender in blocks of users against every item, with a per-category cap and products left out when inactive."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from crm_spark.dates import start_of
from crm_spark.recommend.interactions import EVENT_TS, ITEM, USER
from crm_spark.schemas import CATEGORY, CUSTOMER_KEY, PRODUCT_ID, SCORE

RANK = "rank"
# Scores of one block of users against every item stay below this many cells (float32).
BLOCK_CELLS = 4_000_000


@dataclass(frozen=True)
class Scorer:
    """How a fitted recommender scores every item for a block of users.

    Attributes:
        item_ids: the item indices the score columns stand for, ascending.
        users: ``user`` and the per-user columns ``score`` reads; users absent get nothing.
        score: maps a block of ``users`` rows, with the column ``seen`` (the items of the
            user's training interactions, or None), to a ``(rows, len(item_ids))`` float32 array.
    """

    item_ids: np.ndarray
    users: DataFrame
    score: Callable[[pd.DataFrame], np.ndarray]


def top_k_unseen(scorer: Scorer, users_df: DataFrame, seen_df: DataFrame, k: int,
                 excluded_items: Sequence[int] = ()) -> DataFrame:
    """Return each user's ``k`` best-scored items, never one they have seen or an excluded one.

    Scores every item for a block of users at a time (a matrix product; the model's item
    side travels with the task, the driver holds only the catalogue's), masks seen and
    excluded items, and keeps the best ``k``. Measured faster than ALS's
    ``recommendForUserSubset`` with ``k`` plus the most items anyone has seen followed by
    an anti-join (see ``benchmarks/recommend_topk.py``).

    Args:
        scorer: the fitted recommender's scoring.
        users_df: column ``user``.
        seen_df: ``(user, item)`` pairs to exclude.
        k: recommendations per user.
        excluded_items: items no one gets (for example inactive products).

    Returns:
        ``user``, ``item``, ``score`` and ``rank`` (1 = best); fewer than ``k`` rows
        only when fewer unseen items exist.
    """
    item_ids = scorer.item_ids
    excluded = np.flatnonzero(np.isin(item_ids, np.asarray(excluded_items, dtype=np.int64)))
    block_rows = max(1, BLOCK_CELLS // max(1, len(item_ids)))
    seen = seen_df.groupBy(USER).agg(F.collect_list(ITEM).alias("seen"))
    users = scorer.users.join(users_df.select(USER).distinct(), USER).join(seen, USER, "left")
    score = scorer.score

    def best(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for start in range(0, len(batch), block_rows):
                part = batch.iloc[start:start + block_rows]
                if len(item_ids) and len(part):
                    yield _block_top_k(part, item_ids, score(part), excluded, k)

    return users.mapInPandas(best, f"{USER} int, {ITEM} int, {SCORE} float, {RANK} int")


def seen_columns(part: pd.DataFrame, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the row and the ``item_ids`` position of every seen item of a block (see :class:`Scorer`)."""
    seen = part["seen"].to_numpy()
    lengths = np.array([0 if s is None else len(s) for s in seen], dtype=np.int64)
    if not lengths.sum():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    columns = np.searchsorted(item_ids, np.concatenate([s for s in seen if s is not None]))
    return np.repeat(np.arange(len(part)), lengths), np.minimum(columns, len(item_ids) - 1)


def _block_top_k(part: pd.DataFrame, item_ids: np.ndarray, scores: np.ndarray, excluded: np.ndarray,
                 k: int) -> pd.DataFrame:
    """Return the top ``k`` unseen items of each user of one block (see :func:`top_k_unseen`)."""
    scores[:, excluded] = -np.inf
    rows, columns = seen_columns(part, item_ids)
    scores[rows, columns] = -np.inf
    m = min(k, scores.shape[1])
    top = np.argpartition(-scores, m - 1, axis=1)[:, :m]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
    keep = np.isfinite(top_scores).ravel()
    return pd.DataFrame({
        USER: np.repeat(part[USER].to_numpy(dtype=np.int32), m)[keep],
        ITEM: item_ids[top].ravel()[keep].astype(np.int32),
        SCORE: top_scores.ravel()[keep],
        RANK: np.tile(np.arange(1, m + 1, dtype=np.int32), len(part))[keep],
    })


def cap_per_category(recs_df: DataFrame, categories_df: DataFrame, cap: int, k: int) -> DataFrame:
    """Keep at most ``cap`` products of a category per customer, then the best ``k``, re-ranked.

    Args:
        recs_df: ``customer_key``, ``product_id``, ``score``, ``rank`` (more than ``k`` candidates).
        categories_df: ``(product_id, category)``; products without one form no category.
        cap: products per category.
        k: recommendations per customer.
    """
    per_category = Window.partitionBy(CUSTOMER_KEY, "_category").orderBy(RANK)
    capped = (recs_df.join(categories_df.select(PRODUCT_ID, F.col(CATEGORY).alias("_category")), PRODUCT_ID,
                           "left")
              .withColumn("_nth", F.row_number().over(per_category))
              .where(F.col("_category").isNull() | (F.col("_nth") <= cap)))
    rerank = Window.partitionBy(CUSTOMER_KEY).orderBy(RANK)
    return capped.withColumn(RANK, F.row_number().over(rerank)).where(F.col(RANK) <= k).drop("_category", "_nth")


def candidates_for_cap(k: int, cap: int | None) -> int:
    """Return how many candidates to draw so a category cap can still fill ``k`` places."""
    return k if cap is None else k * max(2, math.ceil(k / cap))


def inactive_items(events_df: DataFrame, items_df: DataFrame, as_of_date: dt.date, days: int | None
                   ) -> tuple[int, ...]:
    """Return the item indices without any interaction in the ``days`` before ``as_of_date`` (none without ``days``)."""
    if days is None:
        return ()
    since = start_of(as_of_date - dt.timedelta(days=days))
    active = events_df.where(F.col(EVENT_TS) >= since).select(PRODUCT_ID).distinct()
    return tuple(r[0] for r in items_df.join(active, PRODUCT_ID, "left_anti").select(ITEM).collect())

"""EASE, a closed-form item-to-item regression (Steck 2019, "Embarrassingly Shallow
Autoencoders for Sparse Data"): each item's score for a customer is a learned weighted sum of
the items the customer has, with no item predicting itself.

The item co-occurrence (Gram) matrix is aggregated in Spark, one sparse product per block of
customers, so its cost grows linearly with the customer count. The driver then solves it once
per regularization; that needs ``items²`` memory and ``items³`` time, so catalogues above a
configured size skip the family. Scoring is blocked like ALS's top-k.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy import sparse

from crm_spark.recommend.interactions import ITEM, USER
from crm_spark.recommend.top_k import Scorer, seen_columns

EASE_MODEL = "ease"


def item_ids_of(indexed_df: DataFrame) -> np.ndarray:
    """Return the distinct item indices of ``(user, item, ...)`` interactions, ascending."""
    return np.sort(indexed_df.select(ITEM).distinct().toPandas()[ITEM].to_numpy(dtype=np.int64))


def cooccurrence(indexed_df: DataFrame, item_ids: np.ndarray) -> np.ndarray:
    """Return the dense item-item co-occurrence: how many customers interacted with both items.

    Each block of customers' binary customer-item matrix ``X`` gives the upper triangle of
    ``XᵀX`` as sparse cells; Spark sums the cells of every block and the driver fills
    the symmetric matrix.

    Args:
        indexed_df: ``(user, item, ...)`` interactions.
        item_ids: the items the rows and columns stand for, ascending (``item_ids_of``).

    Returns:
        A ``(len(item_ids), len(item_ids))`` float64 array.
    """
    n = len(item_ids)
    lists = indexed_df.groupBy(USER).agg(F.collect_list(ITEM).alias("seen"))

    def cells(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            rows, columns = seen_columns(batch, item_ids)
            x = sparse.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, columns)), shape=(len(batch), n))
            product = sparse.triu(x.T @ x).tocoo()
            yield pd.DataFrame({"i": product.row.astype(np.int32), "j": product.col.astype(np.int32),
                                "n": product.data})

    summed = lists.mapInPandas(cells, "i int, j int, n double").groupBy("i", "j").agg(F.sum("n").alias("n"))
    frame = summed.toPandas()
    gram = np.zeros((n, n))
    gram[frame["i"], frame["j"]] = frame["n"]
    return gram + np.triu(gram, 1).T


def ease_weights(gram: np.ndarray, reg: float) -> np.ndarray:
    """Return EASE's item-item weights: ``B = I - P / diag(P)`` with ``P = (G + reg·I)⁻¹``, zero diagonal.

    Args:
        gram: the item co-occurrence matrix (``cooccurrence``).
        reg: the L2 regularization; larger favours popular items less sharply.

    Returns:
        The float32 weights; row ``i`` says how having item ``i`` raises each item's score.
    """
    precision = np.linalg.inv(gram + reg * np.eye(len(gram)))
    weights = precision / -np.diag(precision)
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def ease_scorer(users_df: DataFrame, item_ids: np.ndarray, shared: Broadcast) -> Scorer:
    """Return EASE's scoring: the sum of the weight rows of the items each customer has.

    Args:
        users_df: column ``user``: the customers with interactions.
        item_ids: the items of the weights' rows and columns, ascending.
        shared: ``ease_weights``, broadcast so they travel to each executor once.
    """
    n = len(item_ids)

    def score(part: pd.DataFrame) -> np.ndarray:
        rows, columns = seen_columns(part, item_ids)
        x = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, columns)), shape=(len(part), n))
        return np.asarray(x @ shared.value, dtype=np.float32)

    return Scorer(item_ids, users_df.select(USER).distinct(), score)


def weights_frame(spark: SparkSession, item_ids: np.ndarray, weights: np.ndarray) -> DataFrame:
    """Return ``(item, weights)``: each item's weight row as an array, to save a fitted model."""
    frame = pd.DataFrame({ITEM: item_ids.astype(np.int32), "weights": list(weights)})
    return spark.createDataFrame(frame, f"{ITEM} int, weights array<float>")

"""Clustering a bounded sample on the driver, to choose k: k-means, bisecting k-means and the silhouette.

Choosing k fits every k of a range several times. On a sample of 10,000 customers each of
MLlib's iterations is a Spark job of a few milliseconds' work, and at 100,000 customers
the search ran about 900 Spark jobs in about 70 s; on the driver it takes a second or two.
The k-means is SciPy's (``scipy.cluster.vq.kmeans2``, k-means++ starts); bisecting splits
clusters in two with it the way MLlib's ``BisectingKMeans`` does; the silhouette is
MLlib's ``ClusteringEvaluator``'s (squared Euclidean distances), computed exactly from
per-cluster sums.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2


@dataclass(frozen=True)
class SampleFit:
    """The clusters of one fit of a sample: a label per point and the within-cluster cost."""

    labels: np.ndarray
    cost: float


def _cost(points: np.ndarray, labels: np.ndarray) -> float:
    """Return the sum of squared distances of the points to the mean of their cluster."""
    total = 0.0
    for cluster in np.unique(labels):
        members = points[labels == cluster]
        total += float(((members - members.mean(axis=0)) ** 2).sum())
    return total


def _kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iterations: int) -> np.ndarray:
    """Return the labels of one k-means fit from k-means++ starts drawn from ``rng``."""
    with warnings.catch_warnings():  # a cluster left empty keeps its centre, as MLlib's does
        warnings.simplefilter("ignore")
        return kmeans2(points, k, iter=iterations, minit="++", rng=rng)[1]


def _bisecting(points: np.ndarray, k: int, rng: np.random.Generator, iterations: int) -> np.ndarray:
    """Return the labels of one bisecting fit: level by level, every cluster is split in two by
    k-means, larger clusters first when splitting them all would pass k (as MLlib's ``BisectingKMeans``)."""
    labels = np.zeros(len(points), dtype=np.int64)
    while (clusters := int(labels.max()) + 1) < k:
        sizes = np.bincount(labels)
        split = False
        for cluster in np.argsort(-sizes, kind="stable")[:k - clusters]:
            members = np.flatnonzero(labels == cluster)
            if len(members) < 2:
                continue
            halves = _kmeans(points[members], 2, rng, iterations)
            if 0 < halves.sum() < len(members):
                labels[members[halves == 1]] = int(labels.max()) + 1
                split = True
        if not split:  # no cluster can be divided any further
            break
    return labels


def fit(points: np.ndarray, k: int, bisecting: bool, seeds: range, iterations: int) -> SampleFit:
    """Fit k clusters once per seed and return the fit with the lowest within-cluster cost.

    Args:
        points: one row per customer, one column per feature.
        k: the number of clusters wanted (fewer when the points cannot be split that far).
        bisecting: bisecting k-means instead of k-means.
        seeds: the seeds of the fits.
        iterations: the iterations of each k-means (of each split when bisecting).

    Returns:
        The labels and cost of the best fit.
    """
    k = min(k, len(points))
    fits = []
    for seed in seeds:
        labels = (_bisecting if bisecting else _kmeans)(points, k, np.random.default_rng(seed), iterations)
        fits.append(SampleFit(labels, _cost(points, labels)))
    return min(fits, key=lambda f: f.cost)


def silhouette(points: np.ndarray, labels: np.ndarray) -> float:
    """Return the mean silhouette of the points with squared Euclidean distances, as MLlib's
    ``ClusteringEvaluator`` defines it; -1 when every point is in one cluster.

    A point's mean distance to a cluster is ``|x|^2 - 2 x.s/n + q/n`` from the cluster's count
    ``n``, sum ``s`` and sum of squared norms ``q``; to its own cluster it is scaled by
    ``n / (n - 1)`` to leave the point itself out, and a point alone in its cluster scores 0.
    """
    clusters, index = np.unique(labels, return_inverse=True)
    if len(clusters) < 2:
        return -1.0
    counts = np.bincount(index).astype(float)
    sums = np.zeros((len(clusters), points.shape[1]))
    np.add.at(sums, index, points)
    norms = (points ** 2).sum(axis=1)
    squares = np.bincount(index, weights=norms)
    mean_distance = norms[:, None] - 2 * points @ (sums / counts[:, None]).T + (squares / counts)[None, :]
    rows = np.arange(len(points))
    own_count = counts[index]
    alone = own_count == 1
    own = mean_distance[rows, index] * own_count / np.where(alone, 1.0, own_count - 1)
    mean_distance[rows, index] = np.inf
    nearest = mean_distance.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(own < nearest, 1 - own / nearest, np.where(own > nearest, nearest / own - 1, 0.0))
    return float(np.where(alone, 0.0, score).mean())

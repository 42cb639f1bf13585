"""Ranking metrics of top-k recommendations against held-out relevant items."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.ml.evaluation import RankingEvaluator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.frames import persisted
from crm_spark.schemas import CUSTOMER_KEY, POPULARITY, PRODUCT_ID

RANKING_METRICS = {
    "precision_at_k": "precisionAtK",
    "recall_at_k": "recallAtK",
    "ndcg_at_k": "ndcgAtK",
    "map_at_k": "meanAveragePrecisionAtK",
}


def ranking_frame(recs_df: DataFrame, relevant_df: DataFrame, items_df: DataFrame) -> DataFrame:
    """Return one row per customer with relevant items: ranked predictions and relevant items.

    Customers with relevant items but no recommendations get an empty prediction list,
    so they count as misses rather than being left out.

    Args:
        recs_df: ``customer_key``, ``product_id``, ``rank``.
        relevant_df: ``customer_key``, ``product_id``.
        items_df: ``product_id``, ``item`` (integer index of the product).

    Returns:
        ``customer_key``, ``predicted`` and ``relevant`` (arrays of item indices as doubles).
    """
    ranked = recs_df.join(items_df, PRODUCT_ID).groupBy(CUSTOMER_KEY).agg(
        F.transform(F.array_sort(F.collect_list(F.struct("rank", F.col("item").cast("double").alias("item")))),
                    lambda s: s["item"]).alias("predicted"))
    relevant = relevant_df.join(items_df, PRODUCT_ID).groupBy(CUSTOMER_KEY).agg(
        F.collect_set(F.col("item").cast("double")).alias("relevant"))
    return relevant.join(ranked, CUSTOMER_KEY, "left").select(
        CUSTOMER_KEY,
        F.coalesce("predicted", F.array().cast("array<double>")).alias("predicted"),
        "relevant",
    )


def ranking_metrics(frame_df: DataFrame, k: int, names: Sequence[str] = tuple(RANKING_METRICS)) -> dict[str, float]:
    """Return the ``names`` of ``RANKING_METRICS`` (precision, recall, nDCG and MAP at ``k`` by
    default) over the customers of ``frame_df``; each is a pass over it, so ask only for those needed."""
    def value(df: DataFrame, name: str) -> float:
        return float(RankingEvaluator(predictionCol="predicted", labelCol="relevant", metricName=RANKING_METRICS[name],
                                      k=k).evaluate(df))

    if len(names) == 1:
        return {names[0]: value(frame_df, names[0])}
    with persisted(frame_df) as kept:
        return {name: value(kept, name) for name in names}


def catalogue_coverage(recs_df: DataFrame, products_df: DataFrame) -> float:
    """Return distinct recommended products over distinct catalogue products."""
    recommended = recs_df.select(PRODUCT_ID).distinct().count()
    catalogue = products_df.select(PRODUCT_ID).distinct().count()
    return recommended / catalogue if catalogue else float("nan")


def distribution_entropy(recs_df: DataFrame) -> float:
    """Return the Shannon entropy (bits) of how often each product is recommended.

    Higher is more even: ``log2(n)`` when ``n`` products are recommended equally often,
    0 when every list holds the same single product.
    """
    counts = recs_df.groupBy(PRODUCT_ID).count()
    # The total first: a window over all products would move every row to one partition.
    total = counts.agg(F.sum("count")).first()[0]
    if not total:
        return float("nan")
    share = F.col("count") / F.lit(float(total))
    return float(counts.select((-share * F.log2(share)).alias("h")).agg(F.sum("h")).first()[0])


def novelty(recs_df: DataFrame) -> float:
    """Return the mean self-information ``-log2(popularity)`` of the recommended products.

    ``popularity`` is the share of training customers who interacted with the product;
    higher novelty means less obvious recommendations.
    """
    value = recs_df.where(F.col(POPULARITY) > 0).agg(F.avg(-F.log2(POPULARITY))).first()[0]
    return float(value) if value is not None else float("nan")

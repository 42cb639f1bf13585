"""Scores from the generator's ground truth, for reference metrics only (never training)."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark.schemas import CUSTOMER_ID, CUSTOMER_KEY, SCORE


def truth_available(truth_dir: str | None) -> bool:
    """Return whether a ground-truth folder with persons and customers exists."""
    return bool(truth_dir) and all((Path(truth_dir) / name).exists() for name in ("persons", "customers"))


def truth_has(truth_dir: str | None, name: str) -> bool:
    """Return whether the ground truth holds the table ``name`` (older truth folders may not)."""
    return truth_available(truth_dir) and (Path(truth_dir) / name).exists()


def oracle_churn_scores(spark: SparkSession, truth_dir: str, xref_df: DataFrame) -> DataFrame:
    """Return ``(customer_key, score)``: the planted probability of the churn label.

    Each key takes the person of its cluster's smallest source id.
    """
    persons = spark.read.parquet(f"{truth_dir}/persons").select("person_id", "label_prob")
    return _person_of_key(spark, truth_dir, xref_df).join(persons, "person_id").select(
        CUSTOMER_KEY, F.col("label_prob").cast("double").alias(SCORE))


def _person_of_key(spark: SparkSession, truth_dir: str, xref_df: DataFrame) -> DataFrame:
    """Return ``(customer_key, person_id)``: each key's person, by its cluster's smallest source id."""
    records = spark.read.parquet(f"{truth_dir}/customers").select(CUSTOMER_ID, "person_id")
    return xref_df.where(F.col(CUSTOMER_ID) == F.col("cluster_id")).join(records, CUSTOMER_ID).select(
        CUSTOMER_KEY, "person_id")


def planted_groups(spark: SparkSession, truth_dir: str, xref_df: DataFrame) -> DataFrame:
    """Return ``(customer_key, group)``: the latent customer group each key's person was drawn from."""
    persons = spark.read.parquet(f"{truth_dir}/persons").select("person_id", "group")
    return _person_of_key(spark, truth_dir, xref_df).join(persons, "person_id").select(CUSTOMER_KEY, "group")


def anomalous_orders(spark: SparkSession, truth_dir: str) -> DataFrame:
    """Return ``order_id`` of every order the generator made anomalous."""
    return spark.read.parquet(f"{truth_dir}/anomalous_orders").select("order_id").distinct()


def dedup_pair_counts(spark: SparkSession, truth_dir: str, xref_df: DataFrame) -> dict[str, float]:
    """Return pairwise entity-resolution precision and recall against the planted persons.

    Over the customer records that reached silver, a pair of records is a true pair
    when both belong to one person and a predicted pair when both got one
    ``customer_key``; counts are sums of n*(n-1)/2 over groups, so no pair is listed.

    Returns:
        ``precision``, ``recall``, ``f1``, ``true_pairs``, ``predicted_pairs`` and
        ``correct_pairs``.
    """
    records = spark.read.parquet(f"{truth_dir}/customers").select(CUSTOMER_ID, "person_id")
    joined = xref_df.select(CUSTOMER_ID, CUSTOMER_KEY).join(records, CUSTOMER_ID)

    def pairs(*keys: str) -> float:
        sizes = joined.groupBy(*keys).count()
        return float(sizes.agg(F.sum(F.col("count") * (F.col("count") - 1) / 2)).first()[0] or 0.0)

    true_pairs, predicted, correct = pairs("person_id"), pairs(CUSTOMER_KEY), pairs("person_id", CUSTOMER_KEY)
    precision = correct / predicted if predicted else 1.0
    recall = correct / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "true_pairs": true_pairs,
            "predicted_pairs": predicted, "correct_pairs": correct}

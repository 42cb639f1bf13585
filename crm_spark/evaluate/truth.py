"""Scores from the generator's ground truth, for reference metrics only (never training)."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark.schemas import CUSTOMER_ID, CUSTOMER_KEY


def truth_available(truth_dir: str | None) -> bool:
    """Return whether a ground-truth folder with persons and customers exists."""
    return bool(truth_dir) and all((Path(truth_dir) / name).exists() for name in ("persons", "customers"))


def oracle_churn_scores(spark: SparkSession, truth_dir: str, xref_df: DataFrame) -> DataFrame:
    """Return ``(customer_key, score)``: the planted probability of the churn label.

    Each key takes the person of its cluster's smallest source id.
    """
    records = spark.read.parquet(f"{truth_dir}/customers").select(CUSTOMER_ID, "person_id")
    persons = spark.read.parquet(f"{truth_dir}/persons").select("person_id", "label_prob")
    return (
        xref_df.where(F.col(CUSTOMER_ID) == F.col("cluster_id"))
        .join(records, CUSTOMER_ID)
        .join(persons, "person_id")
        .select(CUSTOMER_KEY, F.col("label_prob").cast("double").alias("score"))
    )

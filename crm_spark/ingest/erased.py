"""Erased customers stay out: the keyed hashes of every erased source id, and the ids of a
source that match them (``gold.erasure_log``, written by the erase stage)."""

from __future__ import annotations

from typing import Callable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.schemas import CUSTOMER_ID


def erased_hashes(spark: SparkSession, lakehouse_dir: str) -> DataFrame | None:
    """Return ``id_hash`` of every erased source id, or None when nothing was ever erased."""
    if not tables.table_exists(spark, tables.ERASURE_LOG, lakehouse_dir):
        return None
    hashes = tables.read_table(spark, tables.ERASURE_LOG, lakehouse_dir).select(
        F.explode("id_hashes").alias("id_hash")).distinct()
    return None if hashes.isEmpty() else hashes


def erased_ids(df: DataFrame, hashes: DataFrame, keyed_hash: Callable[[Column], Column]) -> DataFrame:
    """Return the distinct ``customer_id`` values of ``df`` that belong to erased customers.

    Only the distinct ids are hashed; the result is small and meant to be broadcast.
    """
    ids = df.select(CUSTOMER_ID).where(F.col(CUSTOMER_ID).isNotNull()).distinct()
    return ids.withColumn("id_hash", keyed_hash(F.col(CUSTOMER_ID))).join(F.broadcast(hashes), "id_hash").select(
        CUSTOMER_ID)

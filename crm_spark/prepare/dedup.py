"""Customer de-duplication: exact matches on normalized email or phone, clustered
transitively into one ``customer_key`` per person, with a golden record per key."""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from crm_spark.schemas import (
    BIRTH_DATE,
    CITY,
    COUNTRY,
    CUSTOMER_ID,
    CUSTOMER_KEY,
    EMAIL,
    FIRST_NAME,
    GENDER,
    LAST_NAME,
    PHONE,
    SIGNUP_TS,
    UPDATED_TS,
)

log = logging.getLogger(__name__)

MATCH_COLUMNS = (EMAIL, PHONE)
SURVIVING_FIELDS = (FIRST_NAME, LAST_NAME, EMAIL, PHONE, BIRTH_DATE, CITY, COUNTRY)
FLAGS = ("email_invalid", "phone_invalid", "gender_unknown", "birth_date_invalid")


def match_edges(customers_df: DataFrame) -> DataFrame:
    """Return edges ``(src, dst)`` linking records that share a normalized email or phone.

    Every record of a group sharing a value is linked to the group's smallest id, so
    the edge count stays linear in the number of records.

    Args:
        customers_df: cleaned customers (``customer_id``, ``email``, ``phone``).

    Returns:
        Distinct edges between different customer ids.
    """
    edges = None
    for column in MATCH_COLUMNS:
        anchored = customers_df.where(F.col(column).isNotNull()).select(
            F.col(CUSTOMER_ID).alias("src"),
            F.min(CUSTOMER_ID).over(Window.partitionBy(column)).alias("dst"),
        )
        edges = anchored if edges is None else edges.unionByName(anchored)
    return edges.where(F.col("src") != F.col("dst")).distinct()


def connected_components(vertices_df: DataFrame, edges_df: DataFrame, max_iterations: int = 50) -> DataFrame:
    """Label each vertex with the smallest id in its connected component.

    Min-label propagation over undirected edges; the labels are checkpointed every
    iteration so the lineage stays short (the session needs a checkpoint directory).

    Args:
        vertices_df: column ``id``.
        edges_df: columns ``src`` and ``dst`` (ids of ``vertices_df``).
        max_iterations: stop with an error past this many rounds.

    Returns:
        Columns ``id`` and ``component``.

    Raises:
        RuntimeError: labels did not converge within ``max_iterations``.
    """
    reverse = edges_df.select(F.col("dst").alias("src"), F.col("src").alias("dst"))
    both = edges_df.select("src", "dst").unionByName(reverse)
    labels = vertices_df.select("id", F.col("id").alias("component")).checkpoint()
    for iteration in range(1, max_iterations + 1):
        proposals = both.join(labels.withColumnRenamed("id", "dst"), "dst").groupBy("src").agg(
            F.min("component").alias("proposal")
        )
        updated = labels.join(proposals.withColumnRenamed("src", "id"), "id", "left").select(
            "id", F.least("component", F.coalesce("proposal", "component")).alias("component"),
            (F.col("proposal") < F.col("component")).alias("changed"),
        ).checkpoint()
        labels = updated.select("id", "component")
        if updated.where("changed").isEmpty():
            log.info("connected components converged after %d iterations", iteration)
            return labels
    raise RuntimeError(f"connected components did not converge in {max_iterations} iterations")


def customer_key(component: str) -> Column:
    """Return the stable pseudonymous key of a component (hash of its smallest source id)."""
    return F.concat(F.lit("ck_"), F.substring(F.sha2(F.col(component), 256), 1, 24))


def xref(components_df: DataFrame) -> DataFrame:
    """Return ``customer_id -> customer_key`` from connected-component labels."""
    return components_df.select(F.col("id").alias(CUSTOMER_ID), customer_key("component").alias(CUSTOMER_KEY),
                                F.col("component").alias("cluster_id"))


def golden_records(customers_df: DataFrame, xref_df: DataFrame) -> DataFrame:
    """Merge the records of each ``customer_key`` into one golden record.

    Survivorship: each field takes its most recently updated non-null value; the
    signup is the earliest; gender the most recent known code; flags are kept if any
    record had them.

    Returns:
        One row per ``customer_key`` with the canonical fields, ``n_records`` and flags.
    """
    joined = customers_df.join(xref_df.select(CUSTOMER_ID, CUSTOMER_KEY), CUSTOMER_ID)

    def latest(column: str, usable: Column) -> Column:
        order = F.when(usable, F.struct(F.col(UPDATED_TS), F.col(CUSTOMER_ID)))
        return F.max_by(F.col(column), order).alias(column)

    known_gender = F.col(GENDER) != "U"
    return joined.groupBy(CUSTOMER_KEY).agg(
        *[latest(c, F.col(c).isNotNull()) for c in SURVIVING_FIELDS],
        F.coalesce(latest(GENDER, known_gender), F.lit("U")).alias(GENDER),
        F.min(SIGNUP_TS).alias(SIGNUP_TS),
        F.max(UPDATED_TS).alias(UPDATED_TS),
        F.count(F.lit(1)).alias("n_records"),
        *[F.max(F.col(flag)).alias(flag) for flag in FLAGS],
    )

"""Customer entity resolution: exact matches on normalized email or phone, fuzzy matches
on names within blocks, clustered transitively into one ``customer_key`` per person,
with a golden record per key."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Iterable

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from crm_spark.config import PrepareConfig
from crm_spark.frames import persisted
from crm_spark.schemas import (
    AGE,
    BIRTH_DATE,
    CANONICAL_COLUMNS,
    CITY,
    COUNTRY,
    CUSTOMER_FLAGS,
    CUSTOMER_ID,
    CUSTOMER_KEY,
    EMAIL,
    FIRST_NAME,
    GENDER,
    LABEL,
    LAST_NAME,
    N_RECORDS,
    PHONE,
    SIGNUP_TS,
    UPDATED_TS,
)

log = logging.getLogger(__name__)

MATCH_COLUMNS = (EMAIL, PHONE)
SURVIVING_FIELDS = (FIRST_NAME, LAST_NAME, EMAIL, PHONE, BIRTH_DATE, AGE, LABEL)
MOST_FREQUENT_FIELDS = (CITY, COUNTRY)
# Letters that fold to their base letter before names are compared by sound.
_ACCENTED = "ÀÁÂÃÄÅàáâãäåÇçÈÉÊËèéêëÌÍÎÏìíîïÑñÒÓÔÕÖØòóôõöøÙÚÛÜùúûüÝýÿ"
_FOLDED = "AAAAAAaaaaaaCcEEEEeeeeIIIIiiiiNnOOOOOOooooooUUUUuuuuYyy"
# Similarity given to two name parts with the same letters in another order (a transposition typo).
TRANSPOSITION_SIMILARITY = 0.9
# The most match edges joined into persons on the driver (at most about 135 MB there), not in rounds of Spark jobs.
DRIVER_EDGES = 250_000


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


def fold(column: Column) -> Column:
    """Return lower-case text with common accents removed, for comparing names."""
    return F.lower(F.translate(column, _ACCENTED, _FOLDED))


def name_similarity(left: Column, right: Column) -> Column:
    """Return 1 - Levenshtein distance / longer length, 0.9 for the same letters transposed, 0 if one is null."""
    a, b = fold(left), fold(right)
    levenshtein = 1.0 - F.levenshtein(a, b) / F.greatest(F.length(a), F.length(b))
    letters = F.array_join(F.array_sort(F.split(a, "")), "") == F.array_join(F.array_sort(F.split(b, "")), "")
    return F.greatest(levenshtein, F.when(letters, F.lit(TRANSPOSITION_SIMILARITY)).otherwise(0.0))


def blocks(customers_df: DataFrame) -> DataFrame:
    """Return ``(id, block)``: each record with a birth date goes into two blocks, birth date
    plus the Soundex of its first name and of its last name, so swapped names share a block."""
    keyed = customers_df.where(F.col(BIRTH_DATE).isNotNull())
    parts = [
        keyed.where(F.col(c).isNotNull()).select(
            F.col(CUSTOMER_ID).alias("id"),
            F.concat_ws("|", F.col(BIRTH_DATE).cast("string"), F.soundex(fold(F.col(c)))).alias("block"))
        for c in (FIRST_NAME, LAST_NAME)
    ]
    return parts[0].unionByName(parts[1]).distinct()


def candidate_pairs(blocks_df: DataFrame, max_block_size: int, sizes_df: DataFrame | None = None
                    ) -> tuple[DataFrame, DataFrame]:
    """Return the record pairs sharing a block, skipping blocks larger than ``max_block_size``.

    Args:
        blocks_df: ``(id, block)``.
        max_block_size: larger blocks are skipped.
        sizes_df: ``(block, size)`` to judge the blocks by (of every record, when ``blocks_df``
            holds some); by default counted from ``blocks_df``.

    Returns:
        Distinct pairs ``(src, dst)`` with ``src < dst``, and the block sizes
        (``block``, ``size``) so callers can report skipped blocks and comparisons.
    """
    sizes = block_sizes(blocks_df) if sizes_df is None else sizes_df
    usable = blocks_df.join(sizes.where(F.col("size") <= max_block_size), "block")
    pairs = usable.alias("l").join(usable.alias("r"), "block").where(F.col("l.id") < F.col("r.id")).select(
        F.col("l.id").alias("src"), F.col("r.id").alias("dst")).distinct()
    return pairs, sizes


def block_sizes(blocks_df: DataFrame) -> DataFrame:
    """Return ``(block, size)``: the records of each block."""
    return blocks_df.groupBy("block").agg(F.count(F.lit(1)).alias("size"))


def fuzzy_edges(customers_df: DataFrame, pairs_df: DataFrame, rules: PrepareConfig) -> DataFrame:
    """Return the candidate pairs that match: similar names and a corroborating attribute.

    A pair matches when the mean similarity of first and last names (compared
    directly or swapped, whichever is higher) reaches ``rules.name_similarity``, the
    two records agree on city or phone, and their genders do not conflict.

    Returns:
        ``(src, dst, name_score)`` of matching pairs.
    """
    fields = customers_df.select(CUSTOMER_ID, FIRST_NAME, LAST_NAME, CITY, PHONE, GENDER)
    left = fields.select(*[F.col(c).alias(f"l_{c}") for c in fields.columns])
    right = fields.select(*[F.col(c).alias(f"r_{c}") for c in fields.columns])
    joined = pairs_df.join(left, F.col("src") == F.col(f"l_{CUSTOMER_ID}")).join(
        right, F.col("dst") == F.col(f"r_{CUSTOMER_ID}"))

    def sim(a: str, b: str) -> Column:
        return name_similarity(F.col(a), F.col(b))

    direct = (sim(f"l_{FIRST_NAME}", f"r_{FIRST_NAME}") + sim(f"l_{LAST_NAME}", f"r_{LAST_NAME}")) / 2
    swapped = (sim(f"l_{FIRST_NAME}", f"r_{LAST_NAME}") + sim(f"l_{LAST_NAME}", f"r_{FIRST_NAME}")) / 2
    score = F.greatest(direct, swapped)
    agree = F.coalesce((F.col(f"l_{CITY}") == F.col(f"r_{CITY}")) | (F.col(f"l_{PHONE}") == F.col(f"r_{PHONE}")),
                       F.lit(False))
    genders = F.array(F.col(f"l_{GENDER}"), F.col(f"r_{GENDER}"))
    conflict = F.array_contains(genders, "F") & F.array_contains(genders, "M")
    return joined.select("src", "dst", score.alias("name_score"), agree.alias("_agree"), conflict.alias("_conflict")) \
        .where((F.col("name_score") >= rules.name_similarity) & F.col("_agree") & ~F.col("_conflict")) \
        .drop("_agree", "_conflict")


def connected_components(vertices_df: DataFrame, edges_df: DataFrame, max_iterations: int = 50,
                         driver_edges: int = DRIVER_EDGES) -> DataFrame:
    """Label each vertex with the smallest id in its connected component.

    Up to ``driver_edges`` edges are collected and joined on the driver by union-find:
    one pass instead of a round of Spark jobs per step of the longest path. Past that,
    min-label propagation over undirected edges runs in Spark, its labels checkpointed
    every round so the lineage stays short. Either way the session needs a checkpoint
    directory, and the labels come back checkpointed (they no longer read the edges).

    Args:
        vertices_df: column ``id``, one row per vertex.
        edges_df: columns ``src`` and ``dst`` (ids of ``vertices_df``).
        max_iterations: stop with an error past this many rounds of propagation.
        driver_edges: the most edges joined on the driver.

    Returns:
        Columns ``id`` and ``component``.

    Raises:
        RuntimeError: labels did not converge within ``max_iterations``.
    """
    edges = edges_df.select("src", "dst").limit(driver_edges + 1).collect()
    if len(edges) <= driver_edges:
        spark = vertices_df.sparkSession
        id_type = vertices_df.schema["id"].dataType
        found = spark.createDataFrame(list(smallest_members(edges).items()),
                                      StructType([StructField("id", id_type), StructField("component", id_type)]))
        log.info("connected components of %d edges found on the driver", len(edges))
        return vertices_df.select("id").join(found, "id", "left").select(
            "id", F.coalesce("component", "id").alias("component")).checkpoint()
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


def smallest_members(edges: Iterable[tuple[Any, Any]]) -> dict[Any, Any]:
    """Return each endpoint of ``edges`` mapped to the smallest member of its connected component.

    Union-find with path halving; each set's root is its smallest member.
    """
    parent: dict[Any, Any] = {}

    def root(member: Any) -> Any:
        parent.setdefault(member, member)
        while parent[member] != member:
            parent[member] = parent[parent[member]]
            member = parent[member]
        return member

    for src, dst in edges:
        low, high = sorted((root(src), root(dst)))
        parent[high] = low
    return {member: root(member) for member in parent}


def customer_key(component: Column, keyed_hash: Callable[[Column], Column]) -> Column:
    """Return the pseudonymous key of a component: ``ck_`` and 24 hex digits of the keyed
    hash of its smallest source id (stable across runs, not reversible without the secret)."""
    return F.concat(F.lit("ck_"), F.substring(keyed_hash(component), 1, 24))


def xref(components_df: DataFrame, keyed_hash: Callable[[Column], Column]) -> DataFrame:
    """Return ``customer_id -> customer_key`` from connected-component labels.

    Args:
        components_df: ``id`` and ``component`` (the smallest id of its cluster).
        keyed_hash: the secret-keyed hash (:func:`crm_spark.privacy.keyed_hash`).
    """
    return components_df.select(F.col("id").alias(CUSTOMER_ID),
                                customer_key(F.col("component"), keyed_hash).alias(CUSTOMER_KEY),
                                F.col("component").alias("cluster_id"))


def golden_records(customers_df: DataFrame, xref_df: DataFrame) -> DataFrame:
    """Merge the records of each ``customer_key`` into one golden record.

    Survivorship: names, contacts, birth date, age, label and every attribute take their
    most recently updated non-null value; city and country the most frequent; the signup
    is the earliest; gender the most recent known code; flags are kept if any record had them.

    Returns:
        One row per ``customer_key`` with the canonical fields, the attributes, ``n_records`` and flags.
    """
    joined = customers_df.join(xref_df.select(CUSTOMER_ID, CUSTOMER_KEY), CUSTOMER_ID)
    known = {*CANONICAL_COLUMNS["customers"], *CUSTOMER_FLAGS}
    attributes = [c for c in customers_df.columns if c not in known]

    def latest(column: str, usable: Column) -> Column:
        order = F.when(usable, F.struct(F.col(UPDATED_TS), F.col(CUSTOMER_ID)))
        return F.max_by(F.col(column), order).alias(column)

    known_gender = F.col(GENDER) != "U"
    return joined.groupBy(CUSTOMER_KEY).agg(
        *[latest(c, F.col(c).isNotNull()) for c in (*SURVIVING_FIELDS, *attributes)],
        *[F.mode(c).alias(c) for c in MOST_FREQUENT_FIELDS],
        F.coalesce(latest(GENDER, known_gender), F.lit("U")).alias(GENDER),
        F.min(SIGNUP_TS).alias(SIGNUP_TS),
        F.max(UPDATED_TS).alias(UPDATED_TS),
        F.count(F.lit(1)).alias(N_RECORDS),
        *[F.max(F.col(flag)).alias(flag) for flag in CUSTOMER_FLAGS],
    )


def resolve(customers_df: DataFrame, rules: PrepareConfig, keyed_hash: Callable[[Column], Column],
            sizes_df: DataFrame | None = None) -> tuple[DataFrame, dict[str, int]]:
    """Cluster cleaned customer records into persons: exact edges plus blocked fuzzy edges.

    Args:
        customers_df: cleaned customer records.
        rules: fuzzy matching settings.
        keyed_hash: the secret-keyed hash that derives customer keys.
        sizes_df: the block sizes to skip blocks by, when ``customers_df`` is part of the records.

    Returns:
        The cross-reference (``customer_id``, ``customer_key``, ``cluster_id``) and
        counts: ``dedup.exact_edges``, ``dedup.blocks``, ``dedup.blocks_skipped``,
        ``dedup.comparisons`` and ``dedup.fuzzy_edges``.
    """
    counts: dict[str, int] = {}
    with contextlib.ExitStack() as scope:
        exact = scope.enter_context(persisted(match_edges(customers_df), StorageLevel.MEMORY_AND_DISK))
        counts["dedup.exact_edges"] = exact.count()
        edges = exact
        if rules.fuzzy_matching:
            pairs, sizes = candidate_pairs(blocks(customers_df), rules.max_block_size, sizes_df)
            pairs = scope.enter_context(persisted(pairs, StorageLevel.MEMORY_AND_DISK))
            block_stats = sizes.agg(F.count(F.lit(1)).alias("blocks"),
                                    F.count(F.when(F.col("size") > rules.max_block_size, 1)).alias("skipped")).first()
            fuzzy = scope.enter_context(persisted(fuzzy_edges(customers_df, pairs, rules).select("src", "dst"),
                                                  StorageLevel.MEMORY_AND_DISK))
            counts.update({"dedup.blocks": block_stats["blocks"], "dedup.blocks_skipped": block_stats["skipped"],
                           "dedup.comparisons": pairs.count(), "dedup.fuzzy_edges": fuzzy.count()})
            if block_stats["skipped"]:
                log.warning("entity resolution skipped %d blocks larger than %d records", block_stats["skipped"],
                            rules.max_block_size)
            edges = exact.unionByName(fuzzy)
        vertices = customers_df.select(F.col(CUSTOMER_ID).alias("id")).distinct()
        components = connected_components(vertices, edges)  # checkpointed: no longer needs the edges
    return xref(components, keyed_hash), counts


def resolve_changed(customers_df: DataFrame, previous_xref_df: DataFrame, changed_ids_df: DataFrame,
                    rules: PrepareConfig, keyed_hash: Callable[[Column], Column]
                    ) -> tuple[DataFrame, dict[str, int], DataFrame]:
    """Resolve again only the persons that new or changed records can touch; the others keep their keys.

    Records link only through their values, and the persons of the previous resolution
    are closed: every edge between two unchanged records lies inside one person. So a
    changed record can only join, split or link the persons of the records it shares an
    email, a phone or a name block with (a block compared now, or compared before the
    changed records joined it), and its own earlier person. Those records, every record of
    their persons and the persons of records that are gone are resolved again as
    :func:`resolve` does, with blocks judged by their size over every record, so the
    result equals a resolution of every record.

    Args:
        customers_df: every cleaned customer record.
        previous_xref_df: the previous cross-reference (``customer_id``, ``customer_key``, ``cluster_id``).
        changed_ids_df: ``customer_id`` of records new or changed since then (and any whose
            cleaned values may have changed).
        rules: fuzzy matching settings.
        keyed_hash: the secret-keyed hash that derives customer keys.

    Returns:
        The whole cross-reference (checkpointed: it no longer reads ``previous_xref_df``),
        the counts of :func:`resolve` over the records resolved again, with
        ``dedup.records_resolved``, and the ``customer_id`` resolved again (checkpointed):
        every id whose row of the cross-reference may differ from the previous one.
    """
    with contextlib.ExitStack() as scope:
        changed = changed_ids_df.select(CUSTOMER_ID).distinct().checkpoint(eager=True)
        changed_records = customers_df.join(changed, CUSTOMER_ID, "left_semi")
        touched = changed.unionByName(previous_xref_df.select(CUSTOMER_ID).join(customers_df, CUSTOMER_ID, "left_anti"))
        for column in MATCH_COLUMNS:
            values = changed_records.where(F.col(column).isNotNull()).select(column).distinct()
            touched = touched.unionByName(customers_df.join(values, column, "left_semi").select(CUSTOMER_ID))
        sizes = None
        if rules.fuzzy_matching:
            # Kept: the blocks are counted, joined with the changed records and with the blocks compared.
            every_block = scope.enter_context(persisted(blocks(customers_df)))
            sizes = scope.enter_context(persisted(block_sizes(every_block)))
            # A block is compared now, or was before, unless even without the changed records it is too large.
            changed_in = every_block.join(changed.withColumnRenamed(CUSTOMER_ID, "id"), "id", "left_semi").groupBy(
                "block").agg(F.count(F.lit(1)).alias("changed"))
            compared = changed_in.join(sizes, "block").where(
                F.col("size") - F.col("changed") <= rules.max_block_size).select("block")
            touched = touched.unionByName(
                every_block.join(compared, "block", "left_semi").select(F.col("id").alias(CUSTOMER_ID)))
        touched = touched.distinct().checkpoint(eager=True)
        persons = previous_xref_df.join(touched, CUSTOMER_ID, "left_semi").select("cluster_id").distinct()
        again = touched.unionByName(previous_xref_df.join(persons, "cluster_id", "left_semi").select(CUSTOMER_ID)) \
            .distinct().checkpoint(eager=True)
        # Kept: resolving reads the records for each kind of edge, the vertices and the count.
        records = scope.enter_context(persisted(customers_df.join(again, CUSTOMER_ID, "left_semi")))
        resolved, counts = resolve(records, rules, keyed_hash, sizes)
        counts["dedup.records_resolved"] = records.count()
        kept = previous_xref_df.select(CUSTOMER_ID, CUSTOMER_KEY, "cluster_id").join(again, CUSTOMER_ID, "left_anti")
        # Checkpointed: the previous cross-reference is a table the caller is about to merge into.
        return kept.unionByName(resolved).checkpoint(eager=True), counts, again

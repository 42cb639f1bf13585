"""Benchmark: top-N unseen products for every customer, ALS's recommendForUserSubset against
the project's blocked top-k (``crm_spark.recommend.top_k.top_k_unseen``).

Runs on a lakehouse the pipeline has filled (silver tables), fits ALS once with the
configured settings, then times each way of producing ``top_k`` unseen products for every
customer with interactions, writing to Spark's ``noop`` sink. Prints the figures and how
far the two lists agree. Run from the repository root:

    .venv/bin/python benchmarks/recommend_topk.py --config conf/local.yaml [--set key=value ...]
"""

from __future__ import annotations

import argparse
import time

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import load_config
from crm_spark.frames import task_slots
from crm_spark.recommend.als import als_blocks, als_scorer, configured, fit
from crm_spark.recommend.interactions import (
    EXPLICIT,
    ITEM,
    PURCHASES,
    USER,
    catalogue,
    dense_index,
    index_pairs,
    interaction_kind,
    purchase_events,
    rating_events,
    to_pairs,
)
from crm_spark.recommend.top_k import RANK, top_k_unseen
from crm_spark.schemas import PRODUCT_ID, SCORE
from crm_spark.session import build_spark


def builtin_top_k(model, users_df: DataFrame, seen_df: DataFrame, k: int) -> DataFrame:
    """Top ``k`` unseen items from ``recommendForUserSubset``: ask for ``k`` plus the most items
    any user has seen, drop seen pairs, rank again."""
    max_seen = seen_df.groupBy(USER).count().agg(F.max("count")).first()[0] or 0
    recs = model.recommendForUserSubset(users_df, k + max_seen).select(
        USER, F.explode("recommendations").alias("rec")
    ).select(USER, F.col("rec")[ITEM].alias(ITEM), F.col("rec")["rating"].alias(SCORE))
    best = Window.partitionBy(USER).orderBy(F.col(SCORE).desc(), F.col(ITEM))
    return (recs.join(seen_df.select(USER, ITEM), [USER, ITEM], "left_anti")
            .withColumn(RANK, F.row_number().over(best)).where(F.col(RANK) <= k))


def timed(df: DataFrame) -> float:
    started = time.monotonic()
    df.write.format("noop").mode("overwrite").save()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    spark = build_spark(config)
    lake, cfg = config.paths.lakehouse_dir, config.recommend
    orders, ratings = (tables.read_table(spark, t, lake) for t in (tables.ORDERS, tables.RATINGS))
    kind = interaction_kind(cfg, orders, ratings)
    events = purchase_events(orders, config.as_of_date) if kind == PURCHASES else rating_events(
        ratings, config.as_of_date)
    items = dense_index(catalogue(tables.read_table(spark, tables.PRODUCTS, lake), orders, ratings), PRODUCT_ID,
                        ITEM).cache()
    users, indexed = index_pairs(to_pairs(events, cfg, kind), items)
    users, indexed = users.cache(), indexed.cache()
    targets = users.select(USER)
    started = time.monotonic()
    model = fit(indexed, configured(cfg), cfg.feedback == EXPLICIT, als_blocks(events.count(), task_slots(spark)),
                cfg.seed)
    print(f"customers {users.count()}, items {items.count()}, pairs {indexed.count()}; "
          f"ALS rank {cfg.rank} fit {time.monotonic() - started:.1f} s")
    for _ in range(2):  # the first round warms the JVM and Python workers
        builtin = timed(builtin_top_k(model, targets, indexed, cfg.top_k))
        blocked = timed(top_k_unseen(als_scorer(model), targets, indexed, cfg.top_k))
        print(f"top-{cfg.top_k} unseen for all: recommendForUserSubset {builtin:.1f} s, blocked top-k {blocked:.1f} s")
    left = builtin_top_k(model, targets, indexed, cfg.top_k).select(USER, ITEM)
    right = top_k_unseen(als_scorer(model), targets, indexed, cfg.top_k).select(USER, ITEM)
    print(f"same (customer, product) pairs: {left.join(right, [USER, ITEM]).count()} of {left.count()}")
    spark.stop()


if __name__ == "__main__":
    main()

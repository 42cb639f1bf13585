"""Synthetic products, orders and ratings driven by the persons' latent traits."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, LongType

from crm_spark.config import GenerateConfig
from crm_spark.synth.random import constant_poisson, normal, pick, uniform, uniform_draws, uniform_prefix
from crm_spark.synth.world import (
    CATEGORIES,
    CATEGORY_PRICE,
    GROUPS,
    GUMBEL_SCALE,
    ORDER_STATUS_WEIGHTS,
    POOL_CANDIDATES,
    POOL_SIZE,
    TASTE_DIM,
)


def _dot(left: str, right: str) -> Column:
    # Written out rather than with aggregate(): higher-order functions are not code-generated.
    terms = [F.element_at(left, i) * F.element_at(right, i) for i in range(1, TASTE_DIM + 1)]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def products(spark: SparkSession, cfg: GenerateConfig) -> DataFrame:
    """Return the product catalogue with latent factors and a popularity bias.

    Product ``j`` belongs to category ``j mod len(CATEGORIES)``.
    """
    seed = cfg.seed
    j = F.col("product_number")
    n_cat = len(CATEGORIES)
    category = F.element_at(F.array(*[F.lit(c) for c in CATEGORIES]), (j % n_cat).cast("int") + 1)
    level = F.element_at(F.array(*[F.lit(p) for p in CATEGORY_PRICE]), (j % n_cat).cast("int") + 1)
    price = F.round(level * F.exp(F.lit(0.5) * normal(seed, "price", j)), 2)
    factors = F.array(*[normal(seed, "factor", j, F.lit(k)) for k in range(TASTE_DIM)])
    return (
        spark.range(0, cfg.products, numPartitions=1)
        .withColumnRenamed("id", "product_number")
        .select(
            "product_number",
            F.format_string("P%06d", j + 1).alias("product_id"),
            F.concat(F.initcap(category), F.lit(" item "), (j + 1).cast("string")).alias("name"),
            category.alias("category"),
            F.greatest(price, F.lit(0.99)).alias("price"),
            factors.alias("factors"),
            (F.lit(0.8) * normal(seed, "popularity", j)).alias("popularity"),
        )
    )


def pools(people_df: DataFrame, products_df: DataFrame, cfg: GenerateConfig) -> DataFrame:
    """Return each person's preferred products, best first, as an array ``pool``.

    Candidates are drawn by the group's category mix; they are ranked by taste match
    plus product popularity plus Gumbel noise, and a product drawn twice keeps its first
    (best) place. The catalogue's factors and popularity (a thousand products are a few
    hundred kilobytes) go to the workers with the function that ranks each batch of persons
    in numpy: exploding, collecting and sorting the candidates in Spark took 12-17 s at
    100,000 persons. The uniforms are :func:`uniform`'s, drawn by :func:`uniform_draws`.
    """
    seed, n_cat = cfg.seed, len(CATEGORIES)
    catalogue = products_df.select("factors", "popularity").orderBy("product_number").collect()
    factors = np.array([row["factors"] for row in catalogue])  # product j in row j
    popularity = np.array([row["popularity"] for row in catalogue])
    per_category = np.array([(cfg.products - c + n_cat - 1) // n_cat for c in range(n_cat)])
    thresholds = [list(itertools.accumulate(w / sum(g.category_weights) for w in g.category_weights[:-1]))
                  for g in GROUPS]  # as pick() reaches them
    candidate = np.arange(1, POOL_CANDIDATES + 1, dtype=np.int32)

    @F.pandas_udf(ArrayType(LongType()))
    def ranked(person: pd.Series, group: pd.Series, taste: pd.Series, cat_prefix: pd.Series,
               item_prefix: pd.Series, gumbel_prefix: pd.Series) -> pd.Series:
        pid = person.to_numpy(dtype=np.int64)[:, None]
        u_cat = uniform_draws(int(cat_prefix.iloc[0]), pid, candidate)
        cat = np.zeros(u_cat.shape, dtype=np.int64)
        for g, cumulative in enumerate(thresholds):
            in_group = group.to_numpy()[:, None] == g
            cat = np.where(in_group, sum((u_cat >= c).astype(np.int64) for c in cumulative), cat)
        u_item = uniform_draws(int(item_prefix.iloc[0]), pid, candidate)
        number = cat + n_cat * np.floor(u_item * per_category[cat]).astype(np.int64)
        tastes = np.stack(taste.to_numpy())
        match = tastes[:, None, 0] * factors[number, 0]
        for i in range(1, TASTE_DIM):  # summed in order, as _dot() is
            match = match + tastes[:, None, i] * factors[number, i]
        gumbel = GUMBEL_SCALE * -np.log(-np.log(uniform_draws(int(gumbel_prefix.iloc[0]), pid, candidate)))
        score = match / TASTE_DIM**0.5 + popularity[number] + gumbel
        order = np.lexsort((number, -score))  # best first, ties by product number
        best = np.take_along_axis(number, order, axis=1)
        return pd.Series([list(dict.fromkeys(row.tolist()))[:POOL_SIZE] for row in best])

    return people_df.select("person_id", ranked(
        "person_id", "group", "taste", uniform_prefix(seed, "cand_cat"), uniform_prefix(seed, "cand_item"),
        uniform_prefix(seed, "gumbel")).alias("pool"))


def order_lines(
    people_df: DataFrame, records_df: DataFrame, pools_df: DataFrame, products_df: DataFrame,
    cfg: GenerateConfig,
) -> DataFrame:
    """Return order lines: Poisson order times, baskets from each person's pool.

    Orders of a person with a duplicate record are split between the two records.
    About ``anomaly_share`` of orders get a huge quantity or unit price.

    Returns:
        Canonical order columns plus truth columns ``person_id`` and ``anomaly``, and for
        :func:`ratings` the person's ``satisfaction`` and ``match``, how well the product suits
        the person's taste (worked out here, so the lines do not carry two arrays of factors each).
    """
    seed = cfg.seed
    pid, k = F.col("person_id"), F.col("order_number")
    dup = records_df.where("is_duplicate").select(
        "person_id", F.col("customer_id").alias("dup_id"), F.to_date("signup_ts").alias("dup_signup"))
    primary = records_df.where(~F.col("is_duplicate")).select("person_id", "customer_id")
    # Records and pools join per person (100,000 rows), not per order line (1.5 million).
    buyers = (people_df.where(F.col("n_orders") > 0)
              .select("person_id", "group", "satisfaction", "taste", "order_windows")
              .join(primary, "person_id").join(dup, "person_id", "left").join(pools_df, "person_id"))
    window = F.col("window")
    orders = (
        buyers.select("person_id", "group", "satisfaction", "taste", "customer_id", "dup_id", "dup_signup", "pool",
                      F.posexplode("order_windows").alias("w", "window"))
        .where(window["n"] > 0)
        .withColumn("order_number", F.explode(F.sequence(F.lit(1), window["n"])))
        .withColumn("order_number", F.col("w") * 10_000 + F.col("order_number"))
        .withColumn("order_ts", F.timestamp_seconds(
            F.unix_timestamp(window["start"].cast("timestamp"))
            + F.floor(uniform(seed, "ots", pid, k) * window["days"] * 86_400)))
        .withColumn("customer_id", F.when(
            F.col("dup_id").isNotNull() & (F.to_date("order_ts") >= F.col("dup_signup"))
            & (uniform(seed, "which", pid, k) < 0.5), F.col("dup_id")).otherwise(F.col("customer_id")))
        .withColumn("order_id", F.format_string("O%09d%05d", pid + 1, k))
        .withColumn("_u_lines", uniform(seed, "lines", pid, k))
        .withColumn("n_lines", F.lit(1) + F.element_at(F.array(*[
            constant_poisson(g.basket_lines - 1.0, F.col("_u_lines"), 20) for g in GROUPS]), F.col("group") + 1))
        .withColumn("anomaly", F.when(uniform(seed, "anomaly", pid, k) < cfg.anomaly_share,
                                      pick(uniform(seed, "akind", pid, k), ["quantity", "price"])))
        .withColumn("status", pick(uniform(seed, "status", pid, k), list(ORDER_STATUS_WEIGHTS),
                                   list(ORDER_STATUS_WEIGHTS.values())))
    )

    def picked(line: Column) -> Column:
        slot = F.floor(F.pow(uniform(seed, "slot", pid, k, line), F.lit(2.0)) * F.size("pool")) + 1
        return F.struct(line.alias("line"), F.element_at("pool", slot.cast("int")).alias("product_number"))

    # A product picked twice in an order keeps its first line, worked out within the order's row. The picks
    # are held as a column: named inside the lambda, their expression would be worked out again per element.
    picks = F.col("_picks")
    first = F.filter(picks, lambda p, i: F.array_position(picks["product_number"], p["product_number"]) == i + 1)
    lines = (
        orders.withColumn("_picks", F.transform(F.sequence(F.lit(1), F.col("n_lines")), picked))
        .withColumn("pick", F.explode(first))
        .select("*", "pick.line", "pick.product_number")
        .join(F.broadcast(products_df.select("product_number", "product_id", "price", "factors")), "product_number")
    )
    line = F.col("line")
    quantity = F.lit(1) + constant_poisson(0.3, uniform(seed, "qty", pid, k, line), 10)
    discount = F.when(uniform(seed, "disc", pid, k, line) < 0.2, F.lit(0.9)).otherwise(F.lit(1.0))
    unit_price = F.round(F.col("price") * discount, 2)
    factor = F.floor(F.lit(40) + uniform(seed, "afactor", pid, k) * 160)
    return lines.select(
        "person_id", "order_id", "customer_id", "product_id", "order_ts", "status", "anomaly",
        "satisfaction", (_dot("taste", "factors") / F.lit(TASTE_DIM**0.5)).alias("match"),
        F.when(F.col("anomaly") == "quantity", quantity * factor).otherwise(quantity).cast("int")
        .alias("quantity"),
        F.when(F.col("anomaly") == "price", F.round(unit_price * factor / 4, 2)).otherwise(unit_price)
        .alias("unit_price"),
    )


def ratings(lines_df: DataFrame, cfg: GenerateConfig, end_date: dt.date) -> DataFrame:
    """Return ratings of about 30% of completed purchases, 1 to 5 by taste match.

    About 0.2% carry an out-of-range value (0 or 6), for ingest to quarantine.
    """
    seed = cfg.seed
    key = [F.col("order_id"), F.col("product_id")]
    match = F.col("match")
    noise = normal(seed, "rnoise", *key)
    score = F.lit(3.2) + F.lit(0.9) * match + F.lit(0.5) * F.col("satisfaction") + F.lit(0.6) * noise
    rating = F.least(F.greatest(F.round(score), F.lit(1.0)), F.lit(5.0)).cast("int")
    u_bad = uniform(seed, "rbad", *key)
    rating = F.when(u_bad < 0.001, F.lit(0)).when(u_bad < 0.002, F.lit(6)).otherwise(rating)
    rated_ts = F.timestamp_seconds(F.unix_timestamp("order_ts") + F.floor(uniform(seed, "rts", *key) * 14 * 86_400))
    return (
        lines_df.where((F.col("status") == "completed") & (uniform(seed, "rate?", *key) < 0.3))
        .select("customer_id", "product_id", rating.alias("rating"), rated_ts.alias("rated_ts"))
        .where(F.col("rated_ts") < F.lit(end_date).cast("timestamp"))
    )

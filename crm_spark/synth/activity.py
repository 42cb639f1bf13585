"""Synthetic products, orders and ratings driven by the persons' latent traits."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark.config import GenerateConfig
from crm_spark.synth.people import padded
from crm_spark.synth.random import (
    cumulative_weights,
    normal,
    poisson_thresholds,
    uniform,
    uniform_draws,
    uniform_prefix,
)
from crm_spark.synth.world import (
    CATEGORIES,
    CATEGORY_PRICE,
    GROUPS,
    GUMBEL_SCALE,
    ORDER_STATUS_WEIGHTS,
    POOL_CANDIDATES,
    POOL_SIZE,
    TASTE_DIM,
    WINDOWS,
)


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
            F.concat(F.lit("P"), padded(j + 1, 6)).alias("product_id"),
            F.concat(F.initcap(category), F.lit(" item "), (j + 1).cast("string")).alias("name"),
            category.alias("category"),
            F.greatest(price, F.lit(0.99)).alias("price"),
            factors.alias("factors"),
            (F.lit(0.8) * normal(seed, "popularity", j)).alias("popularity"),
        )
    )


# The salts of the uniforms the order lines draw in numpy.
LINE_SALTS = ("cand_cat", "cand_item", "gumbel", "ots", "which", "lines", "anomaly", "akind", "status", "slot", "qty",
              "disc", "afactor")


def _catalogue(products_df: DataFrame, cfg: GenerateConfig) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Return the products' factors, one row per dimension (product ``j`` in column ``j``), their popularity,
    and the hash state of each of ``LINE_SALTS`` (see :func:`uniform_prefix`), collected in one job."""
    rows = products_df.select(
        "factors", "popularity", *[uniform_prefix(cfg.seed, salt).alias(salt) for salt in LINE_SALTS]
    ).orderBy("product_number").collect()
    return (np.array([row["factors"] for row in rows]).T.copy(), np.array([row["popularity"] for row in rows]),
            {salt: rows[0][salt] for salt in LINE_SALTS})


def _match(tastes: np.ndarray, factors: np.ndarray, product: np.ndarray) -> np.ndarray:
    """Return how well each product suits its person: taste times the product's factors, summed dimension
    by dimension and scaled (``factors`` as :func:`_catalogue` returns them)."""
    total = tastes[..., 0] * factors[0][product]
    for i in range(1, TASTE_DIM):
        total = total + tastes[..., i] * factors[i][product]
    return total / TASTE_DIM**0.5


def _pools(pid: np.ndarray, group: np.ndarray, tastes: np.ndarray, factors: np.ndarray, popularity: np.ndarray,
           prefix: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Return each person's preferred products, best first: all pools one after another, and each pool's size.

    Candidates are drawn by the group's category mix; they are ranked by taste match
    plus product popularity plus Gumbel noise, and a product drawn twice keeps its first
    (best) place.
    """
    n_cat, n_products = len(CATEGORIES), len(popularity)
    per_category = np.array([(n_products - c + n_cat - 1) // n_cat for c in range(n_cat)])
    person, candidate = pid[:, None], np.arange(1, POOL_CANDIDATES + 1, dtype=np.int32)
    u_cat = uniform_draws(prefix["cand_cat"], person, candidate)
    cat = np.zeros(u_cat.shape, dtype=np.int64)
    for g, planted in enumerate(GROUPS):
        in_group = group == g
        cat[in_group] = np.searchsorted(cumulative_weights(planted.category_weights), u_cat[in_group], side="right")
    number = cat + n_cat * np.floor(uniform_draws(prefix["cand_item"], person, candidate)
                                    * per_category[cat]).astype(np.int64)
    gumbel = GUMBEL_SCALE * -np.log(-np.log(uniform_draws(prefix["gumbel"], person, candidate)))
    score = _match(tastes[:, None, :], factors, number) + popularity[number] + gumbel
    best = np.take_along_axis(number, np.argsort(-score, axis=1, kind="stable"), axis=1)  # best first
    # A stable sort by product puts each product's best place first among its places.
    by_product = np.argsort(best, axis=1, kind="stable")
    ordered = np.take_along_axis(best, by_product, axis=1)
    repeated = np.zeros(best.shape, dtype=bool)
    np.put_along_axis(repeated, by_product[:, 1:], ordered[:, 1:] == ordered[:, :-1], axis=1)
    kept = ~repeated & (np.cumsum(~repeated, axis=1) <= POOL_SIZE)
    return best[kept], kept.sum(axis=1)


def order_lines(people_df: DataFrame, records_df: DataFrame, products_df: DataFrame, cfg: GenerateConfig) -> DataFrame:
    """Return order lines: Poisson order times, baskets from each person's pool of preferred products.

    Orders of a person with a duplicate record are split between the two records.
    About ``anomaly_share`` of orders get a huge quantity or unit price.

    Each batch of buyers is drawn in numpy with :func:`uniform_draws` (the uniforms
    :func:`uniform` gives for the same keys): the person's pool (see :func:`_pools`), orders
    per window, each order's time, record, status, anomaly and basket, and the basket's
    products from the pool, a product picked twice in an order keeping its first line. The
    catalogue's factors and popularity (a thousand products are a few hundred kilobytes) go
    to the workers with the function. Drawn in Spark, the baskets needed ``transform`` and
    ``filter`` lambdas, which Spark interprets per element, and the pools a pandas UDF and a
    join of their arrays: pools and lines took 17-20 s warm at 100,000 persons, against 8-9 s.

    Returns:
        Canonical order columns plus truth columns ``person_id`` and ``anomaly``, and for
        :func:`ratings` the person's ``satisfaction`` and ``match``, how well the product suits
        the person's taste (worked out here, so the lines do not carry two arrays of factors each).
    """
    factors, popularity, prefix = _catalogue(products_df, cfg)
    basket_steps = [poisson_thresholds(g.basket_lines - 1.0, 20) for g in GROUPS]
    quantity_steps = poisson_thresholds(0.3, 10)
    status_steps = cumulative_weights(list(ORDER_STATUS_WEIGHTS.values()))
    statuses = np.array(list(ORDER_STATUS_WEIGHTS), dtype=object)
    anomalies = np.array(["quantity", "price"], dtype=object)

    def orders(buyers: pd.DataFrame) -> dict[str, np.ndarray]:
        """Return one entry per order: its buyer's row, number, time, record, basket size, status and anomaly."""
        pid = buyers["person_id"].to_numpy(np.int64)
        n = buyers[[f"n{w}" for w in range(WINDOWS)]].to_numpy(np.int64).ravel()  # per person and window
        person = np.repeat(np.repeat(np.arange(len(pid)), WINDOWS), n)
        window = np.repeat(np.tile(np.arange(WINDOWS), len(pid)), n)
        k = (window * 10_000 + _numbers_within(n)).astype(np.int32)
        key = pid[person], k
        start = buyers[[f"start{w}" for w in range(WINDOWS)]].to_numpy(np.int64)[person, window]
        days = buyers[[f"days{w}" for w in range(WINDOWS)]].to_numpy(np.float64)[person, window]
        seconds = start + np.floor(uniform_draws(prefix["ots"], *key) * days * 86_400).astype(np.int64)
        to_dup = ((seconds >= buyers["dup_from"].to_numpy(np.float64, na_value=np.inf)[person])
                  & (uniform_draws(prefix["which"], *key) < 0.5))
        u_lines = uniform_draws(prefix["lines"], *key)
        anomalous = uniform_draws(prefix["anomaly"], *key) < cfg.anomaly_share
        return {
            "person": person, "k": k, "seconds": seconds,
            "customer": np.where(to_dup, buyers["dup_id"].to_numpy(object)[person],
                                 buyers["customer_id"].to_numpy(object)[person]),
            "n_lines": 1 + np.choose(buyers["group"].to_numpy(np.int64)[person],
                                     [np.searchsorted(steps, u_lines, side="right") for steps in basket_steps]),
            "status": statuses[np.searchsorted(status_steps, uniform_draws(prefix["status"], *key), side="right")],
            "anomaly": np.where(anomalous, anomalies[np.searchsorted(cumulative_weights([1.0, 1.0]), uniform_draws(
                prefix["akind"], *key), side="right")], None),
            "factor": np.floor(40 + uniform_draws(prefix["afactor"], *key) * 160).astype(np.int64),
        }

    def draw(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for buyers in batches:
            pid = buyers["person_id"].to_numpy(np.int64)
            tastes = np.stack(buyers["taste"].to_numpy())
            pools, size = _pools(pid, buyers["group"].to_numpy(np.int64), tastes, factors, popularity, prefix)
            drawn = orders(buyers)
            person, k = drawn["person"], drawn["k"]
            # One row per line; the slot favours the pool's first (best) products.
            order = np.repeat(np.arange(len(k)), drawn["n_lines"])
            line = _numbers_within(drawn["n_lines"]).astype(np.int32)
            owner = person[order]
            u_slot = uniform_draws(prefix["slot"], pid[owner], k[order], line)
            product = pools[(np.cumsum(size) - size)[owner] + np.floor(u_slot**2.0 * size[owner]).astype(np.int64)]
            _, first = np.unique(order * len(popularity) + product, return_index=True)  # each product's first line
            first.sort()
            order, line, owner, product = order[first], line[first], owner[first], product[first]
            line_key = pid[owner], k[order], line
            yield pd.DataFrame({
                "person_id": pid[owner], "order_number": k[order], "customer_id": drawn["customer"][order],
                "product_number": product, "order_seconds": drawn["seconds"][order],
                "status": drawn["status"][order], "anomaly": drawn["anomaly"][order],
                "satisfaction": buyers["satisfaction"].to_numpy()[owner],
                "match": _match(tastes[owner], factors, product),
                "quantity": (1 + np.searchsorted(quantity_steps, uniform_draws(prefix["qty"], *line_key),
                                                 side="right")).astype(np.int32),
                "discounted": uniform_draws(prefix["disc"], *line_key) < 0.2, "factor": drawn["factor"][order],
            })

    windows = F.col("order_windows")
    dup = records_df.where("is_duplicate").select(
        "person_id", F.col("customer_id").alias("dup_id"),
        F.unix_timestamp(F.to_date("signup_ts").cast("timestamp")).alias("dup_from"))
    primary = records_df.where(~F.col("is_duplicate")).select("person_id", "customer_id")
    # Records join per person (100,000 rows), not per order line (1.5 million).
    buyers = (people_df.where(F.col("n_orders") > 0)
              .select("person_id", "group", "satisfaction", "taste", *itertools.chain.from_iterable(
                  (F.unix_timestamp(windows[w]["start"].cast("timestamp")).alias(f"start{w}"),
                   windows[w]["days"].alias(f"days{w}"), windows[w]["n"].alias(f"n{w}")) for w in range(WINDOWS)))
              .join(primary, "person_id").join(dup, "person_id", "left"))
    lines = buyers.mapInPandas(draw, (
        "person_id long, order_number int, customer_id string, product_number long, order_seconds long, "
        "status string, anomaly string, satisfaction double, match double, quantity int, discounted boolean, "
        "factor long"))
    lines = lines.join(F.broadcast(products_df.select("product_number", "product_id", "price")), "product_number")
    unit_price = F.round(F.col("price") * F.when(F.col("discounted"), F.lit(0.9)).otherwise(F.lit(1.0)), 2)
    return lines.select(
        "person_id", F.concat(F.lit("O"), padded(F.col("person_id") + 1, 9), padded(F.col("order_number"), 5))
        .alias("order_id"),
        "customer_id", "product_id", F.timestamp_seconds("order_seconds").alias("order_ts"), "status", "anomaly",
        "satisfaction", "match",
        F.when(F.col("anomaly") == "quantity", F.col("quantity") * F.col("factor")).otherwise(F.col("quantity"))
        .cast("int").alias("quantity"),
        F.when(F.col("anomaly") == "price", F.round(unit_price * F.col("factor") / 4, 2)).otherwise(unit_price)
        .alias("unit_price"),
    )


def _numbers_within(counts: np.ndarray) -> np.ndarray:
    """Return 1, 2, ..., c for each count c in turn, as one array."""
    return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 1


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

"""Recommend: ALS tuned for the ranking objective on validation data, evaluated on a held-out
split beside a popularity baseline, then served to every customer.

Interactions come from purchases (implicit confidence, weighted by recency) or from
ratings (binary implicit feedback, or explicit values). Customers without history get the
popular products of their demographic group, or of everyone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time

from pyspark import StorageLevel
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import registry, tables
from crm_spark.config import Config
from crm_spark.evaluate import ranking
from crm_spark.recommend.als import (
    EVENT_TS,
    ITEM,
    RANK,
    SCORE,
    STRENGTH,
    USER,
    AlsParams,
    candidates_for_cap,
    cap_per_category,
    catalogue,
    dense_index,
    fit,
    group_popular,
    interactions,
    popular_unseen,
    popularity,
    purchase_events,
    rating_events,
    split_at_random,
    split_by_time,
    top_k_unseen,
)
from crm_spark.schemas import (
    CATEGORY,
    CUSTOMER_KEY,
    PRODUCT_ID,
    RATING,
    RECOMMENDATION_TUNING_SCHEMA,
    SIGNUP_TS,
)
from crm_spark.stage import StageSkipped

log = logging.getLogger(__name__)

RECOMMEND_TASK = "recommendation"
ALS_MODEL, POPULAR_MODEL, GROUP_POPULAR_MODEL, ITEM_MEAN_MODEL = "als", "popular", "segment_popular", "item_mean"
PURCHASES, RATINGS = "purchases", "ratings"
EVENTS_PER_BLOCK = 50_000
BIAS_DAMPING = 5.0  # biases of items and customers with few ratings shrink toward zero


def als_blocks(events: int, parallelism: int) -> int:
    """Return ALS user and item block counts sized to the data: one per ``EVENTS_PER_BLOCK``
    events, at least 2, at most the cluster's default parallelism (more only adds shuffles)."""
    return max(2, min(parallelism, -(-events // EVENTS_PER_BLOCK)))


def interaction_kind(config: Config, orders_df: DataFrame, ratings_df: DataFrame) -> str:
    """Return where interactions come from: ``purchases`` or ``ratings``.

    ``auto`` takes purchases when any order line names a product, else ratings.

    Raises:
        StageSkipped: the chosen (or every) source has no usable rows.
    """
    cfg = config.recommend
    has_purchases = not orders_df.where(F.col(PRODUCT_ID).isNotNull()).isEmpty()
    has_ratings = not ratings_df.isEmpty()
    kind = cfg.interactions
    if kind == "auto":
        kind = PURCHASES if has_purchases and cfg.feedback == "implicit" else RATINGS
    if kind == PURCHASES and not has_purchases:
        raise StageSkipped("no order lines with a product: purchase recommendations need them")
    if kind == RATINGS and not has_ratings:
        raise StageSkipped("no ratings and no order lines with a product: recommendations need one of them")
    return kind


def split(events_df: DataFrame, config: Config, cutoff: dt.date, end: dt.date, seed: int
          ) -> tuple[DataFrame, DataFrame]:
    """Split events into training events and held-out relevant pairs, by time or at random (config)."""
    if config.recommend.holdout == "time":
        return split_by_time(events_df, cutoff, end)
    return split_at_random(events_df, config.recommend.holdout_share, seed)


def index_pairs(pairs_df: DataFrame, items_df: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Number the customers of ``pairs_df`` and return the ``(customer_key, user)`` index
    and the ``(user, item, strength)`` rows ALS trains on."""
    users = dense_index(pairs_df, CUSTOMER_KEY, USER)
    return users, pairs_df.join(users, CUSTOMER_KEY).join(items_df, PRODUCT_ID).select(USER, ITEM, STRENGTH)


def recommend_for(indexed_df: DataFrame, users_df: DataFrame, items_df: DataFrame, targets_df: DataFrame,
                  params: AlsParams, config: Config, blocks: int, k: int, excluded_items: tuple[int, ...] = ()
                  ) -> tuple[ALSModel, DataFrame]:
    """Fit ALS and return top-``k`` unseen products for ``targets_df``.

    Args:
        indexed_df: ``(user, item, strength)`` from :func:`index_pairs`.
        users_df: ``(customer_key, user)`` from :func:`index_pairs`.
        items_df: ``(product_id, item)`` index of the catalogue.
        targets_df: column ``customer_key`` of the customers to recommend to; those
            without interactions get nothing here.
        params: ALS settings.
        config: run configuration.
        blocks: ALS block count.
        k: recommendations per customer.
        excluded_items: item indices no one gets.

    Returns:
        The fitted model, and ``customer_key``, ``product_id``, ``score`` and ``rank``.
    """
    model = fit(indexed_df, params, config.recommend.feedback == "explicit", blocks, config.recommend.seed)
    targets = targets_df.select(CUSTOMER_KEY).join(users_df, CUSTOMER_KEY).select(USER)
    recs = top_k_unseen(model, targets, indexed_df, k, excluded_items)
    return model, recs.join(users_df, USER).join(items_df, ITEM).select(CUSTOMER_KEY, PRODUCT_ID, SCORE, RANK)


def _indexed(pairs_df: DataFrame, items_df: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Return :func:`index_pairs` with both frames persisted (release them with :func:`_release`)."""
    users, indexed = index_pairs(pairs_df, items_df)
    return users.persist(), indexed.persist(StorageLevel.MEMORY_AND_DISK)


def _release(*frames: DataFrame) -> None:
    for frame in frames:
        frame.unpersist()


def to_pairs(events_df: DataFrame, config: Config, kind: str) -> DataFrame:
    """Return the ``interactions`` ALS learns from, as configured for ``kind`` (purchases or ratings)."""
    explicit = config.recommend.feedback == "explicit"
    if kind == RATINGS and not explicit:
        # A rating says the customer met the product; binary feedback ranks better than the stars.
        return interactions(events_df, False, None).withColumn(STRENGTH, F.lit(1.0).cast("float"))
    return interactions(events_df, explicit, config.recommend.recency_half_life_days if kind == PURCHASES else None)


def _validation_split(train_events: DataFrame, config: Config) -> tuple[DataFrame, DataFrame]:
    """Carve validation data out of the training events, the same way the test split was made."""
    horizon = config.as_of_date - config.training_cutoff
    return split(train_events, config, config.training_cutoff - horizon, config.training_cutoff,
                 config.recommend.seed + 1)


def tune(train_events: DataFrame, items_df: DataFrame, config: Config, kind: str, blocks: int
         ) -> tuple[AlsParams, list[tuple]]:
    """Choose ALS settings by the ranking metric on validation data carved out of training.

    Coordinate search from the configured settings: try every listed ``reg_param``, then
    ``alpha`` (implicit feedback only), then ``rank``, each time keeping the best so far.
    With more customers than ``tune_max_customers``, tuning uses a seeded sample of them.

    Returns:
        The chosen settings and one row per trial (``RECOMMENDATION_TUNING_SCHEMA`` fields
        without ``as_of_date`` and ``run_id``).
    """
    cfg = config.recommend
    metric = f"{cfg.tune_metric}_at_{cfg.top_k}"
    customers = train_events.select(CUSTOMER_KEY).distinct().count()
    events = train_events
    if customers > cfg.tune_max_customers:
        fraction = cfg.tune_max_customers / customers
        bucket = F.abs(F.xxhash64(CUSTOMER_KEY, F.lit(cfg.seed))) % 1_000_000
        events = train_events.where(bucket < int(fraction * 1_000_000))
    fit_events, relevant = _validation_split(events, config)
    users, indexed = _indexed(to_pairs(fit_events, config, kind), items_df)
    relevant = relevant.persist()
    targets = relevant.select(CUSTOMER_KEY).distinct()
    if targets.isEmpty():
        log.warning("no validation customers for tuning; keeping the configured ALS settings")
        _release(users, indexed, relevant)
        return AlsParams(cfg.rank, cfg.reg_param, cfg.alpha, cfg.max_iter), []
    scores: dict[AlsParams, float] = {}
    trials: list[tuple] = []

    def trial(params: AlsParams) -> None:
        if params in scores:
            return
        started = time.monotonic()
        _, recs = recommend_for(indexed, users, items_df, targets, params, config, blocks, cfg.top_k)
        values = ranking.ranking_metrics(ranking.ranking_frame(recs, relevant, items_df), cfg.top_k)
        scores[params] = values[f"{cfg.tune_metric}_at_k"]
        seconds = time.monotonic() - started
        log.info("tuning %s: %s = %.4f (%.1f s)", params, metric, scores[params], seconds)
        trials.append((params.rank, params.reg_param, params.alpha, params.max_iter, metric, scores[params], seconds))

    best = AlsParams(cfg.rank, cfg.reg_param, cfg.alpha, cfg.max_iter)
    trial(best)
    grids = [("reg_param", cfg.tune_reg_params), ("alpha", cfg.tune_alphas), ("rank", cfg.tune_ranks)]
    for name, values in grids:
        if name == "alpha" and cfg.feedback == "explicit":
            continue
        for value in values:
            trial(dataclasses.replace(best, **{name: type(getattr(best, name))(value)}))
        top = max(scores.values())
        if scores[best] < top:
            best = next(params for params, value in scores.items() if value == top)
    _release(users, indexed, relevant)
    log.info("tuning chose %s (%s = %.4f on validation)", best, metric, scores[best])
    return best, [(*row, (row[0], row[1], row[2], row[3]) == dataclasses.astuple(best)) for row in trials]


def rating_holdout(events_df: DataFrame, items_df: DataFrame, config: Config, blocks: int) -> DataFrame:
    """Predict held-out ratings with explicit ALS on top of biases, and with item means.

    Ratings are split like the recommendations (time or random). ALS learns what the
    global mean plus damped item and customer biases leave over, and its prediction is
    that baseline plus the learned residual, clipped to the rating scale. Both models are
    scored on the held-out ratings of customers and products ALS saw in training.

    Returns:
        ``customer_key``, ``product_id``, ``rating``, ``prediction`` and ``model``.
    """
    cfg = config.recommend
    train_events, relevant = split(events_df, config, config.training_cutoff, config.as_of_date, cfg.seed)
    train = interactions(train_events, True, None)
    test = interactions(events_df.join(relevant, [CUSTOMER_KEY, PRODUCT_ID], "left_semi"), True, None)
    mean = train.agg(F.avg(STRENGTH)).first()[0]
    item_bias = train.groupBy(PRODUCT_ID).agg(
        (F.sum(F.col(STRENGTH) - mean) / (F.count(F.lit(1)) + BIAS_DAMPING)).alias("item_bias"),
        F.avg(STRENGTH).alias("item_mean"))
    user_bias = train.join(item_bias, PRODUCT_ID).groupBy(CUSTOMER_KEY).agg(
        (F.sum(F.col(STRENGTH) - mean - F.col("item_bias")) / (F.count(F.lit(1)) + BIAS_DAMPING)).alias("user_bias"))

    def with_baseline(df: DataFrame) -> DataFrame:
        return df.join(item_bias, PRODUCT_ID).join(user_bias, CUSTOMER_KEY).withColumn(
            "baseline", F.lit(mean) + F.col("item_bias") + F.col("user_bias"))

    residuals = with_baseline(train).select(CUSTOMER_KEY, PRODUCT_ID,
                                            (F.col(STRENGTH) - F.col("baseline")).cast("float").alias(STRENGTH))
    users, indexed = index_pairs(residuals, items_df)
    model = fit(indexed, AlsParams(cfg.rating_rank, cfg.rating_reg_param, 1.0, cfg.max_iter), True, blocks, cfg.seed)
    scored = model.transform(with_baseline(test).join(users, CUSTOMER_KEY).join(items_df, PRODUCT_ID))
    low, high = config.ingest.rating_min, config.ingest.rating_max
    als = scored.select(CUSTOMER_KEY, PRODUCT_ID, F.col(STRENGTH).alias(RATING), F.least(F.greatest(
        F.col("baseline") + F.col("prediction"), F.lit(float(low))), F.lit(float(high))).cast("double").alias(
        "prediction"), F.lit(ALS_MODEL).alias("model"))
    baseline = scored.select(CUSTOMER_KEY, PRODUCT_ID, F.col(STRENGTH).alias(RATING),
                             F.col("item_mean").cast("double").alias("prediction"),
                             F.lit(ITEM_MEAN_MODEL).alias("model"))
    return als.unionByName(baseline)


def cold_start(spark: SparkSession, config: Config, pairs_df: DataFrame, cold_df: DataFrame) -> DataFrame:
    """Return recommendations for customers without history.

    A customer gets the most popular products of their group (the ``cold_start_by``
    columns of this date's customer features) when the group has at least
    ``cold_start_min_customers`` customers with history; otherwise the most popular
    products overall.

    Returns:
        ``customer_key``, ``product_id``, ``score``, ``rank`` and ``source``.
    """
    cfg = config.recommend
    lake = config.paths.lakehouse_dir
    grouped = cold_df.limit(0).select(CUSTOMER_KEY, F.lit(None).cast("string").alias("group"))
    if cfg.cold_start_by and tables.table_exists(spark, tables.CUSTOMER_FEATURES, lake):
        features = tables.read_table(spark, tables.CUSTOMER_FEATURES, lake).where(
            F.col("as_of_date") == F.lit(config.as_of_date))
        present = [c for c in cfg.cold_start_by if c in features.columns]
        if present:
            grouped = features.select(CUSTOMER_KEY, F.concat_ws("|", *[
                F.coalesce(F.col(c).cast("string"), F.lit("?")) for c in present]).alias("group"))
    lists = group_popular(pairs_df, grouped, cfg.top_k, cfg.cold_start_min_customers)
    by_group = cold_df.join(grouped, CUSTOMER_KEY).join(lists, "group").select(
        CUSTOMER_KEY, PRODUCT_ID, SCORE, RANK, F.lit(GROUP_POPULAR_MODEL).alias("source"))
    rest = cold_df.join(by_group.select(CUSTOMER_KEY).distinct(), CUSTOMER_KEY, "left_anti")
    overall = popular_unseen(rest, None, popularity(pairs_df), cfg.top_k, 0).select(
        CUSTOMER_KEY, PRODUCT_ID, SCORE, RANK, F.lit(POPULAR_MODEL).alias("source"))
    return by_group.unionByName(overall)


def _inactive_items(events_df: DataFrame, items_df: DataFrame, config: Config) -> tuple[int, ...]:
    """Return the item indices without any interaction in the last ``inactive_after_days`` days."""
    days = config.recommend.inactive_after_days
    if days is None:
        return ()
    since = F.lit(config.as_of_date - dt.timedelta(days=days)).cast("timestamp")
    active = events_df.where(F.col(EVENT_TS) >= since).select(PRODUCT_ID).distinct()
    return tuple(r[0] for r in items_df.join(active, PRODUCT_ID, "left_anti").select(ITEM).collect())


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Tune, evaluate and serve recommendations; write holdout lists, rating predictions and served lists.

    Holdout: the test split is made first (time: products first met in the horizon
    after the training cutoff; random: a share of each customer's products). Tuning sees
    only the training part. The tuned ALS and a popularity baseline then recommend to the
    held-out customers. Serving: ALS is refitted on every interaction before ``as_of_date``.

    Returns:
        Rows written per table.

    Raises:
        StageSkipped: there are no interactions to learn from.
    """
    lake = config.paths.lakehouse_dir
    cfg = config.recommend
    orders = tables.read_table(spark, tables.ORDERS, lake)
    ratings = tables.read_table(spark, tables.RATINGS, lake)
    products = tables.read_table(spark, tables.PRODUCTS, lake)
    kind = interaction_kind(config, orders, ratings)
    log.info("recommendations from %s (%s feedback, %s holdout)", kind, cfg.feedback, cfg.holdout)
    events = (purchase_events(orders, config.as_of_date) if kind == PURCHASES
              else rating_events(ratings, config.as_of_date)).persist(StorageLevel.MEMORY_AND_DISK)
    items = dense_index(catalogue(products, orders, ratings), PRODUCT_ID, ITEM).persist()
    blocks = als_blocks(events.count(), spark.sparkContext.defaultParallelism)
    counts: dict[str, int] = {}

    def write(df: DataFrame, table: tables.Table) -> None:
        counts[table.qualified] = tables.write_dated(df, table, lake, config.as_of_date, run_id)

    train_events, relevant = split(events, config, config.training_cutoff, config.as_of_date, cfg.seed)
    train_events = train_events.persist(StorageLevel.MEMORY_AND_DISK)
    relevant = relevant.persist()
    started = time.monotonic()
    params, trials = (tune(train_events, items, config, kind, blocks) if cfg.tune
                      else (AlsParams(cfg.rank, cfg.reg_param, cfg.alpha, cfg.max_iter), []))
    log.info("tuning took %.1f s", time.monotonic() - started)
    write(spark.createDataFrame(trials, RECOMMENDATION_TUNING_SCHEMA), tables.RECOMMENDATION_TUNING)

    train_pairs = to_pairs(train_events, config, kind).persist(StorageLevel.MEMORY_AND_DISK)
    users, indexed = _indexed(train_pairs, items)
    targets = relevant.select(CUSTOMER_KEY).distinct()
    _, als_holdout = recommend_for(indexed, users, items, targets, params, config, blocks, cfg.top_k)
    max_seen = int(train_pairs.groupBy(CUSTOMER_KEY).count().agg(F.max("count")).first()[0] or 0)
    popular = popularity(train_pairs)
    popular_holdout = popular_unseen(targets, train_pairs, popular, cfg.top_k, max_seen)
    trained_customers = train_pairs.select(CUSTOMER_KEY).distinct().count()
    shares = popular.select(PRODUCT_ID, (F.col(SCORE) / F.lit(max(trained_customers, 1))).alias("popularity"))
    holdout = als_holdout.withColumn("model", F.lit(ALS_MODEL)).unionByName(
        popular_holdout.withColumn("model", F.lit(POPULAR_MODEL))).join(shares, PRODUCT_ID, "left")
    write(holdout, tables.RECOMMENDATION_HOLDOUT)
    write(relevant, tables.RECOMMENDATION_RELEVANCE)
    _release(train_pairs, users, indexed, train_events, relevant)

    rated = rating_events(ratings, config.as_of_date)
    if not rated.isEmpty():
        write(rating_holdout(rated, items, config, blocks), tables.RATING_HOLDOUT)

    pairs = to_pairs(events, config, kind).persist(StorageLevel.MEMORY_AND_DISK)
    users, indexed = _indexed(pairs, items)
    known = users.select(CUSTOMER_KEY)
    model, served = recommend_for(indexed, users, items, known, params, config, blocks,
                                  candidates_for_cap(cfg.top_k, cfg.max_per_category),
                                  _inactive_items(events, items, config))
    if cfg.max_per_category is not None:
        served = cap_per_category(served, products.select(PRODUCT_ID, CATEGORY), cfg.max_per_category, cfg.top_k)
    path = registry.model_path(lake, run_id, RECOMMEND_TASK, ALS_MODEL)
    model.write().overwrite().save(path)
    registered = tables.read_table(spark, tables.CUSTOMERS, lake).where(
        F.col(SIGNUP_TS).isNull() | (F.col(SIGNUP_TS) < F.lit(config.as_of_date).cast("timestamp")))
    cold = registered.select(CUSTOMER_KEY).join(known, CUSTOMER_KEY, "left_anti")
    started = time.monotonic()
    write(served.withColumn("source", F.lit(ALS_MODEL)).unionByName(cold_start(spark, config, pairs, cold)),
          tables.RECOMMENDATIONS)
    log.info("top-%d for every customer written in %.1f s", cfg.top_k, time.monotonic() - started)
    chosen = [t for t in trials if t[-1]]
    counts[tables.MODEL_REGISTRY.qualified] = registry.record(spark, config, run_id, [registry.ModelEntry(
        RECOMMEND_TASK, ALS_MODEL, path, chosen[0][4] if chosen else "none", chosen[0][5] if chosen else None,
        True, [])])
    _release(pairs, users, indexed, events, items)
    return counts

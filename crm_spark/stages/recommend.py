"""Recommend: ALS and EASE tuned for the ranking objective on validation data, the best of each
(and their blend) evaluated on a held-out split beside a popularity baseline, and the champion
served to every customer.

Interactions come from purchases (implicit confidence, weighted by recency) or from
ratings (binary implicit feedback, or explicit values). Customers without history get the
popular products of their demographic group, or of everyone.
"""

from __future__ import annotations

import contextlib
import logging
import time

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import files, registry, tables
from crm_spark.config import Config
from crm_spark.dates import start_of
from crm_spark.errors import StageSkipped
from crm_spark.features.customer import registered_before
from crm_spark.frames import persisted, task_slots
from crm_spark.recommend.als import als_blocks
from crm_spark.recommend.cold_start import SOURCE, cold_start, customer_groups
from crm_spark.recommend.families import Fitting, Recommender, recommend_for
from crm_spark.recommend.holdout import split
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
from crm_spark.recommend.popularity import POPULAR_MODEL, popular_unseen, popularity
from crm_spark.recommend.rating_model import rating_holdout
from crm_spark.recommend.saved import SavedRecommender, items_path, load_items, save_items, serving_index
from crm_spark.recommend.top_k import Scorer, candidates_for_cap, cap_per_category, inactive_items
from crm_spark.recommend.tuning import Selection, tune
from crm_spark.registry import RECOMMEND_TASK
from crm_spark.schemas import (
    AS_OF_DATE,
    CATEGORY,
    CUSTOMER_KEY,
    MODEL,
    POPULARITY,
    PRODUCT_ID,
    RECOMMENDATION_TUNING_SCHEMA,
    RUN_ID,
    SCORE,
)

log = logging.getLogger(__name__)


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Tune, evaluate and serve recommendations; write holdout lists, rating predictions and served lists.

    Holdout: the test split is made first (time: products first met in the horizon
    after the training cutoff; random: a share of each customer's products). Tuning sees
    only the training part and chooses the champion among the families on validation
    data. The best setting of each family and a popularity baseline then recommend to the
    held-out customers. Serving: the champion is refitted on every interaction before
    ``as_of_date``.

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
    kind = interaction_kind(cfg, orders, ratings)
    log.info("recommendations from %s (%s feedback, %s holdout)", kind, cfg.feedback, cfg.holdout)
    write = tables.DatedWriter(lake, config.as_of_date, run_id)
    with contextlib.ExitStack() as scope:
        events = scope.enter_context(persisted(
            purchase_events(orders, config.as_of_date) if kind == PURCHASES
            else rating_events(ratings, config.as_of_date), StorageLevel.MEMORY_AND_DISK))
        items = scope.enter_context(persisted(dense_index(catalogue(products, orders, ratings), PRODUCT_ID, ITEM)))
        blocks = als_blocks(events.count(), task_slots(spark))
        selection = _evaluate(spark, config, events, items, kind, blocks, write)
        rated = rating_events(ratings, config.as_of_date)
        if not rated.isEmpty():
            write(rating_holdout(rated, items, cfg, config.training_cutoff, config.as_of_date,
                                 (config.ingest.rating_min, config.ingest.rating_max), blocks), tables.RATING_HOLDOUT)
        path = _serve(spark, config, run_id, events, items, products, kind, selection.champion, blocks, write)
    entries = []
    for model, spec in sorted(selection.best.items()):
        tried = selection.trial(spec)
        entries.append(registry.ModelEntry(
            RECOMMEND_TASK, model, path if spec == selection.champion else "", tried.metric if tried else "none",
            tried.value if tried else None, spec == selection.champion, [], spec.params()))
    write.counts[tables.MODEL_REGISTRY.qualified] = registry.record(spark, config, run_id, entries)
    return write.counts


def _evaluate(spark: SparkSession, config: Config, events: DataFrame, items: DataFrame, kind: str, blocks: int,
              write: tables.DatedWriter) -> Selection:
    """Split off the test data, choose a recommender on the rest, and write the held-out lists of the
    best setting of each family and of popularity.

    Returns:
        The tuning's selection.
    """
    cfg = config.recommend
    train_events, relevant = split(events, cfg, config.training_cutoff, config.as_of_date, cfg.seed)
    with contextlib.ExitStack() as scope:
        train_events = scope.enter_context(persisted(train_events, StorageLevel.MEMORY_AND_DISK))
        relevant = scope.enter_context(persisted(relevant))
        started = time.monotonic()
        selection = tune(spark, train_events, items, cfg, kind, blocks, config.training_cutoff,
                         config.as_of_date - config.training_cutoff)
        log.info("tuning took %.1f s", time.monotonic() - started)
        write(spark.createDataFrame([t.row(t.spec == selection.champion) for t in selection.trials],
                                    RECOMMENDATION_TUNING_SCHEMA), tables.RECOMMENDATION_TUNING)

        train_pairs = scope.enter_context(persisted(to_pairs(train_events, cfg, kind), StorageLevel.MEMORY_AND_DISK))
        users, indexed = _indexed(train_pairs, items, scope)
        fitting = scope.enter_context(Fitting(spark, indexed, cfg, blocks))
        targets = scope.enter_context(persisted(relevant.select(CUSTOMER_KEY).distinct()))
        max_seen = int(train_pairs.groupBy(CUSTOMER_KEY).count().agg(F.max("count")).first()[0] or 0)
        popular = popularity(train_pairs)
        holdout = popular_unseen(targets, train_pairs, popular, cfg.top_k, max_seen).withColumn(
            MODEL, F.lit(POPULAR_MODEL))
        for model, spec in sorted(selection.best.items()):
            if fitting.skip_reason(model) is None:
                holdout = holdout.unionByName(recommend_for(fitting.scorer(spec), users, items, indexed, targets,
                                                            cfg.top_k).withColumn(MODEL, F.lit(model)))
        trained_customers = train_pairs.select(CUSTOMER_KEY).distinct().count()
        shares = popular.select(PRODUCT_ID, (F.col(SCORE) / F.lit(max(trained_customers, 1))).alias(POPULARITY))
        write(holdout.join(shares, PRODUCT_ID, "left"), tables.RECOMMENDATION_HOLDOUT)
        write(relevant, tables.RECOMMENDATION_RELEVANCE)
    return selection


def _serve(spark: SparkSession, config: Config, run_id: str, events: DataFrame, items: DataFrame,
           products: DataFrame, kind: str, champion: Recommender, blocks: int, write: tables.DatedWriter) -> str:
    """Refit the champion on every interaction, save it with its item and customer indexes, and write
    top-k lists for every registered customer.

    Returns:
        Where the refitted model is saved.
    """
    cfg, lake = config.recommend, config.paths.lakehouse_dir
    with contextlib.ExitStack() as scope:
        pairs = scope.enter_context(persisted(to_pairs(events, cfg, kind), StorageLevel.MEMORY_AND_DISK))
        users, indexed = _indexed(pairs, items, scope)
        fitting = scope.enter_context(Fitting(spark, indexed, cfg, blocks))
        path = registry.model_path(lake, run_id, RECOMMEND_TASK, champion.model)
        fitting.save(champion, path)
        save_items(items, path)
        write.counts[tables.RECOMMENDER_USERS.qualified] = tables.write_table(
            users.select(F.lit(run_id).alias(RUN_ID), CUSTOMER_KEY, USER), tables.RECOMMENDER_USERS, lake, run_id)
        _write_served(spark, config, fitting.scorer(champion), champion.model, events, pairs, users, items, indexed,
                      products, write)
    return path


def serve(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Serve top-k lists for every registered customer from the registered recommender, without refitting.

    The champion is the newest registered for a date up to ``as_of_date``. Customers keep
    the model's user factors unless they have an event since its ``as_of_date`` or are new
    to it: those are folded in against the model's item factors. EASE scores everyone's
    current history with its saved weights. Exclusions, category cap and cold start are the
    recommend stage's; products new since the fit reach customers through cold start only,
    until the next recommend.

    Returns:
        Rows written per table.

    Raises:
        StageSkipped: no recommender is registered yet (or it was saved without its product
            index), or there are no interactions.
    """
    lake, cfg = config.paths.lakehouse_dir, config.recommend
    entry = registry.champions(spark, config).get(RECOMMEND_TASK)
    if entry is None or not entry["path"]:
        raise StageSkipped("no recommender in the registry: run recommend (or crm-spark retrain) first")
    if not files.exists(spark, items_path(entry["path"])):
        raise StageSkipped(f"the registered recommender of run {entry[RUN_ID]} was saved without its product index "
                           f"(by an earlier version): run recommend (or crm-spark retrain) once")
    spec = Recommender.from_params(entry["model"], entry["params"] or {})
    orders = tables.read_table(spark, tables.ORDERS, lake)
    ratings = tables.read_table(spark, tables.RATINGS, lake)
    kind = interaction_kind(cfg, orders, ratings)
    fitted_users = tables.read_table(spark, tables.RECOMMENDER_USERS, lake).where(
        F.col(RUN_ID) == entry[RUN_ID]).select(CUSTOMER_KEY, USER)
    log.info("serving %s of run %s (as of %s), %s", spec, entry[RUN_ID], entry[AS_OF_DATE], kind)
    write = tables.DatedWriter(lake, config.as_of_date, run_id)
    with contextlib.ExitStack() as scope:
        events = scope.enter_context(persisted(
            purchase_events(orders, config.as_of_date) if kind == PURCHASES
            else rating_events(ratings, config.as_of_date), StorageLevel.MEMORY_AND_DISK))
        pairs = scope.enter_context(persisted(to_pairs(events, cfg, kind), StorageLevel.MEMORY_AND_DISK))
        items = scope.enter_context(persisted(load_items(spark, entry["path"])))
        users, indexed, changed = serving_index(pairs, events, fitted_users, items, start_of(entry[AS_OF_DATE]))
        users = scope.enter_context(persisted(users))
        indexed = scope.enter_context(persisted(indexed, StorageLevel.MEMORY_AND_DISK))
        changed = scope.enter_context(persisted(changed))
        log.info("%d of %d customers with history folded in", changed.count(), users.count())
        saved = scope.enter_context(SavedRecommender(spark, entry["path"], spec, cfg.feedback == EXPLICIT))
        _write_served(spark, config, saved.scorer(indexed, changed), spec.model, events, pairs, users, items, indexed,
                      tables.read_table(spark, tables.PRODUCTS, lake), write)
    return write.counts


def _write_served(spark: SparkSession, config: Config, scorer: Scorer, model: str, events: DataFrame,
                  pairs: DataFrame, users: DataFrame, items: DataFrame, indexed: DataFrame, products: DataFrame,
                  write: tables.DatedWriter) -> None:
    """Write top-k lists for every registered customer: the recommender's for customers with
    interactions it knows, cold start for the others."""
    cfg, lake = config.recommend, config.paths.lakehouse_dir
    known = users.join(indexed.select(USER).distinct(), USER).select(CUSTOMER_KEY)
    served = recommend_for(scorer, users, items, indexed, known, candidates_for_cap(cfg.top_k, cfg.max_per_category),
                           inactive_items(events, items, config.as_of_date, cfg.inactive_after_days))
    if cfg.max_per_category is not None:
        served = cap_per_category(served, products.select(PRODUCT_ID, CATEGORY), cfg.max_per_category, cfg.top_k)
    customers = registered_before(tables.read_table(spark, tables.CUSTOMERS, lake), config.as_of_date)
    cold = customers.select(CUSTOMER_KEY).join(known, CUSTOMER_KEY, "left_anti")
    groups = None
    if tables.table_exists(spark, tables.CUSTOMER_FEATURES, lake):
        features = tables.read_table(spark, tables.CUSTOMER_FEATURES, lake).where(
            F.col(AS_OF_DATE) == F.lit(config.as_of_date))
        groups = customer_groups(features, cfg.cold_start_by)
    started = time.monotonic()
    write(served.withColumn(SOURCE, F.lit(model)).unionByName(
        cold_start(pairs, cold, groups, cfg.top_k, cfg.cold_start_min_customers)), tables.RECOMMENDATIONS)
    log.info("top-%d for every customer written in %.1f s", cfg.top_k, time.monotonic() - started)


def _indexed(pairs_df: DataFrame, items_df: DataFrame, scope: contextlib.ExitStack) -> tuple[DataFrame, DataFrame]:
    """Return :func:`~crm_spark.recommend.interactions.index_pairs`, both frames persisted until ``scope`` ends."""
    users, indexed = index_pairs(pairs_df, items_df)
    return (scope.enter_context(persisted(users)),
            scope.enter_context(persisted(indexed, StorageLevel.MEMORY_AND_DISK)))

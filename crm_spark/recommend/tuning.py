"""Tuning and selection: each configured family searched over its grids, a blend of the best
of each, all scored by the ranking metric on validation data carved out of the training
events; the champion is the best on validation."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark.config import RecommendConfig
from crm_spark.errors import StageSkipped
from crm_spark.frames import persisted
from crm_spark.metrics import ranking
from crm_spark.recommend.als import ALS_MODEL, AlsParams
from crm_spark.recommend.families import BLEND_MODEL, Fitting, Recommender, recommend_for, starting_points
from crm_spark.recommend.holdout import validation_split
from crm_spark.recommend.interactions import EXPLICIT, PURCHASES, index_pairs, to_pairs
from crm_spark.recommend.item_item import EASE_MODEL
from crm_spark.schemas import CUSTOMER_KEY

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuningTrial:
    """One recommender setting tried on validation data, and how it scored."""

    spec: Recommender
    metric: str  # e.g. ndcg_at_10
    value: float
    seconds: float

    def row(self, chosen: bool) -> tuple:
        """Return the trial as a ``recommendation_tuning`` row (without ``as_of_date`` and ``run_id``)."""
        settings, partner = self.spec.als, self.spec.partner
        return (self.spec.model, *(dataclasses.astuple(settings) if settings else (None,) * 5),
                self.spec.ease_reg, self.spec.als_share, self.metric, self.value, self.seconds, chosen,
                *(dataclasses.astuple(partner) if partner else (None,) * 5))


@dataclass(frozen=True)
class Selection:
    """What tuning found: the champion, the best setting of each family, every trial, and skipped families."""

    champion: Recommender
    best: dict[str, Recommender]
    trials: list[TuningTrial]
    skipped: dict[str, str]

    def trial(self, spec: Recommender) -> TuningTrial | None:
        """Return the trial of ``spec``, if tried."""
        return next((t for t in self.trials if t.spec == spec), None)


def tune(spark: SparkSession, train_events: DataFrame, items_df: DataFrame, cfg: RecommendConfig, kind: str,
         blocks: int, cutoff: dt.date, horizon: dt.timedelta) -> Selection:
    """Choose a recommender by the ranking metric on validation data carved out of training.

    Every configured family starts from its configured setting. With ``tune``, EASE then
    tries every listed regularization (one solve each, no refit), ALS takes a coordinate
    search (every listed ``reg_param``, then ``alpha`` and the confidence transform for
    implicit feedback, then ``rank``, then ``max_iter``, each time keeping the best so
    far; passes repeat while one moves the best), and the best ALS and EASE are blended
    at every listed share. When EASE and the blend are in play, the best ALS of another
    rank (every listed ``reg_param`` tried at it, as a larger rank needs its own) joins
    the blend too, the two ALS sharing ALS's weight: factorizations of two ranks err in
    different places. No trial starts once ``tune_budget_seconds`` have passed, except
    the configured settings and the blends, whose models are fitted already.
    With more customers than ``tune_max_customers``, tuning uses a seeded sample of them.

    Args:
        spark: the session.
        train_events: the events before ``cutoff`` (the test split's training part).
        items_df: ``(product_id, item)`` index of the catalogue.
        cfg: the recommendation settings and grids.
        kind: where interactions come from (purchases or ratings).
        blocks: ALS block count.
        cutoff: the training cutoff; validation data is the ``horizon`` before it (time holdout).
        horizon: the length of the test horizon.

    Returns:
        The selection. Without validation customers, or with one family and no ``tune``,
        the first configured setting, untried.

    Raises:
        StageSkipped: no configured family can learn from these interactions.
    """
    metric = f"{cfg.tune_metric}_at_{cfg.top_k}"
    customers = train_events.select(CUSTOMER_KEY).distinct().count()
    events = train_events
    if customers > cfg.tune_max_customers:
        fraction = cfg.tune_max_customers / customers
        bucket = F.abs(F.xxhash64(CUSTOMER_KEY, F.lit(cfg.seed))) % 1_000_000
        events = train_events.where(bucket < int(fraction * 1_000_000))
    fit_events, relevant = validation_split(events, cfg, cutoff, horizon)
    users, indexed = index_pairs(to_pairs(fit_events, cfg, kind), items_df)
    starts = starting_points(cfg)
    trials: dict[Recommender, TuningTrial] = {}
    with contextlib.ExitStack() as scope:
        users = scope.enter_context(persisted(users))
        indexed = scope.enter_context(persisted(indexed, StorageLevel.MEMORY_AND_DISK))
        relevant = scope.enter_context(persisted(relevant))
        targets = relevant.select(CUSTOMER_KEY).distinct()
        fitting = scope.enter_context(Fitting(spark, indexed, cfg, blocks))
        skipped = {model: reason for model in (*cfg.models, BLEND_MODEL) if (reason := fitting.skip_reason(model))}
        starts = [spec for spec in starts if spec.model not in skipped]
        if not starts:
            raise StageSkipped("; ".join(skipped[model] for model in cfg.models))
        if (len(starts) == 1 and not cfg.tune) or targets.isEmpty():
            if cfg.tune or len(starts) > 1:
                log.warning("no validation customers for tuning; keeping the configured settings")
            return Selection(starts[0], {spec.model: spec for spec in starts}, [], skipped)
        started = time.monotonic()

        def trial(spec: Recommender, required: bool = False) -> None:
            if spec in trials or (not required and time.monotonic() - started > cfg.tune_budget_seconds):
                return
            began = time.monotonic()
            recs = recommend_for(fitting.scorer(spec), users, items_df, indexed, targets, cfg.top_k)
            tuned = f"{cfg.tune_metric}_at_k"
            values = ranking.ranking_metrics(ranking.ranking_frame(recs, relevant, items_df), cfg.top_k, (tuned,))
            trials[spec] = TuningTrial(spec, metric, values[tuned], time.monotonic() - began)
            log.info("tuning %s: %s = %.4f (%.1f s)", spec, metric, trials[spec].value, trials[spec].seconds)

        def best_of(model: str) -> Recommender:
            return max((t for t in trials.values() if t.spec.model == model), key=lambda t: t.value).spec

        for spec in starts:
            trial(spec, required=True)
        if cfg.tune and EASE_MODEL in cfg.models and EASE_MODEL not in skipped:  # one solve each: first
            for reg in cfg.tune_ease_regs:
                trial(Recommender(EASE_MODEL, ease_reg=reg))
        if cfg.tune and ALS_MODEL in cfg.models:
            grids = [("reg_param", cfg.tune_reg_params), ("alpha", cfg.tune_alphas),
                     ("confidence", cfg.tune_confidences if kind == PURCHASES else ()),
                     ("rank", cfg.tune_ranks), ("max_iter", cfg.tune_max_iters)]
            passed = None
            while passed != best_of(ALS_MODEL):  # another pass while the last one moved the best
                passed = best_of(ALS_MODEL)
                for name, values in grids:
                    if name in ("alpha", "confidence") and cfg.feedback == EXPLICIT:
                        continue
                    best = best_of(ALS_MODEL).als
                    for value in values:
                        trial(Recommender(ALS_MODEL, als=dataclasses.replace(best, **{name: value})))
        families = {t.spec.model for t in trials.values()}
        if cfg.tune and {ALS_MODEL, EASE_MODEL} <= families and BLEND_MODEL not in skipped:
            partner = _partner(trials.values(), best_of(ALS_MODEL))
            if partner is not None:  # its rank's own regularization
                for reg in cfg.tune_reg_params:
                    trial(Recommender(ALS_MODEL, als=dataclasses.replace(partner, reg_param=reg)))
            best, ease_reg = best_of(ALS_MODEL).als, best_of(EASE_MODEL).ease_reg
            partner = _partner(trials.values(), best_of(ALS_MODEL))
            for share in cfg.tune_blend_shares:  # every model is fitted already: past the budget too
                trial(Recommender(BLEND_MODEL, als=best, ease_reg=ease_reg, als_share=share), required=True)
                if partner is not None:
                    trial(Recommender(BLEND_MODEL, als=best, ease_reg=ease_reg, als_share=share, partner=partner),
                          required=True)
        seconds = time.monotonic() - started
    best = {model: best_of(model) for model in {t.spec.model for t in trials.values()}}
    champion = max(best.values(), key=lambda spec: trials[spec].value)
    log.info("tuning chose %s (%s = %.4f on validation) after %d trials in %.1f s (budget %.0f s)",
             champion, metric, trials[champion].value, len(trials), seconds, cfg.tune_budget_seconds)
    return Selection(champion, best, list(trials.values()), skipped)


def _partner(trials: Iterable[TuningTrial], best: Recommender) -> AlsParams | None:
    """Return the best ALS setting tried at another rank than ``best``'s, or None."""
    others = [t for t in trials if t.spec.model == ALS_MODEL and t.spec.als.rank != best.als.rank]
    return max(others, key=lambda t: t.value).spec.als if others else None

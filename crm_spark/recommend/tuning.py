"""ALS tuning: a coordinate search over the configured grids, scored by the ranking metric on
validation data carved out of the training events."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import time
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.config import RecommendConfig
from crm_spark.frames import persisted
from crm_spark.metrics import ranking
from crm_spark.recommend.als import AlsParams, configured, recommend_for
from crm_spark.recommend.holdout import validation_split
from crm_spark.recommend.interactions import EXPLICIT, index_pairs, to_pairs
from crm_spark.schemas import CUSTOMER_KEY

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuningTrial:
    """One ALS setting tried on validation data, and how it scored."""

    params: AlsParams
    metric: str  # e.g. ndcg_at_10
    value: float
    seconds: float

    def row(self, chosen: bool) -> tuple:
        """Return the trial as a ``recommendation_tuning`` row (without ``as_of_date`` and ``run_id``)."""
        return (*dataclasses.astuple(self.params), self.metric, self.value, self.seconds, chosen)


def tune(train_events: DataFrame, items_df: DataFrame, cfg: RecommendConfig, kind: str, blocks: int,
         cutoff: dt.date, horizon: dt.timedelta) -> tuple[AlsParams, list[TuningTrial]]:
    """Choose ALS settings by the ranking metric on validation data carved out of training.

    Coordinate search from the configured settings: try every listed ``reg_param``, then
    ``alpha`` (implicit feedback only), then ``rank``, each time keeping the best so far.
    With more customers than ``tune_max_customers``, tuning uses a seeded sample of them.

    Args:
        train_events: the events before ``cutoff`` (the test split's training part).
        items_df: ``(product_id, item)`` index of the catalogue.
        cfg: the recommendation settings and grids.
        kind: where interactions come from (purchases or ratings).
        blocks: ALS block count.
        cutoff: the training cutoff; validation data is the ``horizon`` before it (time holdout).
        horizon: the length of the test horizon.

    Returns:
        The chosen settings and every trial, in the order tried.
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
    trials: dict[AlsParams, TuningTrial] = {}
    with contextlib.ExitStack() as scope:
        users = scope.enter_context(persisted(users))
        indexed = scope.enter_context(persisted(indexed, StorageLevel.MEMORY_AND_DISK))
        relevant = scope.enter_context(persisted(relevant))
        targets = relevant.select(CUSTOMER_KEY).distinct()
        if targets.isEmpty():
            log.warning("no validation customers for tuning; keeping the configured ALS settings")
            return configured(cfg), []

        def trial(params: AlsParams) -> None:
            if params in trials:
                return
            started = time.monotonic()
            _, recs = recommend_for(indexed, users, items_df, targets, params, cfg, blocks, cfg.top_k)
            values = ranking.ranking_metrics(ranking.ranking_frame(recs, relevant, items_df), cfg.top_k)
            trials[params] = TuningTrial(params, metric, values[f"{cfg.tune_metric}_at_k"],
                                         time.monotonic() - started)
            log.info("tuning %s: %s = %.4f (%.1f s)", params, metric, trials[params].value, trials[params].seconds)

        best = configured(cfg)
        trial(best)
        grids = [("reg_param", cfg.tune_reg_params), ("alpha", cfg.tune_alphas), ("rank", cfg.tune_ranks)]
        for name, values in grids:
            if name == "alpha" and cfg.feedback == EXPLICIT:
                continue
            for value in values:
                trial(dataclasses.replace(best, **{name: type(getattr(best, name))(value)}))
            top = max(t.value for t in trials.values())
            if trials[best].value < top:
                best = next(params for params, t in trials.items() if t.value == top)
    log.info("tuning chose %s (%s = %.4f on validation)", best, metric, trials[best].value)
    return best, list(trials.values())

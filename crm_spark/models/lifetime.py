"""Customer lifetime value the field's way: BG/NBD for how often a customer will buy and whether
they are still alive, Gamma-Gamma for what they spend, combined and discounted."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.config import TrainConfig
from crm_spark.features.purchase_summary import purchase_summaries
from crm_spark.models import bgnbd, gamma_gamma
from crm_spark.models.likelihood import Fit, distinct_rows
from crm_spark.schemas import (
    AGE_PERIODS,
    CUSTOMER_KEY,
    EXPECTED_ORDER_VALUE,
    EXPECTED_PURCHASES,
    LIFETIME_VALUE,
    P_ALIVE,
    PURCHASE_SUMMARY,
    REPEAT_ORDER_VALUE,
    REPEAT_PURCHASES,
)

log = logging.getLogger(__name__)

BG_NBD_GAMMA_GAMMA = "bg_nbd_gamma_gamma"
DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True)
class LifetimeModel:
    """The two fitted models."""

    purchases: Fit  # BG/NBD
    value: Fit  # Gamma-Gamma

    def params(self) -> dict[str, float]:
        """Return the parameters and fit statistics, flat, as the registry keeps them."""
        flat = {}
        for prefix, fitted in (("bgnbd", self.purchases), ("gg", self.value)):
            flat.update({f"{prefix}_{k}": float(v) for k, v in dataclasses.asdict(fitted.params).items()})
            flat.update({f"{prefix}_log_likelihood": fitted.log_likelihood, f"{prefix}_fit_seconds": fitted.seconds,
                         f"{prefix}_distinct_rows": float(fitted.distinct_rows)})
        return flat

    @classmethod
    def from_params(cls, params: dict[str, float]) -> LifetimeModel:
        """Return the model that :meth:`params` described."""
        def fitted(prefix: str, kind: type) -> Fit:
            values = {f.name: params[f"{prefix}_{f.name}"] for f in dataclasses.fields(kind)}
            return Fit(kind(**values), params[f"{prefix}_log_likelihood"], int(params[f"{prefix}_distinct_rows"]),
                       params[f"{prefix}_fit_seconds"])
        return cls(fitted("bgnbd", bgnbd.BgNbd), fitted("gg", gamma_gamma.GammaGamma))


def fit(summaries_df: DataFrame, cfg: TrainConfig) -> LifetimeModel:
    """Fit BG/NBD on the distinct ``(x, t_x, T)`` rows and Gamma-Gamma on the repeat customers'
    distinct ``(x, mean value to the cent)`` rows of ``summaries_df``.

    Raises:
        ValueError: no customer, no repeat customer, or no convergence.
    """
    (x, t_x, t), counts = distinct_rows(summaries_df, bgnbd.SUMMARY)
    purchases = bgnbd.fit(x, t_x, t, counts, cfg.clv_penalizer)
    repeat = summaries_df.where((F.col(REPEAT_PURCHASES) > 0) & (F.col(REPEAT_ORDER_VALUE) > 0)).select(
        REPEAT_PURCHASES, F.round(REPEAT_ORDER_VALUE, 2).alias(REPEAT_ORDER_VALUE))
    (x, m), counts = distinct_rows(repeat, (REPEAT_PURCHASES, REPEAT_ORDER_VALUE))
    return LifetimeModel(purchases, gamma_gamma.fit(x, m, counts, cfg.clv_penalizer))


def predict(model: LifetimeModel, summaries_df: DataFrame, horizon_days: int, cfg: TrainConfig) -> DataFrame:
    """Return ``customer_key`` (with ``label`` and ``split`` and any other column of ``summaries_df``),
    ``p_alive``, ``expected_purchases`` in the next ``horizon_days``, ``expected_order_value`` and
    ``lifetime_value``: the discounted value of the purchases over ``clv_months``, each month's
    expected purchases times the expected order value and ``clv_margin``, discounted at
    ``clv_monthly_discount_rate`` per month.

    The hypergeometric series of the expected purchases depend on ``repeat_purchases`` and
    ``age_periods`` only, so they are summed once per distinct pair, of which there are far
    fewer than customers, on the driver (:func:`~crm_spark.models.bgnbd.purchases_if_alive`),
    and joined back.
    """
    params = model.purchases.params
    pair = [REPEAT_PURCHASES, AGE_PERIODS]
    per_month = DAYS_PER_MONTH / cfg.clv_period_days
    months = [f"_month{month}" for month in range(cfg.clv_months + 1)]  # purchases if alive up to each month
    series = bgnbd.purchases_if_alive(
        summaries_df, params,
        {"_horizon": horizon_days / cfg.clv_period_days, **{name: m * per_month for m, name in enumerate(months)}},
        cfg.clv_series_terms)
    discounted = sum((F.col(months[m]) - F.col(months[m - 1])) / (1 + cfg.clv_monthly_discount_rate) ** m
                     for m in range(1, cfg.clv_months + 1))
    divisor = bgnbd.alive_divisor(params)
    order_value = gamma_gamma.expected_order_value(model.value.params)
    return summaries_df.join(series, pair).select(
        *summaries_df.columns,
        bgnbd.p_alive(params).alias(P_ALIVE),
        (F.col("_horizon") / divisor).alias(EXPECTED_PURCHASES),
        order_value.alias(EXPECTED_ORDER_VALUE),
        (discounted / divisor * order_value * F.lit(cfg.clv_margin)).alias(LIFETIME_VALUE),
    )


def with_purchase_summary(features_df: DataFrame, orders_df: DataFrame, as_of_date: dt.date,
                          cfg: TrainConfig) -> DataFrame:
    """Add every customer's purchase summary before ``as_of_date`` (``PURCHASE_SUMMARY``, see
    :func:`~crm_spark.features.purchase_summary.purchase_summaries`) and ``p_alive``, a candidate
    feature of the churn models: BG/NBD fitted on those summaries (only the past, like every
    feature). All are null for customers without a purchase; ``p_alive`` is null for everyone
    when there is nothing to fit. Scoring and training read the summaries from the features
    (:func:`summaries_of`) rather than from every order line again."""
    # Checkpointed: the fit and the join would each compute the summaries from every order line.
    summaries = purchase_summaries(orders_df, as_of_date, cfg.clv_period_days, cfg.clv_period_bins).select(
        CUSTOMER_KEY, *PURCHASE_SUMMARY).checkpoint(eager=True)
    try:
        (x, t_x, t), counts = distinct_rows(summaries, bgnbd.SUMMARY)
        alive = bgnbd.p_alive(bgnbd.fit(x, t_x, t, counts, cfg.clv_penalizer).params)
    except ValueError as error:
        log.info("no p_alive as of %s: %s", as_of_date, error)
        alive = F.lit(None).cast("double")
    return features_df.join(summaries.select("*", alive.alias(P_ALIVE)), CUSTOMER_KEY, "left")


def summaries_of(features_df: DataFrame, orders_df: DataFrame, as_of_date: dt.date, cfg: TrainConfig) -> DataFrame:
    """Return ``customer_key`` and ``PURCHASE_SUMMARY`` of the customers of ``features_df`` (features
    as of ``as_of_date``) with a purchase: the features' own columns, or, for features written
    before they carried them, the summaries of ``orders_df``."""
    if set(PURCHASE_SUMMARY) <= set(features_df.columns):
        return features_df.where(F.col(REPEAT_PURCHASES).isNotNull()).select(CUSTOMER_KEY, *PURCHASE_SUMMARY)
    return purchase_summaries(orders_df, as_of_date, cfg.clv_period_days, cfg.clv_period_bins)

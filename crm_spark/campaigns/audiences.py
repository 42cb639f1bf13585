"""Campaign audiences: who is eligible, what a contact is worth, who fits the budget, and what to offer.

Every function is a DataFrame transform; the stage reads the gold tables and writes the results.
"""

from __future__ import annotations

import functools
import math
import operator

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DoubleType, IntegerType, StringType

from crm_spark.config import CampaignConfig, ConfigError
from crm_spark.config.sections import VALUE_COLUMNS
from crm_spark.schemas import (
    ANOMALOUS,
    AS_OF_DATE,
    CAMPAIGN,
    CAMPAIGN_SUMMARY_SCHEMA,
    CHURN_PROBABILITY,
    CUSTOMER_KEY,
    EXPECTED_PURCHASES,
    EXPECTED_VALUE,
    LIFETIME_VALUE,
    OFFERS,
    P_ALIVE,
    PREDICTED_SPEND,
    PRODUCT_ID,
    RANK,
    REASON,
    RFM_SEGMENT,
    RUN_ID,
    SEGMENT,
)

# The scored columns a campaign rule may name, with their types: null where the lakehouse has no such output.
SCORED_COLUMNS = {
    CHURN_PROBABILITY: DoubleType(), PREDICTED_SPEND: DoubleType(), LIFETIME_VALUE: DoubleType(),
    P_ALIVE: DoubleType(), EXPECTED_PURCHASES: DoubleType(), SEGMENT: IntegerType(), RFM_SEGMENT: StringType(),
    "r_score": IntegerType(), "f_score": IntegerType(), "m_score": IntegerType(),
}
PERCENTILE_SUFFIX = "_percentile"  # lifetime_value_percentile: the share of scored customers valued lower
PERCENTILES = [i / 100 for i in range(1, 100)]


def _above(value: Column):
    """Return a predicate for ``filter``: whether a cut point lies above ``value``."""
    return lambda cut: cut > value


def _typed(df: DataFrame | None, columns: dict) -> DataFrame | None:
    """Return ``df``'s key and the listed columns it has, or None."""
    if df is None:
        return None
    kept = [c for c in columns if c in df.columns]
    return df.select(CUSTOMER_KEY, *kept) if kept else None


def candidates(features: DataFrame, source_ids: DataFrame, scored: list[DataFrame | None],
               anomalies: DataFrame | None) -> DataFrame:
    """Return one row per customer with every column a campaign rule may use but the value
    percentiles (:func:`with_percentiles` adds them).

    Args:
        features: ``customer_features`` of the date (features and attributes).
        source_ids: ``customer_key`` and ``customer_id``; customers without one (erased) are left out.
        scored: churn scores, value predictions and segments of the date (any may be None).
        anomalies: ``anomalies`` of the date, or None.

    Returns:
        The customers with their features, the scored columns (null where not scored) and ``anomalous``.
    """
    frame = features.drop(AS_OF_DATE, RUN_ID).join(source_ids, CUSTOMER_KEY, "left_semi")
    for df in scored:
        part = _typed(df, SCORED_COLUMNS)
        if part is not None:
            frame = frame.join(part.drop(*[c for c in part.columns if c in frame.columns and c != CUSTOMER_KEY]),
                               CUSTOMER_KEY, "left")
    for column, kind in SCORED_COLUMNS.items():
        if column not in frame.columns:
            frame = frame.withColumn(column, F.lit(None).cast(kind))
    flagged = F.lit(False)
    if anomalies is not None:
        keys = anomalies.where(F.col(CUSTOMER_KEY).isNotNull()).select(CUSTOMER_KEY).distinct()
        frame = frame.join(keys.withColumn("_flag", F.lit(True)), CUSTOMER_KEY, "left")
        flagged = F.coalesce(F.col("_flag"), F.lit(False))
    return frame.withColumn(ANOMALOUS, flagged.cast(BooleanType())).drop("_flag")


def with_percentiles(frame: DataFrame) -> DataFrame:
    """Return ``frame`` with ``lifetime_value_percentile`` and ``predicted_spend_percentile``.

    A customer's percentile is the share of the column's 99 percentile cut points that lie
    below their value, in [0, 1]; null where the value is. The cut points are worked out in
    one small job and written into the expression as constants, so each row only compares.
    """
    cuts = frame.agg(*[F.percentile_approx(c, PERCENTILES, 1000).alias(c) for c in VALUE_COLUMNS]).first()
    for column in VALUE_COLUMNS:
        value = F.col(column)
        below = functools.reduce(operator.add, [(F.lit(cut) < value).cast("int") for cut in cuts[column] or ()],
                                 F.lit(0))
        frame = frame.withColumn(column + PERCENTILE_SUFFIX, F.when(
            value.isNotNull(), below / F.lit(len(PERCENTILES) + 1)))
    return frame


def expected_value(campaign: CampaignConfig) -> Column:
    """Return the expected value of contacting a customer (see :class:`~crm_spark.config.CampaignConfig`)."""
    churn = F.col(CHURN_PROBABILITY)
    keep = churn if campaign.objective == "retention" else 1 - F.coalesce(churn, F.lit(0.0))
    return keep * F.lit(campaign.success_rate) * F.col(campaign.value) - F.lit(campaign.contact_cost)


def reason(campaign: CampaignConfig) -> Column:
    """Return a short reason in words: churn risk, predicted value, RFM group and segment, as known."""
    def part(label: str, value: Column, unit: str = "") -> Column:
        return F.when(value.isNotNull(), F.concat(F.lit(label), value.cast("string"), F.lit(unit)))

    return F.concat_ws(
        ", ",
        part("churn risk ", F.round(F.col(CHURN_PROBABILITY) * 100).cast("int"), "%"),
        part(campaign.value.replace("_", " ") + " ",
             F.when(F.col(campaign.value).isNotNull(), F.format_string("%.2f", F.col(campaign.value)))),
        part("RFM ", F.regexp_replace(F.col(RFM_SEGMENT), "_", " ")),
        part("segment ", F.col(SEGMENT)),
    )


def budget(campaign: CampaignConfig) -> int:
    """Return the most customers a campaign may contact: its customer cap and what its cost cap pays for."""
    limits = [campaign.max_customers] if campaign.max_customers is not None else []
    if campaign.max_cost is not None:
        limits.append(math.floor(campaign.max_cost / campaign.contact_cost + 1e-9))
    return min(limits)


def check_rule(frame: DataFrame, name: str, campaign: CampaignConfig) -> Column:
    """Return the campaign's eligibility rule as a column, analysed against ``frame``.

    Raises:
        ConfigError: the rule does not parse or names a column the campaign columns lack.
    """
    key = f"campaigns.definitions.{name}.eligible"
    try:
        rule = F.expr(campaign.eligible)
        frame.where(rule).schema  # noqa: B018 - analyses the rule now, so a bad one is reported here
    except Exception as error:  # noqa: BLE001 - parse and analysis errors come in several classes
        first = str(error).strip().splitlines()[0]
        raise ConfigError(f"config key '{key}' ({campaign.eligible!r}) is not a usable condition: {first} "
                          f"(columns: {', '.join(sorted(frame.columns))})") from None
    return rule


def worth_contacting(frame: DataFrame, name: str, campaign: CampaignConfig,
                     taken: DataFrame | None = None) -> DataFrame:
    """Return the campaign's eligible customers whose contact is worth more than ``min_expected_value``.

    Args:
        frame: the campaign columns (:func:`candidates`).
        name: the campaign's name.
        campaign: its settings.
        taken: customer keys an earlier campaign of the priority order chose; they are not eligible.

    Returns:
        ``customer_key``, ``campaign``, ``expected_value`` and ``reason``.
    """
    rule = check_rule(frame, name, campaign)
    eligible = frame.where(F.coalesce(rule, F.lit(False)))
    if campaign.exclude_anomalies:
        eligible = eligible.where(~F.col(ANOMALOUS))
    if taken is not None:
        eligible = eligible.join(taken, CUSTOMER_KEY, "left_anti")
    return eligible.select(CUSTOMER_KEY, F.lit(name).alias(CAMPAIGN), expected_value(campaign).alias(EXPECTED_VALUE),
                           reason(campaign).alias(REASON)).where(F.col(EXPECTED_VALUE) > campaign.min_expected_value)


def choose(worth: DataFrame, campaign: CampaignConfig) -> DataFrame:
    """Return the best contacts within the budget, ranked 1, 2, ... by expected value (ties by customer key).

    The chosen rows are at most the budget, so they are ranked in one partition: sorted there,
    a row's position is its rank (``monotonically_increasing_id`` counts from 0 in partition 0).
    """
    best = worth.orderBy(F.desc(EXPECTED_VALUE), CUSTOMER_KEY).limit(budget(campaign))
    return (best.repartition(1).sortWithinPartitions(F.desc(EXPECTED_VALUE), CUSTOMER_KEY)
            .withColumn(RANK, (F.monotonically_increasing_id() + 1).cast("int")))


def offers(recommendations: DataFrame, bought: DataFrame | None, count: int, customers: DataFrame) -> DataFrame:
    """Return the first ``count`` recommended products of each of ``customers`` they have not bought, best first.

    Args:
        recommendations: ``customer_key``, ``product_id`` and ``rank`` (1 is best).
        bought: ``customer_key`` and ``product_id`` of every product a customer has bought, or None.
        count: products per customer.
        customers: ``customer_key`` of the customers to offer to; only their rows of the other frames are read on.

    Returns:
        ``customer_key`` and ``offers``, an array of product ids.
    """
    keys = customers.select(CUSTOMER_KEY).distinct()
    fresh = recommendations.join(keys, CUSTOMER_KEY, "left_semi")
    if bought is not None:
        fresh = fresh.join(bought.join(keys, CUSTOMER_KEY, "left_semi").select(CUSTOMER_KEY, PRODUCT_ID),
                           [CUSTOMER_KEY, PRODUCT_ID], "left_anti")
    ranked = fresh.groupBy(CUSTOMER_KEY).agg(F.array_sort(F.collect_list(F.struct(RANK, PRODUCT_ID))).alias("_r"))
    return ranked.select(CUSTOMER_KEY, F.slice(F.col("_r." + PRODUCT_ID), 1, count).alias(OFFERS))


def with_offers(chosen: DataFrame, offered: DataFrame | None, count: int) -> DataFrame:
    """Return the chosen customers with their first ``count`` offers (empty when none is known)."""
    empty = F.array().cast("array<string>")
    if offered is None:
        return chosen.withColumn(OFFERS, empty)
    return chosen.join(offered, CUSTOMER_KEY, "left").withColumn(
        OFFERS, F.slice(F.coalesce(F.col(OFFERS), empty), 1, count) if count else empty)


def summaries(worth: DataFrame, chosen: DataFrame, campaigns: dict[str, CampaignConfig], priority: list[str],
              points: int = 50) -> DataFrame:
    """Return one row per campaign: eligible and chosen counts, budget, totals and the budget curve.

    The curve is the cumulative expected value of contacting a campaign's eligible customers best
    first, at up to ``points`` steps (quantiles of the expected value), beyond the budget too, so a
    reader sees what a larger budget would add. Every campaign is summed up in the same jobs.

    Args:
        worth: every campaign's :func:`worth_contacting` rows.
        chosen: every campaign's chosen rows (``customer_key``, ``campaign``, ``expected_value``).
        campaigns: the campaigns to summarize, by name (one row each, zeros when nobody was eligible).
        priority: the exclusive campaigns in their order (``campaigns.priority``).
        points: the most steps of a curve.
    """
    cuts = worth.groupBy(CAMPAIGN).agg(
        F.percentile_approx(EXPECTED_VALUE, [i / points for i in range(1, points)], 1000).alias("c"))
    steps = (worth.join(F.broadcast(cuts), CAMPAIGN)
             .withColumn("step", F.size(F.filter("c", _above(F.col(EXPECTED_VALUE)))))
             .groupBy(CAMPAIGN, "step").agg(F.count("*").alias("n"), F.sum(EXPECTED_VALUE).alias("v"))
             .collect())  # at most ``points`` rows per campaign
    totals = {r[CAMPAIGN]: r for r in chosen.groupBy(CAMPAIGN).agg(
        F.count("*").alias("k"), F.sum(EXPECTED_VALUE).alias("v")).collect()}
    rows = []
    for name, campaign in campaigns.items():
        customers, values, n, v = [], [], 0, 0.0
        for step in sorted((s for s in steps if s[CAMPAIGN] == name), key=lambda s: s["step"]):
            n, v = n + step["n"], v + step["v"]
            customers.append(n)
            values.append(v)
        k, value = (totals[name]["k"], totals[name]["v"]) if name in totals else (0, None)
        rows.append((name, n, k, budget(campaign), float(value or 0.0), k * campaign.contact_cost, customers, values,
                     priority.index(name) + 1 if name in priority else None))
    return worth.sparkSession.createDataFrame(rows, CAMPAIGN_SUMMARY_SCHEMA)

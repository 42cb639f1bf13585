"""Campaigns: choose each campaign's customers from the gold outputs, offer them products, and export the lists.

Writes ``gold.campaign_audiences`` (customer key, campaign, rank, expected value, offers,
reason) and ``gold.campaign_summary`` (counts, totals and the budget curve) for
``as_of_date``, and one CSV and Parquet file per campaign under the export folder.
"""

from __future__ import annotations

import contextlib
import functools
import logging

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.campaigns import audiences, export
from crm_spark.config import Config
from crm_spark.dates import start_of
from crm_spark.errors import StageSkipped
from crm_spark.features.customer import read_features
from crm_spark.frames import persisted
from crm_spark.schemas import (
    AS_OF_DATE,
    CAMPAIGN,
    CUSTOMER_KEY,
    EXPECTED_VALUE,
    OFFERS,
    ORDER_TS,
    PRODUCT_ID,
    RANK,
    REASON,
    STATUS,
    STATUS_CANCELLED,
)

log = logging.getLogger(__name__)

AUDIENCE_COLUMNS = (CUSTOMER_KEY, CAMPAIGN, RANK, EXPECTED_VALUE, OFFERS, REASON)


def _dated(spark: SparkSession, config: Config, table: tables.Table) -> DataFrame | None:
    """Return the rows of ``as_of_date`` of a dated table, or None when the table does not exist."""
    if not tables.table_exists(spark, table, config.paths.lakehouse_dir):
        return None
    return tables.read_table(spark, table, config.paths.lakehouse_dir).where(F.col(AS_OF_DATE) == config.as_of_date)


def _optional(spark: SparkSession, config: Config, table: tables.Table) -> DataFrame | None:
    """Return a table, or None when it does not exist."""
    lake = config.paths.lakehouse_dir
    return tables.read_table(spark, table, lake) if tables.table_exists(spark, table, lake) else None


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Build every configured campaign's audience for ``as_of_date``, write it and export it.

    Campaigns in ``campaigns.priority`` are built first, in that order, each from the customers
    the ones before it left; the others may share customers with any campaign.

    Returns:
        Rows written per table, and the customers chosen per campaign.

    Raises:
        StageSkipped: no campaign is configured, or nothing has been scored for the date.
        ConfigError: a campaign's eligibility rule does not parse or names an unknown column.
    """
    definitions = config.campaigns.definitions
    if not definitions:
        raise StageSkipped("no campaigns configured (campaigns.definitions)")
    scored = [_dated(spark, config, t) for t in (tables.CHURN_SCORES, tables.CLV_PREDICTIONS, tables.CUSTOMER_SEGMENTS)]
    if all(df is None for df in scored):
        raise StageSkipped("no churn scores, customer value or segments: run score first")
    lake = config.paths.lakehouse_dir
    source_ids = export.source_ids(tables.read_table(spark, tables.CUSTOMER_XREF, lake))
    recommendations = _dated(spark, config, tables.RECOMMENDATIONS)
    orders = _optional(spark, config, tables.ORDERS)
    # Bought: any order line before the date that was not cancelled (a returned product was bought).
    bought = None if orders is None else orders.where(
        (F.col(ORDER_TS) < start_of(config.as_of_date)) & F.col(PRODUCT_ID).isNotNull()
        & ~F.col(STATUS).eqNullSafe(STATUS_CANCELLED))
    order = [*config.campaigns.priority, *[n for n in definitions if n not in config.campaigns.priority]]
    write = tables.DatedWriter(lake, config.as_of_date, run_id)
    counts: dict[str, int] = {}
    with contextlib.ExitStack() as scope:
        frame = audiences.with_percentiles(scope.enter_context(persisted(audiences.candidates(
            read_features(spark, lake, config.as_of_date), source_ids, scored, _dated(spark, config, tables.ANOMALIES)),
            StorageLevel.MEMORY_AND_DISK)))
        taken, worths, chosen = None, [], {}
        for name in order:
            campaign = definitions[name]
            exclusive = name in config.campaigns.priority
            worth = scope.enter_context(persisted(audiences.worth_contacting(
                frame, name, campaign, taken if exclusive else None)))
            rows = scope.enter_context(persisted(audiences.choose(worth, campaign)))
            if exclusive:
                keys = rows.select(CUSTOMER_KEY)
                taken = keys if taken is None else taken.unionByName(keys)
            worths.append(worth)
            chosen[name] = rows
        every = functools.reduce(DataFrame.unionByName, chosen.values())
        most = max(c.offers for c in definitions.values())
        offered = None
        if recommendations is not None and most:
            offered = scope.enter_context(persisted(audiences.offers(recommendations, bought, most, every)))
        audience = functools.reduce(DataFrame.unionByName, [
            audiences.with_offers(rows, offered, definitions[name].offers).select(*AUDIENCE_COLUMNS)
            for name, rows in chosen.items()])
        summary = audiences.summaries(functools.reduce(DataFrame.unionByName, worths), every,
                                      {name: definitions[name] for name in order}, list(config.campaigns.priority))
        for name, count in summary.select(CAMPAIGN, "chosen").collect():
            counts[f"campaign.{name}"] = count
            log.info("campaign %s: %d customers chosen", name, count)
        write(audience, tables.CAMPAIGN_AUDIENCES)
        write(summary, tables.CAMPAIGN_SUMMARY)
    export.export_date(spark, lake, config.paths.exports, config.as_of_date)
    return {**write.counts, **counts}

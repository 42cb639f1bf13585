"""Campaign lists for marketing tools: one CSV and one Parquet file per campaign under a folder per date.

A file carries the customer's source id (so the CRM can join it), the campaign, rank,
expected value, reason and the products offered, and no other personal data. Text cells
that a spreadsheet would read as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return) get a leading apostrophe, in both files, so they hold the same cells.
An export replaces the date's folder as a whole, so a campaign dropped from the config
leaves no stale file behind.
"""

from __future__ import annotations

import datetime as dt
import logging

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from crm_spark import files, tables
from crm_spark.frames import persisted
from crm_spark.schemas import (
    AS_OF_DATE,
    CAMPAIGN,
    CUSTOMER_ID,
    CUSTOMER_KEY,
    EXPECTED_VALUE,
    NAME,
    OFFERS,
    PRODUCT_ID,
    RANK,
    REASON,
)

log = logging.getLogger(__name__)

FORMULA_START = r"^[=+\-@\t\r]"


def escape_formula(value: Column) -> Column:
    """Return text that a spreadsheet will not run as a formula: a leading apostrophe where needed."""
    return F.when(value.rlike(FORMULA_START), F.concat(F.lit("'"), value)).otherwise(value)


def export_rows(audience: DataFrame, names: dict[str, str], width: int) -> DataFrame:
    """Return the rows of one campaign's file, by rank: ids, rank, value, reason and offers with their names.

    Args:
        audience: the campaign's ``campaign_audiences`` rows (with ``customer_id``).
        names: the name of each product offered (an offer without one gets an empty name).
        width: the columns of offers: the most offers any of the campaign's customers has.
    """
    name_of = F.create_map(*[F.lit(v) for kv in names.items() for v in kv]) if names else None
    columns = [F.col(CUSTOMER_ID), F.col(CAMPAIGN), F.col(RANK), F.round(EXPECTED_VALUE, 2).alias(EXPECTED_VALUE),
               F.col(REASON)]
    for i in range(width):
        offer = F.get(F.col(OFFERS), i)
        columns.append(offer.alias(f"offer_{i + 1}"))
        columns.append((name_of[offer] if name_of is not None else F.lit(None).cast("string"))
                       .alias(f"offer_{i + 1}_name"))
    rows = audience.select(*columns)
    escaped = [escape_formula(F.col(f.name)).alias(f.name) if isinstance(f.dataType, StringType) else F.col(f.name)
               for f in rows.schema.fields]
    return rows.select(*escaped)


def write_exports(audiences: DataFrame, source_ids: DataFrame, products: DataFrame | None, export_dir: str,
                  as_of_date: dt.date, campaigns: list[str]) -> dict[str, str]:
    """Write each campaign's list as ``<export_dir>/<as_of_date>/<campaign>.csv`` and ``.parquet``.

    The files are written into a staging folder first, which then replaces the date's folder.
    The audiences with their source ids are computed once for every file, and the offer
    columns and product names of every campaign in one pass.

    Args:
        audiences: ``campaign_audiences`` rows of the date.
        source_ids: ``customer_key`` and the ``customer_id`` the files carry; a customer without one
            (erased since) is left out.
        products: the catalogue (``product_id``, ``name``), or None.
        export_dir: the export root.
        as_of_date: the date the lists are for.
        campaigns: the campaigns to write (one pair of files each, empty when nobody was chosen).

    Returns:
        The CSV file of each campaign.
    """
    spark = audiences.sparkSession
    root = export_dir.rstrip("/")
    final = f"{root}/{as_of_date.isoformat()}"
    staging = f"{root}/.staging-{as_of_date.isoformat()}"
    files.delete(spark, staging)
    written = {}
    with persisted(audiences.join(source_ids, CUSTOMER_KEY)) as joined:
        widths = {r[CAMPAIGN]: r["w"] or 0
                  for r in joined.groupBy(CAMPAIGN).agg(F.max(F.size(OFFERS)).alias("w")).collect()}
        names = {}
        if products is not None and any(widths.values()):
            names = {row[PRODUCT_ID]: row[NAME] for row in products.join(
                joined.select(F.explode(OFFERS).alias(PRODUCT_ID)).distinct(), PRODUCT_ID).collect()}
        for campaign in campaigns:
            rows = export_rows(joined.where(F.col(CAMPAIGN) == campaign), names, widths.get(campaign, 0))
            single = rows.coalesce(1).sortWithinPartitions(RANK)
            single.write.option("header", True).option("escape", '"').csv(f"{staging}/_{campaign}_csv")
            files.single_part(spark, f"{staging}/_{campaign}_csv", f"{staging}/{campaign}.csv")
            single.write.parquet(f"{staging}/_{campaign}_parquet")
            files.single_part(spark, f"{staging}/_{campaign}_parquet", f"{staging}/{campaign}.parquet")
            written[campaign] = f"{final}/{campaign}.csv"
    files.drop_checksums(spark, staging)
    files.move(spark, staging, final)
    log.info("exported %d campaign lists to %s", len(campaigns), final)
    return written


def source_ids(xref: DataFrame) -> DataFrame:
    """Return one source id per customer (the smallest of the records merged into them) from ``customer_xref``."""
    return xref.groupBy(CUSTOMER_KEY).agg(F.min(CUSTOMER_ID).alias(CUSTOMER_ID))


def exported_dates(spark: SparkSession, export_dir: str) -> list[dt.date]:
    """Return the dates that have an export folder."""
    dates = []
    for name in files.list_names(spark, export_dir):
        try:
            dates.append(dt.date.fromisoformat(name))
        except ValueError:
            continue
    return dates


def export_date(spark: SparkSession, lakehouse_dir: str, export_dir: str, as_of_date: dt.date) -> dict[str, str]:
    """Export the ``campaign_audiences`` rows of ``as_of_date`` as the table stands (after an erasure too).

    Returns:
        The CSV file of each campaign of the date's ``campaign_summary``.
    """
    def dated(table: tables.Table) -> DataFrame:
        return tables.read_table(spark, table, lakehouse_dir).where(F.col(AS_OF_DATE) == as_of_date)

    names = [r[CAMPAIGN] for r in dated(tables.CAMPAIGN_SUMMARY).select(CAMPAIGN).collect()]
    products = None
    if tables.table_exists(spark, tables.PRODUCTS, lakehouse_dir):
        products = tables.read_table(spark, tables.PRODUCTS, lakehouse_dir).select(PRODUCT_ID, NAME)
    return write_exports(dated(tables.CAMPAIGN_AUDIENCES),
                         source_ids(tables.read_table(spark, tables.CUSTOMER_XREF, lakehouse_dir)),
                         products, export_dir, as_of_date, names)


def refresh(spark: SparkSession, lakehouse_dir: str, export_dir: str) -> list[dt.date]:
    """Export again every date that has an export folder, from the audiences as they stand now.

    Returns:
        The dates exported again.
    """
    if not tables.table_exists(spark, tables.CAMPAIGN_AUDIENCES, lakehouse_dir):
        return []
    dates = exported_dates(spark, export_dir)
    for day in dates:
        export_date(spark, lakehouse_dir, export_dir, day)
    return dates

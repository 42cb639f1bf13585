"""Silver tables from bronze: rebuilt from every row, or merged with the rows of new files."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.dates import age_on
from crm_spark.frames import beside, persisted
from crm_spark.prepare.clean import (
    clean_orders,
    clean_products,
    cleaning_rules,
    customer_records,
    latest_ratings,
    with_customer_key,
)
from crm_spark.prepare.dedup import golden_records
from crm_spark.schemas import (
    AGE,
    BIRTH_DATE,
    BRONZE_SCHEMAS,
    CLEANED_BY,
    CUSTOMER_ID,
    CUSTOMER_KEY,
    ORDER_LINE_ID,
    ORDER_TS,
    PRODUCT_ID,
    RATED_TS,
    RATING,
    SOURCE_FILE,
    bronze_table_schema,
)


def bronze_frames(spark: SparkSession, config: Config) -> dict[str, DataFrame]:
    """Return the bronze table of every configured source and an empty frame for the others."""
    lake = config.paths.lakehouse_dir
    return {
        name: tables.read_table(spark, table, lake) if name in config.sources
        else spark.createDataFrame([], bronze_table_schema(name))
        for name, table in tables.BRONZE.items()
    }


def customers_from_activity(orders_df: DataFrame, ratings_df: DataFrame) -> DataFrame:
    """Return bronze-shaped customer rows for every customer id seen in orders or ratings.

    Used when no customer source is configured: each id becomes a customer with
    nothing but its id.
    """
    ids = orders_df.select(CUSTOMER_ID).unionByName(ratings_df.select(CUSTOMER_ID)).distinct()
    schema = BRONZE_SCHEMAS["customers"]
    return ids.select(*[F.col(f.name) if f.name == CUSTOMER_ID else F.lit(None).cast(f.dataType).alias(f.name)
                        for f in schema.fields])


def cleaned_records(spark: SparkSession, config: Config, bronze_df: DataFrame, files: list[str] | None
                    ) -> tuple[DataFrame, int]:
    """Return every bronze customer row cleaned up to the checks of a date
    (:func:`~crm_spark.prepare.clean.customer_records`), as ``silver.customer_records`` holds them
    after this call, and the rows cleaned.

    Given ``files`` (an incremental run: the customer files not prepared yet), only their rows are
    cleaned, replacing the table's rows of those files, as long as every row of the table was cleaned
    by today's rules (``_cleaned_by``: :func:`~crm_spark.prepare.clean.cleaning_rules`). Otherwise,
    and without ``files``, every row is cleaned and the table overwritten, so a changed rule or setting
    never leaves rows cleaned the old way.
    """
    lake, table = config.paths.lakehouse_dir, tables.CUSTOMER_RECORDS
    source = config.sources["customers"]
    birth_formats = tuple(source.formats.get(BIRTH_DATE, ()))
    rules = cleaning_rules(config.prepare, birth_formats, config.attribute_columns)

    def cleaned(df: DataFrame) -> DataFrame:
        return customer_records(df, config.prepare, birth_formats, config.attribute_columns).withColumn(
            CLEANED_BY, F.lit(rules))

    if files is not None and tables.table_exists(spark, table, lake) and {
            r[0] for r in tables.read_table(spark, table, lake).select(CLEANED_BY).distinct().collect()} == {rules}:
        rows = tables.write_table(cleaned(bronze_df.transform(rows_of_files, files)), table, lake,
                                  where=tables.in_files(files)) if files else 0
    else:
        rows = tables.write_table(cleaned(bronze_df), table, lake)
    return tables.read_table(spark, table, lake), rows


def changed_persons(xref_df: DataFrame, old_xref_df: DataFrame, again: DataFrame, customers_df: DataFrame,
                    as_of_date: dt.date) -> DataFrame:
    """Return ``customer_key`` of every person whose golden record may differ from silver's.

    Those are the persons, before and after, of the ids resolved again (their records
    changed, or the records they share a person with), and the persons whose age changed
    with the date: a golden record with a birth date has the age on ``as_of_date`` unless a
    later record states an age without one, so a birthday since silver was written shows as
    the two disagreeing (the stated ages come back every day, harmlessly). Nothing else
    in a golden record depends on the date.

    Args:
        xref_df: the new cross-reference.
        old_xref_df: ``customer_id`` and ``_old_key`` of the cross-reference before.
        again: ``customer_id`` of the records resolved again.
        customers_df: the golden records in silver before the MERGE.
        as_of_date: the run's date.
    """
    keys = xref_df.join(again, CUSTOMER_ID, "left_semi").select(CUSTOMER_KEY).unionByName(
        old_xref_df.join(again, CUSTOMER_ID, "left_semi").select(F.col("_old_key").alias(CUSTOMER_KEY)))
    aged = customers_df.where(F.col(BIRTH_DATE).isNotNull() & ~age_on(F.col(BIRTH_DATE), as_of_date).eqNullSafe(
        F.col(AGE))).select(CUSTOMER_KEY)
    return keys.unionByName(aged).where(F.col(CUSTOMER_KEY).isNotNull()).distinct()


def rows_of_files(bronze_df: DataFrame, paths: list[str]) -> DataFrame:
    """Return the bronze rows read from ``paths`` (none, without a scan, when ``paths`` is empty)."""
    return bronze_df.where(F.col(SOURCE_FILE).isin(paths)) if paths else bronze_df.limit(0)


def rebuild_silver(spark: SparkSession, config: Config, bronze: dict[str, DataFrame], customers: DataFrame,
                   xref_df: DataFrame) -> dict[str, int]:
    """Overwrite every silver table from all of bronze.

    Returns:
        Rows written per silver table.
    """
    lake = config.paths.lakehouse_dir
    counts = {tables.CUSTOMER_XREF.qualified: tables.write_table(xref_df, tables.CUSTOMER_XREF, lake)}
    xref_df = tables.read_table(spark, tables.CUSTOMER_XREF, lake)
    counts[tables.CUSTOMERS.qualified] = tables.write_table(
        golden_records(customers, xref_df), tables.CUSTOMERS, lake)
    counts[tables.PRODUCTS.qualified] = tables.write_table(
        clean_products(bronze["products"]), tables.PRODUCTS, lake)
    orders = bronze["orders"].transform(clean_orders).transform(with_customer_key, xref_df)
    counts[tables.ORDERS.qualified] = tables.write_table(orders, tables.ORDERS, lake)
    ratings = bronze["ratings"].transform(with_customer_key, xref_df).drop(SOURCE_FILE).transform(latest_ratings)
    counts[tables.RATINGS.qualified] = tables.write_table(ratings, tables.RATINGS, lake)
    return counts


def merge_silver(spark: SparkSession, config: Config, bronze: dict[str, DataFrame], customers: DataFrame,
                 xref_df: DataFrame, pending: dict[str, list[str]], again: DataFrame | None = None
                 ) -> dict[str, int]:
    """Upsert silver from the bronze rows of the ``pending`` files (per source) with Delta MERGE.

    Customers are resolved over all of bronze (a new record may join an existing
    person), then merged by ``customer_id`` (cross-reference) and ``customer_key``
    (golden records); ids whose key changed are the *re-keyed* ids. Given ``again``, the
    ids resolved again (the only rows of ``xref_df`` that may differ from the table's),
    only those rows and the golden records of the persons that may have changed
    (:func:`changed_persons`) go into the MERGEs; otherwise every row does. Orders are merged
    by ``order_line_id`` (the later ``order_ts`` wins) from the pending rows and every
    row of a re-keyed id; ratings by customer and product (the later rating wins)
    after the rows of re-keyed persons, and rows of unknown customers, are taken out
    and derived again. Products are merged (with every bronze row, as the catalogue
    is complete) only when a products file is pending. Orders and ratings are merged on
    a thread of their own (:func:`~crm_spark.frames.beside`) while the customers are.

    Returns:
        Rows per silver table after the merge and ``merge.<table>.<inserted|updated|deleted>``.
    """
    lake = config.paths.lakehouse_dir
    with persisted(xref_df, StorageLevel.MEMORY_AND_DISK) as xref_df, ThreadPoolExecutor(1) as pool:
        old_xref = tables.read_table(spark, tables.CUSTOMER_XREF, lake).select(
            CUSTOMER_ID, F.col(CUSTOMER_KEY).alias("_old_key"))
        # Checkpointed, not cached: a cached frame would be recomputed from the merged table.
        rekeyed = (xref_df.join(old_xref, CUSTOMER_ID, "left")
                   .where(~F.col(CUSTOMER_KEY).eqNullSafe(F.col("_old_key")))
                   .select(CUSTOMER_ID, CUSTOMER_KEY, "_old_key")).checkpoint(eager=True)
        n_rekeyed = rekeyed.count()
        facts = beside(spark, pool, _merge_facts, config, bronze, xref_df, rekeyed, pending, n_rekeyed)
        counts = {"merge.rekeyed_ids": n_rekeyed}
        counts.update(_merge_people(config, bronze, customers, xref_df, old_xref, pending, again))
        counts.update(facts.result())
    return counts


def _rows(spark: SparkSession, lake: str, *merged: tables.Table) -> dict[str, int]:
    """Return the rows of each ``merged`` table (after its MERGE)."""
    return {t.qualified: tables.read_table(spark, t, lake).count() for t in merged}


def _merged(table: tables.Table, df: DataFrame, lake: str, keys: tuple[str, ...], **options) -> dict[str, int]:
    """Merge ``df`` into ``table`` (:func:`~crm_spark.tables.merge_table`); return ``merge.<table>.<count>``."""
    result = tables.merge_table(df, table, lake, keys, **options)
    return {f"merge.{table.qualified}.{k}": v for k, v in result.items()}


def _merge_people(config: Config, bronze: dict[str, DataFrame], customers: DataFrame, xref_df: DataFrame,
                  old_xref: DataFrame, pending: dict[str, list[str]], again: DataFrame | None) -> dict[str, int]:
    """Merge the cross-reference, the golden records and, with a products file pending, the products."""
    spark, lake = customers.sparkSession, config.paths.lakehouse_dir
    golden = golden_records(customers, xref_df)
    silver_customers = tables.read_table(spark, tables.CUSTOMERS, lake)
    # A new attribute column (not in silver yet) fills every golden record: every row is merged.
    if again is None or not set(golden.columns) <= set(silver_customers.columns):
        counts = _merged(tables.CUSTOMER_XREF, xref_df, lake, (CUSTOMER_ID,), delete_missing=True)
        counts.update(_merged(tables.CUSTOMERS, golden, lake, (CUSTOMER_KEY,), delete_missing=True))
    else:
        # Checkpointed: it reads both tables as they are before their MERGEs.
        persons = changed_persons(xref_df, old_xref, again, silver_customers, config.as_of_date).checkpoint(eager=True)
        counts = _merged(tables.CUSTOMER_XREF, xref_df.join(again, CUSTOMER_ID, "left_semi"), lake, (CUSTOMER_ID,),
                         deleted=again.join(xref_df, CUSTOMER_ID, "left_anti"))
        ids = xref_df.join(persons, CUSTOMER_KEY, "left_semi").select(CUSTOMER_ID)
        counts.update(_merged(tables.CUSTOMERS, golden_records(customers.join(ids, CUSTOMER_ID, "left_semi"), xref_df),
                              lake, (CUSTOMER_KEY,),
                              deleted=persons.join(xref_df.select(CUSTOMER_KEY), CUSTOMER_KEY, "left_anti")))
    if pending.get("products"):  # the catalogue changes only with a new products file
        counts.update(_merged(tables.PRODUCTS, clean_products(bronze["products"]), lake, (PRODUCT_ID,),
                              delete_missing=True))
    else:
        counts.update({f"merge.{tables.PRODUCTS.qualified}.{k}": 0 for k in ("inserted", "updated", "deleted")})
    return {**counts, **_rows(spark, lake, tables.CUSTOMER_XREF, tables.CUSTOMERS, tables.PRODUCTS)}


def _merge_facts(config: Config, bronze: dict[str, DataFrame], xref_df: DataFrame, rekeyed: DataFrame,
                 pending: dict[str, list[str]], n_rekeyed: int) -> dict[str, int]:
    """Merge the orders and ratings of the pending files and of the ``rekeyed`` ids (``n_rekeyed`` of them)."""
    spark, lake = xref_df.sparkSession, config.paths.lakehouse_dir
    orders = bronze["orders"].transform(rows_of_files, pending.get("orders", [])).unionByName(
        bronze["orders"].join(F.broadcast(rekeyed.select(CUSTOMER_ID)), CUSTOMER_ID, "left_semi"))
    counts = _merged(tables.ORDERS, orders.distinct().transform(clean_orders).transform(with_customer_key, xref_df),
                     lake, (ORDER_LINE_ID,), newer=f"s.{ORDER_TS} >= t.{ORDER_TS}")

    # Persons whose key changed: their rows (and rows under no key) are taken out and derived again.
    persons = rekeyed.select(F.col(CUSTOMER_KEY).alias("_key")).unionByName(
        rekeyed.select(F.col("_old_key").alias("_key"))).where(F.col("_key").isNotNull()).distinct()
    ratings = bronze["ratings"].transform(rows_of_files, pending.get("ratings", []))
    if n_rekeyed:
        # One MERGE takes out both: the null key in the source matches the rows under no key.
        gone = persons.unionByName(spark.createDataFrame([(None,)], "_key string"))
        DeltaTable.forPath(spark, tables.RATINGS.path(lake)).alias("t").merge(
            F.broadcast(gone).alias("s"), f"t.{CUSTOMER_KEY} <=> s._key").whenMatchedDelete().execute()
        person_ids = xref_df.select(CUSTOMER_ID, F.col(CUSTOMER_KEY).alias("_key")).join(
            F.broadcast(persons), "_key", "left_semi").select(CUSTOMER_ID)
        ratings = ratings.unionByName(bronze["ratings"].join(F.broadcast(person_ids), CUSTOMER_ID, "left_semi")) \
            .unionByName(bronze["ratings"].join(xref_df.select(CUSTOMER_ID), CUSTOMER_ID, "left_anti"))
    later = (f"s.{RATED_TS} > t.{RATED_TS} OR (t.{RATED_TS} IS NULL AND s.{RATED_TS} IS NOT NULL) "
             f"OR (s.{RATED_TS} <=> t.{RATED_TS} AND s.{RATING} > t.{RATING})")
    counts.update(_merged(tables.RATINGS, ratings.distinct().transform(with_customer_key, xref_df).drop(SOURCE_FILE)
                          .transform(latest_ratings), lake, (CUSTOMER_KEY, PRODUCT_ID), newer=later))
    return {**counts, **_rows(spark, lake, tables.ORDERS, tables.RATINGS)}

"""Write the synthetic raw inputs and their ground truth.

Raw data (``paths.raw_dir``): customers and products as CSV with a header, orders as
JSON lines, ratings as Parquet, each a folder of part files, with malformed lines
appended as extra part files. Ground truth (``paths.truth_dir``): Parquet tables the
pipeline never reads for training: ``persons``, ``customers``, ``anomalous_orders``
and ``malformed``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark.config import Config, ConfigError, GenerateConfig
from crm_spark.frames import persisted
from crm_spark.schemas import (
    BIRTH_DATE,
    CITY,
    COUNTRY,
    CUSTOMER_ID,
    EMAIL,
    FIRST_NAME,
    GENDER,
    LAST_NAME,
    ORDER_ID,
    ORDER_TS,
    PHONE,
    PRICE,
    PRODUCT_ID,
    QUANTITY,
    RATED_TS,
    RATING,
    RAW_COLUMNS,
    SIGNUP_TS,
    STATUS,
    STATUS_COMPLETED,
    UNIT_PRICE,
    UPDATED_TS,
)
from crm_spark.synth import activity, people
from crm_spark.synth.random import pick, uniform

log = logging.getLogger(__name__)
# The file generate leaves in a raw folder it writes (see claim_raw_dir).
GENERATED_MARKER = ".crm-spark-generated"


def _csv_field(column: str) -> Column:
    value = F.coalesce(F.col(column).cast("string"), F.lit(""))
    return F.concat(F.lit('"'), F.replace(value, F.lit('"'), F.lit('""')), F.lit('"'))


def with_malformed_csv_line(records_df: DataFrame, source: str, share: float, seed: int) -> DataFrame:
    """Add ``malformed`` (kind or null) and ``line`` (the broken CSV text) columns.

    About ``share`` of the rows get a line with too few fields, too many fields or an
    unbalanced quote.
    """
    columns = RAW_COLUMNS[source]
    key = F.col(columns[0])
    kind = F.when(uniform(seed, f"{source}/malformed", key) < share,
                  pick(uniform(seed, f"{source}/mkind", key),
                       ["too_few_fields", "too_many_fields", "unbalanced_quote"]))
    fields = [_csv_field(c) for c in columns]
    line = (
        F.when(kind == "too_few_fields", F.concat_ws(",", *fields[:-3]))
        .when(kind == "too_many_fields", F.concat_ws(",", *fields, F.lit('"extra"')))
        .otherwise(F.concat_ws(",", F.concat(F.lit('"'), key, F.lit(",")), *fields[1:]))
    )
    return records_df.withColumn("malformed", kind).withColumn("line", F.when(kind.isNotNull(), line))


def with_malformed_json_line(lines_df: DataFrame, share: float, seed: int) -> DataFrame:
    """Add ``malformed`` and ``line``: about ``share`` of rows become truncated JSON."""
    columns = RAW_COLUMNS["orders"]
    key = F.concat_ws("/", "order_id", "product_id")
    kind = F.when(uniform(seed, "orders/malformed", key) < share, F.lit("truncated_json"))
    text = F.to_json(F.struct(*[F.col(c) for c in columns]))
    line = F.substring(text, 1, (F.length(text) / 2).cast("int"))
    return lines_df.withColumn("malformed", kind).withColumn("line", F.when(kind.isNotNull(), line))


def _append_lines(df: DataFrame, header: str | None, path: str) -> None:
    lines = df.select(F.lit(1).alias("ord"), "line")
    if header is not None:
        lines = lines.unionByName(df.sparkSession.createDataFrame([(0, header)], "ord int, line string"))
    lines.repartition(1).sortWithinPartitions("ord", "line").select("line").write.mode("append").text(path)


def raw_dir_problem(raw_dir: str, create: bool, truth_dir: str | None = None) -> str | None:
    """Return why synthetic files must not be written into ``raw_dir``, or None.

    ``generate`` marks the folders it writes with ``GENERATED_MARKER`` before its first
    file; a folder holding anything else may be a user's own data, which its files would
    overwrite. A demo folder written before the marker existed (only the generator's
    source folders, with its ground truth in ``truth_dir``) counts as generated. Folders
    given as URLs other than ``file:`` are not checked.

    Args:
        raw_dir: ``paths.raw_dir``.
        create: True for ``generate`` (an absent or empty folder may be claimed), False for
            ``next_day`` (the folder must have been generated).
        truth_dir: ``paths.truth_dir``.
    """
    if "://" in raw_dir and not raw_dir.startswith("file://"):
        return None
    folder = Path(raw_dir.removeprefix("file://"))
    if (folder / GENERATED_MARKER).is_file():
        return None
    earlier_demo = (truth_dir is not None and "://" not in truth_dir and (Path(truth_dir) / "persons").is_dir()
                    and folder.is_dir() and {p.name for p in folder.iterdir()} <= set(RAW_COLUMNS))
    if earlier_demo:
        return None
    if not create:
        return (f"paths.raw_dir ({folder}) was not written by generate: next_day appends synthetic activity only "
                "to a folder generate created")
    if folder.exists() and any(folder.iterdir()):
        return (f"paths.raw_dir ({folder}) holds files generate did not write (no {GENERATED_MARKER} marker), "
                "which generate would overwrite: point paths.raw_dir at a new or empty folder")
    return None


def claim_raw_dir(raw_dir: str, create: bool, truth_dir: str | None = None) -> None:
    """Check ``raw_dir`` (see :func:`raw_dir_problem`) and, for ``generate``, mark it as written by it.

    Raises:
        ConfigError: synthetic files must not be written there.
    """
    problem = raw_dir_problem(raw_dir, create, truth_dir)
    if problem:
        raise ConfigError(problem)
    if create and ("://" not in raw_dir or raw_dir.startswith("file://")):
        folder = Path(raw_dir.removeprefix("file://"))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / GENERATED_MARKER).write_text("Synthetic data written by crm-spark generate; it may be overwritten.\n")


def write_shop(spark: SparkSession, config: Config) -> dict[str, int]:
    """Generate the synthetic data set of ``config.generate`` ending at ``as_of_date``.

    Args:
        spark: the session.
        config: run configuration; ``paths.raw_dir`` and ``paths.truth_dir`` are
            overwritten.

    Returns:
        Rows written per raw output.

    Raises:
        ValueError: ``paths.truth_dir`` is not set.
    """
    if not config.paths.truth_dir:
        raise ValueError("generate needs paths.truth_dir for the ground truth")
    claim_raw_dir(config.paths.raw_dir, create=True, truth_dir=config.paths.truth_dir)
    cfg, raw, truth = config.generate, config.paths.raw_dir.rstrip("/"), config.paths.truth_dir.rstrip("/")
    end = config.as_of_date
    with contextlib.ExitStack() as scope:
        persons_df = scope.enter_context(persisted(people.persons(spark, cfg, end, config.churn_horizon_days),
                                                   StorageLevel.MEMORY_AND_DISK))
        products_df = scope.enter_context(persisted(activity.products(spark, cfg)))
        records_df = scope.enter_context(persisted(with_malformed_csv_line(
            people.customer_records(persons_df, cfg, end), "customers", cfg.malformed_share, cfg.seed),
            StorageLevel.MEMORY_AND_DISK))
        lines_df = scope.enter_context(persisted(with_malformed_json_line(
            activity.order_lines(persons_df, records_df, products_df, cfg), cfg.malformed_share, cfg.seed
        ), StorageLevel.DISK_ONLY))
        _write_raw(records_df, products_df, lines_df, cfg, end, raw)
        _write_truth(persons_df, records_df, lines_df, truth)
        # Counted from the cached frames (malformed lines included); ratings from their Parquet footers.
        counts = {"raw.customers": records_df.count(), "raw.products": products_df.count(),
                  "raw.orders": lines_df.count(), "raw.ratings": spark.read.parquet(f"{raw}/ratings").count()}
    log.info("generated %s customers into %s (truth in %s)", cfg.customers, raw, truth)
    return counts


def _write_raw(records_df: DataFrame, products_df: DataFrame, lines_df: DataFrame, cfg: GenerateConfig,
               end: dt.date, raw: str) -> None:
    """Write the raw sources: customers and products as CSV, orders as JSON lines, ratings as Parquet."""
    customers_csv = records_df.where(F.col("malformed").isNull()).select(*RAW_COLUMNS["customers"])
    customers_csv.write.mode("overwrite").option("header", True).option("escape", '"').csv(f"{raw}/customers")
    _append_lines(records_df.where(F.col("malformed").isNotNull()), ",".join(RAW_COLUMNS["customers"]),
                  f"{raw}/customers")
    products_df.select(*RAW_COLUMNS["products"]).write.mode("overwrite").option("header", True).csv(f"{raw}/products")
    lines_df.where(F.col("malformed").isNull()).select(
        *[F.date_format(c, "yyyy-MM-dd'T'HH:mm:ss").alias(c) if c == "order_ts" else F.col(c)
          for c in RAW_COLUMNS["orders"]]
    ).write.mode("overwrite").json(f"{raw}/orders")
    _append_lines(lines_df.where(F.col("malformed").isNotNull()), None, f"{raw}/orders")
    activity.ratings(lines_df.where(F.col("malformed").isNull()), cfg, end).write.mode("overwrite").parquet(
        f"{raw}/ratings")


def _write_truth(persons_df: DataFrame, records_df: DataFrame, lines_df: DataFrame, truth: str) -> None:
    """Write the ground truth: persons, customer records, anomalous orders and malformed lines."""
    persons_df.write.mode("overwrite").parquet(f"{truth}/persons")
    records_df.select("customer_id", "person_id", "is_duplicate", "variation", "dirt", "malformed") \
        .write.mode("overwrite").parquet(f"{truth}/customers")
    lines_df.where(F.col("anomaly").isNotNull()).select("order_id", "anomaly").distinct() \
        .write.mode("overwrite").parquet(f"{truth}/anomalous_orders")
    lines_df.where(F.col("malformed").isNotNull()).select(
        F.lit("orders").alias("source"), F.concat_ws("/", "order_id", "product_id").alias("key"), "malformed"
    ).unionByName(records_df.where(F.col("malformed").isNotNull()).select(
        F.lit("customers").alias("source"), F.col("customer_id").alias("key"), "malformed"
    )).write.mode("overwrite").parquet(f"{truth}/malformed")


def append_next_day(spark: SparkSession, config: Config) -> dict[str, int]:
    """Append one day of new activity, dated the day before ``as_of_date``, as new raw files.

    Run after :func:`write_shop` with the next ``as_of_date`` to get "day N+1" files beside
    the existing ones: orders of about ``generate.next_day_share`` of the customers
    (1-3 lines each), ratings of a third of those lines, new records moving about a
    tenth as many customers to another city, and a fiftieth as many new customers,
    each with an order. The day's rows have no ground truth; the existing files are
    left as they are.

    Returns:
        Rows appended per raw source.
    """
    claim_raw_dir(config.paths.raw_dir, create=False, truth_dir=config.paths.truth_dir)
    cfg, raw = config.generate, config.paths.raw_dir.rstrip("/")
    day = config.as_of_date - dt.timedelta(days=1)
    seed, salt = cfg.seed, f"next/{day.isoformat()}"
    start = F.lit(dt.datetime.combine(day, dt.time()))

    def moment(tag: str, key: Column) -> Column:
        return F.timestamp_seconds(F.unix_timestamp(start) + F.floor(uniform(seed, f"{salt}/{tag}", key) * 86_399))

    known = spark.read.option("header", True).csv(f"{raw}/customers").where(
        F.col(CUSTOMER_ID).rlike("^C[0-9]+$")).dropDuplicates([CUSTOMER_ID])
    share = F.lit(cfg.next_day_share)
    movers = known.where(uniform(seed, f"{salt}/move", F.col(CUSTOMER_ID)) < share / 10).select(
        *[F.lit("Springfield").alias(c) if c == CITY else
          F.date_format(moment("move", F.col(CUSTOMER_ID)), "yyyy-MM-dd HH:mm:ss").alias(c) if c == UPDATED_TS
          else F.col(c) for c in RAW_COLUMNS["customers"]])
    n_new = max(1, round(cfg.customers * cfg.next_day_share / 50))
    number = F.format_string("%06d", F.col("id"))
    signed = F.date_format(moment("signup", number), "yyyy-MM-dd HH:mm:ss")
    newcomers = spark.range(n_new, numPartitions=1).select(
        F.concat(F.lit(f"C9{day:%Y%m%d}"), number).alias(CUSTOMER_ID),
        F.lit("New").alias(FIRST_NAME), F.concat(F.lit("Customer"), number).alias(LAST_NAME),
        F.concat(F.lit(f"new.{day:%Y%m%d}."), number, F.lit("@mail.test")).alias(EMAIL),
        F.lit(None).cast("string").alias(PHONE),
        pick(uniform(seed, f"{salt}/gender", number), ["f", "m"]).alias(GENDER),
        F.date_format(F.date_add(F.lit(dt.date(1960, 1, 1)), F.floor(uniform(seed, f"{salt}/birth", number)
                                                                      * 15_000).cast("int")), "yyyy-MM-dd")
        .alias(BIRTH_DATE),
        F.lit("Springfield").alias(CITY), F.lit("US").alias(COUNTRY), signed.alias(SIGNUP_TS), signed.alias(UPDATED_TS),
    )
    with contextlib.ExitStack() as scope:
        customers_df = scope.enter_context(persisted(movers.unionByName(newcomers)))
        customers_df.write.mode("append").option("header", True).option("escape", '"').csv(f"{raw}/customers")

        buyers = known.where(uniform(seed, f"{salt}/order", F.col(CUSTOMER_ID)) < share).select(CUSTOMER_ID) \
            .unionByName(newcomers.select(CUSTOMER_ID))
        who = F.col(CUSTOMER_ID)
        lines = buyers.select(
            CUSTOMER_ID, F.concat(F.lit(f"N{day:%Y%m%d}"), who).alias(ORDER_ID), moment("order", who).alias(ORDER_TS),
            F.explode(F.sequence(F.lit(1), F.lit(1) + F.floor(uniform(seed, f"{salt}/lines", who) * 3).cast("int")))
            .alias("line"))
        line_key = F.concat_ws("/", ORDER_ID, "line")
        lines = lines.withColumn("product_number", F.floor(uniform(seed, f"{salt}/product", line_key) * cfg.products))
        day_lines = lines.join(F.broadcast(activity.products(spark, cfg)), "product_number").select(
            ORDER_ID, CUSTOMER_ID, PRODUCT_ID,
            (F.lit(1) + F.floor(uniform(seed, f"{salt}/quantity", line_key) * 3).cast("int")).alias(QUANTITY),
            F.col(PRICE).alias(UNIT_PRICE), ORDER_TS, F.lit(STATUS_COMPLETED).alias(STATUS),
        ).dropDuplicates([ORDER_ID, PRODUCT_ID])
        lines_df = scope.enter_context(persisted(day_lines))
        lines_df.withColumn(ORDER_TS, F.date_format(ORDER_TS, "yyyy-MM-dd'T'HH:mm:ss")).write.mode("append") \
            .json(f"{raw}/orders")
        key = F.concat_ws("/", ORDER_ID, PRODUCT_ID)
        end = F.lit(dt.datetime.combine(config.as_of_date, dt.time())) - F.expr("INTERVAL 1 SECOND")
        ratings_df = lines_df.where(uniform(seed, f"{salt}/rate?", key) < 1 / 3).select(
            CUSTOMER_ID, PRODUCT_ID,
            (F.lit(1) + F.floor(uniform(seed, f"{salt}/rating", key) * 5)).cast("int").alias(RATING),
            F.least(F.col(ORDER_TS) + F.expr("INTERVAL 1 HOUR"), end).alias(RATED_TS))
        ratings_df.write.mode("append").parquet(f"{raw}/ratings")
        counts = {"raw.customers.next_day": customers_df.count(), "raw.orders.next_day": lines_df.count(),
                  "raw.ratings.next_day": ratings_df.count()}
    log.info("appended the activity of %s to %s: %s", day, raw, counts)
    return counts

"""Write the synthetic raw inputs and their ground truth.

Raw data (``paths.raw_dir``): customers and products as CSV with a header, orders as
JSON lines, ratings as Parquet, each a folder of part files, with malformed lines
appended as extra part files. Ground truth (``paths.truth_dir``): Parquet tables the
pipeline never reads for training: ``persons``, ``customers``, ``anomalous_orders``
and ``malformed``.
"""

from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark.config import Config
from crm_spark.schemas import RAW_COLUMNS
from crm_spark.synth import activity, people
from crm_spark.synth.random import pick, uniform

log = logging.getLogger(__name__)


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


def run(spark: SparkSession, config: Config) -> dict[str, int]:
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
    cfg, raw, truth = config.generate, config.paths.raw_dir.rstrip("/"), config.paths.truth_dir.rstrip("/")
    end = config.as_of_date
    persons_df = people.persons(spark, cfg, end, config.churn_horizon_days).persist(StorageLevel.MEMORY_AND_DISK)
    products_df = activity.products(spark, cfg).persist()
    records_df = with_malformed_csv_line(people.customer_records(persons_df, cfg, end), "customers",
                                         cfg.malformed_share, cfg.seed).persist(StorageLevel.MEMORY_AND_DISK)
    pools_df = activity.pools(persons_df, products_df, cfg)
    lines_df = with_malformed_json_line(
        activity.order_lines(persons_df, records_df, pools_df, products_df, cfg), cfg.malformed_share, cfg.seed
    ).persist(StorageLevel.DISK_ONLY)

    counts: dict[str, int] = {}
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

    persons_df.drop("basket_extra_lines").write.mode("overwrite").parquet(f"{truth}/persons")
    records_df.select("customer_id", "person_id", "is_duplicate", "variation", "dirt", "malformed") \
        .write.mode("overwrite").parquet(f"{truth}/customers")
    lines_df.where(F.col("anomaly").isNotNull()).select("order_id", "anomaly").distinct() \
        .write.mode("overwrite").parquet(f"{truth}/anomalous_orders")
    lines_df.where(F.col("malformed").isNotNull()).select(
        F.lit("orders").alias("source"), F.concat_ws("/", "order_id", "product_id").alias("key"), "malformed"
    ).unionByName(records_df.where(F.col("malformed").isNotNull()).select(
        F.lit("customers").alias("source"), F.col("customer_id").alias("key"), "malformed"
    )).write.mode("overwrite").parquet(f"{truth}/malformed")

    for name, fmt in (("customers", "text"), ("products", "text"), ("orders", "text"), ("ratings", "parquet")):
        counts[f"raw.{name}"] = spark.read.format(fmt).load(f"{raw}/{name}").count()
    for df in (persons_df, products_df, records_df, lines_df):
        df.unpersist()
    log.info("generated %s customers into %s (truth in %s)", cfg.customers, raw, truth)
    return counts

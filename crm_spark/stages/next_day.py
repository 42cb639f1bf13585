"""Next day (demo only): append the synthetic activity of the day before ``as_of_date`` as new raw files."""

from __future__ import annotations

from pyspark.sql import SparkSession

from crm_spark.config import Config
from crm_spark.synth.generate import append_next_day


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Append one day of activity to the raw files (see :func:`append_next_day`).

    Returns:
        Rows appended per raw source.
    """
    return append_next_day(spark, config)

"""Generate (demo only): write the synthetic raw data and its ground truth."""

from __future__ import annotations

from pyspark.sql import SparkSession

from crm_spark.config import Config
from crm_spark.synth.generate import write_shop


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Write the synthetic shop of ``generate`` ending at ``as_of_date`` (see :func:`write_shop`).

    Returns:
        Rows written per raw source.
    """
    return write_shop(spark, config)

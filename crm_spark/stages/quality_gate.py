"""Quality gate: fail unless the newest ``prepare`` run for ``as_of_date`` met every
data-quality expectation, so a scheduler never trains models on data that failed."""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.prepare.quality import Measure, QualityError, failed_expectations
from crm_spark.schemas import AS_OF_DATE, RUN_ID

log = logging.getLogger(__name__)


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Check the expectations against the data-quality rows of this run's ``prepare``, or else
    of the newest successful ``prepare`` of ``as_of_date``.

    A scheduler runs this between ``prepare`` and the model stages (whatever
    ``quality.on_failure`` says), so models are never trained on data that failed.

    Returns:
        ``quality_gate.expectations``: how many expectations were checked.

    Raises:
        QualityError: no ``prepare`` run succeeded for ``as_of_date``, or one of its
            expectations is not met.
    """
    lake = config.paths.lakehouse_dir
    prepared = None
    if tables.table_exists(spark, tables.DATA_QUALITY, lake) and not tables.read_table(
            spark, tables.DATA_QUALITY, lake).where(F.col(RUN_ID) == run_id).isEmpty():
        prepared = run_id  # this run's own prepare (a profile such as daily)
    elif tables.table_exists(spark, tables.RUNS, lake):
        newest = tables.read_table(spark, tables.RUNS, lake).where(
            (F.col(AS_OF_DATE) == F.lit(config.as_of_date)) & (F.col("stage_status")["prepare"] == "succeeded")
        ).orderBy(F.col("finished_at").desc()).select(RUN_ID).first()
        prepared = newest[RUN_ID] if newest else None
    if prepared is None:
        raise QualityError(f"no prepare run succeeded for {config.as_of_date}: nothing to check")
    quality_df = tables.read_table(spark, tables.DATA_QUALITY, lake).where(F.col(RUN_ID) == prepared)
    failures = failed_expectations([Measure.of_row(r) for r in quality_df.collect()], config.quality.expectations)
    if failures:
        raise QualityError(f"prepare run {prepared}: {len(failures)} data-quality expectation(s) not met; "
                           f"first: {failures[0]}")
    log.info("prepare run %s met all %d expectations", prepared, len(config.quality.expectations))
    return {"quality_gate.expectations": len(config.quality.expectations)}

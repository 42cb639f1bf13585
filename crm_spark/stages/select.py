"""Select: score the candidate features on the training customers and write ``gold.feature_selection``."""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.errors import StageSkipped
from crm_spark.features.customer import candidate_features, informative
from crm_spark.features.labels import labelled_customers, require_two_classes
from crm_spark.features.selection import chi_square_scores, correlation_matrix, selection_rows
from crm_spark.frames import persisted
from crm_spark.schemas import AS_OF_DATE, FEATURE_SELECTION_SCHEMA, RUN_ID, SPLIT, TRAIN

log = logging.getLogger(__name__)


def run(spark: SparkSession, config: Config, run_id: str) -> dict[str, int]:
    """Score candidate features on the training split and write ``feature_selection``.

    Returns:
        Rows written and the number of features kept.
    """
    with persisted(labelled_customers(spark, config).where(F.col(SPLIT) == TRAIN)) as train_df:
        require_two_classes(train_df)
        numeric, categorical = candidate_features(train_df, config.attribute_columns)
        numeric, categorical = informative(train_df, numeric), informative(train_df, categorical)
        if not numeric and not categorical:
            raise StageSkipped("no candidate feature varies among the training customers: nothing to select")
        scores = chi_square_scores(train_df, numeric, categorical, config.select)
        correlations = correlation_matrix(train_df, numeric, config.select.correlation_method)
    rows = selection_rows(scores, correlations, config.select.max_correlation)
    frame = spark.createDataFrame(
        [{AS_OF_DATE: config.as_of_date, RUN_ID: run_id, "position": i, **row} for i, row in enumerate(rows)],
        FEATURE_SELECTION_SCHEMA,
    )
    for row in rows:
        log.info("feature %-22s chi2=%10.1f p=%.3g %s", row["feature"], row["chi2_statistic"],
                 row["p_value"], row["reason"])
    written = tables.write_table(frame, tables.FEATURE_SELECTION, config.paths.lakehouse_dir, config.as_of_date)
    return {tables.FEATURE_SELECTION.qualified: written, "features_kept": sum(row["kept"] for row in rows)}

"""The model registry: where each run's models are saved, with their parameters and
selection metric, and which one is champion per task."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pyspark.sql import Row, SparkSession, Window
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.schemas import AS_OF_DATE, MODEL_REGISTRY_SCHEMA

# The tasks models are registered for.
CHURN_TASK = "churn"
CLV_TASK = "clv"
LIFETIME_TASK = "lifetime"  # BG/NBD and Gamma-Gamma, beside the customer value regressors
SEGMENT_TASK = "segmentation"
RECOMMEND_TASK = "recommendation"


@dataclass(frozen=True)
class ModelEntry:
    """One saved model of a run."""

    task: str
    model: str
    path: str
    selection_metric: str
    selection_value: float | None
    is_champion: bool
    features: list[str]
    params: dict[str, float] = field(default_factory=dict)


def model_path(lakehouse_dir: str, run_id: str, task: str, model: str) -> str:
    """Return where a model of a run is saved."""
    return f"{lakehouse_dir.rstrip('/')}/models/{run_id}/{task}/{model}"


def record(spark: SparkSession, config: Config, run_id: str, entries: list[ModelEntry]) -> int:
    """Write the run's entries of their tasks to ``models.registry``, replacing earlier ones.

    Returns:
        Rows written.
    """
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    rows = [(run_id, config.as_of_date, e.task, e.model, e.path, e.selection_metric, e.selection_value,
             e.is_champion, e.features, e.params or None, now) for e in entries]
    tasks = ", ".join(sorted({f"'{e.task}'" for e in entries}))
    return tables.write_table(spark.createDataFrame(rows, MODEL_REGISTRY_SCHEMA), tables.MODEL_REGISTRY,
                              config.paths.lakehouse_dir, run_id, where=f"task IN ({tasks})")


def champions(spark: SparkSession, config: Config) -> dict[str, Row]:
    """Return each task's champion: the newest registered for a date up to ``as_of_date``.

    Returns:
        Registry rows by task; a task never trained is absent.
    """
    lake = config.paths.lakehouse_dir
    if not tables.table_exists(spark, tables.MODEL_REGISTRY, lake):
        return {}
    newest = Window.partitionBy("task").orderBy(F.col("registered_at").desc_nulls_last(), F.col(AS_OF_DATE).desc())
    rows = (
        tables.read_table(spark, tables.MODEL_REGISTRY, lake)
        .where(F.col("is_champion") & (F.col(AS_OF_DATE) <= F.lit(config.as_of_date)))
        .withColumn("_n", F.row_number().over(newest)).where("_n = 1").drop("_n").collect()
    )
    return {row["task"]: row for row in rows}

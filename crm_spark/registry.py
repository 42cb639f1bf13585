"""The model registry: where each run's models are saved and which one is champion."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession

from crm_spark import tables
from crm_spark.config import Config
from crm_spark.schemas import MODEL_REGISTRY_SCHEMA


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


def model_path(lakehouse_dir: str, run_id: str, task: str, model: str) -> str:
    """Return where a model of a run is saved."""
    return f"{lakehouse_dir.rstrip('/')}/models/{run_id}/{task}/{model}"


def record(spark: SparkSession, config: Config, run_id: str, entries: list[ModelEntry]) -> int:
    """Write the run's entries of their tasks to ``models.registry``, replacing earlier ones.

    Returns:
        Rows written.
    """
    rows = [(run_id, config.as_of_date, e.task, e.model, e.path, e.selection_metric, e.selection_value,
             e.is_champion, e.features) for e in entries]
    tasks = ", ".join(sorted({f"'{e.task}'" for e in entries}))
    return tables.write_table(spark.createDataFrame(rows, MODEL_REGISTRY_SCHEMA), tables.MODEL_REGISTRY,
                              config.paths.lakehouse_dir, run_id, where=f"task IN ({tasks})")

"""Small helpers for DataFrames that several layers share: scoped persistence, Spark work on a
thread of its own, partitions for model fitting and present columns."""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.util import inheritable_thread_target

T = TypeVar("T")


@contextlib.contextmanager
def persisted(df: DataFrame, level: StorageLevel | None = None) -> Iterator[DataFrame]:
    """Persist ``df`` for the ``with`` block and release it when the block ends, on errors too.

    Args:
        df: the frame to keep.
        level: where Spark keeps it; None is ``DataFrame.persist``'s default (memory,
            spilling to disk, deserialized).

    Yields:
        The persisted frame.
    """
    kept = df.persist() if level is None else df.persist(level)
    try:
        yield kept
    finally:
        kept.unpersist()


def beside(spark: SparkSession, pool: ThreadPoolExecutor, work: Callable[..., T], *args: object) -> Future[T]:
    """Start ``work(*args)`` on a thread of ``pool``, with this thread's Spark job group and log context.

    For Spark work on other tables than the caller's next steps: a Delta MERGE or a
    profile spends most of its time on the driver (planning, commits, many small jobs),
    so two of them overlap on two cores. The future's ``result()`` raises what ``work`` raised.
    """
    return pool.submit(contextvars.copy_context().run, inheritable_thread_target(spark)(work), *args)


def local_threads(master: str) -> int | None:
    """Return the threads of a local-mode master (``local``, ``local[N]``, ``local[N,F]``,
    ``local[*]``: one per core), or None for any other master."""
    local = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\d+)?\])?", master)
    if local is None:
        return None
    threads = local[1] or "1"
    return (os.cpu_count() or 1) if threads == "*" else int(threads)


def task_slots(spark: SparkSession) -> int:
    """Return how many tasks the session runs at once: the threads of local mode, elsewhere
    the default parallelism (the session sets ``spark.default.parallelism`` to the shuffle
    partitions, so in local mode that counts partitions, not cores)."""
    return local_threads(spark.sparkContext.master) or spark.sparkContext.defaultParallelism


# Rows per partition of the frames models are fitted on (see ``for_fitting``).
FIT_ROWS_PER_PARTITION = 250_000


def for_fitting(df: DataFrame, rows: int) -> DataFrame:
    """Return ``df`` coalesced to the partitions a model fit on its ``rows`` needs: one per
    ``FIT_ROWS_PER_PARTITION`` rows, at least one, at most the session's task slots
    (:func:`task_slots`) and never more than ``df`` has.

    Iterative fits (logistic regression, trees, k-means) run a job per iteration, and at
    customer-table sizes a job's cost is its tasks' overhead, not its rows: at 60,000 rows
    and 2 cores, a logistic regression of 200 iterations took 54 s on 8 partitions, 23 s
    on 2 and 13 s on 1.
    """
    wanted = max(1, min(task_slots(df.sparkSession), math.ceil(rows / FIT_ROWS_PER_PARTITION)))
    return df.coalesce(wanted) if wanted < df.rdd.getNumPartitions() else df


def present(df: DataFrame, columns: Sequence[str]) -> list[str]:
    """Return those of ``columns`` that ``df`` has, in the order given."""
    return [c for c in columns if c in df.columns]

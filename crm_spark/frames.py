"""Small helpers for DataFrames that several layers share: scoped persistence and present columns."""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

from pyspark import StorageLevel
from pyspark.sql import DataFrame


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


def present(df: DataFrame, columns: Sequence[str]) -> list[str]:
    """Return those of ``columns`` that ``df`` has, in the order given."""
    return [c for c in columns if c in df.columns]

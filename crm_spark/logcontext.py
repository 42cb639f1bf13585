"""The run id and stage on every log record, so a run's log lines can be told apart."""

from __future__ import annotations

import contextlib
import contextvars
import logging
from typing import Iterator

LOG_FORMAT = "%(asctime)s %(levelname)s [%(run_id)s %(stage)s] %(name)s: %(message)s"
OUTSIDE = "-"  # run id and stage of records logged outside a run

_current: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar("crm_spark_run", default=(OUTSIDE, OUTSIDE))
_installed = False


def install() -> None:
    """Make every log record carry ``run_id`` and ``stage`` (idempotent).

    The record factory is wrapped rather than a handler filter added, so records of every
    logger and handler (Py4J's and pytest's included) have the attributes.
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.run_id, record.stage = _current.get()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


@contextlib.contextmanager
def stage(run_id: str, name: str) -> Iterator[None]:
    """Within the block, log records carry ``run_id`` and stage ``name``."""
    install()
    token = _current.set((run_id, name))
    try:
        yield
    finally:
        _current.reset(token)

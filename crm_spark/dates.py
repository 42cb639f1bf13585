"""Dates in column expressions: the start of a day as a timestamp, and ages."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column
from pyspark.sql import functions as F


def start_of(day: dt.date) -> Column:
    """Return midnight (UTC) at the start of ``day`` as a timestamp literal, for ``ts < start_of(day)``."""
    return F.lit(day).cast("timestamp")


def age_on(birth_date: Column, on: dt.date) -> Column:
    """Return whole years between ``birth_date`` and ``on``."""
    return F.floor(F.months_between(F.lit(on), birth_date) / 12).cast("int")

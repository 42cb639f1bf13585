"""Dates in column expressions: the start of a day as a timestamp, and ages."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column
from pyspark.sql import functions as F

# Date patterns tried, in order, where a source names none of its own.
DATE_FORMATS = ("yyyy-MM-dd", "dd.MM.yyyy", "yyyy/MM/dd", "dd MMM yyyy", "yyyyMMdd")


def start_of(day: dt.date) -> Column:
    """Return midnight (UTC) at the start of ``day`` as a timestamp literal, for ``ts < start_of(day)``."""
    return F.lit(day).cast("timestamp")


def age_on(birth_date: Column, on: dt.date) -> Column:
    """Return whole years between ``birth_date`` and ``on``."""
    return F.floor(F.months_between(F.lit(on), birth_date) / 12).cast("int")


def parse_date_text(text: Column, formats: tuple[str, ...] = ()) -> Column:
    """Return trimmed ``text`` as a date by the first matching of ``formats`` then ``DATE_FORMATS``, or null."""
    trimmed = F.trim(text)
    return F.coalesce(*[F.try_to_date(trimmed, fmt) for fmt in (*formats, *DATE_FORMATS)])

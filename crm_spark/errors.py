"""Errors with a meaning of their own: a stage skipped for absent inputs, a machine without Java."""

from __future__ import annotations


class StageSkipped(Exception):
    """The stage's inputs are absent for this configuration; the reason says which."""


class JavaMissing(RuntimeError):
    """No Java runtime was found to start Spark's JVM."""

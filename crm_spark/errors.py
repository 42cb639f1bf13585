"""What a stage raises when its inputs are absent, so the run records it as skipped."""

from __future__ import annotations


class StageSkipped(Exception):
    """The stage's inputs are absent for this configuration; the reason says which."""

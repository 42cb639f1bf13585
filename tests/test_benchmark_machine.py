"""The benchmarks' machine calibration: effective cores from the loop's times, and one short calibration."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def machine(monkeypatch):
    # On the path, so the processes the calibration spawns import the loop as the benchmarks do.
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("machine")


@pytest.mark.parametrize(("alone", "together", "expected"), [
    (2.0, [2.0, 2.0], 2.0),  # two independent cores
    (2.0, [4.0, 4.0], 1.0),  # two cores that do one core's work
    (2.0, [2.5, 3.5], 4 / 3),  # uneven: the mean time counts
    (3.0, [3.0], 1.0),
])
def test_effective_cores_are_the_cores_times_the_time_alone_over_the_mean_time_together(machine, alone, together,
                                                                                        expected):
    assert machine.effective_cores(alone, together) == pytest.approx(expected)


def test_a_calibration_reports_each_figure_and_a_line_that_says_them(machine):
    found = machine.calibrate(loops=200_000, rounds=2)

    assert set(found) == {"cpu", "cores", "alone_seconds", "alone_range", "effective_cores"}
    assert found["cpu"] and found["cores"] >= 1
    low, high = found["alone_range"]
    assert 0 < low <= found["alone_seconds"] <= high
    assert found["effective_cores"] > 0
    line = machine.describe(found)
    assert f"{found['cores']} cores" in line and f"{found['effective_cores']:.2f} effective cores" in line

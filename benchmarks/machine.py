"""Benchmark helper: a record of what the machine's cores are worth, kept beside a benchmark's figures.

Two machines that both report two cores can differ in what a run gets from them: their cores can
be slower, and a virtual machine's two cores can share one physical core, or be busy with a
neighbour's work, so two busy cores do less than twice one core's work. A Spark run keeps every
core busy; a single-process baseline keeps one. This times a fixed pure-Python loop in one
process alone, then in one process per core at once, over several rounds (a virtual machine's
speed moves from one round to the next), and reports the CPU's model, the median time alone, its
range, and the median effective cores: the cores times the loop's time alone over its mean time
with every core busy (2.0 on two independent cores, 1.0 where the two do no more than one). It
describes the machine; it does not convert one machine's times into another's (the README says
why). Run it alone, on a quiet machine:

    .venv/bin/python benchmarks/machine.py
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import statistics
import time
from pathlib import Path

# A round's loop: 0.27 to 0.50 s of one core's time in CPython 3.11 on the 2.5 GHz EPYC the benchmarks ran on.
LOOPS = 5_000_000
ROUNDS = 5


def spin(loops: int) -> float:
    """Return the seconds this process takes to run a fixed pure-Python loop of ``loops`` steps."""
    started, total = time.perf_counter(), 0
    for i in range(loops):
        total += i * i
    return time.perf_counter() - started


def effective_cores(alone: float, together: list[float]) -> float:
    """Return the cores' worth of work done with every core busy: one process per core took ``together``
    seconds each for what one process alone did in ``alone`` seconds."""
    return len(together) * alone / statistics.fmean(together)


def cpu_model() -> str:
    """Return the processor's model name (Linux's ``/proc/cpuinfo``), else what the platform says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def calibrate(loops: int = LOOPS, rounds: int = ROUNDS) -> dict:
    """Time the loop alone, then on every core at once (each in processes of its own), ``rounds`` times.

    Returns:
        ``cpu`` (model name), ``cores`` (the cores this process may use), ``alone_seconds`` (the
        median of the rounds), ``alone_range`` (their least and most) and ``effective_cores`` (the
        median of the rounds').
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    alone, effective = [], []
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        for _ in range(rounds):
            alone.append(pool.apply(spin, (loops,)))
            effective.append(effective_cores(alone[-1], pool.map(spin, [loops] * cores, chunksize=1)))
    return {"cpu": cpu_model(), "cores": cores, "alone_seconds": statistics.median(alone),
            "alone_range": [min(alone), max(alone)], "effective_cores": statistics.median(effective)}


def describe(machine: dict) -> str:
    """Return one line that says what :func:`calibrate` found."""
    low, high = machine["alone_range"]
    return (f"{machine['cpu']}, {machine['cores']} cores: a fixed Python loop took {machine['alone_seconds']:.2f} s "
            f"alone ({low:.2f}-{high:.2f} s), {machine['effective_cores']:.2f} effective cores")


if __name__ == "__main__":
    found = calibrate()
    print(describe(found))
    print(json.dumps(found))

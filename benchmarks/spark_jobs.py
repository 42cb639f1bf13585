"""Benchmark helper: the Spark jobs of a run, per stage, from Spark's event log.

A stage's wall time is its Spark jobs plus the driver's time between them (planning,
Delta log work, Python). This prints, per stage (the job group ``crm-spark`` sets), the
jobs run, their summed time, the time at least one job ran and the time none did, the CPU
time of their tasks, and the five longest jobs with the Python line that started them; it
writes the same as JSON. Record an uncompressed event log of any command, then read it:

    mkdir -p /tmp/spark-conf /tmp/spark-events
    printf 'spark.eventLog.enabled true\\nspark.eventLog.dir file:///tmp/spark-events\\n'\\
'spark.eventLog.compress false\\n' > /tmp/spark-conf/spark-defaults.conf
    SPARK_CONF_DIR=/tmp/spark-conf .venv/bin/crm-spark daily ...
    .venv/bin/python benchmarks/spark_jobs.py /tmp/spark-events/<application> [--json jobs.json]

``benchmarks/daily.py --spark-jobs`` records such a log for each of its runs and prints this summary.
Jobs outside any stage (``-``) and the run records (``runs``) come at the start and the end,
so their span is the whole run. Event logging costs some time itself, so take wall times
from ``benchmarks/daily.py``.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def read_jobs(path: Path) -> list[dict]:
    """Return each job of an event log (a file, or a folder of rolled files): id, group, call site, start, end (ms)
    and the CPU time of its tasks (ms)."""
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    jobs: dict[int, dict] = {}
    job_of_stage: dict[int, int] = {}
    for file in files:
        if file.name.startswith((".", "appstatus")):
            continue
        with file.open(encoding="utf-8") as lines:
            for line in lines:
                event = json.loads(line)
                if event["Event"] == "SparkListenerJobStart":
                    properties = event.get("Properties") or {}
                    jobs[event["Job ID"]] = {"id": event["Job ID"], "group": properties.get("spark.jobGroup.id") or "-",
                                             "site": properties.get("callSite.short") or "-",
                                             "start": event["Submission Time"], "end": event["Submission Time"],
                                             "task_cpu": 0.0}
                    job_of_stage.update(dict.fromkeys(event["Stage IDs"], event["Job ID"]))
                elif event["Event"] == "SparkListenerJobEnd" and event["Job ID"] in jobs:
                    jobs[event["Job ID"]]["end"] = event["Completion Time"]
                elif event["Event"] == "SparkListenerTaskEnd" and event["Stage ID"] in job_of_stage:
                    metrics = event.get("Task Metrics") or {}
                    cpu_ns = metrics.get("Executor CPU Time", 0) + metrics.get("Executor Deserialize CPU Time", 0)
                    jobs[job_of_stage[event["Stage ID"]]]["task_cpu"] += cpu_ns / 1e6
    return sorted(jobs.values(), key=lambda job: job["start"])


def per_stage(jobs: list[dict]) -> dict[str, dict]:
    """Return per job group: jobs, summed job seconds, span, seconds with a job running, the CPU seconds of
    its tasks and the longest jobs."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for job in jobs:
        groups[job["group"]].append(job)
    summary = {}
    for group, members in groups.items():
        busy, covered_until = 0, None
        for job in members:  # in start order: the union of the jobs' intervals
            start = job["start"] if covered_until is None else max(job["start"], covered_until)
            busy += max(0, job["end"] - start)
            covered_until = job["end"] if covered_until is None else max(covered_until, job["end"])
        span = max(j["end"] for j in members) - members[0]["start"]
        longest = sorted(members, key=lambda j: j["start"] - j["end"])[:5]
        job_ms = sum(j["end"] - j["start"] for j in members)
        summary[group] = {"jobs": len(members), "job_seconds": round(job_ms / 1000, 1),
                          "span_seconds": round(span / 1000, 1), "busy_seconds": round(busy / 1000, 1),
                          "idle_seconds": round((span - busy) / 1000, 1),
                          "task_cpu_seconds": round(sum(j["task_cpu"] for j in members) / 1000, 1),
                          "longest": [{"seconds": round((j["end"] - j["start"]) / 1000, 1), "site": j["site"]}
                                      for j in longest]}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("event_log", type=Path)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    summary = per_stage(read_jobs(args.event_log))
    print(f"{'stage':<16} {'jobs':>5} {'job s':>7} {'span s':>7} {'busy s':>7} {'idle s':>7} {'task CPU s':>10}"
          "  longest jobs")
    for group, s in summary.items():
        longest = "; ".join(f"{j['seconds']} s {j['site']}" for j in s["longest"][:2])
        print(f"{group:<16} {s['jobs']:>5} {s['job_seconds']:>7.1f} {s['span_seconds']:>7.1f} "
              f"{s['busy_seconds']:>7.1f} {s['idle_seconds']:>7.1f} {s['task_cpu_seconds']:>10.1f}  {longest}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

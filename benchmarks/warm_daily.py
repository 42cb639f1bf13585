"""Benchmark: daily runs of consecutive days in one process, so that every day after the first runs in a
JVM that has already loaded and compiled Spark's code: what a driver that outlives a run would save.

``benchmarks/daily.py`` times each run as its own process, as a scheduler starts it. This starts from
the same generated files and the lakehouse of its last full run, then in one process, for each of
``--days`` days after ``as_of_date``, appends the demo's activity of the day (``next_day``), runs the
``daily`` profile and writes the report. It prints one row per day (wall times and the stage times) and
writes them as JSON. The first day pays the start-up and compiling that a scheduled run pays; the next
days show the stages' own work. From the repository root, after ``benchmarks/daily.py`` has run on the
same work folder:

    .venv/bin/python benchmarks/warm_daily.py [--customers 100000] [--work /tmp/crm-daily-bench] [--days 3]
        [--json benchmarks/warm_daily.json] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import time
from pathlib import Path

from daily import REPO, start_from_full_run, work_settings

from crm_spark import runs
from crm_spark.config import load_config
from crm_spark.report import page
from crm_spark.session import build_spark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000, help="customers of the work folder (default 100000)")
    parser.add_argument("--work", default="/tmp/crm-daily-bench", help="the work folder of benchmarks/daily.py")
    parser.add_argument("--days", type=int, default=3, help="days run one after the other (default 3)")
    parser.add_argument("--json", default="benchmarks/warm_daily.json", help="where to write the figures")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override, e.g. spark.master=local[2] (repeatable)")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    start_from_full_run(work)
    config = load_config(str(REPO / "conf" / "local.yaml"),
                         [f"paths.raw_dir={work}/raw", *work_settings(work, args.customers, args.overrides)])
    began = time.perf_counter()
    spark = build_spark(config)
    days = [{"day": 0, "session_seconds": round(time.perf_counter() - began, 1)}]
    for offset in range(1, args.days + 1):
        day = dataclasses.replace(config, as_of_date=config.as_of_date + dt.timedelta(days=offset))
        began = time.perf_counter()
        runs.execute(spark, day, ["next_day"])
        appended = time.perf_counter()
        result = runs.execute(spark, day, list(runs.PROFILES["daily"]))
        ran = time.perf_counter()
        page.write_report(spark, day, result.run_id)
        days.append({"day": offset, "as_of_date": day.as_of_date.isoformat(),
                     "next_day_seconds": round(appended - began, 1), "daily_seconds": round(ran - appended, 1),
                     "report_seconds": round(time.perf_counter() - ran, 1), "stages": result.stage_seconds})
        Path(args.json).write_text(json.dumps({"customers": args.customers, "days": days}, indent=2))  # so far
    spark.stop()

    print(f"\n{args.customers:,} customers, daily runs in one process (session started in "
          f"{days[0]['session_seconds']:.1f} s)")
    stages = list(days[1]["stages"])
    print(f"{'day':<12} {'next_day s':>10} {'daily s':>8} {'report s':>9} " + " ".join(f"{s:>12}" for s in stages))
    for row in days[1:]:
        print(f"{row['as_of_date']:<12} {row['next_day_seconds']:>10.1f} {row['daily_seconds']:>8.1f} "
              f"{row['report_seconds']:>9.1f} " + " ".join(f"{row['stages'].get(s, 0):>12.1f}" for s in stages))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

"""Assemble the report's sections into one HTML file: inline styles and SVG images, no script and no link."""

from __future__ import annotations

import datetime as dt
import html
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from crm_spark import files, tables
from crm_spark.config import Config
from crm_spark.frames import beside
from crm_spark.report.sections import SECTIONS, Context, Section
from crm_spark.schemas import AS_OF_DATE, RUN_ID

log = logging.getLogger(__name__)

# Sections built at once: each is a series of small queries, mostly driver time.
SECTION_THREADS = 3

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3b57;color:#fff;padding:16px 32px}header h1{margin:0;font-size:22px}
nav{padding:8px 32px;background:#e8eef4;position:sticky;top:0}nav a{margin-right:14px;color:#1f3b57}
main{padding:8px 32px 40px}section{background:#fff;border:1px solid #ddd;border-radius:6px;margin:18px 0;
padding:8px 20px 16px}h2{color:#1f3b57}.grid{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0;flex:1 1 560px;max-width:760px}figure img{width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:13px;color:#555;margin-top:4px}table{border-collapse:collapse;margin:12px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f0f3f6}td:first-child{text-align:left}
caption{text-align:left;font-weight:bold;padding:4px 0}pre{background:#f6f6f6;padding:8px;font-size:12px;
overflow:auto;max-height:420px}.note{color:#8a5300}
"""


def render(sections: list[Section], as_of_date: dt.date, run_id: str, seconds: float) -> str:
    """Return the report page."""
    nav = "".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in sections)
    body = []
    for s in sections:
        figures = "".join(
            f'<figure><img src="{c.image}" alt="{html.escape(c.title)}"><figcaption><b>How to read:</b> '
            f"{html.escape(c.how_to_read)}</figcaption></figure>" for c in s.charts)
        notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in s.notes)
        body.append(f'<section id="{s.key}" data-charts="{len(s.charts)}"><h2>{html.escape(s.title)}</h2>'
                    f"<p>{html.escape(s.intro)}</p>{notes}<div class=\"grid\">{figures}</div>{''.join(s.tables)}"
                    "</section>")
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<title>crm-spark report {as_of_date}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>crm-spark report: {as_of_date}</h1><div>run {html.escape(run_id)}; built in "
        f"{seconds:.0f} s from the gold and models tables; no personal data</div></header>"
        f"<nav>{nav}</nav><main>{''.join(body)}</main></body></html>"
    )


def latest_run(spark: SparkSession, lakehouse_dir: str, as_of_date: dt.date) -> str | None:
    """Return the newest run recorded for ``as_of_date``, or None."""
    if not tables.table_exists(spark, tables.RUNS, lakehouse_dir):
        return None
    return tables.read_table(spark, tables.RUNS, lakehouse_dir).where(
        F.col(AS_OF_DATE) == as_of_date).agg(F.max(RUN_ID)).first()[0]


def write_report(spark: SparkSession, config: Config, run_id: str | None = None) -> str:
    """Build the report of a run (the newest of ``as_of_date`` by default) and write it under the report folder.

    Up to ``SECTION_THREADS`` sections are built at once (:func:`~crm_spark.frames.beside`); the page
    keeps their order.

    Returns:
        The report file's location.

    Raises:
        LookupError: no run is recorded for the date.
    """
    lake = config.paths.lakehouse_dir
    run_id = run_id or latest_run(spark, lake, config.as_of_date)
    if run_id is None:
        raise LookupError(f"no run is recorded for {config.as_of_date} in gold.runs: run the pipeline first")
    began = time.perf_counter()
    context = Context(spark, lake, config.as_of_date, run_id)
    with ThreadPoolExecutor(SECTION_THREADS, thread_name_prefix="crm-spark-report") as pool:
        built = []
        for build in SECTIONS:
            spark.sparkContext.setJobGroup("report", f"crm-spark report {build.__name__}")  # taken by the thread
            built.append(beside(spark, pool, build, context))
        sections = [section.result() for section in built]
    for chart in (c for s in sections for c in s.charts):  # drawn on their own thread meanwhile
        chart.drawn.result()
    page = render(sections, config.as_of_date, run_id, time.perf_counter() - began)
    location = f"{config.paths.reports.rstrip('/')}/report-{config.as_of_date.isoformat()}-{run_id}.html"
    files.write_text(spark, location, page)
    log.info("report of run %s written to %s in %.1f s", run_id, location, time.perf_counter() - began)
    return location

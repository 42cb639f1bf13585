"""The report's sections: each reads gold and models tables only, aggregates in Spark, and draws small results.

Every section returns a :class:`Section`; one whose tables do not exist yet says so instead
of failing the report. Nothing here reads bronze or silver, so no personal data can reach
the page, and no customer key is shown.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.report import charts
from crm_spark.report.charts import Chart
from crm_spark.schemas import AS_OF_DATE, CUSTOMER_KEY, LABEL, MODEL, PREDICTION, PRODUCT_ID, RUN_ID, SCORE, SPLIT, TEST

BINS = 100  # score bins of the churn curves


@dataclass
class Section:
    """One part of the report: a heading, charts, tables (as HTML) and notes."""

    key: str
    title: str
    intro: str
    charts: list[Chart] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Context:
    """What every section needs: the session, the lakehouse, the date and the run reported on."""

    spark: SparkSession
    lakehouse_dir: str
    as_of_date: dt.date
    run_id: str

    def read(self, table: tables.Table) -> DataFrame | None:
        """Return a table, or None when no stage has written it yet."""
        if not tables.table_exists(self.spark, table, self.lakehouse_dir):
            return None
        return tables.read_table(self.spark, table, self.lakehouse_dir)

    def dated(self, table: tables.Table) -> DataFrame | None:
        """Return the rows of the report's date of a dated table, or None when there are none."""
        df = self.read(table)
        if df is None:
            return None
        df = df.where(F.col(AS_OF_DATE) == self.as_of_date)
        return None if df.isEmpty() else df

    def newest_run(self, table: tables.Table) -> DataFrame | None:
        """Return the rows of the newest run of the report's date of a table scoped by run (metrics, quality)."""
        df = self.read(table)
        if df is None:
            return None
        df = df.where(F.col(AS_OF_DATE) == self.as_of_date)
        newest = df.agg(F.max(RUN_ID)).first()[0]
        return None if newest is None else df.where(F.col(RUN_ID) == newest)


def table_html(headers: Sequence[str], rows: Sequence[Sequence[object]], caption: str = "") -> str:
    """Return an HTML table; numbers are formatted, every cell escaped."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            text = "" if math.isnan(value) else (f"{value:,.4f}" if abs(value) < 100 else f"{value:,.1f}")
        elif value is None:
            text = ""
        else:
            text = str(value)
        return f"<td>{html.escape(text)}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metrics(ctx: Context, task: str) -> dict[tuple[str, str, str], float]:
    """Return the newest evaluation's metrics of a task: (model, metric, split) -> value."""
    df = ctx.newest_run(tables.MODEL_METRICS)
    if df is None:
        return {}
    rows = df.where(F.col("task") == task).select(MODEL, "metric", SPLIT, "value").collect()
    return {(r[MODEL], r["metric"], r[SPLIT]): r["value"] for r in rows if r["value"] is not None}


def _rows(ctx: Context, table: tables.Table, section: Section, missing: str) -> DataFrame | None:
    """Return the date's rows of ``table``, or None after noting in ``section`` what is missing and why."""
    df = ctx.dated(table)
    if df is None:
        section.notes.append(missing)
    return df


def _test_table(metrics: dict[tuple[str, str, str], float], names: Sequence[str]) -> str:
    """Return the table of the named test metrics, one row per model."""
    models = sorted({m for (m, _, s) in metrics if s == TEST})
    return table_html(["model", *names], [[m, *[metrics.get((m, n, TEST)) for n in names]] for m in models],
                      "Test metrics")


def run_summary(ctx: Context) -> Section:
    """The run: status, times, and each stage's time and rows."""
    section = Section("run", "Run summary", f"Run {ctx.run_id} for {ctx.as_of_date}.")
    runs = ctx.read(tables.RUNS)
    row = None if runs is None else runs.where(F.col(RUN_ID) == ctx.run_id).first()
    if row is None:
        section.notes.append("This run is not recorded in gold.runs.")
        return section
    took = (row["finished_at"] - row["started_at"]).total_seconds() if row["finished_at"] else None
    section.tables.append(table_html(
        ["status", "as of date", "started (UTC)", "finished (UTC)", "wall seconds", "config hash"],
        [[row["status"], str(row["as_of_date"]), str(row["started_at"])[:19], str(row["finished_at"] or "")[:19],
          "" if took is None else f"{took:,.1f}", row["config_hash"]]]))
    seconds = dict(row["stage_seconds"] or {})
    status, rows_in, rows_out = (dict(row[c] or {}) for c in ("stage_status", "rows_in", "rows_out"))
    stages = [s for s in row["stages"] if s in seconds]
    section.tables.append(table_html(
        ["stage", "status", "seconds", "rows in", "rows out"],
        [[s, status.get(s, ""), f"{seconds[s]:,.1f}", f"{rows_in.get(s, 0):,}", f"{rows_out.get(s, 0):,}"]
         for s in stages]))
    if stages:
        section.charts.append(charts.bars(
            "Time per stage", stages, [float(seconds[s]) for s in stages], "seconds",
            "Longer bars took longer; the sum is the run's stage time."))
    for stage, reason in (row["skipped"] or {}).items():
        section.notes.append(f"Skipped {stage}: {reason}")
    if row["error"]:
        section.notes.append(f"Error: {row['error'].splitlines()[0]}")
    return section


def data_quality(ctx: Context) -> Section:
    """Rows read, quarantine reasons, cleaning-rule hits and de-duplication."""
    section = Section("quality", "Data quality", "What the raw data held and what cleaning did to it.")
    df = ctx.newest_run(tables.DATA_QUALITY)
    if df is None:
        section.notes.append("No data-quality report for this date: run prepare.")
        return section
    rows = df.where(F.col("value").isNotNull()).select("dataset", "column", "metric", "value").collect()
    read = {r["dataset"]: r["value"] for r in rows if r["metric"] == "rows"}
    quarantined = [(f"{r['dataset']}: {r['metric'].removeprefix('quarantined.').replace('_', ' ')}", r["value"])
                   for r in rows if r["metric"].startswith("quarantined.")]
    hits = [(r["column"].replace("_", " "), r["value"]) for r in rows if r["dataset"] == "rules" and r["value"] > 0]
    section.tables.append(table_html(
        ["source", "rows read", "rows quarantined"],
        [[name, f"{int(n):,}", f"{int(sum(v for k, v in quarantined if k.startswith(name + ':'))):,}"]
         for name, n in sorted(read.items())]))
    if quarantined:
        section.charts.append(charts.bars(
            "Quarantined rows by reason", [k for k, _ in quarantined], [v for _, v in quarantined], "rows",
            "Each bar counts raw rows set aside in bronze.quarantine for that reason; none is lost."))
    if hits:
        section.charts.append(charts.bars(
            "Cleaning rule hits", [k for k, _ in hits], [v for _, v in hits], "rows changed or nulled",
            "How often each cleaning rule fired: values nulled as invalid, normalized, or duplicates removed."))
    validity = [(f"{r['dataset']}.{r['column']}", r["value"]) for r in rows if r["metric"] == "valid_share"]
    if validity:
        section.tables.append(table_html(["column", "valid share"], [[k, float(v)] for k, v in validity],
                                         "Share of filled values that passed validation"))
    features = ctx.dated(tables.CUSTOMER_FEATURES)
    customers = features.select(CUSTOMER_KEY).distinct().count() if features is not None else None
    dedup = _metrics(ctx, "dedup")
    lines = []
    if "customers" in read and customers is not None:
        lines.append([f"{int(read['customers']):,} customer records became {customers:,} customers "
                      f"({int(read['customers']) - customers:,} merged or set aside)"])
    for metric in ("precision", "recall", "f1"):
        value = dedup.get(("entity_resolution", metric, "all"))
        if value is not None:
            lines.append([f"pairwise {metric} against the known duplicates: {value:.4f}"])
    if lines:
        section.tables.append(table_html(["de-duplication"], lines))
    return section


def feature_selection(ctx: Context) -> Section:
    """Chi-square statistics and the correlation heat map of the candidate features."""
    section = Section("features", "Feature selection",
                      "Which customer features the churn models may use, and why the others were left out.")
    df = _rows(ctx, tables.FEATURE_SELECTION, section, "No feature selection for this date: run select.")
    if df is None:
        return section
    rows = df.orderBy("position").collect()
    section.charts.append(charts.bars(
        "Chi-square statistic per feature", [r["feature"] for r in rows],
        [max(float(r["chi2_statistic"] or 0.0), 1e-3) for r in rows], "chi-square statistic (log scale)",
        "Longer bars separate churners from others more strongly; blue features were kept, grey ones dropped.",
        highlight=[bool(r["kept"]) for r in rows], log=True))
    section.tables.append(table_html(
        ["feature", "chi-square", "p-value", "max |correlation|", "kept", "reason"],
        [[r["feature"], r["chi2_statistic"], r["p_value"], r["max_abs_correlation"], "yes" if r["kept"] else "no",
          r["reason"]] for r in rows]))
    numeric = [r for r in rows if r["correlations"]]
    names = [r["feature"] for r in numeric]
    if len(names) > 1:
        matrix = [[1.0 if a == b else float((r["correlations"] or {}).get(b, float("nan"))) for b in names]
                  for a, r in zip(names, numeric, strict=True)]
        section.charts.append(charts.heatmap(
            "Correlation between numeric features", names, names, matrix, "", "",
            "Red cells are features that rise together, blue ones move oppositely; of a pair above the "
            "threshold, the weaker predictor is dropped.", centred=True, annotate=len(names) <= 10))
    return section


def _curves(test: DataFrame) -> dict[str, list]:
    """Return per model the score bins (best first): customers, churners and mean score."""
    order = Window.partitionBy(MODEL).orderBy(F.desc(SCORE))
    binned = test.withColumn("bin", F.least(F.floor(F.percent_rank().over(order) * BINS), F.lit(BINS - 1)))
    rows = binned.groupBy(MODEL, "bin").agg(F.count("*").alias("n"), F.sum(LABEL).alias("pos")).orderBy(
        MODEL, "bin").collect()
    result: dict[str, list] = {}
    for r in rows:
        result.setdefault(r[MODEL], []).append((r["n"], float(r["pos"] or 0.0)))
    return result


def churn(ctx: Context) -> Section:
    """Held-out curves of every churn model beside the baselines, calibration, confusion and explanations."""
    section = Section("churn", "Churn", "How well each model finds the customers who stop buying, on test "
                      "customers no model saw in training.")
    df = _rows(ctx, tables.CHURN_HOLDOUT, section, "No held-out churn predictions for this date: run train.")
    if df is None:
        return section
    test = df.where((F.col(SPLIT) == TEST) & F.col(SCORE).isNotNull() & F.col(LABEL).isNotNull())
    bins = _curves(test)
    metrics = _metrics(ctx, "churn")
    roc, pr, gain, lift = {}, {}, {}, {}
    for model, steps in sorted(bins.items()):
        total, positives = sum(n for n, _ in steps), sum(p for _, p in steps)
        negatives = total - positives
        if not positives or not negatives:
            continue
        tp = fp = seen = 0.0
        xs_roc, ys_roc, xs_pr, ys_pr, share, captured, lifted = [0.0], [0.0], [], [], [0.0], [0.0], []
        for n, p in steps:
            tp, fp, seen = tp + p, fp + n - p, seen + n
            xs_roc.append(fp / negatives)
            ys_roc.append(tp / positives)
            xs_pr.append(tp / positives)
            ys_pr.append(tp / seen)
            share.append(seen / total)
            captured.append(tp / positives)
            lifted.append((tp / positives) / (seen / total))
        auc = metrics.get((model, "auc", TEST))
        label = f"{model} (AUC {auc:.3f})" if auc is not None else model
        roc[label], pr[label] = (xs_roc, ys_roc), (xs_pr, ys_pr)
        gain[label], lift[label] = (share, captured), (share[1:], lifted)
    baselines = [name for name in roc if "baseline" in name or "oracle" in name]
    section.charts.append(charts.lines(
        "ROC curve (test customers)", roc, "false positive rate", "true positive rate",
        "The higher and further left a curve, the better; the dotted diagonal is guessing. Dashed: baselines.",
        diagonal=True, dashed=baselines))
    section.charts.append(charts.lines(
        "Precision and recall (test customers)", pr, "recall: share of churners found",
        "precision: share of flagged who churn",
        "Each point is a cut-off: moving right flags more customers, finding more churners at lower precision.",
        dashed=baselines))
    section.charts.append(charts.lines(
        "Cumulative gain", gain, "share of customers contacted (highest risk first)", "share of churners reached",
        "Contacting the top 20% by score reaches the share of churners the curve shows at 0.2; the diagonal is "
        "random contact.", diagonal=True, dashed=baselines))
    section.charts.append(charts.lines(
        "Lift", lift, "share of customers contacted (highest risk first)", "lift over random contact",
        "A lift of 2 at 0.1 means the top 10% by score holds twice the churn rate of all customers.",
        dashed=baselines))
    probability = test.where(~F.col(MODEL).rlike("baseline|oracle"))
    calibration = probability.withColumn("bin", F.least(F.floor(F.col(SCORE) * 10), F.lit(9))).groupBy(
        MODEL, "bin").agg(F.avg(SCORE).alias("predicted"), F.avg(LABEL).alias("observed"),
                          F.count("*").alias("n")).orderBy(MODEL, "bin").collect()
    series: dict[str, tuple[list, list]] = {}
    for r in calibration:
        xs, ys = series.setdefault(r[MODEL], ([], []))
        xs.append(r["predicted"])
        ys.append(r["observed"])
    if series:
        section.charts.append(charts.lines(
            "Calibration", series, "predicted churn probability", "observed churn rate",
            "Points on the diagonal mean a predicted 30% churns 30% of the time; above it the model is too low.",
            diagonal=True, marker="o"))
    _confusion(ctx, test, section)
    _explanations(ctx, section)
    section.tables.append(_test_table(metrics, ("auc", "auc_pr", "precision", "recall", "f1", "accuracy",
                                                "lift_top_decile")))
    return section


def _champion(ctx: Context, task: str) -> dict | None:
    """Return the registry's newest champion of a task registered up to the report's date."""
    registry = ctx.read(tables.MODEL_REGISTRY)
    if registry is None:
        return None
    row = registry.where((F.col("task") == task) & F.col("is_champion") & (F.col(AS_OF_DATE) <= ctx.as_of_date)) \
        .orderBy(F.desc(AS_OF_DATE), F.desc("registered_at")).first()
    return None if row is None else row.asDict()


def _confusion(ctx: Context, test: DataFrame, section: Section) -> None:
    """Add the champion's confusion matrix at its chosen threshold."""
    champion = _champion(ctx, "churn")
    if champion is None:
        return
    counts = {(r[LABEL], r[PREDICTION]): r["n"] for r in test.where(
        (F.col(MODEL) == champion[MODEL]) & F.col(PREDICTION).isNotNull()).groupBy(LABEL, PREDICTION).agg(
        F.count("*").alias("n")).collect()}
    if not counts:
        return
    threshold = (champion["params"] or {}).get("threshold")
    matrix = [[counts.get((actual, predicted), 0) for predicted in (0.0, 1.0)] for actual in (0.0, 1.0)]
    at = f" at its threshold {threshold:.2f}" if threshold is not None else ""
    section.charts.append(charts.heatmap(
        f"Confusion matrix: {champion[MODEL]}", ["stays", "churns"], ["predicted stays", "predicted churns"],
        matrix, "prediction", "actual",
        f"Test customers by what the champion predicted{at} and what they did: the diagonal counts right answers, "
        "top right are false alarms, bottom left missed churners."))


def _explanations(ctx: Context, section: Section) -> None:
    """Add coefficients, importances and the tree's rules of the newest training for the date."""
    df = ctx.read(tables.MODEL_EXPLANATIONS)
    if df is None:
        return
    df = df.where((F.col(AS_OF_DATE) == ctx.as_of_date) & (F.col("task") == "churn"))
    newest = df.agg(F.max(RUN_ID)).first()[0]
    if newest is None:
        return
    rows = df.where(F.col(RUN_ID) == newest).collect()
    for kind, title, how in (
            ("coefficient", "Logistic regression coefficients",
             "Positive bars raise the churn risk as the (scaled) feature grows, negative ones lower it."),
            ("importance", "Tree feature importances",
             "The share of the trees' splitting gain each feature gives; longer bars matter more.")):
        for model in sorted({r[MODEL] for r in rows if r["kind"] == kind}):
            chosen = sorted((r for r in rows if r["kind"] == kind and r[MODEL] == model),
                            key=lambda r: -abs(r["value"] or 0.0))[:15]
            section.charts.append(charts.bars(f"{title}: {model}", [r["feature"] for r in chosen],
                                              [float(r["value"] or 0.0) for r in chosen], kind, how))
    for r in rows:
        if r["kind"] == "rules" and r["detail"]:
            text = "\n".join(r["detail"].splitlines()[:60])
            section.tables.append(f"<h3>Rules of the {html.escape(r[MODEL])}</h3><pre>{html.escape(text)}</pre>")


def customer_value(ctx: Context) -> Section:
    """Predicted against actual value by decile, and BG/NBD's expected against actual purchases."""
    section = Section("value", "Customer value", "How well predicted spend and purchases match what test "
                      "customers did in the horizon after the training cutoff.")
    metrics = _metrics(ctx, "clv")
    if not metrics:
        section.notes.append("No customer-value metrics for this date: run evaluate.")
        return section
    models = sorted({m for (m, metric, s) in metrics if metric.startswith("decile_") and s == TEST})
    deciles = list(range(1, 11))
    for model in models:
        predicted = [metrics.get((model, f"decile_{d:02d}_mean_predicted", TEST), float("nan")) for d in deciles]
        actual = [metrics.get((model, f"decile_{d:02d}_mean_actual", TEST), float("nan")) for d in deciles]
        section.charts.append(charts.grouped(
            f"Spend by predicted decile: {model}", deciles, {"predicted": predicted, "actual": actual},
            "decile of predicted spend (10 = highest)", "mean spend in the horizon",
            "Bars of each pair should match and rise left to right; a gap shows over- or under-prediction."))
    groups = [g for g in [*(str(i) for i in range(7)), "7_or_more"]
              if ("bg_nbd", f"repeat_purchases_{g}_mean_actual", TEST) in metrics]
    if groups:
        section.charts.append(charts.grouped(
            "BG/NBD calibration by past repeat purchases", [g.replace("_", " ") for g in groups],
            {"expected": [metrics[("bg_nbd", f"repeat_purchases_{g}_mean_expected", TEST)] for g in groups],
             "actual": [metrics[("bg_nbd", f"repeat_purchases_{g}_mean_actual", TEST)] for g in groups]},
            "repeat purchases before the cutoff", "mean purchases in the horizon",
            "The field's standard check: expected and actual purchases should match in every group."))
    section.tables.append(_test_table(metrics, ("r2", "mae", "rmse", "purchases_mae", "auc_buys_again",
                                                "expected_purchases_total", "actual_purchases_total")))
    return section


def segments(ctx: Context) -> Section:
    """Segment sizes and profiles, and the RFM grid."""
    section = Section("segments", "Segments", "Groups of similar customers, and the classic recency-frequency "
                      "grid.")
    profiles = _rows(ctx, tables.SEGMENT_PROFILES, section, "No segments for this date: run train and score.")
    if profiles is None:
        return section
    rows = profiles.orderBy("segment").collect()
    section.charts.append(charts.bars(
        "Customers per segment", [f"segment {r['segment']}" for r in rows], [float(r["customers"]) for r in rows],
        "customers", "Each bar is one segment's size; the table below says what sets it apart."))
    section.tables.append(table_html(
        ["segment", "customers", "share", "mean recency (days)", "mean orders", "mean spend", "churn rate",
         "top categories"],
        [[r["segment"], f"{r['customers']:,}", r["share"], r["mean_recency_days"], r["mean_frequency"],
          r["mean_monetary"], r["churn_rate"], ", ".join(r["top_categories"] or [])] for r in rows]))
    assigned = ctx.dated(tables.CUSTOMER_SEGMENTS)
    if assigned is not None and "r_score" in assigned.columns:
        grid = {(r["r_score"], r["f_score"]): r["n"] for r in assigned.groupBy("r_score", "f_score").agg(
            F.count("*").alias("n")).collect()}
        section.charts.append(charts.heatmap(
            "RFM grid: customers by recency and frequency score", [f"R{r}" for r in range(5, 0, -1)],
            [f"F{f}" for f in range(1, 6)], [[grid.get((r, f), 0) for f in range(1, 6)] for r in range(5, 0, -1)],
            "frequency score (5 = most orders)", "recency score (5 = most recent)",
            "Top right are recent, frequent buyers (champions); bottom left have not bought for long."))
        groups = assigned.groupBy("rfm_segment").agg(F.count("*").alias("n")).orderBy(F.desc("n")).collect()
        section.charts.append(charts.bars(
            "Customers per RFM group", [str(r["rfm_segment"]).replace("_", " ") for r in groups],
            [float(r["n"]) for r in groups], "customers", "The named RFM groups the campaigns can target."))
    return section


def recommendations(ctx: Context) -> Section:
    """Ranking metrics against popularity, coverage, tuning and the popularity of what is recommended."""
    section = Section("recommendations", "Recommendations", "How well the served recommendations predict "
                      "what test customers went on to buy, beside recommending the best sellers to everyone.")
    metrics = _metrics(ctx, "recommendation")
    if metrics:
        models = sorted({m for (m, _, s) in metrics if s == TEST})
        names = sorted({n for (_, n, s) in metrics if s == TEST and n.split("_at_")[0] in
                        ("precision", "recall", "ndcg", "map")})
        section.charts.append(charts.grouped(
            "Ranking quality on held-out purchases", [n.replace("_", " ") for n in names],
            {m: [metrics.get((m, n, TEST), 0.0) for n in names] for m in models}, "metric", "value",
            "Taller is better; the models should clear 'popular' (the best sellers for everyone) clearly."))
        section.tables.append(_test_table(metrics, (*names, "catalogue_coverage", "distribution_entropy",
                                                    "novelty")))
    tuning = ctx.dated(tables.RECOMMENDATION_TUNING)
    if tuning is not None:
        trials = tuning.where(F.col("value").isNotNull()).collect()
        series: dict[str, tuple[list, list]] = {}
        for i, r in enumerate(trials):
            xs, ys = series.setdefault(r[MODEL], ([], []))
            xs.append(i + 1)
            ys.append(r["value"])
        if series:
            section.charts.append(charts.lines(
                "Tuning trials on validation data", series, "trial", f"validation {trials[0]['metric']}",
                "Each point is one setting tried; the champion is the best validation score of any family.",
                marker="o"))
    served = _rows(ctx, tables.RECOMMENDATIONS, section, "No recommendations served for this date: run recommend.")
    if served is None:
        return section
    counts = sorted((r["n"] for r in served.groupBy(PRODUCT_ID).agg(F.count("*").alias("n")).collect()),
                    reverse=True)
    total = sum(counts)
    shares, running = [], 0
    for n in counts:
        running += n
        shares.append(running / total)
    products = list(range(1, len(counts) + 1))
    section.charts.append(charts.lines(
        "Concentration of what is recommended", {"recommended products": (
            [p / len(counts) for p in products], shares)}, "share of recommended products (most recommended first)",
        "share of all recommendations",
        "A curve hugging the top left means a few products fill most lists; the diagonal is an even spread.",
        diagonal=True))
    section.tables.append(table_html(["recommendations served", "distinct products", "top 10 products' share"],
                                     [[f"{total:,}", f"{len(counts):,}", sum(counts[:10]) / total]]))
    return section


def anomalies(ctx: Context) -> Section:
    """Flagged orders and customers, their scores and the strongest reasons."""
    section = Section("anomalies", "Anomalies", "Orders and customers far from the usual, for a person to check.")
    df = _rows(ctx, tables.ANOMALIES, section, "No anomalies for this date: run score.")
    if df is None:
        return section
    levels = df.groupBy("level").agg(F.count("*").alias("n"), F.min(SCORE).alias("lo"),
                                     F.max(SCORE).alias("hi")).collect()
    section.tables.append(table_html(["level", "flagged", "lowest score", "highest score"],
                                     [[r["level"], f"{r['n']:,}", r["lo"], r["hi"]] for r in levels]))
    low = min(r["lo"] for r in levels)
    high = max(r["hi"] for r in levels)
    width = (high - low) / 30 or 1.0
    edges = [low + i * width for i in range(31)]
    binned = df.withColumn("b", F.least(F.floor((F.col(SCORE) - low) / width), F.lit(29))).groupBy(
        "level", "b").agg(F.count("*").alias("n")).collect()
    counts: dict[str, list[float]] = {r["level"]: [0.0] * 30 for r in levels}
    for r in binned:
        counts[r["level"]][int(r["b"])] = float(r["n"])
    section.charts.append(charts.histogram(
        "Anomaly scores", edges, counts, "robust z-score",
        "How far flagged orders and customers lie from the usual; the far right deserves a look first."))
    top = df.orderBy(F.desc(SCORE)).select("level", SCORE, "reason").limit(10).collect()
    section.tables.append(table_html(["level", "score", "reason"], [[r["level"], r[SCORE], r["reason"]] for r in top],
                                     "The ten strongest"))
    return section


def campaigns(ctx: Context) -> Section:
    """Audience sizes, expected value, and the budget curve of each campaign."""
    section = Section("campaigns", "Campaigns", "Who each campaign contacts, what the contacts are expected to be "
                      "worth, and what a larger budget would add.")
    df = _rows(ctx, tables.CAMPAIGN_SUMMARY, section, "No campaigns for this date: run campaigns.")
    if df is None:
        return section
    rows = df.orderBy(F.coalesce(F.col("priority"), F.lit(1 << 30)), "campaign").collect()
    section.tables.append(table_html(
        ["campaign", "priority", "eligible", "chosen", "budget (customers)", "expected value", "cost"],
        [[r["campaign"], r["priority"], f"{r['eligible']:,}", f"{r['chosen']:,}", f"{r['budget_customers']:,}",
          r["expected_value_total"], r["cost_total"]] for r in rows]))
    section.charts.append(charts.grouped(
        "Audience sizes", [r["campaign"] for r in rows],
        {"eligible and worth contacting": [float(r["eligible"]) for r in rows],
         "chosen within budget": [float(r["chosen"]) for r in rows]}, "campaign", "customers",
        "The gap between the bars is who the budget leaves out."))
    curves = {r["campaign"]: (list(r["curve_customers"]), list(r["curve_value"])) for r in rows if r["curve_customers"]}
    if curves:
        section.charts.append(charts.lines(
            "Budget curve", curves, "customers contacted (best first)", "cumulative expected value",
            "Each curve flattens as weaker contacts are added; the dotted lines mark each campaign's budget.",
            vertical={r["campaign"]: float(r["chosen"]) for r in rows if r["curve_customers"]}))
    return section


SECTIONS: tuple[Callable[[Context], Section], ...] = (
    run_summary, data_quality, feature_selection, churn, customer_value, segments, recommendations, anomalies,
    campaigns,
)

"""Benchmark: BG/NBD and Gamma-Gamma fitted as the pipeline fits them, on the public CDNOW
transactions against the published parameters, and on simulated customers at growing counts to
show how the driver's fitting time grows with them: with times to the day, and binned by week
(``train.clv_period_bins``), where the distinct rows stop growing with the customers.

CDNOW (Fader, Hardie and Lee 2005) is not in this repository: give the path of its transaction
log (``CDNOW_sample.txt``, 2,357 customers, or ``CDNOW_master.txt``, 23,570; whitespace-separated
id, [second id,] date as YYYYMMDD, CDs, dollars; several PyPI packages ship them). The
calibration period ends on 30 September 1997 (39 weeks), the holdout is the 39 weeks after.
Prints one table and writes the figures as JSON. Run from the repository root:

    .venv/bin/python benchmarks/lifetime.py --cdnow PATH [--simulate 100000,1000000] [--json out.json]
        [--config conf/local.yaml]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from crm_spark.config import load_config
from crm_spark.features.purchase_summary import purchase_summaries, with_actual_purchases
from crm_spark.models import lifetime
from crm_spark.schemas import (
    ACTUAL_PURCHASES,
    AGE_PERIODS,
    CUSTOMER_KEY,
    EXPECTED_PURCHASES,
    ORDER_TS,
    QUANTITY,
    RECENCY_PERIODS,
    REPEAT_ORDER_VALUE,
    REPEAT_PURCHASES,
    STATUS,
    STATUS_COMPLETED,
    UNIT_PRICE,
)
from crm_spark.session import build_spark
from crm_spark.synth.purchase_process import simulate_bgnbd

AS_OF = dt.date(1997, 10, 1)  # the calibration period ends the day before
HOLDOUT_DAYS = 39 * 7
PUBLISHED = {"bgnbd_r": 0.243, "bgnbd_alpha": 4.414, "bgnbd_a": 0.793, "bgnbd_b": 2.426,
             "bgnbd_log_likelihood": -9582.4, "gg_p": 6.25, "gg_q": 3.74, "gg_v": 15.44}
SIMULATED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


def read_cdnow(spark, path: str):
    """Return CDNOW's transactions as completed order lines (one line per transaction)."""
    with open(path, encoding="ascii") as lines:  # lines of numbers; a header line, where there is one, is skipped
        frame = pd.DataFrame([line.split() for line in lines if line.split() and line.split()[0].isdigit()])
    date_column = next(i for i in frame.columns if frame[i].str.fullmatch(r"199[78]\d{4}").all())
    orders = pd.DataFrame({CUSTOMER_KEY: frame[0], ORDER_TS: pd.to_datetime(frame[date_column], format="%Y%m%d"),
                           QUANTITY: 1, UNIT_PRICE: frame[frame.columns[-1]].astype(float), STATUS: STATUS_COMPLETED})
    return spark.createDataFrame(orders)


def simulate(spark, n: int, period_bins: bool, seed: int = 1):
    """Return ``n`` customers' summaries drawn from BG/NBD with values: weeks to the day (as a
    transaction log gives them), or binned by week as ``purchase_summaries`` bins them with
    ``train.clv_period_bins``; observed 26 to 52 weeks."""
    x, t_x, age = simulate_bgnbd(n, *SIMULATED.values(), seed=seed, step=1 / 7)
    if period_bins:  # binned as purchase_summaries bins them
        t_x, age = np.where(x > 0, np.floor(t_x + 1e-9) + 0.5, 0.0), np.floor(age + 1e-9) + 0.5
    rng = np.random.default_rng(seed)
    value = np.where(x > 0, rng.gamma(6.25, 1 / rng.gamma(3.74, 1 / 15.44, n)), 0.0).round(2)
    return spark.createDataFrame(pd.DataFrame({CUSTOMER_KEY: np.arange(n).astype(str), REPEAT_PURCHASES: x,
                                               RECENCY_PERIODS: t_x, AGE_PERIODS: age, REPEAT_ORDER_VALUE: value}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cdnow", help="path of CDNOW_sample.txt or CDNOW_master.txt")
    parser.add_argument("--simulate", default="", help="comma-separated customer counts, e.g. 100000,1000000")
    parser.add_argument("--json", default="benchmarks/lifetime.json", help="where to write the figures")
    parser.add_argument("--config", default="conf/local.yaml", help="the Spark settings come from this config")
    args = parser.parse_args()
    config = load_config(args.config, ["train.clv_period_days=7"])
    spark = build_spark(config)
    cfg = config.train
    figures: dict[str, dict] = {}
    if args.cdnow:
        orders = read_cdnow(spark, args.cdnow).cache()
        fits = {}
        for whole in (False, True):
            summaries = purchase_summaries(orders, AS_OF, cfg.clv_period_days, whole).cache()
            began = time.perf_counter()
            model = lifetime.fit(summaries, cfg)
            predicted = lifetime.predict(model, summaries, HOLDOUT_DAYS, cfg).transform(
                with_actual_purchases, orders, AS_OF, HOLDOUT_DAYS)
            totals = predicted.agg(
                F.count("*").alias("customers"), F.sum(EXPECTED_PURCHASES).alias("expected"),
                F.sum(ACTUAL_PURCHASES).alias("actual"),
                F.avg(F.abs(F.col(EXPECTED_PURCHASES) - F.col(ACTUAL_PURCHASES))).alias("mae")).first()
            fits[whole] = {"customers": totals["customers"], "distinct_rows": model.purchases.distinct_rows,
                           "fit_and_predict_seconds": time.perf_counter() - began, **model.params(),
                           "holdout_expected_purchases": totals["expected"],
                           "holdout_actual_purchases": totals["actual"], "holdout_mae": totals["mae"]}
        figures["cdnow"], figures["cdnow_week_bins"] = fits[False], fits[True]
        sample = Path(args.cdnow).name.lower().startswith("cdnow_sample")
        print(f"CDNOW, {fits[False]['customers']} customers, calibration to 1997-09-30, holdout 39 weeks")
        print(f"{'parameter':<22}{'weeks (days/7)':>16}{'published':>12}{'difference':>12}{'week bins':>14}")
        for name, value in PUBLISHED.items():
            fitted = fits[False][name]
            print(f"{name:<22}{fitted:>16.4f}" + (f"{value:>12.4f}{fitted / value - 1:>11.2%}" if sample
                                                   else f"{'':>12}{'':>12}") + f"{fits[True][name]:>14.4f}")
        for whole, fit in fits.items():
            print(f"{'week bins' if whole else 'weeks (days/7)'}: {fit['distinct_rows']} distinct rows; holdout "
                  f"purchases expected {fit['holdout_expected_purchases']:.1f}, actual "
                  f"{fit['holdout_actual_purchases']:.0f}, MAE per customer {fit['holdout_mae']:.3f}")
    counts = [int(n) for n in args.simulate.split(",") if n]
    if counts:
        print(f"\n{'customers':>10}{'times':>13}{'distinct rows':>15}{'aggregate+fit s':>17}{'BG/NBD fit s':>14}"
              f"{'GG fit s':>10}{'r':>8}{'alpha':>8}{'a':>8}{'b':>8}")
    for whole in (False, True):
        for n in counts:
            summaries = simulate(spark, n, whole).cache()
            summaries.count()
            began = time.perf_counter()
            model = lifetime.fit(summaries, cfg)
            seconds = time.perf_counter() - began
            fitted, unit = model.purchases, "week bins" if whole else "days"
            figures[f"simulated_{n}_{unit.replace(' ', '_')}"] = {
                "customers": n, "times": unit, "distinct_rows": fitted.distinct_rows, "seconds": seconds,
                "bgnbd_fit_seconds": fitted.seconds, "gg_fit_seconds": model.value.seconds, **model.params()}
            print(f"{n:>10}{unit:>13}{fitted.distinct_rows:>15}{seconds:>17.2f}{fitted.seconds:>14.2f}"
                  f"{model.value.seconds:>10.2f}{fitted.params.r:>8.3f}{fitted.params.alpha:>8.3f}"
                  f"{fitted.params.a:>8.3f}{fitted.params.b:>8.3f}")
            summaries.unpersist()
    Path(args.json).write_text(json.dumps(figures, indent=2))
    print(f"\nwrote {args.json}")
    spark.stop()


if __name__ == "__main__":
    main()

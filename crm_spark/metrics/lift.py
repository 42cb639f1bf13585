"""Lift and capture of the customers a score ranks highest: what a campaign on the top group gains."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.schemas import LABEL, SCORE


def top_decile(scored_df: DataFrame, share: float = 0.1) -> dict[str, float]:
    """Return the lift and capture rate of the ``share`` of rows with the highest score.

    The top group is cut at the approximate ``1 - share`` quantile of ``score``. Rows tied
    at the cut (a tree's leaves give many) fill the group's remaining places in
    proportion, as a random tie-break would on average. Lift is the group's positive rate
    over the overall rate; capture is the share of all positives that fall in the group.
    """
    cut = scored_df.agg(F.percentile_approx(SCORE, 1.0 - share, 10_000)).first()[0]
    above, tied, positive = F.col(SCORE) > F.lit(cut), F.col(SCORE) == F.lit(cut), F.col(LABEL) == 1.0
    row = scored_df.agg(
        F.count(F.lit(1)).alias("n"), F.sum(positive.cast("long")).alias("p"),
        F.sum(above.cast("long")).alias("n_above"), F.sum((above & positive).cast("long")).alias("p_above"),
        F.sum(tied.cast("long")).alias("n_tied"), F.sum((tied & positive).cast("long")).alias("p_tied"),
    ).first()
    n, p, n_above, p_above, n_tied, p_tied = (int(row[k] or 0) for k in ("n", "p", "n_above", "p_above", "n_tied",
                                                                           "p_tied"))
    fill = min(max((share * n - n_above) / n_tied, 0.0), 1.0) if n_tied else 0.0
    n_top, p_top = n_above + fill * n_tied, p_above + fill * p_tied
    nan = float("nan")
    return {
        "lift_top_decile": (p_top / n_top) / (p / n) if n_top and p else nan,
        "capture_top_decile": p_top / p if p else nan,
    }

"""Binary classification metrics from a frame of labels, scores and predictions."""

from __future__ import annotations

from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.schemas import LABEL, PREDICTION

SCORE = "score"


def auc(scored_df: DataFrame, metric: str = "areaUnderROC") -> float:
    """Return the area under the ROC (or PR) curve of ``score`` against ``label``."""
    evaluator = BinaryClassificationEvaluator(rawPredictionCol=SCORE, labelCol=LABEL, metricName=metric)
    return float(evaluator.evaluate(scored_df))


def confusion_metrics(predicted_df: DataFrame) -> dict[str, float]:
    """Return accuracy, precision, recall and F1 of ``prediction`` for the positive class 1.

    Precision or recall is NaN where its denominator is zero, never a made-up 0 or 1.
    """
    positive, predicted = F.col(LABEL) == 1.0, F.col(PREDICTION) == 1.0
    counts = predicted_df.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum((positive & predicted).cast("long")).alias("tp"),
        F.sum((~positive & predicted).cast("long")).alias("fp"),
        F.sum((positive & ~predicted).cast("long")).alias("fn"),
        F.sum((~positive & ~predicted).cast("long")).alias("tn"),
    ).first()
    n, tp, fp, fn, tn = (int(counts[k] or 0) for k in ("n", "tp", "fp", "fn", "tn"))
    nan = float("nan")
    precision = tp / (tp + fp) if tp + fp else nan
    recall = tp / (tp + fn) if tp + fn else nan
    f1 = 2 * precision * recall / (precision + recall) if tp else (0.0 if tp + fp and tp + fn else nan)
    return {
        "accuracy": (tp + tn) / n if n else nan,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_positives": float(tp),
        "false_positives": float(fp),
        "false_negatives": float(fn),
        "true_negatives": float(tn),
    }


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

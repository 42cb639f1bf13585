"""Binary classification metrics from a frame of labels, scores and predictions."""

from __future__ import annotations

from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.schemas import LABEL, PREDICTION, SCORE


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

"""Feature selection on training customers: chi-square on quantile buckets, then a Pearson
or Spearman correlation matrix that drops the weaker of each highly correlated pair."""

from __future__ import annotations

import logging

from pyspark.ml import Pipeline
from pyspark.ml.feature import (
    Imputer,
    QuantileDiscretizer,
    StringIndexer,
    UnivariateFeatureSelector,
    VectorAssembler,
)
from pyspark.ml.stat import ChiSquareTest, Correlation
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark import tables
from crm_spark.config import Config, SelectConfig
from crm_spark.errors import StageSkipped
from crm_spark.schemas import AS_OF_DATE, LABEL

log = logging.getLogger(__name__)

def chi_square_scores(train_df: DataFrame, numeric: list[str], categorical: list[str], cfg: SelectConfig) -> list[dict]:
    """Score each feature against the label with a chi-square test.

    Numeric features are cut into ``cfg.buckets`` quantile buckets (missing values get
    their own bucket); categorical ones are indexed. Selection keeps features whose test
    passes ``UnivariateFeatureSelector`` in false-positive-rate mode at ``cfg.fpr``.

    Returns:
        One dict per feature (numeric first): ``feature``, ``kind``, ``chi2_statistic``,
        ``p_value``, ``degrees_of_freedom``, ``selected``.
    """
    bucketed = [f"{c}__bucket" for c in numeric]
    indexed = [f"{c}__index" for c in categorical]
    stages = [
        *([QuantileDiscretizer(inputCols=numeric, outputCols=bucketed, numBuckets=cfg.buckets, handleInvalid="keep")]
          if numeric else []),
        *[StringIndexer(inputCol=c, outputCol=o, handleInvalid="keep")
          for c, o in zip(categorical, indexed, strict=True)],
        VectorAssembler(inputCols=bucketed + indexed, outputCol="chi_features"),
    ]
    nan_for_null = train_df.select(
        *[F.coalesce(F.col(c).cast("double"), F.lit(float("nan"))).alias(c) for c in numeric], *categorical, LABEL
    )
    prepared = Pipeline(stages=stages).fit(nan_for_null).transform(nan_for_null).select("chi_features", LABEL)
    test = ChiSquareTest.test(prepared, "chi_features", LABEL).first()
    selector = (
        UnivariateFeatureSelector(featuresCol="chi_features", labelCol=LABEL, outputCol="selected", selectionMode="fpr")
        .setSelectionThreshold(cfg.fpr).setFeatureType("categorical").setLabelType("categorical")
    )
    chosen = set(selector.fit(prepared).selectedFeatures)
    names = numeric + categorical
    return [
        {
            "feature": name,
            "kind": "numeric" if i < len(numeric) else "categorical",
            "chi2_statistic": float(test.statistics[i]),
            "p_value": float(test.pValues[i]),
            "degrees_of_freedom": float(test.degreesOfFreedom[i]),
            "selected": i in chosen,
        }
        for i, name in enumerate(names)
    ]


def correlation_matrix(train_df: DataFrame, numeric: list[str], method: str = "pearson") -> dict[str, dict[str, float]]:
    """Return the ``method`` (pearson or spearman) correlation of every pair of numeric features.

    Nulls are imputed by the median first; a pair with an undefined correlation is left out.
    Fewer than two features have no pairs.
    """
    if len(numeric) < 2:
        return {c: {} for c in numeric}
    imputed = [f"{c}__imputed" for c in numeric]
    frame = Imputer(inputCols=numeric, outputCols=imputed, strategy="median").fit(train_df).transform(train_df)
    vectors = VectorAssembler(inputCols=imputed, outputCol="corr_features").transform(frame)
    matrix = Correlation.corr(vectors, "corr_features", method).first()[0].toArray()
    return {
        a: {b: float(matrix[i][j]) for j, b in enumerate(numeric) if j != i and matrix[i][j] == matrix[i][j]}
        for i, a in enumerate(numeric)
    }


def selection_rows(scores: list[dict], correlations: dict[str, dict[str, float]],
                   max_correlation: float) -> list[dict]:
    """Combine chi-square scores and correlations into ``feature_selection`` rows.

    Features the chi-square test selected are visited by decreasing statistic; one whose
    absolute correlation with an already kept feature exceeds ``max_correlation`` is
    dropped, and that feature is its recorded partner. Otherwise the partner is the
    most correlated feature. Falls back to every feature when the test selects none (for
    example on very little data), so the models always have inputs; the fallback is logged.
    """
    selected = [s for s in scores if s["selected"]]
    if not selected:
        log.warning("chi-square selected no feature; considering all %d candidates", len(scores))
        selected = scores
    kept: list[str] = []
    dropped_for: dict[str, str] = {}
    for score in sorted(selected, key=lambda s: -s["chi2_statistic"]):
        partners = correlations.get(score["feature"], {})
        blocker = next((k for k in kept if abs(partners.get(k, 0.0)) > max_correlation), None)
        if blocker is None:
            kept.append(score["feature"])
        else:
            dropped_for[score["feature"]] = blocker
    rows = []
    for score in scores:
        name = score["feature"]
        partners = correlations.get(name, {})
        partner = dropped_for.get(name) or max(partners, key=lambda p: abs(partners[p]), default=None)
        if name in kept:
            reason = "kept"
        elif name in dropped_for:
            reason = f"correlation {abs(partners[partner]):.3f} with {partner} above {max_correlation}"
        else:
            reason = f"chi-square p-value {score['p_value']:.3g} not significant"
        rows.append({
            **score,
            "max_abs_correlation": abs(partners[partner]) if partner else None,
            "correlated_with": partner,
            "correlations": partners or None,
            "kept": name in kept,
            "reason": reason,
        })
    return rows


def kept_features(spark: SparkSession, config: Config) -> list[str]:
    """Return the features the selection kept for ``as_of_date``, in candidate order.

    Raises:
        StageSkipped: no selection for that date (the select stage was skipped or has not run).
    """
    lake = config.paths.lakehouse_dir
    rows = tables.read_table(spark, tables.FEATURE_SELECTION, lake).where(
        F.col(AS_OF_DATE) == F.lit(config.as_of_date)
    ).where("kept").orderBy("position").select("feature").collect() \
        if tables.table_exists(spark, tables.FEATURE_SELECTION, lake) else []
    if not rows:
        raise StageSkipped(f"no feature selection for {config.as_of_date}: the select stage was skipped or has "
                           "not run for this date")
    return [row[0] for row in rows]

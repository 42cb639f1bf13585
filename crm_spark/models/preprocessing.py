"""Model inputs: the MLlib stages that turn feature columns into the vectors models learn from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from pyspark.ml.feature import (
    Imputer,
    OneHotEncoder,
    SQLTransformer,
    StandardScaler,
    StringIndexer,
    VectorAssembler,
)
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.schemas import (
    AVG_BASKET,
    CUSTOMER_KEY,
    FEATURES_VECTOR,
    FREQUENCY,
    FREQUENCY_RECENT,
    INTERPURCHASE_DAYS,
    LABEL,
    MONETARY,
    MONETARY_RECENT,
    N_RATINGS,
    ORDERS_PER_30D,
    RAW_FEATURES_VECTOR,
    SPLIT,
)

# Non-negative, heavy-tailed features that enter the models as log(1 + x).
LOG_SCALED = (FREQUENCY, MONETARY, AVG_BASKET, ORDERS_PER_30D, INTERPURCHASE_DAYS, FREQUENCY_RECENT,
              MONETARY_RECENT, N_RATINGS)
# The columns that identify a customer's row in a model's output, where present.
ID_COLUMNS = (CUSTOMER_KEY, LABEL, SPLIT)
# Categorical levels seen on fewer training rows than this (or than 1% of them, if fewer) become OTHER_LEVEL.
RARE_LEVEL_COUNT = 10
OTHER_LEVEL = "(other)"


@dataclass(frozen=True)
class ModelInputs:
    """The feature columns a model learns from, as its training rows define them."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    indicated: tuple[str, ...] = ()  # numeric columns that also get a missing indicator
    levels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # kept levels, where some are rare


def model_inputs(kept: Sequence[str], train_df: DataFrame, attributes: Sequence[str] = ()) -> ModelInputs:
    """Return how a model uses the ``kept`` features, learned from its training rows.

    Text columns are categorical, the others numeric. Numeric attributes with a missing
    value among the training rows get a missing indicator. A categorical level seen on
    fewer than ``RARE_LEVEL_COUNT`` training rows (fewer than 1% on small data) joins
    ``OTHER_LEVEL``, as do levels never seen in training.
    """
    types = dict(train_df.dtypes)
    categorical = [c for c in kept if types.get(c) == "string"]
    numeric = [c for c in kept if c not in categorical]
    candidates = [c for c in numeric if c in attributes]
    stats = train_df.agg(F.count(F.lit(1)).alias("_n"), *[F.count(c).alias(c) for c in candidates]).first()
    rows = stats["_n"]
    indicated = [c for c in candidates if stats[c] < rows]
    least = min(RARE_LEVEL_COUNT, math.ceil(0.01 * rows))
    levels: dict[str, tuple[str, ...]] = {}
    for column in categorical:
        counts = {r[0]: r[1] for r in train_df.where(F.col(column).isNotNull()).groupBy(column).count().collect()}
        frequent = tuple(sorted(level for level, n in counts.items() if n >= least))
        if len(frequent) < len(counts):
            levels[column] = frequent
    return ModelInputs(tuple(numeric), tuple(categorical), tuple(indicated), levels)


def _sql_text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def preprocessing(inputs: ModelInputs, center: bool = True) -> list:
    """Return the stages that turn raw feature columns into a scaled ``features`` vector.

    Features in ``LOG_SCALED`` are taken as ``log(1 + x)``; indicated columns add a 0/1
    missing indicator; rare categorical levels are grouped as ``OTHER_LEVEL``; median
    imputation, one-hot encoding and scaling are fitted with the model, on training rows
    only. ``center=False`` scales without subtracting the mean.
    """
    numeric, categorical = list(inputs.numeric), list(inputs.categorical)
    logged = [c for c in numeric if c in LOG_SCALED]
    columns = [f"{c}__log" if c in logged else c for c in numeric]
    imputed = [f"{c}__imputed" for c in columns]
    missing = [f"{c}__missing" for c in inputs.indicated]
    grouped = {c: f"{c}__levels" for c in categorical if c in inputs.levels}
    indexed = [f"{c}__index" for c in categorical]
    encoded = [f"{c}__onehot" for c in categorical]
    derived = [f"log1p(greatest(`{c}`, 0D)) AS `{c}__log`" for c in logged]
    derived += [f"CAST(`{c}` IS NULL AS DOUBLE) AS `{c}__missing`" for c in inputs.indicated]
    derived += [f"CASE WHEN `{c}` IS NULL THEN NULL WHEN `{c}` IN ({', '.join(map(_sql_text, inputs.levels[c]))}) "
                f"THEN `{c}` ELSE {_sql_text(OTHER_LEVEL)} END AS `{g}`" if inputs.levels[c] else
                f"CAST(CASE WHEN `{c}` IS NOT NULL THEN {_sql_text(OTHER_LEVEL)} END AS STRING) AS `{g}`"
                for c, g in grouped.items()]
    stages: list = []
    if derived:
        stages.append(SQLTransformer(statement=f"SELECT *, {', '.join(derived)} FROM __THIS__"))
    if numeric:
        stages.append(Imputer(inputCols=columns, outputCols=imputed, strategy="median"))
    if categorical:
        stages += [
            StringIndexer(inputCols=[grouped.get(c, c) for c in categorical], outputCols=indexed,
                          handleInvalid="keep"),
            OneHotEncoder(inputCols=indexed, outputCols=encoded, handleInvalid="keep"),
        ]
    stages += [
        VectorAssembler(inputCols=imputed + missing + encoded, outputCol=RAW_FEATURES_VECTOR),
        StandardScaler(inputCol=RAW_FEATURES_VECTOR, outputCol=FEATURES_VECTOR, withMean=center, withStd=True),
    ]
    return stages

"""Model inputs: the MLlib stages that turn feature columns into the vectors models learn from."""

from __future__ import annotations

from pyspark.ml.feature import (
    Imputer,
    OneHotEncoder,
    SQLTransformer,
    StandardScaler,
    StringIndexer,
    VectorAssembler,
)

from crm_spark.schemas import (
    AVG_BASKET,
    CATEGORICAL_FEATURES,
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


def preprocessing(numeric: list[str], categorical: list[str], center: bool = True) -> list:
    """Return the stages that turn raw feature columns into a scaled ``features`` vector.

    Features in ``LOG_SCALED`` are taken as ``log(1 + x)``; median imputation, one-hot
    encoding and scaling are fitted with the model, on training rows only.
    ``center=False`` scales without subtracting the mean.
    """
    logged = [c for c in numeric if c in LOG_SCALED]
    inputs = [f"{c}__log" if c in logged else c for c in numeric]
    imputed = [f"{c}__imputed" for c in inputs]
    indexed = [f"{c}__index" for c in categorical]
    encoded = [f"{c}__onehot" for c in categorical]
    stages: list = []
    if logged:
        select = ", ".join(f"log1p(greatest(`{c}`, 0D)) AS `{c}__log`" for c in logged)
        stages.append(SQLTransformer(statement=f"SELECT *, {select} FROM __THIS__"))
    if numeric:
        stages.append(Imputer(inputCols=inputs, outputCols=imputed, strategy="median"))
    if categorical:
        stages += [
            StringIndexer(inputCols=categorical, outputCols=indexed, handleInvalid="keep"),
            OneHotEncoder(inputCols=indexed, outputCols=encoded, handleInvalid="keep"),
        ]
    stages += [
        VectorAssembler(inputCols=imputed + encoded, outputCol=RAW_FEATURES_VECTOR),
        StandardScaler(inputCol=RAW_FEATURES_VECTOR, outputCol=FEATURES_VECTOR, withMean=center, withStd=True),
    ]
    return stages


def split_features(kept: list[str]) -> tuple[list[str], list[str]]:
    """Split kept feature names into numeric and categorical lists."""
    categorical = [f for f in kept if f in CATEGORICAL_FEATURES]
    return [f for f in kept if f not in CATEGORICAL_FEATURES], categorical

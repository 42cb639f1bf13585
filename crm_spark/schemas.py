"""Schemas and column names, declared once.

Raw columns are the canonical input the generator writes; canonical columns are what
any source may map onto; bronze schemas are the typed tables ingest writes. Feature
names are the columns of ``gold.customer_features``; output columns and schemas are
those of the gold and model tables the stages write.
"""

from __future__ import annotations

import re

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# Canonical column names.
CUSTOMER_ID = "customer_id"
CUSTOMER_KEY = "customer_key"
PRODUCT_ID = "product_id"
ORDER_ID = "order_id"
FIRST_NAME = "first_name"
LAST_NAME = "last_name"
EMAIL = "email"
PHONE = "phone"
GENDER = "gender"
BIRTH_DATE = "birth_date"
CITY = "city"
COUNTRY = "country"
SIGNUP_TS = "signup_ts"
UPDATED_TS = "updated_ts"
NAME = "name"
CATEGORY = "category"
PRICE = "price"
QUANTITY = "quantity"
UNIT_PRICE = "unit_price"
ORDER_TS = "order_ts"
STATUS = "status"
RATING = "rating"
RATED_TS = "rated_ts"
AGE = "age"
LABEL = "label"
PREDICTION = "prediction"
ORDER_LINE_ID = "order_line_id"
AS_OF_DATE = "as_of_date"
RUN_ID = "run_id"
SOURCE_FILE = "_source_file"

# Columns of model inputs and outputs shared by several stages.
SPLIT = "split"  # train, validation or test, by a hash of the customer key
TRAIN, VALIDATION, TEST = "train", "validation", "test"
SCORE = "score"
MODEL = "model"
MODEL_RUN_ID = "model_run_id"
SEGMENT = "segment"
ALGORITHM = "algorithm"
CHURN_PROBABILITY = "churn_probability"
CHURN_PREDICTED = "churn_predicted"
PREDICTED_SPEND = "predicted_spend"
POPULARITY = "popularity"  # a recommended product's share of the training customers who interacted with it
# Campaigns (gold.campaign_audiences and gold.campaign_summary).
CAMPAIGN = "campaign"
RANK = "rank"
EXPECTED_VALUE = "expected_value"
OFFERS = "offers"  # product ids offered, best first
REASON = "reason"
RFM_SEGMENT = "rfm_segment"
ANOMALOUS = "anomalous"
FEATURES_VECTOR = "features"  # the scaled feature vector of a model pipeline
RAW_FEATURES_VECTOR = "features_raw"  # ... before scaling (trees split it, in the features' own units)

# Customer features (gold.customer_features), as of a date.
RECENCY_DAYS = "recency_days"
FREQUENCY = "frequency"  # distinct completed orders
MONETARY = "monetary"
AVG_BASKET = "avg_basket"
BASKET_LINES = "basket_lines"
TENURE_DAYS = "tenure_days"
ORDERS_PER_30D = "orders_per_30d"
INTERPURCHASE_DAYS = "interpurchase_days"
FREQUENCY_RECENT = "frequency_recent"
FREQUENCY_TREND = "frequency_trend"
MONETARY_RECENT = "monetary_recent"
RETURN_RATE = "return_rate"
N_RATINGS = "n_ratings"
AVG_RATING = "avg_rating"
RATING_DEVIATION = "rating_deviation"
AGE_BAND = "age_band"
# The buy-till-you-die models' purchase summary (x, t_x, T and the mean repeat value) and predictions.
REPEAT_PURCHASES = "repeat_purchases"  # purchase days after the first
RECENCY_PERIODS = "recency_periods"  # from the first purchase to the last, in periods
AGE_PERIODS = "age_periods"  # from the first purchase to the end of the observation, in periods
REPEAT_ORDER_VALUE = "repeat_order_value"  # mean spend of the repeat purchase days
# The summary the features carry, which the models read.
PURCHASE_SUMMARY = (REPEAT_PURCHASES, RECENCY_PERIODS, AGE_PERIODS, REPEAT_ORDER_VALUE)
ACTUAL_PURCHASES = "actual_purchases"  # purchase days in the horizon after the cutoff
P_ALIVE = "p_alive"
EXPECTED_PURCHASES = "expected_purchases"
EXPECTED_ORDER_VALUE = "expected_order_value"
LIFETIME_VALUE = "lifetime_value"
NUMERIC_FEATURES = (
    RECENCY_DAYS, FREQUENCY, MONETARY, AVG_BASKET, BASKET_LINES, TENURE_DAYS, ORDERS_PER_30D, INTERPURCHASE_DAYS,
    FREQUENCY_RECENT, FREQUENCY_TREND, MONETARY_RECENT, RETURN_RATE, N_RATINGS, AVG_RATING, RATING_DEVIATION,
    AGE_BAND, P_ALIVE,
)
CATEGORICAL_FEATURES = (GENDER,)
CATEGORY_SHARE_PREFIX = "share_"  # share_<category>: the share of a customer's order lines in a category

# Personal data: kept in bronze and silver only, never in gold tables, logs or reports.
PII_COLUMNS = (FIRST_NAME, LAST_NAME, EMAIL, PHONE, BIRTH_DATE)
# A column named only by these words (with qualifiers such as "number" or "home") holds personal data and
# cannot be an attribute; "phone_service" or "email_opt_in" name something else and can.
PERSONAL_NAME_WORDS = frozenset({
    "firstname", "lastname", "surname", "fullname", "email", "mail", "phone", "telephone", "mobile", "cell", "tel",
    "fax", "address", "street", "birth", "birthday", "birthdate", "dob", "ssn", "passport", "iban", "password",
})
PERSONAL_NAME_QUALIFIERS = frozenset({"e", "number", "no", "nr", "num", "date", "of", "home", "work", "private",
                                      "primary", "contact", "customer", "billing", "shipping", "postal"})
# "name" alone, or after one of these words, is a person's name (a plan's name is not).
PERSON_NAME_QUALIFIERS = frozenset({"first", "last", "full", "given", "family", "middle", "maiden", "customer",
                                    "contact", "user", "person", "account", "holder"})

# Customer attributes: extra columns of a customer source (sources.customers.attributes) that become
# features under their snake_case name. Each has a type; "auto" infers numeric or categorical from the data.
NUMERIC, CATEGORICAL, BOOLEAN, DATE, AUTO = "numeric", "categorical", "boolean", "date", "auto"
ATTRIBUTE_TYPES = (NUMERIC, CATEGORICAL, BOOLEAN, DATE, AUTO)
INVALID_ATTRIBUTES = "_invalid_attributes"  # bronze: the attributes of a row whose value did not cast
# The type each attribute has in bronze, silver and gold (dates become days before as_of_date in gold).
ATTRIBUTE_SQL_TYPES = {NUMERIC: DoubleType(), CATEGORICAL: StringType(), BOOLEAN: BooleanType(), DATE: DateType()}
# How yes/no flags are written (lower case), for boolean attributes and label columns.
BOOLEAN_CODES = {True: ("1", "1.0", "true", "yes", "y", "t"), False: ("0", "0.0", "false", "no", "n", "f")}


def attribute_column(source_column: str) -> str:
    """Return the snake_case column an attribute gets: ``MonthlyCharges`` -> ``monthly_charges``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", source_column.strip())
    name = re.sub(r"[^0-9a-z]+", "_", spaced.lower()).strip("_")
    return f"a_{name}" if not name or name[0].isdigit() else name


def reserved_columns() -> frozenset[str]:
    """Return the names an attribute cannot take: the columns the pipeline computes or keys rows by."""
    return frozenset({*NUMERIC_FEATURES, *CATEGORICAL_FEATURES, *PURCHASE_SUMMARY, *CUSTOMER_FLAGS, N_RECORDS,
                      CUSTOMER_KEY, AS_OF_DATE, RUN_ID, LABEL, SPLIT, SCORE, PREDICTION, MODEL, MODEL_RUN_ID, SEGMENT,
                      FEATURES_VECTOR, RAW_FEATURES_VECTOR, SOURCE_FILE, INVALID_ATTRIBUTES})


def looks_personal(column: str) -> bool:
    """Return whether a column's name marks it as personal data (a name, contact, birth date or identity number)."""
    words = attribute_column(column).split("_")
    person_name = "name" in words and (words.index("name") == 0 or words[words.index("name") - 1]
                                       in PERSON_NAME_QUALIFIERS)
    core = [w for w in words if w not in PERSONAL_NAME_QUALIFIERS]
    return person_name or "".join(words) in PERSONAL_NAME_WORDS or bool(core) and set(core) <= PERSONAL_NAME_WORDS


# Silver customers: flags of what cleaning nulled or changed (each counts as a rule hit per run), and
# how many source records a golden record merges.
CUSTOMER_FLAGS = ("text_normalized", "name_invalid", "email_invalid", "phone_invalid", "gender_unknown",
                  "birth_date_invalid", "age_invalid", "label_invalid")
N_RECORDS = "n_records"
# silver.customer_records: the fingerprint of the cleaning rules that cleaned a row.
CLEANED_BY = "_cleaned_by"

STATUS_COMPLETED = "completed"
STATUS_CANCELLED = "cancelled"
STATUS_RETURNED = "returned"
ORDER_STATUSES = (STATUS_COMPLETED, STATUS_CANCELLED, STATUS_RETURNED)
GENDERS = ("F", "M", "U")

# Order of fields in each raw source; CSV columns and JSON keys follow these names.
RAW_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": (
        CUSTOMER_ID, FIRST_NAME, LAST_NAME, EMAIL, PHONE, GENDER, BIRTH_DATE,
        CITY, COUNTRY, SIGNUP_TS, UPDATED_TS,
    ),
    "products": (PRODUCT_ID, NAME, CATEGORY, PRICE),
    "orders": (ORDER_ID, CUSTOMER_ID, PRODUCT_ID, QUANTITY, UNIT_PRICE, ORDER_TS, STATUS),
    "ratings": (CUSTOMER_ID, PRODUCT_ID, RATING, RATED_TS),
}


# Every column a source may map onto: the generator's columns plus optional ones
# other sources carry (an age instead of a birth date, a churn flag from a CRM export).
CANONICAL_COLUMNS: dict[str, tuple[str, ...]] = {
    **RAW_COLUMNS,
    "customers": (*RAW_COLUMNS["customers"], AGE, LABEL),
}
# Columns a source must provide, by mapping or constant; without one the run stops.
# A missing order_id is derived from the line itself.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": (CUSTOMER_ID,),
    "products": (PRODUCT_ID,),
    "orders": (CUSTOMER_ID, QUANTITY, UNIT_PRICE, ORDER_TS),
    "ratings": (CUSTOMER_ID, PRODUCT_ID, RATING),
}


# Typed bronze schemas: the type each raw field must cast to. Customer text fields
# stay strings here; cleaning their formats is the prepare stage's job.
BRONZE_SCHEMAS: dict[str, StructType] = {
    "customers": StructType(
        [
            StructField(CUSTOMER_ID, StringType(), False),
            StructField(FIRST_NAME, StringType()),
            StructField(LAST_NAME, StringType()),
            StructField(EMAIL, StringType()),
            StructField(PHONE, StringType()),
            StructField(GENDER, StringType()),
            StructField(BIRTH_DATE, StringType()),
            StructField(CITY, StringType()),
            StructField(COUNTRY, StringType()),
            StructField(SIGNUP_TS, StringType()),
            StructField(UPDATED_TS, StringType()),
            StructField(AGE, StringType()),
            StructField(LABEL, StringType()),
        ]
    ),
    "products": StructType(
        [
            StructField(PRODUCT_ID, StringType(), False),
            StructField(NAME, StringType()),
            StructField(CATEGORY, StringType()),
            StructField(PRICE, DoubleType()),
        ]
    ),
    "orders": StructType(
        [
            StructField(ORDER_ID, StringType(), False),
            StructField(CUSTOMER_ID, StringType(), False),
            StructField(PRODUCT_ID, StringType()),
            StructField(QUANTITY, IntegerType(), False),
            StructField(UNIT_PRICE, DoubleType(), False),
            StructField(ORDER_TS, TimestampType(), False),
            StructField(STATUS, StringType()),
        ]
    ),
    "ratings": StructType(
        [
            StructField(CUSTOMER_ID, StringType(), False),
            StructField(PRODUCT_ID, StringType(), False),
            StructField(RATING, DoubleType(), False),
            StructField(RATED_TS, TimestampType()),
        ]
    ),
}



def bronze_table_schema(source: str) -> StructType:
    """Return the schema of a bronze table: the source's typed columns and the file each row came from."""
    return StructType([*BRONZE_SCHEMAS[source].fields, StructField(SOURCE_FILE, StringType())])


QUARANTINE_SCHEMA = StructType(
    [
        StructField(RUN_ID, StringType(), False),
        StructField("source", StringType(), False),
        StructField(SOURCE_FILE, StringType()),
        StructField("reason", StringType(), False),
        StructField("message", StringType(), False),
        StructField("raw", StringType()),
    ]
)

# One row per raw file ingested: what it was when read, a hash of its source's settings,
# and which prepare run merged its rows.
INGESTED_FILES_SCHEMA = StructType(
    [
        StructField("source", StringType(), False),
        StructField(SOURCE_FILE, StringType(), False),
        StructField("file_size", LongType()),
        StructField("modified_at", TimestampType()),
        StructField("source_hash", StringType(), False),
        StructField(RUN_ID, StringType(), False),
        StructField("prepared_run_id", StringType()),
    ]
)

# One row per ingested file and profiled bronze column: what the data-quality profile adds up
# (rows, non-null values, a distinct-count sketch, min and max as text), so a run profiles only
# the files ingested since the last prepare.
FILE_PROFILES_SCHEMA = StructType(
    [
        StructField("source", StringType(), False),
        StructField(SOURCE_FILE, StringType(), False),
        StructField("column", StringType(), False),
        StructField("rows", LongType(), False),
        StructField("non_null", LongType(), False),
        StructField("sketch", BinaryType()),
        StructField("min", StringType()),
        StructField("max", StringType()),
    ]
)

MODEL_METRICS_SCHEMA = StructType(
    [
        StructField(RUN_ID, StringType(), False),
        StructField(AS_OF_DATE, DateType(), False),
        StructField("task", StringType(), False),
        StructField("model", StringType(), False),
        StructField("metric", StringType(), False),
        StructField("value", DoubleType()),
        StructField("split", StringType(), False),
        StructField("model_run_id", StringType()),
    ]
)

DATA_QUALITY_SCHEMA = StructType(
    [
        StructField(RUN_ID, StringType(), False),
        StructField(AS_OF_DATE, DateType(), False),
        StructField("dataset", StringType(), False),
        StructField("column", StringType(), False),
        StructField("metric", StringType(), False),
        StructField("value", DoubleType()),
        StructField("text", StringType()),
    ]
)

# One row per erasure request; ids only as keyed hashes.
ERASURE_LOG_SCHEMA = StructType(
    [
        StructField(RUN_ID, StringType(), False),
        StructField("requested_at", TimestampType(), False),
        StructField("request_hash", StringType(), False),
        StructField("ids_requested", IntegerType(), False),
        StructField("records_erased", IntegerType(), False),
        StructField("keys_erased", IntegerType(), False),
        StructField("tables_touched", ArrayType(StringType()), False),
        StructField("rows_deleted", MapType(StringType(), LongType()), False),
        StructField("id_hashes", ArrayType(StringType()), False),
        StructField("vacuum_retention_hours", IntegerType(), False),
    ]
)

RUNS_SCHEMA = StructType(
    [
        StructField(RUN_ID, StringType(), False),
        StructField(AS_OF_DATE, DateType(), False),
        StructField("config_hash", StringType(), False),
        StructField("stages", ArrayType(StringType()), False),
        StructField("started_at", TimestampType(), False),
        StructField("finished_at", TimestampType()),
        StructField("status", StringType(), False),
        StructField("error", StringType()),
        StructField(
            "stage_seconds", MapType(StringType(), DoubleType()), False
        ),
        StructField("row_counts", MapType(StringType(), LongType()), False),
        StructField("skipped", MapType(StringType(), StringType())),
        StructField("stage_status", MapType(StringType(), StringType())),
        StructField("rows_in", MapType(StringType(), LongType())),
        StructField("rows_out", MapType(StringType(), LongType())),
        StructField("config", StringType()),  # every resolved setting, as JSON
    ]
)

MODEL_REGISTRY_SCHEMA = StructType(
    [
        StructField(RUN_ID, StringType(), False),
        StructField(AS_OF_DATE, DateType(), False),
        StructField("task", StringType(), False),
        StructField("model", StringType(), False),
        StructField("path", StringType(), False),
        StructField("selection_metric", StringType(), False),
        StructField("selection_value", DoubleType()),
        StructField("is_champion", BooleanType(), False),
        StructField("features", ArrayType(StringType()), False),
        StructField("params", MapType(StringType(), DoubleType())),
        StructField("registered_at", TimestampType()),
    ]
)

# The customers a saved recommender was fitted on, by the numbers of its user factors; an
# erasure deletes a customer's row, which leaves their factor in the model unlinked.
RECOMMENDER_USERS_SCHEMA = StructType(
    [
        StructField(RUN_ID, StringType(), False),
        StructField(CUSTOMER_KEY, StringType(), False),
        StructField("user", IntegerType(), False),
    ]
)

# What explains a fitted model: chosen parameters, coefficients, importances, tree rules.
MODEL_EXPLANATIONS_SCHEMA = StructType(
    [
        StructField(RUN_ID, StringType(), False),
        StructField(AS_OF_DATE, DateType(), False),
        StructField("task", StringType(), False),
        StructField("model", StringType(), False),
        StructField("kind", StringType(), False),
        StructField("feature", StringType(), False),
        StructField("value", DoubleType()),
        StructField("detail", StringType()),
    ]
)

# One row per candidate feature and date: its chi-square test, correlations and whether it was kept.
FEATURE_SELECTION_SCHEMA = StructType(
    [
        StructField(AS_OF_DATE, DateType(), False),
        StructField(RUN_ID, StringType(), False),
        StructField("feature", StringType(), False),
        StructField("position", IntegerType(), False),
        StructField("kind", StringType(), False),
        StructField("chi2_statistic", DoubleType()),
        StructField("p_value", DoubleType()),
        StructField("degrees_of_freedom", DoubleType()),
        StructField("selected", BooleanType(), False),
        StructField("max_abs_correlation", DoubleType()),
        StructField("correlated_with", StringType()),
        StructField("correlations", MapType(StringType(), DoubleType())),
        StructField("kept", BooleanType(), False),
        StructField("reason", StringType(), False),
    ]
)

# One row per recommender setting tried on validation data; the champion has chosen = true.
RECOMMENDATION_TUNING_SCHEMA = StructType(
    [
        StructField(MODEL, StringType(), False),
        StructField("rank", IntegerType()),
        StructField("reg_param", DoubleType()),
        StructField("alpha", DoubleType()),
        StructField("max_iter", IntegerType()),
        StructField("confidence", StringType()),
        StructField("ease_reg", DoubleType()),
        StructField("als_share", DoubleType()),
        StructField("metric", StringType(), False),
        StructField("value", DoubleType()),
        StructField("seconds", DoubleType(), False),
        StructField("chosen", BooleanType(), False),
        # A blend's second ALS
        StructField("partner_rank", IntegerType()),
        StructField("partner_reg_param", DoubleType()),
        StructField("partner_alpha", DoubleType()),
        StructField("partner_max_iter", IntegerType()),
        StructField("partner_confidence", StringType()),
    ]
)

# One row per campaign and date: eligible and chosen customers, the budget, totals, and the budget curve
# (customers contacted best first against their cumulative expected value).
CAMPAIGN_SUMMARY_SCHEMA = StructType(
    [
        StructField(CAMPAIGN, StringType(), False),
        StructField("eligible", LongType(), False),
        StructField("chosen", LongType(), False),
        StructField("budget_customers", LongType(), False),
        StructField("expected_value_total", DoubleType(), False),
        StructField("cost_total", DoubleType(), False),
        StructField("curve_customers", ArrayType(LongType()), False),
        StructField("curve_value", ArrayType(DoubleType()), False),
        StructField("priority", IntegerType()),  # the place in campaigns.priority; null: not exclusive
    ]
)

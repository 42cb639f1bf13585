"""Cleaning and standardization transforms, one rule per function."""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import sys
import unicodedata
from typing import Sequence

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from crm_spark.config import PrepareConfig
from crm_spark.dates import DATE_FORMATS, age_on
from crm_spark.schemas import (
    AGE,
    BIRTH_DATE,
    BOOLEAN_CODES,
    CATEGORY,
    CITY,
    COUNTRY,
    CUSTOMER_ID,
    CUSTOMER_KEY,
    EMAIL,
    FIRST_NAME,
    GENDER,
    LABEL,
    LAST_NAME,
    NAME,
    ORDER_ID,
    ORDER_LINE_ID,
    ORDER_TS,
    PHONE,
    PRICE,
    PRODUCT_ID,
    QUANTITY,
    RATED_TS,
    RATING,
    SIGNUP_TS,
    SOURCE_FILE,
    STATUS,
    STATUS_RETURNED,
    UNIT_PRICE,
    UPDATED_TS,
)

EMAIL_PATTERN = r"^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$"
BIRTH_DATE_FORMATS = DATE_FORMATS
TIMESTAMP_FORMATS = ("yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd")
GENDER_CODES = {
    "F": ("f", "female", "w", "woman", "frau", "weiblich", "femme", "féminin", "feminin", "mujer", "femenino",
          "donna", "femmina", "vrouw", "v", "kobieta", "k", "mulher", "feminino", "kvinna", "kvinde", "nainen",
          "女", "女性"),
    "M": ("m", "male", "man", "mann", "männlich", "maennlich", "homme", "masculin", "hombre", "masculino",
          "uomo", "maschio", "mężczyzna", "mezczyzna", "homem", "manlig", "mand", "mies", "男", "男性"),
}
LABEL_CODES = {1.0: (*BOOLEAN_CODES[True], "churned", "churn"), 0.0: (*BOOLEAN_CODES[False], "active", "retained")}
FORMULA_PREFIXES = ("=", "+", "-", "@")
COUNTRY_ALIASES = {"US": ("us", "usa", "u.s.", "u.s.a.", "united states", "united states of america")}
MIN_AGE, MAX_AGE = 13, 110
TEXT_COLUMNS = (FIRST_NAME, LAST_NAME, CITY)
# What customer_records keeps for the checks of a date: the stated age, and whether a birth date and an age were given.
STATED_AGE, BIRTH_DATE_GIVEN, AGE_GIVEN = "_stated_age", "_birth_date_given", "_age_given"


@F.pandas_udf(StringType())
def nfkc(texts: pd.Series) -> pd.Series:
    """Return each text in Unicode NFKC form (no Spark built-in does this)."""
    return texts.map(lambda t: unicodedata.normalize("NFKC", t) if isinstance(t, str) else t)


def blank_to_null(column: Column) -> Column:
    """Return the trimmed text with inner whitespace collapsed, or null when blank."""
    text = F.regexp_replace(F.trim(column), r"\s+", " ")
    return F.when(text != "", text)


def clean_name(column: Column) -> Column:
    """Return a person's name trimmed and in title case; null without a letter or with a formula prefix."""
    name = F.initcap(F.lower(blank_to_null(column)))
    return F.when(name.rlike(r"\p{L}") & ~F.substring(name, 1, 1).isin(*FORMULA_PREFIXES), name)


def clean_email(column: Column) -> Column:
    """Return the email lower-cased and trimmed, or null when not a valid address."""
    email = F.lower(blank_to_null(column))
    return F.when(email.rlike(EMAIL_PATTERN), email)


DEFAULT_RULES = PrepareConfig()


def clean_phone(column: Column, rules: PrepareConfig = DEFAULT_RULES) -> Column:
    """Return a phone number as ``+<country code><number>``, or null when it cannot be one.

    A number written with ``+`` or ``00`` keeps its own country code (8 to 15 digits in
    all). Any other is national for ``rules.phone_country_code``: an optional trunk
    prefix or the country code itself is removed, and the rest must match
    ``rules.phone_national_pattern``.
    """
    text = F.trim(column)
    digits = F.regexp_replace(text, "[^0-9]", "")
    code = rules.phone_country_code
    international = F.when(text.startswith("+"), digits).when(text.startswith("00"), F.substring(digits, 3, 20))
    national = digits
    if rules.phone_trunk_prefix:
        national = F.when(digits.startswith(rules.phone_trunk_prefix),
                          F.substring(digits, len(rules.phone_trunk_prefix) + 1, 20)).otherwise(digits)
    pattern = f"^{rules.phone_national_pattern}$"
    national = F.when(national.startswith(code) & F.substring(national, len(code) + 1, 20).rlike(pattern),
                      F.substring(national, len(code) + 1, 20)).otherwise(national)
    full = F.coalesce(
        F.when(international.rlike("^[1-9][0-9]{7,14}$"), international),
        F.when(international.isNull() & national.rlike(pattern), F.concat(F.lit(code), national)),
    )
    return F.concat(F.lit("+"), full)


def clean_gender(column: Column) -> Column:
    """Map gender codes (English and common European ones) to ``F``, ``M`` or ``U``."""
    code = F.lower(blank_to_null(column))
    mapped = F.lit("U")
    for canonical, codes in GENDER_CODES.items():
        mapped = F.when(code.isin(*codes), F.lit(canonical)).otherwise(mapped)
    return mapped


def parse_date(column: Column, formats: tuple[str, ...] = BIRTH_DATE_FORMATS) -> Column:
    """Return the first successful parse of ``column`` by ``formats``, or null."""
    text = blank_to_null(column)
    return F.coalesce(*[F.try_to_date(text, fmt) for fmt in formats])


def parse_timestamp(column: Column) -> Column:
    """Return ``column`` parsed as a timestamp by the usual formats, or null."""
    text = blank_to_null(column)
    return F.coalesce(*[F.try_to_timestamp(text, F.lit(fmt)) for fmt in TIMESTAMP_FORMATS])


def clean_country(column: Column) -> Column:
    """Return an ISO-like upper-case country code, mapping common spellings."""
    text = F.lower(blank_to_null(column))
    mapped = F.upper(text)
    for code, aliases in COUNTRY_ALIASES.items():
        mapped = F.when(text.isin(*aliases), F.lit(code)).otherwise(mapped)
    return mapped


def clean_label(column: Column) -> Column:
    """Map a churn flag (``1``/``0``, ``true``/``false``, ``yes``/``no``, ...) to 1.0 or 0.0, else null."""
    code = F.lower(blank_to_null(column))
    mapped = F.lit(None).cast("double")
    for value, codes in LABEL_CODES.items():
        mapped = F.when(code.isin(*codes), F.lit(value)).otherwise(mapped)
    return mapped




def clean_customers(
    customers_df: DataFrame, as_of_date: dt.date, rules: PrepareConfig = DEFAULT_RULES,
    date_formats: tuple[str, ...] = (), attributes: Sequence[str] = (),
) -> DataFrame:
    """Clean and standardize bronze customer rows, flagging what was nulled or changed.

    Names and cities are put in Unicode NFKC form and title case; emails lower-cased
    and validated; phones made canonical for the configured country; gender codes
    mapped to F/M/U; birth dates parsed by ``date_formats`` then the usual formats.
    ``age`` is the age on ``as_of_date`` from the birth date, else from an age column;
    an impossible age nulls the value. The same as :func:`checked_on` of :func:`customer_records`.

    Args:
        customers_df: bronze customers.
        as_of_date: date against which ages are checked.
        rules: phone settings.
        date_formats: extra birth-date patterns of the source, tried first.
        attributes: attribute columns to keep as they are (typed at ingest); those
            bronze lacks are left out.

    Returns:
        One row per input row: cleaned canonical columns, ``age``, ``label`` (1.0, 0.0
        or null), the attributes and the boolean flags of ``CUSTOMER_FLAGS``.
    """
    return checked_on(customer_records(customers_df, rules, date_formats, attributes), as_of_date, attributes)


def customer_records(customers_df: DataFrame, rules: PrepareConfig = DEFAULT_RULES,
                     date_formats: tuple[str, ...] = (), attributes: Sequence[str] = ()) -> DataFrame:
    """Return what cleaning a bronze customer row gives that does not depend on the date.

    Every column of :func:`clean_customers` but ``age``, ``birth_date_invalid`` and
    ``age_invalid``; ``birth_date`` is parsed but not yet checked against an age range, and
    ``STATED_AGE``, ``BIRTH_DATE_GIVEN`` and ``AGE_GIVEN`` hold the stated age and whether a birth
    date and an age were given. ``_source_file`` is kept when ``customers_df`` has it.
    """
    normalized = {c: nfkc(F.col(c)) for c in TEXT_COLUMNS}
    names = {c: clean_name(normalized[c]) for c in (FIRST_NAME, LAST_NAME)}
    email, phone, gender = clean_email(F.col(EMAIL)), clean_phone(F.col(PHONE), rules), clean_gender(F.col(GENDER))
    label = clean_label(F.col(LABEL))

    def given(column: str) -> Column:
        return blank_to_null(F.col(column)).isNotNull()

    return customers_df.select(
        *([SOURCE_FILE] if SOURCE_FILE in customers_df.columns else []),
        blank_to_null(F.col(CUSTOMER_ID)).alias(CUSTOMER_ID),
        names[FIRST_NAME].alias(FIRST_NAME),
        names[LAST_NAME].alias(LAST_NAME),
        email.alias(EMAIL),
        phone.alias(PHONE),
        gender.alias(GENDER),
        parse_date(F.col(BIRTH_DATE), (*date_formats, *BIRTH_DATE_FORMATS)).alias(BIRTH_DATE),
        F.initcap(F.lower(blank_to_null(normalized[CITY]))).alias(CITY),
        clean_country(F.col(COUNTRY)).alias(COUNTRY),
        parse_timestamp(F.col(SIGNUP_TS)).alias(SIGNUP_TS),
        parse_timestamp(F.col(UPDATED_TS)).alias(UPDATED_TS),
        label.alias(LABEL),
        *[F.col(c) for c in attributes if c in customers_df.columns],
        F.greatest(*[F.coalesce(normalized[c] != F.col(c), F.lit(False)) for c in TEXT_COLUMNS])
        .alias("text_normalized"),
        F.greatest(*[given(c) & names[c].isNull() for c in (FIRST_NAME, LAST_NAME)]).alias("name_invalid"),
        (given(EMAIL) & email.isNull()).alias("email_invalid"),
        (given(PHONE) & phone.isNull()).alias("phone_invalid"),
        (given(GENDER) & (gender == "U")).alias("gender_unknown"),
        (given(LABEL) & label.isNull()).alias("label_invalid"),
        F.trim(F.col(AGE)).try_cast("double").alias(STATED_AGE),
        given(BIRTH_DATE).alias(BIRTH_DATE_GIVEN),
        given(AGE).alias(AGE_GIVEN),
    )


def cleaning_rules(rules: PrepareConfig, date_formats: tuple[str, ...] = (), attributes: Sequence[str] = ()) -> str:
    """Return a fingerprint of what :func:`customer_records` gives for a row: this module's code, the
    settings it reads and the constants it takes from elsewhere. Rows cleaned under another fingerprint
    may differ from rows cleaned now."""
    code = inspect.getsource(sys.modules[__name__])
    settings = repr((rules, date_formats, tuple(attributes), BIRTH_DATE_FORMATS, LABEL_CODES))
    return hashlib.sha256(f"{code}\n{settings}".encode()).hexdigest()[:16]


def checked_on(records_df: DataFrame, as_of_date: dt.date, attributes: Sequence[str] = ()) -> DataFrame:
    """Return :func:`customer_records` rows as :func:`clean_customers` does: birth dates and ages
    checked against the age range on ``as_of_date``, the age worked out, and the columns in order."""
    birth = F.col(BIRTH_DATE)
    birth_ok = birth.isNotNull() & age_on(birth, as_of_date).between(MIN_AGE, MAX_AGE)
    age_ok = F.col(STATED_AGE).between(MIN_AGE, MAX_AGE)
    return records_df.select(
        CUSTOMER_ID, FIRST_NAME, LAST_NAME, EMAIL, PHONE, GENDER,
        F.when(birth_ok, birth).alias(BIRTH_DATE),
        CITY, COUNTRY, SIGNUP_TS, UPDATED_TS,
        F.coalesce(F.when(birth_ok, age_on(birth, as_of_date)),
                   F.when(age_ok, F.floor(STATED_AGE).cast("int"))).alias(AGE),
        LABEL,
        *[c for c in attributes if c in records_df.columns],
        "text_normalized", "name_invalid", "email_invalid", "phone_invalid", "gender_unknown",
        (F.col(BIRTH_DATE_GIVEN) & ~birth_ok).alias("birth_date_invalid"),
        (F.col(AGE_GIVEN) & ~F.coalesce(age_ok, F.lit(False))).alias("age_invalid"),
        "label_invalid",
    )


def clean_products(products_df: DataFrame) -> DataFrame:
    """Trim product fields, lower-case categories, null non-positive prices; one row per id."""
    latest = Window.partitionBy(PRODUCT_ID).orderBy(F.col(SOURCE_FILE).desc())
    return (
        products_df.select(
            blank_to_null(F.col(PRODUCT_ID)).alias(PRODUCT_ID),
            blank_to_null(F.col(NAME)).alias(NAME),
            F.coalesce(F.lower(blank_to_null(F.col(CATEGORY))), F.lit("unknown")).alias(CATEGORY),
            F.when(F.col(PRICE) > 0, F.round(F.col(PRICE), 2)).alias(PRICE),
            F.col(SOURCE_FILE),
        )
        .withColumn("_nth", F.row_number().over(latest))
        .where(F.col("_nth") == 1)
        .drop("_nth", SOURCE_FILE)
    )


def with_customer_key(df: DataFrame, xref_df: DataFrame) -> DataFrame:
    """Add ``customer_key`` by looking ``customer_id`` up in the cross-reference (null if unknown)."""
    return df.join(xref_df.select(CUSTOMER_ID, CUSTOMER_KEY), CUSTOMER_ID, "left")


def clean_orders(orders_df: DataFrame) -> DataFrame:
    """Standardize order lines and keep one row per (order, product), the latest.

    A negative quantity is a return: the line gets status ``returned`` and the
    absolute quantity, and ``is_return_quantity`` marks it.

    Returns:
        Orders with ``order_line_id``, lower-case ``status`` (``unknown`` when blank),
        unit prices rounded half-up to cents and ``is_return_quantity``.
    """
    latest = Window.partitionBy(ORDER_LINE_ID).orderBy(F.col(ORDER_TS).desc(), F.col(SOURCE_FILE).desc())
    negative = F.col(QUANTITY) < 0
    status = F.coalesce(F.lower(blank_to_null(F.col(STATUS))), F.lit("unknown"))
    return (
        orders_df.withColumn("is_return_quantity", negative)
        .withColumn(STATUS, F.when(negative, F.lit(STATUS_RETURNED)).otherwise(status))
        .withColumn(QUANTITY, F.abs(QUANTITY))
        .withColumn(UNIT_PRICE, F.round(UNIT_PRICE, 2))
        .withColumn(ORDER_LINE_ID, F.concat_ws(":", ORDER_ID, F.coalesce(PRODUCT_ID, F.lit(""))))
        .withColumn("_nth", F.row_number().over(latest))
        .where(F.col("_nth") == 1)
        .drop("_nth", SOURCE_FILE)
    )


def latest_ratings(ratings_df: DataFrame) -> DataFrame:
    """Keep each customer's latest rating of each product."""
    latest = Window.partitionBy(CUSTOMER_KEY, PRODUCT_ID).orderBy(
        F.col(RATED_TS).desc_nulls_last(), F.col(RATING).desc())
    return ratings_df.withColumn("_nth", F.row_number().over(latest)).where(F.col("_nth") == 1).drop("_nth")

"""Cleaning and standardization transforms, one rule per function."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from crm_spark.schemas import (
    BIRTH_DATE,
    CATEGORY,
    CITY,
    COUNTRY,
    CUSTOMER_ID,
    CUSTOMER_KEY,
    EMAIL,
    FIRST_NAME,
    GENDER,
    LAST_NAME,
    NAME,
    ORDER_ID,
    ORDER_TS,
    PHONE,
    PRICE,
    PRODUCT_ID,
    RATED_TS,
    SIGNUP_TS,
    SOURCE_FILE,
    STATUS,
    UPDATED_TS,
)

EMAIL_PATTERN = r"^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$"
BIRTH_DATE_FORMATS = ("yyyy-MM-dd", "dd.MM.yyyy", "yyyy/MM/dd", "dd MMM yyyy", "yyyyMMdd")
TIMESTAMP_FORMATS = ("yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd")
GENDER_CODES = {
    "F": ("f", "female", "w", "woman", "frau", "weiblich", "femme", "mujer", "donna"),
    "M": ("m", "male", "man", "mann", "maennlich", "homme", "hombre", "uomo"),
}
COUNTRY_ALIASES = {"US": ("us", "usa", "u.s.", "u.s.a.", "united states", "united states of america")}
MIN_AGE, MAX_AGE = 13, 110


def blank_to_null(column: Column) -> Column:
    """Return the trimmed text with inner whitespace collapsed, or null when blank."""
    text = F.regexp_replace(F.trim(column), r"\s+", " ")
    return F.when(text != "", text)


def clean_name(column: Column) -> Column:
    """Return a person's name trimmed and in title case."""
    return F.initcap(F.lower(blank_to_null(column)))


def clean_email(column: Column) -> Column:
    """Return the email lower-cased and trimmed, or null when not a valid address."""
    email = F.lower(blank_to_null(column))
    return F.when(email.rlike(EMAIL_PATTERN), email)


def clean_phone(column: Column) -> Column:
    """Return a North American phone number as ``+1`` and ten digits, or null."""
    digits = F.regexp_replace(column, "[^0-9]", "")
    national = F.when((F.length(digits) == 11) & digits.startswith("1"), F.substring(digits, 2, 10)) \
        .when(F.length(digits) == 10, digits)
    return F.when(national.rlike("^[2-9][0-9]{9}$"), F.concat(F.lit("+1"), national))


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


def age_on(birth_date: Column, on: dt.date) -> Column:
    """Return whole years between ``birth_date`` and ``on``."""
    return F.floor(F.months_between(F.lit(on), birth_date) / 12).cast("int")


def clean_country(column: Column) -> Column:
    """Return an ISO-like upper-case country code, mapping common spellings."""
    text = F.lower(blank_to_null(column))
    mapped = F.upper(text)
    for code, aliases in COUNTRY_ALIASES.items():
        mapped = F.when(text.isin(*aliases), F.lit(code)).otherwise(mapped)
    return mapped


def with_clean_customers(customers_df: DataFrame, as_of_date: dt.date) -> DataFrame:
    """Clean and standardize bronze customer rows, flagging what was nulled.

    Args:
        customers_df: bronze customers.
        as_of_date: date against which ages are checked.

    Returns:
        One row per input row: cleaned canonical columns plus boolean flags
        ``email_invalid``, ``phone_invalid``, ``gender_unknown``, ``birth_date_invalid``.
    """
    birth = parse_date(F.col(BIRTH_DATE))
    age = age_on(birth, as_of_date)
    birth_ok = birth.isNotNull() & age.between(MIN_AGE, MAX_AGE)
    return customers_df.select(
        blank_to_null(F.col(CUSTOMER_ID)).alias(CUSTOMER_ID),
        clean_name(F.col(FIRST_NAME)).alias(FIRST_NAME),
        clean_name(F.col(LAST_NAME)).alias(LAST_NAME),
        clean_email(F.col(EMAIL)).alias(EMAIL),
        clean_phone(F.col(PHONE)).alias(PHONE),
        clean_gender(F.col(GENDER)).alias(GENDER),
        F.when(birth_ok, birth).alias(BIRTH_DATE),
        F.initcap(F.lower(blank_to_null(F.col(CITY)))).alias(CITY),
        clean_country(F.col(COUNTRY)).alias(COUNTRY),
        parse_timestamp(F.col(SIGNUP_TS)).alias(SIGNUP_TS),
        parse_timestamp(F.col(UPDATED_TS)).alias(UPDATED_TS),
        (blank_to_null(F.col(EMAIL)).isNotNull() & clean_email(F.col(EMAIL)).isNull()).alias("email_invalid"),
        (blank_to_null(F.col(PHONE)).isNotNull() & clean_phone(F.col(PHONE)).isNull()).alias("phone_invalid"),
        (blank_to_null(F.col(GENDER)).isNotNull() & (clean_gender(F.col(GENDER)) == "U")).alias("gender_unknown"),
        (blank_to_null(F.col(BIRTH_DATE)).isNotNull() & ~birth_ok).alias("birth_date_invalid"),
    )


def with_clean_products(products_df: DataFrame) -> DataFrame:
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


def with_clean_orders(orders_df: DataFrame) -> DataFrame:
    """Standardize order lines and keep one row per (order, product), the latest.

    Returns:
        Orders with ``order_line_id``, lower-case ``status`` (``unknown`` when blank)
        and amounts rounded to cents.
    """
    latest = Window.partitionBy(ORDER_ID, PRODUCT_ID).orderBy(F.col(ORDER_TS).desc(), F.col(SOURCE_FILE).desc())
    return (
        orders_df.withColumn(STATUS, F.coalesce(F.lower(blank_to_null(F.col(STATUS))), F.lit("unknown")))
        .withColumn("unit_price", F.round("unit_price", 2))
        .withColumn("order_line_id", F.concat_ws(":", ORDER_ID, PRODUCT_ID))
        .withColumn("_nth", F.row_number().over(latest))
        .where(F.col("_nth") == 1)
        .drop("_nth", SOURCE_FILE)
    )


def with_latest_rating(ratings_df: DataFrame) -> DataFrame:
    """Keep each customer's latest rating of each product."""
    latest = Window.partitionBy(CUSTOMER_KEY, PRODUCT_ID).orderBy(
        F.col(RATED_TS).desc_nulls_last(), F.col("rating").desc())
    return ratings_df.withColumn("_nth", F.row_number().over(latest)).where(F.col("_nth") == 1).drop("_nth")

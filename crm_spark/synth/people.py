"""Synthetic persons (the truth) and the customer records they register (the raw data)."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark.config import GenerateConfig
from crm_spark.schemas import RAW_COLUMNS
from crm_spark.synth.random import normal, pick, poisson, uniform
from crm_spark.synth.world import (
    BIRTH_DATE_FORMATS,
    CITIES,
    COUNTRY_SPELLINGS,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    GENDER_CODES,
    GROUPS,
    LAST_NAMES,
    ORDER_STATUS_WEIGHTS,
    TASTE_DIM,
    UNKNOWN_GENDER_CODES,
)

CHURN_INTERCEPT = -0.4
CHURN_RECENT_WEIGHT = -0.8
CHURN_SATISFACTION_WEIGHT = -0.3
RECENT_DAYS = 90


def _by_group(values: list[float]) -> Column:
    return F.element_at(F.array(*[F.lit(float(v)) for v in values]), F.col("group") + 1)


def _choice(u: Column, options: tuple[str, ...]) -> Column:
    index = F.least(F.floor(u * len(options)).cast("int"), F.lit(len(options) - 1)) + 1
    return F.element_at(F.array(*[F.lit(o) for o in options]), index)


def persons(
    spark: SparkSession, cfg: GenerateConfig, end_date: dt.date, horizon_days: int
) -> DataFrame:
    """Return one row per synthetic person with every latent trait.

    Orders are drawn in three windows (before the recent period, the recent period of
    RECENT_DAYS before the training cutoff, and the horizon after it). Churners stop
    buying at the cutoff (``end_date - horizon_days``); the churn probability depends
    on observable behaviour (group, orders in the recent period and the satisfaction
    that shows in ratings).

    Args:
        spark: the session.
        cfg: generator settings.
        end_date: last day of the history (exclusive), the run's ``as_of_date``.
        horizon_days: churn horizon; churners stop at ``end_date - horizon_days``.

    Returns:
        Persons with group, demographics, purchase rate, churn and taste factors.
    """
    seed = cfg.seed
    pid = F.col("person_id")
    start = end_date - dt.timedelta(days=cfg.history_days)
    cutoff = end_date - dt.timedelta(days=horizon_days)
    group = pick(uniform(seed, "group", pid), list(range(len(GROUPS))), [g.share for g in GROUPS])
    df = (
        spark.range(0, cfg.customers, numPartitions=cfg.partitions)
        .withColumnRenamed("id", "person_id")
        .withColumn("group", group.cast("int"))
    )
    age = _by_group([g.age_mean for g in GROUPS]) + F.lit(8.0) * normal(seed, "age", pid)
    female = uniform(seed, "gender", pid) < _by_group([g.female_share for g in GROUPS])
    z_rate = normal(seed, "rate", pid)
    rate = _by_group([g.orders_per_day for g in GROUPS]) * F.exp(F.lit(0.5) * z_rate - 0.125)
    satisfaction = normal(seed, "satisfaction", pid)
    signup_offset = F.floor(uniform(seed, "signup", pid) * (cfg.history_days + 335)) - 365
    df = (
        df.withColumn("age", F.least(F.greatest(F.round(age), F.lit(18.0)), F.lit(90.0)).cast("int"))
        .withColumn("true_gender", F.when(female, "F").otherwise("M"))
        .withColumn("orders_per_day", rate)
        .withColumn("satisfaction", satisfaction)
        .withColumn("signup_date", F.date_add(F.lit(start), signup_offset.cast("int")))
        .withColumn("active_from", F.greatest(F.col("signup_date"), F.lit(start)))
    )
    # Orders come from three windows: before the recent period, the recent period
    # (the RECENT_DAYS before the cutoff) and the horizon after the cutoff.
    recent_start = cutoff - dt.timedelta(days=RECENT_DAYS)
    old_from, recent_from = F.col("active_from"), F.greatest(F.col("active_from"), F.lit(recent_start))
    post_from = F.greatest(F.col("active_from"), F.lit(cutoff))
    old_days = F.greatest(F.datediff(F.lit(recent_start), old_from), F.lit(0))
    recent_days = F.greatest(F.datediff(F.lit(cutoff), recent_from), F.lit(0))
    post_days = F.datediff(F.lit(end_date), post_from)
    lam = F.col("orders_per_day")
    df = df.withColumn("n_old", poisson(lam * old_days, uniform(seed, "n_old", pid), 400)).withColumn(
        "n_recent", poisson(lam * recent_days, uniform(seed, "n_recent", pid), 400))
    # Churn depends on observable behaviour: group (seen through age and category mix),
    # orders in the recent period, and satisfaction (seen through ratings).
    churn_logit = (
        F.lit(CHURN_INTERCEPT)
        + _by_group([g.churn_logit for g in GROUPS])
        + F.lit(CHURN_RECENT_WEIGHT) * F.log1p(F.col("n_recent").cast("double"))
        + F.lit(CHURN_SATISFACTION_WEIGHT) * F.col("satisfaction")
    )
    eligible = F.col("signup_date") < F.date_sub(F.lit(cutoff), 30)
    df = df.withColumn("churn_prob", F.lit(1.0) / (F.lit(1.0) + F.exp(-churn_logit)))
    churned = eligible & (uniform(seed, "churn", pid) < F.col("churn_prob"))
    df = (
        df.withColumn("churned", churned)
        .withColumn("churn_date", F.when(churned, F.lit(cutoff)))
        .withColumn("n_post", F.when(churned, F.lit(0)).otherwise(
            poisson(lam * post_days, uniform(seed, "n_post", pid), 400)))
        .withColumn("order_windows", F.array(
            F.struct(old_from.alias("start"), old_days.alias("days"), F.col("n_old").alias("n")),
            F.struct(recent_from.alias("start"), recent_days.alias("days"), F.col("n_recent").alias("n")),
            F.struct(post_from.alias("start"), post_days.alias("days"), F.col("n_post").alias("n")),
        ))
        .withColumn("n_orders", F.col("n_old") + F.col("n_recent") + F.col("n_post"))
        # Probability of the observable label "no completed order in the horizon after
        # the cutoff": a churner never buys again; anyone else orders at a Poisson rate.
        .withColumn(
            "label_prob",
            F.when(eligible, F.col("churn_prob")).otherwise(F.lit(0.0))
            + (F.lit(1.0) - F.when(eligible, F.col("churn_prob")).otherwise(F.lit(0.0)))
            * F.exp(-lam * F.lit(ORDER_STATUS_WEIGHTS["completed"] * horizon_days)),
        )
    )
    # Each group's centre is drawn once, by the same expression on one row per group, not once per person: for
    # 100,000 persons the taste column took 1.3-1.5 s with 16 more hashes per person, against 0.3 s (warm).
    centres = spark.range(len(GROUPS), numPartitions=1).select(
        *[normal(seed, "center", F.col("id").cast("int"), F.lit(j)) for j in range(TASTE_DIM)]).collect()
    taste = [
        F.lit(0.9) * _by_group([centre[j] for centre in centres]) + F.lit(0.8) * normal(seed, "taste", pid, F.lit(j))
        for j in range(TASTE_DIM)
    ]
    return df.withColumn("taste", F.array(*taste))


def padded(number: Column, width: int) -> Column:
    """Return ``number``, a non-negative integer, as text padded with zeros to ``width`` digits.

    The text is the one ``format_string("%0<width>d")`` writes, without Java's formatter, which
    took about 2 s of CPU of generate at 100,000 customers (most of it for the 1.5 million order ids).
    """
    text = number.cast("string")
    return F.when(F.length(text) < width, F.lpad(text, width, "0")).otherwise(text)


def _customer_id(number: Column) -> Column:
    return F.concat(F.lit("C"), padded(number, 9))


def _fmt_phone(digits: Column, u: Column) -> Column:
    a, b, c = F.substring(digits, 1, 3), F.substring(digits, 4, 3), F.substring(digits, 7, 4)
    return (
        F.when(u < 0.4, F.concat(F.lit("+1 "), a, F.lit("-"), b, F.lit("-"), c))
        .when(u < 0.6, F.concat(F.lit("("), a, F.lit(") "), b, F.lit("-"), c))
        .when(u < 0.8, F.concat(a, F.lit("."), b, F.lit("."), c))
        .otherwise(F.concat(F.lit("1"), digits))
    )


def _typo(text: Column, u: Column) -> Column:
    """Swap two neighbouring letters of ``text`` at a position chosen by ``u``."""
    n = F.length(text)
    i = F.greatest(F.lit(1), F.floor(u * (n - 1)).cast("int"))
    return F.concat(
        F.substring(text, 1, i - 1), F.substring(text, i + 1, 1), F.substring(text, i, 1),
        F.substring(text, i + 2, 1000),
    )


def customer_records(people_df: DataFrame, cfg: GenerateConfig, end_date: dt.date) -> DataFrame:
    """Return the raw customer records: one per person, plus planted duplicates and dirt.

    Args:
        people_df: output of :func:`persons`.
        cfg: generator settings (duplicate and invalid shares).
        end_date: the end of the history; no timestamp reaches it.

    Returns:
        Canonical customer columns as strings, plus truth columns ``person_id``,
        ``is_duplicate``, ``variation`` and ``dirt``.
    """
    seed = cfg.seed
    pid = F.col("person_id")
    first = _choice(uniform(seed, "first", pid), FIRST_NAMES)
    last = _choice(uniform(seed, "last", pid), LAST_NAMES)
    digits = F.concat((F.floor(uniform(seed, "area", pid) * 800) + 200).cast("string"),
                      padded(F.floor(uniform(seed, "line", pid) * 10_000_000), 7))
    # The person id keeps every person's address unique, as real addresses are.
    local = F.lower(F.concat(first, F.lit("."), last, pid.cast("string")))
    base = people_df.select(
        pid, "group", "age", "true_gender", "signup_date",
        first.alias("fn"), last.alias("ln"), digits.alias("digits"),
        F.concat(local, F.lit("@"), _choice(uniform(seed, "domain", pid), EMAIL_DOMAINS)).alias("mail"),
    )
    dup_u = uniform(seed, "dup", pid)
    copies = F.when(dup_u < cfg.duplicate_share, F.array(F.lit(0), F.lit(1))).otherwise(F.array(F.lit(0)))
    records = base.withColumn("copy", F.explode(copies))
    is_dup = F.col("copy") == 1
    key = [pid, F.col("copy")]
    variation = F.when(~is_dup, F.lit(None)).otherwise(
        pick(uniform(seed, "variation", pid), ["case_email", "phone_only", "email_only", "fuzzy"],
             [0.4, 0.3, 0.2, 0.1])
    )
    records = records.withColumn("variation", variation)
    v = F.col("variation")
    fn = F.when(v.isin("fuzzy", "phone_only") & (uniform(seed, "fn_typo", pid) < 0.7),
                _typo(F.col("fn"), uniform(seed, "fn_pos", pid))).otherwise(F.col("fn"))
    fn = F.when(is_dup & (uniform(seed, "fn_case", pid) < 0.3), F.upper(fn)).otherwise(fn)
    email = (
        F.when(v == "case_email", F.concat(F.lit(" "), F.initcap(F.col("mail")), F.lit(" ")))
        .when(v == "phone_only", F.regexp_replace(F.col("mail"), "@", "1@"))
        .when(v == "fuzzy", F.concat(F.lower(F.col("fn")), F.lower(F.col("ln")),
                                     (pid * 7 % 997).cast("string"), F.lit("@mail.test")))
        .otherwise(F.col("mail"))
    )
    phone_digits = F.when(v.isin("email_only", "fuzzy"),
                          F.format_string("%010d", F.floor(uniform(seed, "phone2", pid) * 1e10).cast("long")))
    phone = _fmt_phone(F.coalesce(phone_digits, F.col("digits")), uniform(seed, "phone_fmt", *key))
    phone = F.when((v == "email_only") & (uniform(seed, "nophone", pid) < 0.5), F.lit(None)).otherwise(phone)
    gender_u = uniform(seed, "gcode", *key)
    gender = F.when(F.col("true_gender") == "F", _choice(gender_u, GENDER_CODES["F"])).otherwise(
        _choice(gender_u, GENDER_CODES["M"]))
    birth = F.date_sub(F.add_months(F.lit(end_date), -12 * F.col("age")),
                       F.floor(uniform(seed, "bday", pid) * 365).cast("int"))
    birth_fmt = pick(uniform(seed, "bfmt", *key), list(BIRTH_DATE_FORMATS), [0.7, 0.1, 0.1, 0.1])
    birth_text = F.date_format(birth, "yyyy-MM-dd")
    for fmt in BIRTH_DATE_FORMATS[1:]:
        birth_text = F.when(birth_fmt == fmt, F.date_format(birth, fmt)).otherwise(birth_text)
    signup = F.when(is_dup, F.date_add("signup_date", F.floor(uniform(seed, "dsign", pid) * 200).cast("int"))) \
        .otherwise(F.col("signup_date"))
    signup_ts = F.timestamp_seconds(
        F.unix_timestamp(F.least(signup, F.date_sub(F.lit(end_date), 1)).cast("timestamp"))
        + F.floor(uniform(seed, "stime", *key) * 86_400)
    )
    updated_ts = F.timestamp_seconds(
        F.unix_timestamp(signup_ts) + F.floor(uniform(seed, "utime", *key) * 86_400 * 30)
    )
    updated_ts = F.least(updated_ts, F.lit(end_date).cast("timestamp") - F.expr("INTERVAL 1 SECOND"))
    first = F.when(is_dup & (uniform(seed, "ws", pid) < 0.3), F.concat(F.lit("  "), fn)).otherwise(fn)
    swapped = (v == "fuzzy") & (uniform(seed, "swap", pid) < 0.4)
    records = records.select(
        pid, is_dup.alias("is_duplicate"), v.alias("variation"), "signup_date",
        F.when(is_dup, _customer_id(pid + F.lit(cfg.customers) + 1)).otherwise(_customer_id(pid + 1))
        .alias("customer_id"),
        F.when(swapped, F.col("ln")).otherwise(first).alias("first_name"),
        F.when(swapped, first).otherwise(F.col("ln")).alias("last_name"),
        email.alias("email"),
        phone.alias("phone"),
        gender.alias("gender"),
        birth_text.alias("birth_date"),
        _choice(uniform(seed, "city", pid), CITIES).alias("city"),
        _choice(uniform(seed, "country", *key), COUNTRY_SPELLINGS).alias("country"),
        F.date_format(signup_ts, "yyyy-MM-dd HH:mm:ss").alias("signup_ts"),
        F.date_format(updated_ts, "yyyy-MM-dd HH:mm:ss").alias("updated_ts"),
    )
    return _with_invalid_values(records, cfg, end_date)


def _with_invalid_values(records: DataFrame, cfg: GenerateConfig, end_date: dt.date) -> DataFrame:
    """Plant missing or invalid values in about ``invalid_share`` of the records."""
    seed = cfg.seed
    key = [F.col("person_id"), F.col("is_duplicate")]
    hit = uniform(seed, "invalid", *key) < cfg.invalid_share
    kinds = ["age_negative", "age_230", "gender_unknown", "email_invalid", "phone_missing"]
    records = records.withColumn("dirt", F.when(hit, pick(uniform(seed, "dirt", *key), kinds)))
    d = F.col("dirt")
    replaced = {
        "birth_date": F.when(d == "age_negative", F.lit((end_date + dt.timedelta(days=300)).isoformat()))
        .when(d == "age_230", F.lit("1796-05-04")),
        "gender": F.when(d == "gender_unknown", _choice(uniform(seed, "ucode", *key), UNKNOWN_GENDER_CODES)),
        "email": F.when(d == "email_invalid", F.regexp_replace("email", "@.*$", "@")),
        "phone": F.when(d == "phone_missing", F.lit("")),
    }
    columns = [
        replaced[c].otherwise(F.col(c)).alias(c) if c in replaced else F.col(c)
        for c in RAW_COLUMNS["customers"]
    ]
    return records.select("person_id", "is_duplicate", "variation", "dirt", "signup_date", *columns)

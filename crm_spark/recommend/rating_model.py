"""Rating prediction: explicit ALS on what a global mean and damped item and customer biases
leave over, beside an item-mean baseline, scored on held-out ratings."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crm_spark.config import RecommendConfig
from crm_spark.recommend.als import ALS_MODEL, AlsParams, fit
from crm_spark.recommend.holdout import split
from crm_spark.recommend.interactions import STRENGTH, index_pairs, interactions
from crm_spark.schemas import CUSTOMER_KEY, MODEL, PREDICTION, PRODUCT_ID, RATING

ITEM_MEAN_MODEL = "item_mean"
BIAS_DAMPING = 5.0  # biases of items and customers with few ratings shrink toward zero


def rating_holdout(events_df: DataFrame, items_df: DataFrame, cfg: RecommendConfig, cutoff: dt.date, end: dt.date,
                   rating_range: tuple[float, float], blocks: int) -> DataFrame:
    """Predict held-out ratings with explicit ALS on top of biases, and with item means.

    Ratings are split like the recommendations (time or random). ALS learns what the
    global mean plus damped item and customer biases leave over, and its prediction is
    that baseline plus the learned residual, clipped to the rating scale. Both models are
    scored on the held-out ratings of customers and products ALS saw in training.

    Args:
        events_df: rating events (``rating_events``).
        items_df: ``(product_id, item)`` index of the catalogue.
        cfg: the recommendation settings (holdout, rating ALS settings, seed).
        cutoff: the training cutoff of a time holdout.
        end: the end of the held-out horizon.
        rating_range: the lowest and highest rating.
        blocks: ALS block count.

    Returns:
        ``customer_key``, ``product_id``, ``rating``, ``prediction`` and ``model``.
    """
    train_events, relevant = split(events_df, cfg, cutoff, end, cfg.seed)
    # Checkpointed: the mean, both biases and the residuals read it.
    train = interactions(train_events, True, None).checkpoint(eager=True)
    test = interactions(events_df.join(relevant, [CUSTOMER_KEY, PRODUCT_ID], "left_semi"), True, None)
    mean = train.agg(F.avg(STRENGTH)).first()[0]
    item_bias = train.groupBy(PRODUCT_ID).agg(
        (F.sum(F.col(STRENGTH) - mean) / (F.count(F.lit(1)) + BIAS_DAMPING)).alias("item_bias"),
        F.avg(STRENGTH).alias("item_mean"))
    user_bias = train.join(item_bias, PRODUCT_ID).groupBy(CUSTOMER_KEY).agg(
        (F.sum(F.col(STRENGTH) - mean - F.col("item_bias")) / (F.count(F.lit(1)) + BIAS_DAMPING)).alias("user_bias"))

    def with_baseline(df: DataFrame) -> DataFrame:
        return df.join(item_bias, PRODUCT_ID).join(user_bias, CUSTOMER_KEY).withColumn(
            "baseline", F.lit(mean) + F.col("item_bias") + F.col("user_bias"))

    residuals = with_baseline(train).select(CUSTOMER_KEY, PRODUCT_ID,
                                            (F.col(STRENGTH) - F.col("baseline")).cast("float").alias(STRENGTH))
    users, indexed = index_pairs(residuals, items_df)
    model = fit(indexed, AlsParams(cfg.rating_rank, cfg.rating_reg_param, 1.0, cfg.max_iter), True, blocks, cfg.seed)
    scored = model.transform(with_baseline(test).join(users, CUSTOMER_KEY).join(items_df, PRODUCT_ID))
    low, high = rating_range
    als = F.least(F.greatest(F.col("baseline") + F.col(PREDICTION), F.lit(low)), F.lit(high)).cast("double")
    # Both models' predictions in one pass over the scored ratings, a row each.
    predictions = F.explode(F.array(
        F.struct(als.alias(PREDICTION), F.lit(ALS_MODEL).alias(MODEL)),
        F.struct(F.col("item_mean").cast("double").alias(PREDICTION), F.lit(ITEM_MEAN_MODEL).alias(MODEL))))
    return scored.select(CUSTOMER_KEY, PRODUCT_ID, F.col(STRENGTH).alias(RATING), predictions.alias("scored")).select(
        CUSTOMER_KEY, PRODUCT_ID, RATING, f"scored.{PREDICTION}", f"scored.{MODEL}")

"""A registered recommender served without refitting: the model's own item index, ALS user factors
kept for customers whose history did not change since the fit and folded in for the others, and
EASE's saved weights applied to every customer's current history."""

from __future__ import annotations

import numpy as np
from pyspark import Broadcast
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_spark.recommend import als, item_item
from crm_spark.recommend.als import ALS_MODEL, AlsParams
from crm_spark.recommend.families import PARTNER, Recommender, scorer_of
from crm_spark.recommend.fold_in import fold_in_users
from crm_spark.recommend.interactions import EVENT_TS, ITEM, STRENGTH, USER, dense_index
from crm_spark.recommend.item_item import EASE_MODEL
from crm_spark.recommend.top_k import Scorer
from crm_spark.schemas import CUSTOMER_KEY, PRODUCT_ID

ITEMS = "items"  # the folder of a saved model's (product_id, item) index


def items_path(path: str) -> str:
    """Return where the ``(product_id, item)`` index of the model saved at ``path`` is."""
    return f"{path.rstrip('/')}/{ITEMS}"


def save_items(items_df: DataFrame, path: str) -> None:
    """Save the ``(product_id, item)`` index a model was fitted with beside it."""
    items_df.write.mode("overwrite").parquet(items_path(path))


def load_items(spark: SparkSession, path: str) -> DataFrame:
    """Return the ``(product_id, item)`` index saved with a model."""
    return spark.read.parquet(items_path(path))


def serving_index(pairs_df: DataFrame, events_df: DataFrame, fitted_users_df: DataFrame, items_df: DataFrame,
                  since: object) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Number today's customers as the fitted model did and say whose history changed.

    Args:
        pairs_df: ``(customer_key, product_id, strength)``: every customer's interactions today.
        events_df: the events behind ``pairs_df`` (``customer_key``, ``event_ts``).
        fitted_users_df: ``(customer_key, user)``: the customers of the fit and their numbers.
        items_df: the model's ``(product_id, item)`` index; other products are left out.
        since: the start of the fit's ``as_of_date``: events from then on are new to the model.

    Returns:
        ``(customer_key, user)`` of today's customers (the fit's numbers; new customers numbered
        after the largest), their ``(user, item, strength)`` rows, and ``user`` of the customers
        with an event since the fit or new to it.
    """
    today = pairs_df.select(CUSTOMER_KEY).distinct()
    offset = (fitted_users_df.agg(F.max(USER)).first()[0] or 0) + 1
    new = dense_index(today.join(fitted_users_df, CUSTOMER_KEY, "left_anti"), CUSTOMER_KEY, USER)
    users = fitted_users_df.join(today, CUSTOMER_KEY).unionByName(new.withColumn(USER, F.col(USER) + offset))
    indexed = pairs_df.join(users, CUSTOMER_KEY).join(items_df, PRODUCT_ID).select(USER, ITEM, STRENGTH)
    active = events_df.where(F.col(EVENT_TS) >= F.lit(since)).select(CUSTOMER_KEY).distinct()
    changed = users.join(active.unionByName(new.select(CUSTOMER_KEY)).distinct(), CUSTOMER_KEY).select(USER)
    return users, indexed, changed


class SavedRecommender:
    """A recommender saved by the recommend stage, scored on today's interactions; a context manager.

    Leaving the ``with`` block releases EASE's weights sent to the executors.

    Args:
        spark: the session.
        path: where the recommend stage saved the model (the registry's path).
        spec: the registered setting (:meth:`Recommender.from_params`).
        explicit: the ALS models were fitted on explicit values.
    """

    def __init__(self, spark: SparkSession, path: str, spec: Recommender, explicit: bool) -> None:
        self.spark, self.path, self.spec, self.explicit = spark, path.rstrip("/"), spec, explicit
        self._weights: Broadcast | None = None

    def __enter__(self) -> SavedRecommender:
        return self

    def __exit__(self, *_: object) -> None:
        if self._weights is not None:
            self._weights.destroy()
            self._weights = None

    def scorer(self, indexed_df: DataFrame, changed_df: DataFrame) -> Scorer:
        """Return the scoring of the saved model for the customers of ``indexed_df``.

        Args:
            indexed_df: ``(user, item, strength)`` of today (:func:`serving_index`).
            changed_df: ``user`` of the customers to fold in; everyone else keeps the fit's factors.
        """
        def als_part(params: AlsParams, column: str) -> Scorer:
            suffix = "" if params == self.spec.als else f"_{PARTNER}"
            model = ALSModel.load(f"{self.path}/{ALS_MODEL}{suffix}")
            kept = model.userFactors.withColumnRenamed("id", USER).join(changed_df, USER, "left_anti")
            folded = fold_in_users(model.itemFactors, indexed_df.join(changed_df, USER), params, self.explicit)
            return als.als_scorer(model, column, kept.unionByName(folded))

        def ease_part() -> Scorer:
            saved = self.spark.read.parquet(f"{self.path}/{EASE_MODEL}").orderBy(ITEM).toPandas()
            if self._weights is None:
                self._weights = self.spark.sparkContext.broadcast(
                    np.stack(saved["weights"].to_numpy()).astype(np.float32))
            return item_item.ease_scorer(indexed_df, saved[ITEM].to_numpy(dtype=np.int64), self._weights)

        return scorer_of(self.spec, als_part, ease_part)

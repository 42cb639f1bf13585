"""The configuration's sections: one frozen dataclass per YAML section, with its defaults."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Mapping

from crm_spark.config.coerce import as_dict

# Delta refuses a VACUUM retention below this many hours unless its safety check is lifted.
DELTA_SAFE_RETENTION_HOURS = 168


@dataclass(frozen=True)
class SparkConfig:
    """How the SparkSession is built.

    ``master`` applies only when the launcher (``spark-submit``) did not set one.
    ``console_progress`` shows Spark's progress bar on the console; None shows it when
    the console is a terminal. ``class_archive`` lets a JVM crm-spark starts itself map
    the class archive a run wrote before, or write one (see :mod:`crm_spark.session`).
    """

    app_name: str = "crm-spark"
    master: str | None = "local[*]"
    shuffle_partitions: int = 8
    delta_package: str = "io.delta:delta-spark_4.2_2.13:4.4.0"
    ui_enabled: bool = False
    log_level: str = "WARN"
    console_progress: bool | None = None
    class_archive: bool = True
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PathsConfig:
    """Where raw input, the lakehouse and checkpoints live.

    Every path (and every source path) must lie under one of ``allowed_roots``
    (default: the working directory); a ``..`` escape or a path elsewhere is refused.
    URLs are allowed when they start with a root given as a URL.
    """

    raw_dir: str
    lakehouse_dir: str
    checkpoint_dir: str
    truth_dir: str | None = None
    allowed_roots: tuple[str, ...] = (".",)
    export_dir: str | None = None  # campaign files, one folder per as_of_date; default: <lakehouse_dir>/exports
    report_dir: str | None = None  # one HTML report per run; default: <lakehouse_dir>/reports

    @property
    def exports(self) -> str:
        """Return the folder campaign exports go to."""
        return self.export_dir or f"{self.lakehouse_dir.rstrip('/')}/exports"

    @property
    def reports(self) -> str:
        """Return the folder run reports go to."""
        return self.report_dir or f"{self.lakehouse_dir.rstrip('/')}/reports"


@dataclass(frozen=True)
class PrivacyConfig:
    """Secret for customer keys, and erasure.

    The secret is read from the environment variable ``secret_env``, else from
    ``secret_file``; with ``create_secret`` (the local demo) a missing file is created.
    Erasure VACUUMs touched tables with ``vacuum_retention_hours``; a value below
    Delta's safety limit (``DELTA_SAFE_RETENTION_HOURS``) needs ``allow_short_retention: true``.
    """

    secret_env: str = "CRM_SPARK_SECRET"
    secret_file: str = ".secrets/customer-key.secret"
    create_secret: bool = False
    vacuum_retention_hours: int = DELTA_SAFE_RETENTION_HOURS
    allow_short_retention: bool = False


@dataclass(frozen=True)
class GenerateConfig:
    """Synthetic data set size, seed and the share of planted dirt."""

    customers: int = 100_000
    products: int = 1_000
    seed: int = 42
    history_days: int = 730
    duplicate_share: float = 0.05
    invalid_share: float = 0.02
    malformed_share: float = 0.001
    anomaly_share: float = 0.005
    partitions: int = 8
    next_day_share: float = 0.02


# The form of a data-quality expectation: ``dataset.column.metric >= bound`` (or ``<=``).
EXPECTATION_PATTERN = re.compile(
    r"^(?P<dataset>[a-z_]+)\.(?P<column>[A-Za-z0-9_]+)\.(?P<metric>[a-z_]+)\s*(?P<op>>=|<=)\s*(?P<bound>[0-9.eE+-]+)$"
)


@dataclass(frozen=True)
class SourceConfig:
    """Where one raw source lives, how to read it and how its columns map onto canonical names.

    ``path`` is relative to ``paths.raw_dir`` unless absolute or a URL; globs are allowed.
    ``columns`` maps a canonical column to the source's column (columns named canonically
    need no entry). ``formats`` lists date/time patterns per canonical column or date
    attribute (``epoch`` for Unix seconds). ``constants`` fills canonical columns the
    source lacks. For CSV without a header, ``fields`` names the columns in file order.
    ``attributes`` (customers only) names further source columns that become features
    under their snake_case name, each with a type: ``numeric``, ``categorical``,
    ``boolean``, ``date`` (days before ``as_of_date``) or ``auto``/null (numeric when
    nearly every non-blank value is a number, else categorical).
    """

    path: str
    format: str
    header: bool = True
    delimiter: str = ","
    encoding: str = "UTF-8"
    fields: tuple[str, ...] = ()
    columns: Mapping[str, str] = field(default_factory=dict)
    formats: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    constants: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, str | None] = field(default_factory=dict)


def default_sources() -> dict[str, SourceConfig]:
    """Return the synthetic data's layout: the sources ``generate`` writes under ``raw_dir``."""
    return {
        "customers": SourceConfig("customers", "csv"),
        "products": SourceConfig("products", "csv"),
        "orders": SourceConfig("orders", "json"),
        "ratings": SourceConfig("ratings", "parquet"),
    }


@dataclass(frozen=True)
class IngestConfig:
    """Which files a run reads, and limits applied to every raw row.

    With ``incremental`` a run reads only the files not ingested before (or changed
    since) and ``prepare`` merges their rows into silver; without it every file is
    read again and bronze and silver are rebuilt.
    """

    incremental: bool = True
    max_field_chars: int = 65_536
    rating_min: float = 1.0  # ratings may be decimals (half stars, 0.5-5, 1-10)
    rating_max: float = 5.0


@dataclass(frozen=True)
class PrepareConfig:
    """Cleaning rules and entity resolution.

    Phones become ``+<country code><national number>``; a number without a country
    prefix is read as national for ``phone_country_code`` and must match
    ``phone_national_pattern`` after an optional ``phone_trunk_prefix`` is removed.
    Fuzzy matching links records in the same block (same birth date and a shared
    name sound) whose name similarity reaches ``name_similarity``, that agree on city
    or phone and whose genders do not conflict; blocks larger than ``max_block_size``
    are skipped.
    """

    phone_country_code: str = "1"
    phone_national_pattern: str = "[2-9][0-9]{9}"
    phone_trunk_prefix: str | None = None
    fuzzy_matching: bool = True
    name_similarity: float = 0.85
    max_block_size: int = 50


@dataclass(frozen=True)
class QualityConfig:
    """Data-quality expectations checked after prepare.

    Each expectation reads ``dataset.column.metric >= bound`` (or ``<=``), over the
    metrics of the ``data_quality`` table; a failed one warns or fails the run.
    """

    expectations: tuple[str, ...] = ()  # each names a configured source and one of its columns
    on_failure: str = "warn"


@dataclass(frozen=True)
class SelectConfig:
    """Feature selection: chi-square on quantile buckets, then a correlation filter.

    Of two features whose absolute ``correlation_method`` (pearson or spearman)
    correlation exceeds ``max_correlation``, the one with the smaller chi-square
    statistic is dropped.
    """

    buckets: int = 10
    fpr: float = 0.05
    correlation_method: str = "pearson"
    max_correlation: float = 0.9


@dataclass(frozen=True)
class TrainConfig:
    """Classifiers, customer value regression, segmentation and anomalies.

    ``label`` says where the classifiers' label comes from: ``horizon`` (churn: no
    completed purchase in the ``churn_horizon_days`` after the training cutoff),
    ``column`` (the customer source's ``label`` column, e.g. a churn flag of a CRM
    export) or ``auto`` (the column when any customer carries one, else the horizon).
    Parameters are chosen on a train-validation split of the training customers
    (``tvs_train_ratio``) over the grids; the decision threshold is chosen on the
    validation customers for ``threshold_objective``. Customer value regressors learn
    next-horizon spend capped at the training customers' ``clv_label_cap_quantile``
    (a few huge orders would otherwise dominate the squared error); they are evaluated
    against the uncapped spend. Beside them, BG/NBD and Gamma-Gamma are fitted on the
    training customers' purchase summaries (``clv_*`` settings below).
    """

    label: str = "auto"
    validation_share: float = 0.15
    test_share: float = 0.15
    tvs_train_ratio: float = 0.75
    class_weights: str = "balanced"  # balanced: each class weighs half; none: every customer weighs 1
    threshold_objective: str = "f1"  # f1 or accuracy, on the validation customers
    classifiers: tuple[str, ...] = ("logistic_regression", "decision_tree", "gradient_boosted_trees")
    lr_reg_params: tuple[float, ...] = (0.0001, 0.001, 0.01, 0.1)
    lr_elastic_nets: tuple[float, ...] = (0.0, 0.5)
    dt_max_depths: tuple[int, ...] = (4, 6, 8)
    dt_min_instances: tuple[int, ...] = (20, 100)
    gbt_max_depths: tuple[int, ...] = (3, 5)
    gbt_max_iter: int = 50
    clv_label_cap_quantile: float | None = 0.99  # training spend is capped here; None trains on raw spend
    clv_gbt_max_iter: int = 40
    clv_gbt_max_depth: int = 4
    # BG/NBD and Gamma-Gamma: times in periods of this many days (7: weeks, 1: days), exact to the
    # day or binned by period (clv_period_bins: distinct rows, and so the fitting time, then stop
    # growing with the customer count, at a small cost in precision), an optional
    # L2 penalty on the parameters, and lifetime value over clv_months at a monthly discount rate
    # and margin (1.0: value is revenue). The series of the expected purchases sums at most
    # clv_series_terms terms per customer.
    clv_period_days: int = 7
    clv_period_bins: bool = False
    clv_penalizer: float = 0.0
    clv_months: int = 12
    clv_monthly_discount_rate: float = 0.01
    clv_margin: float = 1.0
    clv_series_terms: int = 5000
    segment_k_min: int = 3
    segment_k_max: int = 6
    segment_algorithms: tuple[str, ...] = ("kmeans", "bisecting_kmeans")
    segment_sample: int = 10000  # k is chosen on a seeded sample of this many customers
    segment_restarts: int = 3  # seeds per fit; the lowest within-cluster cost wins
    anomaly_z: float = 4.0  # robust z-score at which an order is anomalous
    customer_anomaly_z: float = 6.0  # robust z-score of the distance to the segment centre
    anomaly_scale_floor: float = 0.5  # smallest z-score scale, in natural-log units
    seed: int = 7


@dataclass(frozen=True)
class RecommendConfig:
    """ALS recommendations: interactions, holdout, tuning for ranking, serving rules."""

    top_k: int = 10
    interactions: str = "auto"  # purchases, ratings, or auto: purchases when order lines name products
    feedback: str = "implicit"  # implicit (confidence) or explicit (rating values; needs ratings)
    recency_half_life_days: float | None = 180.0  # purchase confidence halves per this age; None counts
    holdout: str = "time"  # time: first bought in the horizon; random: a per-customer share
    holdout_share: float = 0.25
    validation_share: float = 0.1  # random holdout: the share of each customer's training products tuning holds out
    models: tuple[str, ...] = ("als", "ease")  # the families tried; the champion is the best on validation
    rank: int = 16
    reg_param: float = 0.05
    alpha: float = 5.0
    max_iter: int = 15
    confidence: str = "linear"  # implicit ALS weighs a pair 1 + alpha * strength (linear) or * log(1 + strength)
    ease_reg: float = 100.0
    ease_max_items: int = 10_000  # EASE solves an items x items matrix on the driver; above this it is skipped
    tune: bool = True
    tune_metric: str = "ndcg"  # ndcg or precision, at top_k, on validation data
    tune_ranks: tuple[int, ...] = (8, 16, 32, 64, 128)
    tune_reg_params: tuple[float, ...] = (0.01, 0.05, 0.2, 1.0)
    tune_alphas: tuple[float, ...] = (1.0, 3.0, 10.0)
    tune_confidences: tuple[str, ...] = ("linear", "log")  # purchases only: a rating is seen once
    tune_max_iters: tuple[int, ...] = (15, 30)
    tune_ease_regs: tuple[float, ...] = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
    tune_blend_shares: tuple[float, ...] = (0.25, 0.5, 0.75)  # ALS's weight in a blend; empty: no blend
    tune_budget_seconds: float = 900.0  # no trial starts after this (the configured settings and blends still run)
    tune_max_customers: int = 20000
    max_per_category: int | None = None
    inactive_after_days: int | None = None
    cold_start_by: tuple[str, ...] = ("gender", "age_band")
    cold_start_min_customers: int = 20
    rating_rank: int = 8
    rating_reg_param: float = 0.1
    seed: int = 11


OBJECTIVES = ("retention", "growth")
VALUE_COLUMNS = ("lifetime_value", "predicted_spend")


@dataclass(frozen=True)
class CampaignConfig:
    """One campaign: who is eligible, what contacting a customer is worth, the budget and the offer.

    ``eligible`` is a Spark SQL condition over the campaign columns (see the README's
    Campaigns section): scores, predicted value and its percentile, segments, RFM,
    customer features and attributes. The expected value of a contact is
    ``churn_probability * success_rate * value - contact_cost`` for ``retention`` (the
    value kept by winning back a customer about to leave) and
    ``(1 - churn_probability) * success_rate * value - contact_cost`` for ``growth``
    (the value added by a customer who stays); only contacts worth more than
    ``min_expected_value`` are made, best first, within ``max_customers`` and
    ``max_cost`` (at least one must be set).
    """

    eligible: str
    objective: str = "retention"
    value: str = "lifetime_value"
    success_rate: float = 0.1
    contact_cost: float = 1.0
    min_expected_value: float = 0.0
    max_customers: int | None = None
    max_cost: float | None = None
    offers: int = 3
    exclude_anomalies: bool = True


def default_campaigns() -> dict[str, CampaignConfig]:
    """Return the demo's campaigns: win-back, loyalty and cross-sell."""
    return {
        "win_back": CampaignConfig(
            "churn_probability >= 0.5 AND lifetime_value_percentile >= 0.7", objective="retention",
            success_rate=0.15, contact_cost=2.0, max_customers=5000),
        "loyalty": CampaignConfig("rfm_segment = 'champions'", objective="growth", success_rate=0.05,
                                  contact_cost=0.5, max_customers=10000, offers=2),
        "cross_sell": CampaignConfig("tenure_days <= 180 AND frequency >= 1", objective="growth", success_rate=0.1,
                                     contact_cost=0.5, max_cost=2500.0),
    }


@dataclass(frozen=True)
class CampaignsConfig:
    """The campaigns the ``campaigns`` stage builds audiences for.

    A customer may be in several campaigns; campaigns listed in ``priority`` are
    exclusive, in that order: a customer chosen by one is not offered to the next.
    """

    definitions: Mapping[str, CampaignConfig] = field(default_factory=default_campaigns)
    priority: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    """The whole, validated configuration of one run."""

    as_of_date: dt.date
    paths: PathsConfig
    churn_horizon_days: int = 90
    spark: SparkConfig = field(default_factory=SparkConfig)
    sources: Mapping[str, SourceConfig] = field(default_factory=default_sources)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    campaigns: CampaignsConfig = field(default_factory=CampaignsConfig)

    @property
    def attribute_columns(self) -> list[str]:
        """Return the columns the customer source's attributes get (their snake_case names), in config order."""
        from crm_spark.schemas import attribute_column  # schemas imports pyspark; keep config light

        source = self.sources.get("customers")
        return [attribute_column(column) for column in source.attributes] if source else []

    @property
    def training_cutoff(self) -> dt.date:
        """Date that splits training features (before) from churn labels (after)."""
        return self.as_of_date - dt.timedelta(days=self.churn_horizon_days)

    def config_hash(self) -> str:
        """Return a short, stable hash of every resolved value."""
        text = json.dumps(as_dict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

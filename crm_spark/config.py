"""Typed configuration: YAML files and ``--set`` overrides into frozen dataclasses.

Every section is a frozen dataclass. :func:`load_config` reads a YAML file, applies
``key.sub=value`` overrides, and validates the result: an unknown key, a value of the
wrong type or a missing required value raises :class:`ConfigError` with one line that
names the key.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass(frozen=True)
class SparkConfig:
    """How the SparkSession is built.

    ``master`` applies only when the launcher (``spark-submit``) did not set one.
    """

    app_name: str = "crm-spark"
    master: str | None = "local[*]"
    shuffle_partitions: int = 8
    delta_package: str = "io.delta:delta-spark_4.2_2.13:4.4.0"
    ui_enabled: bool = False
    log_level: str = "WARN"
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


@dataclass(frozen=True)
class PrivacyConfig:
    """Secret for customer keys, and erasure.

    The secret is read from the environment variable ``secret_env``, else from
    ``secret_file``; with ``create_secret`` (the local demo) a missing file is created.
    Erasure VACUUMs touched tables with ``vacuum_retention_hours``; a value below
    Delta's safety limit (168 hours) needs ``allow_short_retention: true``.
    """

    secret_env: str = "CRM_SPARK_SECRET"
    secret_file: str = ".secrets/customer-key.secret"
    create_secret: bool = False
    vacuum_retention_hours: int = 168
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


SOURCE_FORMATS = ("csv", "json", "parquet", "delta")
ENCODINGS = ("UTF-8", "ISO-8859-1", "US-ASCII")
QUALITY_ACTIONS = ("warn", "fail")
EXPECTATION_PATTERN = re.compile(
    r"^(?P<dataset>[a-z_]+)\.(?P<column>[A-Za-z0-9_]+)\.(?P<metric>[a-z_]+)\s*(?P<op>>=|<=)\s*(?P<bound>[0-9.eE+-]+)$"
)


@dataclass(frozen=True)
class SourceConfig:
    """Where one raw source lives, how to read it and how its columns map onto canonical names.

    ``path`` is relative to ``paths.raw_dir`` unless absolute or a URL; globs are allowed.
    ``columns`` maps a canonical column to the source's column (columns named canonically
    need no entry). ``formats`` lists date/time patterns per canonical column (``epoch``
    for Unix seconds). ``constants`` fills canonical columns the source lacks. For CSV
    without a header, ``fields`` names the columns in file order.
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
    rating_min: int = 1
    rating_max: int = 5


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

    expectations: tuple[str, ...] = (
        "customers.customer_id.null_share <= 0.0",
        "customers.email.valid_share >= 0.9",
    )
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
    validation customers for ``threshold_objective``. Customer value models learn
    next-horizon spend capped at the training customers' ``clv_label_cap_quantile``
    (a few huge orders would otherwise dominate the squared error); they are evaluated
    against the uncapped spend.
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
    rank: int = 16
    reg_param: float = 0.05
    alpha: float = 5.0
    max_iter: int = 15
    tune: bool = True
    tune_metric: str = "ndcg"  # ndcg or precision, at top_k, on validation data
    tune_ranks: tuple[int, ...] = (4, 8, 16, 32, 64)
    tune_reg_params: tuple[float, ...] = (0.01, 0.05, 0.2, 1.0)
    tune_alphas: tuple[float, ...] = (1.0, 3.0, 10.0)
    tune_max_customers: int = 20000
    max_per_category: int | None = None
    inactive_after_days: int | None = None
    cold_start_by: tuple[str, ...] = ("gender", "age_band")
    cold_start_min_customers: int = 20
    rating_rank: int = 8
    rating_reg_param: float = 0.1
    seed: int = 11


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

    @property
    def training_cutoff(self) -> dt.date:
        """Date that splits training features (before) from churn labels (after)."""
        return self.as_of_date - dt.timedelta(days=self.churn_horizon_days)

    def config_hash(self) -> str:
        """Return a short, stable hash of every resolved value."""
        text = json.dumps(as_dict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def as_dict(config: Any) -> dict[str, Any]:
    """Return a dataclass as nested plain dicts (dates stay dates)."""
    return dataclasses.asdict(config)


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys, for logging every resolved value."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and name != "spark.extra":
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML file, apply ``key.sub=value`` overrides and validate.

    Args:
        path: YAML file whose top level matches :class:`Config`.
        overrides: strings like ``generate.customers=5000``; the value is parsed as YAML.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the file is missing or not a mapping, an override is malformed, a
            key is unknown, a value has the wrong type, or a required value is absent.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with path.open(encoding="utf-8") as handle:
        raw = yaml.safe_load(handle) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{override}' must look like key.sub=value")
        _set_dotted(raw, key.strip(), yaml.safe_load(text) if text.strip() else None)
    config = build(Config, raw)
    validate(config)
    return config


# Inclusive lower and upper bounds of numeric settings; None leaves a side open.
_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "churn_horizon_days": (1, 3650),
    "spark.shuffle_partitions": (1, None),
    "generate.customers": (10, None),
    "generate.products": (20, None),
    "generate.history_days": (180, None),
    "generate.duplicate_share": (0.0, 0.5),
    "generate.invalid_share": (0.0, 0.5),
    "generate.malformed_share": (0.0, 0.5),
    "generate.anomaly_share": (0.0, 0.5),
    "generate.next_day_share": (0.0, 1.0),
    "generate.partitions": (1, None),
    "ingest.max_field_chars": (16, None),
    "privacy.vacuum_retention_hours": (0, None),
    "prepare.name_similarity": (0.0, 1.0),
    "prepare.max_block_size": (2, None),
    "select.buckets": (2, 100),
    "select.fpr": (0.0, 1.0),
    "select.max_correlation": (0.0, 1.0),
    "train.validation_share": (0.01, 0.5),
    "train.test_share": (0.01, 0.5),
    "train.tvs_train_ratio": (0.5, 0.95),
    "train.gbt_max_iter": (1, 1000),
    "train.clv_label_cap_quantile": (0.5, 1.0),
    "train.clv_gbt_max_iter": (1, 1000),
    "train.clv_gbt_max_depth": (1, 30),
    "train.segment_k_min": (2, 100),
    "train.segment_k_max": (2, 100),
    "train.segment_sample": (100, None),
    "train.segment_restarts": (1, 20),
    "train.anomaly_z": (1.0, None),
    "train.customer_anomaly_z": (1.0, None),
    "train.anomaly_scale_floor": (0.01, None),
    "recommend.top_k": (1, 1000),
    "recommend.rank": (1, 1000),
    "recommend.reg_param": (0.0, None),
    "recommend.alpha": (0.0, None),
    "recommend.max_iter": (1, 1000),
    "recommend.rating_rank": (1, 1000),
    "recommend.rating_reg_param": (0.0, None),
    "recommend.holdout_share": (0.05, 0.9),
    "recommend.tune_max_customers": (10, None),
    "recommend.cold_start_min_customers": (1, None),
}
SEGMENT_ALGORITHMS = ("kmeans", "bisecting_kmeans")
CLASSIFIERS = ("logistic_regression", "decision_tree", "gradient_boosted_trees")
# The allowed values of settings that name a choice.
CHOICES = {
    "select.correlation_method": ("pearson", "spearman"),
    "train.label": ("auto", "horizon", "column"),
    "train.class_weights": ("balanced", "none"),
    "train.threshold_objective": ("f1", "accuracy"),
    "recommend.interactions": ("auto", "purchases", "ratings"),
    "recommend.feedback": ("implicit", "explicit"),
    "recommend.holdout": ("time", "random"),
    "recommend.tune_metric": ("ndcg", "precision"),
    "quality.on_failure": QUALITY_ACTIONS,
}
# Grids that must list at least one value, each within the bounds given.
GRIDS: dict[str, tuple[float, float | None]] = {
    "train.lr_reg_params": (0.0, None),
    "train.lr_elastic_nets": (0.0, 1.0),
    "train.dt_max_depths": (1, 30),
    "train.dt_min_instances": (1, None),
    "train.gbt_max_depths": (1, 30),
}


def validate(config: Config) -> None:
    """Check value ranges that types alone cannot express.

    Args:
        config: a built configuration.

    Raises:
        ConfigError: naming the first out-of-range key.
    """
    values = flatten(as_dict(config))
    for key, (low, high) in _BOUNDS.items():
        value = values[key]
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(
                f"config key '{key}' must be within [{low}, {high if high is not None else 'inf'}], "
                f"got {value!r}"
            )
    for key, choices in CHOICES.items():
        if values[key] not in choices:
            raise ConfigError(f"config key '{key}' must be one of {choices}, got {values[key]!r}")
    for key, (low, high) in GRIDS.items():
        grid = values[key]
        if not grid or min(grid) < low or (high is not None and max(grid) > high):
            upper = high if high is not None else "inf"
            raise ConfigError(f"config key '{key}' must list values within [{low}, {upper}], got {list(grid)}")
    if config.train.validation_share + config.train.test_share >= 0.8:
        raise ConfigError("config keys 'train.validation_share' + 'train.test_share' must be < 0.8")
    _validate_sources(config.sources)
    _validate_paths(config)
    if config.privacy.vacuum_retention_hours < 168 and not config.privacy.allow_short_retention:
        raise ConfigError("config key 'privacy.vacuum_retention_hours' is below Delta's 168-hour safety limit; "
                          "set privacy.allow_short_retention: true to allow it")
    for expectation in config.quality.expectations:
        if not EXPECTATION_PATTERN.match(expectation):
            raise ConfigError(f"config key 'quality.expectations' has '{expectation}', expected "
                              "'dataset.column.metric >= number' (or <=)")
    _validate_recommend(config.recommend)
    if config.train.segment_k_min > config.train.segment_k_max:
        raise ConfigError("config key 'train.segment_k_min' must not exceed 'train.segment_k_max'")
    for key, known in (("segment_algorithms", SEGMENT_ALGORITHMS), ("classifiers", CLASSIFIERS)):
        listed = getattr(config.train, key)
        if not listed or set(listed) - set(known):
            raise ConfigError(f"config key 'train.{key}' must list some of {known}, got {list(listed)}")


def _validate_recommend(cfg: RecommendConfig) -> None:
    """Check the recommendation grids and serving rules."""
    for name in ("tune_ranks", "tune_reg_params", "tune_alphas"):
        values = getattr(cfg, name)
        if not values or min(values) <= 0:
            raise ConfigError(f"config key 'recommend.{name}' must list positive values, got {list(values)}")
    for name in ("recency_half_life_days", "max_per_category", "inactive_after_days"):
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise ConfigError(f"config key 'recommend.{name}' must be positive or null, got {value!r}")
    if cfg.feedback == "explicit" and cfg.interactions == "purchases":
        raise ConfigError("config key 'recommend.feedback' is explicit, which needs ratings: "
                          "set recommend.interactions to ratings or auto")


def _under(path: str, roots: Sequence[str]) -> bool:
    """Return whether ``path`` (a local path or URL) lies under one of ``roots``."""
    if "://" in path:
        if ".." in path.split("/"):
            return False
        return any("://" in root and path.rstrip("/").startswith(root.rstrip("/")) for root in roots)
    resolved = Path(path).expanduser().resolve()
    return any("://" not in root and resolved.is_relative_to(Path(root).expanduser().resolve()) for root in roots)


def _validate_paths(config: Config) -> None:
    """Refuse paths outside ``paths.allowed_roots`` and source paths that leave ``raw_dir``."""
    paths, roots = config.paths, config.paths.allowed_roots
    for name in ("raw_dir", "lakehouse_dir", "checkpoint_dir", "truth_dir"):
        value = getattr(paths, name)
        if value is not None and not _under(value, roots):
            raise ConfigError(f"config key 'paths.{name}' ({value}) is outside the allowed roots "
                              f"{list(roots)} (paths.allowed_roots)")
    for source, spec in config.sources.items():
        local_relative = "://" not in spec.path and not Path(spec.path).is_absolute()
        full = f"{paths.raw_dir.rstrip('/')}/{spec.path}" if local_relative else spec.path
        inside = _under(full, [paths.raw_dir]) if local_relative else _under(full, roots)
        if not inside:
            raise ConfigError(f"config key 'sources.{source}.path' ({spec.path}) leaves "
                              f"{'paths.raw_dir' if local_relative else 'the allowed roots'}")


def _validate_sources(sources: Mapping[str, SourceConfig]) -> None:
    """Check source names, formats, encodings and that mapped columns are canonical."""
    from crm_spark.schemas import (
        CANONICAL_COLUMNS,  # schemas imports pyspark; keep config light
    )

    if not sources:
        raise ConfigError(f"config key 'sources' must name at least one of {', '.join(CANONICAL_COLUMNS)}")
    for name, source in sources.items():
        key = f"sources.{name}"
        if name not in CANONICAL_COLUMNS:
            raise ConfigError(f"unknown source '{key}' (known: {', '.join(CANONICAL_COLUMNS)})")
        if source.format not in SOURCE_FORMATS:
            raise ConfigError(f"config key '{key}.format' must be one of {SOURCE_FORMATS}, got {source.format!r}")
        if source.encoding not in ENCODINGS:
            raise ConfigError(f"config key '{key}.encoding' must be one of {ENCODINGS}, got {source.encoding!r}")
        if len(source.delimiter) != 1:
            raise ConfigError(f"config key '{key}.delimiter' must be one character, got {source.delimiter!r}")
        if source.format == "csv" and not source.header and not source.fields:
            raise ConfigError(f"config key '{key}.fields' must list the columns of a CSV without a header")
        for section in ("columns", "formats", "constants"):
            unknown = sorted(set(getattr(source, section)) - set(CANONICAL_COLUMNS[name]))
            if unknown:
                raise ConfigError(f"config key '{key}.{section}.{unknown[0]}' is not a canonical column of "
                                  f"{name} (known: {', '.join(CANONICAL_COLUMNS[name])})")


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` inside nested dicts, creating levels as needed."""
    *parents, last = dotted.split(".")
    node = target
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[last] = value


def build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and types.

    Args:
        cls: a dataclass type.
        values: the raw mapping for it.
        prefix: dotted path of ``cls`` inside the whole config, for messages.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: naming the first unknown, missing or mistyped key.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"'{prefix.rstrip('.') or 'config'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}' (known: {', '.join(sorted(fields))})"
        )
    kwargs: dict[str, Any] = {}
    for name, spec in fields.items():
        key = f"{prefix}{name}"
        if name not in values:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing required config key '{key}'")
            continue
        kwargs[name] = _coerce(hints[name], values[name], key)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Check ``value`` against type ``hint``; convert only where lossless."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]
        return _coerce(inner, value, key)
    if dataclasses.is_dataclass(hint):
        return build(hint, value if value is not None else {}, f"{key}.")
    if origin in (Mapping, dict, collections.abc.Mapping) or hint is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        args = typing.get_args(hint)
        if not args or args[1] is str:
            return {str(k): str(v) for k, v in value.items()}
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        (inner, _) = typing.get_args(hint)
        return tuple(_coerce(inner, item, f"{key}[{i}]") for i, item in enumerate(value))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str) and value:
            return value
    elif hint is dt.date:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
    kind = getattr(hint, "__name__", str(hint))
    if hint is dt.date:
        kind = "date (YYYY-MM-DD)"
    elif hint is str:
        kind = "non-empty string"
    raise ConfigError(f"config key '{key}' must be {kind}, got {value!r}")

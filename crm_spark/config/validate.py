"""Checks that types alone cannot express: value ranges, choices, grids, sources and paths."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from crm_spark.config.coerce import ConfigError, as_dict, did_you_mean, flatten
from crm_spark.config.sections import (
    DELTA_SAFE_RETENTION_HOURS,
    EXPECTATION_PATTERN,
    OBJECTIVES,
    VALUE_COLUMNS,
    CampaignsConfig,
    Config,
    RecommendConfig,
    SourceConfig,
)

SOURCE_FORMATS = ("csv", "json", "parquet", "delta")
ENCODINGS = ("UTF-8", "ISO-8859-1", "US-ASCII")
QUALITY_ACTIONS = ("warn", "fail")

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
    "train.clv_period_days": (1, 31),
    "train.clv_penalizer": (0.0, None),
    "train.clv_months": (1, 600),
    "train.clv_monthly_discount_rate": (0.0, 1.0),
    "train.clv_margin": (0.0, 1.0),
    "train.clv_series_terms": (10, 100_000),
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
    "recommend.validation_share": (0.01, 0.9),
    "recommend.tune_max_customers": (10, None),
    "recommend.ease_reg": (0.0, None),
    "recommend.ease_max_items": (1, 100_000),
    "recommend.tune_budget_seconds": (0.0, None),
    "recommend.cold_start_min_customers": (1, None),
}
SEGMENT_ALGORITHMS = ("kmeans", "bisecting_kmeans")
RECOMMENDERS = ("als", "ease")
CONFIDENCES = ("linear", "log")
CLASSIFIERS = ("logistic_regression", "decision_tree", "gradient_boosted_trees")
# The allowed values of settings that name a choice.
CHOICES = {
    "select.correlation_method": ("pearson", "spearman"),
    "train.label": ("auto", "horizon", "column"),
    "train.class_weights": ("balanced", "none"),
    "train.threshold_objective": ("f1", "accuracy"),
    "recommend.interactions": ("auto", "purchases", "ratings"),
    "recommend.confidence": CONFIDENCES,
    "recommend.feedback": ("implicit", "explicit"),
    "recommend.holdout": ("time", "random"),
    "recommend.tune_metric": ("ndcg", "precision"),
    "quality.on_failure": QUALITY_ACTIONS,
    "spark.log_level": ("ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF", "TRACE"),
}
# The masters Spark accepts: local modes, a standalone cluster, YARN and Kubernetes.
MASTER_PATTERN = re.compile(r"^(local(\[(\*|[1-9]\d*)(,\s*[1-9]\d*)?\])?|local-cluster\[\d+,\s*\d+,\s*\d+\]"
                            r"|spark://\S+|yarn|k8s://\S+)$")
# Settings that hold a regular expression.
PATTERNS = ("prepare.phone_national_pattern",)
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
            raise ConfigError(f"config key '{key}' must be one of {choices}, got {values[key]!r}"
                              f"{did_you_mean(str(values[key]), choices)}")
    master = config.spark.master
    if master is not None and not MASTER_PATTERN.match(master):
        raise ConfigError(f"config key 'spark.master' must be local, local[N], local[*], spark://HOST:PORT, yarn "
                          f"or k8s://URL, got {master!r}{did_you_mean(master, ('local[*]', 'local', 'yarn'))}")
    for key in PATTERNS:
        try:
            re.compile(values[key])
        except re.error as error:
            raise ConfigError(f"config key '{key}' is not a valid regular expression: {error} "
                              f"in {values[key]!r}") from None
    for key, (low, high) in GRIDS.items():
        grid = values[key]
        if not grid or min(grid) < low or (high is not None and max(grid) > high):
            upper = high if high is not None else "inf"
            raise ConfigError(f"config key '{key}' must list values within [{low}, {upper}], got {list(grid)}")
    if not config.ingest.rating_min < config.ingest.rating_max:
        raise ConfigError(f"config key 'ingest.rating_max' ({config.ingest.rating_max}) must exceed "
                          f"'ingest.rating_min' ({config.ingest.rating_min})")
    if config.train.validation_share + config.train.test_share >= 0.8:
        raise ConfigError("config keys 'train.validation_share' + 'train.test_share' must be < 0.8")
    _validate_sources(config.sources)
    _validate_paths(config)
    retention = config.privacy.vacuum_retention_hours
    if retention < DELTA_SAFE_RETENTION_HOURS and not config.privacy.allow_short_retention:
        raise ConfigError(f"config key 'privacy.vacuum_retention_hours' is below Delta's "
                          f"{DELTA_SAFE_RETENTION_HOURS}-hour safety limit; set privacy.allow_short_retention: true "
                          "to allow it")
    _validate_expectations(config)
    _validate_recommend(config.recommend)
    _validate_campaigns(config.campaigns, config.recommend.top_k)
    if config.train.segment_k_min > config.train.segment_k_max:
        raise ConfigError("config key 'train.segment_k_min' must not exceed 'train.segment_k_max'")
    for key, known in (("segment_algorithms", SEGMENT_ALGORITHMS), ("classifiers", CLASSIFIERS)):
        listed = getattr(config.train, key)
        if not listed or set(listed) - set(known):
            raise ConfigError(f"config key 'train.{key}' must list some of {known}, got {list(listed)}")


def _validate_expectations(config: Config) -> None:
    """Check each expectation's form, and that its dataset is a configured source with that column."""
    from crm_spark.schemas import BRONZE_SCHEMAS  # schemas imports pyspark; keep config light

    for expectation in config.quality.expectations:
        match = EXPECTATION_PATTERN.match(expectation)
        if not match:
            raise ConfigError(f"config key 'quality.expectations' has '{expectation}', expected "
                              "'dataset.column.metric >= number' (or <=)")
        dataset, column = match["dataset"], match["column"]
        if dataset == "rules":
            continue
        if dataset not in config.sources:
            raise ConfigError(f"config key 'quality.expectations' has '{expectation}', but no source is named "
                              f"'{dataset}'{did_you_mean(dataset, config.sources)} (sources: "
                              f"{', '.join(config.sources)}; or 'rules')")
        columns = ["*", *BRONZE_SCHEMAS[dataset].fieldNames(), *(config.attribute_columns * (dataset == "customers"))]
        if column not in columns:
            raise ConfigError(f"config key 'quality.expectations' has '{expectation}', but source '{dataset}' has "
                              f"no column '{column}'{did_you_mean(column, columns)}")


def _validate_recommend(cfg: RecommendConfig) -> None:
    """Check the recommendation grids and serving rules."""
    for name in ("tune_ranks", "tune_reg_params", "tune_alphas", "tune_max_iters", "tune_ease_regs"):
        values = getattr(cfg, name)
        if not values or min(values) <= 0:
            raise ConfigError(f"config key 'recommend.{name}' must list positive values, got {list(values)}")
    for name, known in (("models", RECOMMENDERS), ("tune_confidences", CONFIDENCES)):
        listed = getattr(cfg, name)
        if not listed or set(listed) - set(known) or len(set(listed)) < len(listed):
            raise ConfigError(f"config key 'recommend.{name}' must list some of {known} once each, got {list(listed)}")
    if any(not 0 < share < 1 for share in cfg.tune_blend_shares):
        raise ConfigError(f"config key 'recommend.tune_blend_shares' must list values between 0 and 1 (exclusive), "
                          f"got {list(cfg.tune_blend_shares)}")
    for name in ("recency_half_life_days", "max_per_category", "inactive_after_days"):
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise ConfigError(f"config key 'recommend.{name}' must be positive or null, got {value!r}")
    if cfg.feedback == "explicit" and cfg.interactions == "purchases":
        raise ConfigError("config key 'recommend.feedback' is explicit, which needs ratings: "
                          "set recommend.interactions to ratings or auto")


CAMPAIGN_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _validate_campaigns(cfg: CampaignsConfig, top_k: int) -> None:
    """Check campaign names (they name export files), objectives, rates, budgets, offers and the priority order."""
    for name, campaign in cfg.definitions.items():
        key = f"campaigns.definitions.{name}"
        if not CAMPAIGN_NAME.fullmatch(name):
            raise ConfigError(f"config key '{key}': a campaign name must be lower-case letters, digits and _, "
                              "starting with a letter (it names the export files)")
        for option, known in (("objective", OBJECTIVES), ("value", VALUE_COLUMNS)):
            value = getattr(campaign, option)
            if value not in known:
                raise ConfigError(f"config key '{key}.{option}' must be one of {known}, got {value!r}"
                                  f"{did_you_mean(value, known)}")
        if not 0 < campaign.success_rate <= 1:
            raise ConfigError(f"config key '{key}.success_rate' must be in (0, 1], got {campaign.success_rate}")
        if campaign.contact_cost < 0:
            raise ConfigError(f"config key '{key}.contact_cost' must not be negative, got {campaign.contact_cost}")
        if campaign.max_customers is None and campaign.max_cost is None:
            raise ConfigError(f"config key '{key}' needs a budget: set max_customers, max_cost or both")
        if campaign.max_customers is not None and campaign.max_customers < 1:
            raise ConfigError(f"config key '{key}.max_customers' must be at least 1, got {campaign.max_customers}")
        if campaign.max_cost is not None and (campaign.max_cost <= 0 or campaign.contact_cost == 0):
            raise ConfigError(f"config key '{key}.max_cost' needs a positive max_cost and contact_cost, got "
                              f"{campaign.max_cost} and {campaign.contact_cost}")
        if not 0 <= campaign.offers <= top_k:
            raise ConfigError(f"config key '{key}.offers' must be within [0, recommend.top_k = {top_k}], "
                              f"got {campaign.offers}")
    for name in cfg.priority:
        if name not in cfg.definitions:
            raise ConfigError(f"config key 'campaigns.priority' names '{name}', which is not a campaign"
                              f"{did_you_mean(name, cfg.definitions)} (campaigns: {', '.join(cfg.definitions)})")
    if len(set(cfg.priority)) < len(cfg.priority):
        raise ConfigError(f"config key 'campaigns.priority' names a campaign twice: {list(cfg.priority)}")


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
    for key, value in (("paths.raw_dir", paths.raw_dir), ("paths.lakehouse_dir", paths.lakehouse_dir),
                       ("paths.checkpoint_dir", paths.checkpoint_dir), ("paths.truth_dir", paths.truth_dir),
                       ("paths.export_dir", paths.export_dir), ("paths.report_dir", paths.report_dir),
                       ("privacy.secret_file", config.privacy.secret_file)):
        if value is not None and not _under(value, roots):
            raise ConfigError(f"config key '{key}' ({value}) is outside the allowed roots "
                              f"{list(roots)} (paths.allowed_roots)")
    for source, spec in config.sources.items():
        local_relative = "://" not in spec.path and not Path(spec.path).is_absolute()
        full = f"{paths.raw_dir.rstrip('/')}/{spec.path}" if local_relative else spec.path
        inside = _under(full, [paths.raw_dir]) if local_relative else _under(full, roots)
        if not inside:
            raise ConfigError(f"config key 'sources.{source}.path' ({spec.path}) leaves "
                              f"{'paths.raw_dir' if local_relative else 'the allowed roots'}")


def _validate_sources(sources: Mapping[str, SourceConfig]) -> None:
    """Check source names, formats, encodings, that mapped columns are canonical, and the attributes."""
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
            allowed = set(CANONICAL_COLUMNS[name]) | (set(source.attributes) if section == "formats" else set())
            unknown = sorted(set(getattr(source, section)) - allowed)
            if unknown:
                raise ConfigError(f"config key '{key}.{section}.{unknown[0]}' is not a canonical column of "
                                  f"{name} (known: {', '.join(CANONICAL_COLUMNS[name])})")
        _validate_attributes(name, source)


def _validate_attributes(name: str, source: SourceConfig) -> None:
    """Check that attributes belong to the customer source, have a known type, and are neither personal data
    nor a column that already has a meaning."""
    from crm_spark.schemas import (
        ATTRIBUTE_TYPES,
        CANONICAL_COLUMNS,
        CATEGORY_SHARE_PREFIX,
        attribute_column,
        looks_personal,
        reserved_columns,
    )

    if source.attributes and name != "customers":
        raise ConfigError(f"config key 'sources.{name}.attributes': only the customers source has attributes")
    taken: dict[str, str] = {}
    mapped = {column.lower() for column in source.columns.values()}
    for column, kind in source.attributes.items():
        key = f"sources.{name}.attributes.{column}"
        feature = attribute_column(column)
        if kind is not None and kind not in ATTRIBUTE_TYPES:
            raise ConfigError(f"config key '{key}' must be one of {ATTRIBUTE_TYPES} or empty, got {kind!r}")
        if looks_personal(column):
            raise ConfigError(f"config key '{key}' names personal data; personal data stays out of features and "
                              "gold tables: leave it out of the attributes")
        if column.lower() in mapped or feature in CANONICAL_COLUMNS[name]:
            raise ConfigError(f"config key '{key}' is already a canonical column of {name}; map it under "
                              f"sources.{name}.columns instead")
        if feature in reserved_columns() or feature.startswith(CATEGORY_SHARE_PREFIX):
            raise ConfigError(f"config key '{key}' would become the feature '{feature}', which the pipeline "
                              "computes itself; rename the column in the source")
        if feature in taken:
            raise ConfigError(f"config key '{key}' and '{taken[feature]}' would both become the feature "
                              f"'{feature}'")
        taken[feature] = column

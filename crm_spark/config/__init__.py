"""Typed configuration: YAML files and ``--set`` overrides into frozen dataclasses.

Every section is a frozen dataclass (:mod:`~crm_spark.config.sections`).
:func:`load_config` reads a YAML file, applies ``key.sub=value`` overrides, builds the
dataclasses (:mod:`~crm_spark.config.coerce`) and validates the result
(:mod:`~crm_spark.config.validate`): an unknown key, a value of the wrong type or range,
or a missing required value raises :class:`ConfigError` with one line that names the key.
"""

from crm_spark.config.coerce import ConfigError, as_dict, flatten
from crm_spark.config.load import load_config
from crm_spark.config.sections import (
    DELTA_SAFE_RETENTION_HOURS,
    EXPECTATION_PATTERN,
    CampaignConfig,
    CampaignsConfig,
    Config,
    GenerateConfig,
    IngestConfig,
    PathsConfig,
    PrepareConfig,
    PrivacyConfig,
    QualityConfig,
    RecommendConfig,
    SelectConfig,
    SourceConfig,
    SparkConfig,
    TrainConfig,
)

__all__ = [
    "DELTA_SAFE_RETENTION_HOURS", "EXPECTATION_PATTERN", "CampaignConfig", "CampaignsConfig",
    "Config", "ConfigError", "GenerateConfig", "IngestConfig",
    "PathsConfig", "PrepareConfig", "PrivacyConfig", "QualityConfig", "RecommendConfig", "SelectConfig",
    "SourceConfig", "SparkConfig", "TrainConfig", "as_dict", "flatten", "load_config",
]

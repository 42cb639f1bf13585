"""Loading: a YAML file plus ``key.sub=value`` overrides into a validated :class:`Config`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import yaml

from crm_spark.config.coerce import ConfigError, build, set_dotted
from crm_spark.config.sections import Config
from crm_spark.config.validate import validate


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
        set_dotted(raw, key.strip(), yaml.safe_load(text) if text.strip() else None)
    config = build(Config, raw)
    validate(config)
    return config

"""Loading: a YAML file plus ``key.sub=value`` overrides into a validated :class:`Config`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml

from crm_spark.config.coerce import SPARK_EXTRA, ConfigError, build, set_dotted
from crm_spark.config.sections import Config
from crm_spark.config.validate import validate


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping and reads dates as text.

    A repeated key would silently drop the first block's values; dates stay text so an
    impossible one (``2025-02-30``) is reported by the config check instead of YAML.
    """


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """Build a mapping, refusing a key that appears twice."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key '{key}' appears twice in one mapping (first on line {seen[key] + 1}); "
                "the second would replace the first", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse_yaml(text: str, origin: str) -> Any:
    """Parse YAML text strictly (see :class:`_StrictLoader`).

    Args:
        text: the YAML document.
        origin: where it came from (a file name or ``--set key``), for messages.

    Raises:
        ConfigError: one line naming ``origin``, the line and column, and the problem.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark else origin
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        context = getattr(error, "context", None)
        raise ConfigError(f"{where}: invalid YAML: {problem}{f' ({context})' if context else ''}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a config file into a plain mapping (no defaults, no checks beyond YAML and encoding).

    Raises:
        ConfigError: the path is missing or a folder, the file is not UTF-8, not YAML or
            not a mapping at the top level.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config path {path} is a folder; give a YAML file, e.g. {path / 'local.yaml'}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: config file is not UTF-8 (byte 0x{data[error.start]:02x} at offset "
                          f"{error.start}); save it as UTF-8") from None
    raw = parse_yaml(text, str(path)) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> None:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw mapping in place.

    ``spark.extra.<setting>=value`` sets one Spark setting (whose name holds dots itself)
    beside the config's others; ``spark.extra={...}`` replaces them all.

    Raises:
        ConfigError: an override is malformed or its value is not valid YAML.
    """
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{override}' must look like key.sub=value")
        try:
            value = parse_yaml(text, f"--set {key.strip()}") if text.strip() else None
        except ConfigError as error:
            raise ConfigError(f"{error}; a value that starts with [, {{ or a quote is read as YAML: quote it as "
                              f"--set '{key.strip()}=\"...\"'") from None
        key = key.strip()
        setting = key.removeprefix(f"{SPARK_EXTRA}.")
        if setting == key:
            set_dotted(raw, key, value)
            continue
        spark = raw.get("spark")
        extra = spark.get("extra") if isinstance(spark, dict) else None
        if extra is not None and not isinstance(extra, dict):
            raise ConfigError(f"'{SPARK_EXTRA}' must be a mapping to set {key}")
        set_dotted(raw, SPARK_EXTRA, {**(extra or {}), setting: value})


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML file, apply ``key.sub=value`` overrides and validate.

    Args:
        path: YAML file whose top level matches :class:`Config`.
        overrides: strings like ``generate.customers=5000``; the value is parsed as YAML.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the file is missing, unreadable or not a mapping, an override is
            malformed, a key is unknown or repeated, a value has the wrong type or range,
            or a required value is absent.
    """
    raw = read_config_file(path)
    apply_overrides(raw, overrides)
    config = build(Config, raw)
    validate(config)
    return config

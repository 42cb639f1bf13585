"""Generic conversion between YAML mappings and frozen dataclasses, checking keys and types."""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import difflib
import math
import re
import types
import typing
from typing import Any, Iterable, Mapping

# Spark's own settings: a mapping whose keys hold dots, never split into levels.
SPARK_EXTRA = "spark.extra"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


def as_dict(config: Any) -> dict[str, Any]:
    """Return a dataclass as nested plain dicts (dates stay dates)."""
    return dataclasses.asdict(config)


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys, for logging every resolved value."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and name != SPARK_EXTRA:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
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
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'{did_you_mean(str(unknown[0]), fields)}"
                          f" (known: {', '.join(sorted(fields))})")
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
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
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
            except ValueError as error:
                if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                    raise ConfigError(f"config key '{key}' is not a calendar date: {value!r} ({error})") from None
    kind = getattr(hint, "__name__", str(hint))
    if hint is dt.date:
        kind = "date (YYYY-MM-DD)"
    elif hint is str:
        kind = "non-empty string"
    elif hint is float:
        kind = "finite number"
    raise ConfigError(f"config key '{key}' must be {kind}, got {value!r}")

"""Pseudonymous keys: HMAC-SHA256 with a secret that never appears in config, logs or plans.

The secret comes from an environment variable or a secret file. The keyed hash runs
as a vectorized UDF on purpose: Spark's built-in hashes would need the key as a
literal, which shows in query plans (Spark UI, ``explain``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Callable

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from crm_spark.config import PrivacyConfig

log = logging.getLogger(__name__)

MIN_SECRET_BYTES = 16


class SecretError(RuntimeError):
    """No usable secret for customer keys."""


def load_secret(cfg: PrivacyConfig) -> bytes:
    """Return the key secret: the environment variable if set, else the secret file.

    With ``cfg.create_secret`` (the local demo) a missing file is created with a
    random secret, readable by its owner only; its location is logged, never its value.

    Raises:
        SecretError: no secret is available, or it is shorter than 16 bytes.
    """
    value = os.environ.get(cfg.secret_env, "").strip()
    path = Path(cfg.secret_file).expanduser()
    if not value and not path.is_file() and cfg.create_secret:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        log.warning("created a new secret for customer keys at %s: keep it (keys change without it) and never "
                    "commit it", path)
    if not value and path.is_file():
        value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise SecretError(f"no secret for customer keys: set the environment variable {cfg.secret_env} or "
                          f"create the file {path} (privacy.secret_file)")
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise SecretError(f"the secret for customer keys must be at least {MIN_SECRET_BYTES} bytes long")
    return value.encode()


def id_hash(secret: bytes, value: str) -> str:
    """Return the HMAC-SHA256 hex digest of one text under ``secret``, as :func:`keyed_hash` computes it."""
    return hmac.new(secret, value.encode("utf-8"), hashlib.sha256).hexdigest()


def keyed_hash(secret: bytes) -> Callable[[Column], Column]:
    """Return a function mapping a string column to its HMAC-SHA256 hex digest under ``secret``."""

    @F.pandas_udf(StringType())
    def hmac_sha256(values: pd.Series) -> pd.Series:
        return values.map(
            lambda v: None if v is None else id_hash(secret, v))

    return hmac_sha256

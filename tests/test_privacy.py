"""Key secret, keyed hashes, erasure requests and path hardening."""

from __future__ import annotations

import hashlib
import hmac
import stat

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from crm_spark import privacy
from crm_spark.config import ConfigError, PrivacyConfig, load_config
from crm_spark.stages import erase

from .test_config import MINIMAL


def test_secret_comes_from_env_then_file_and_demo_creates_one(tmp_path, monkeypatch):
    path = tmp_path / "keys" / "secret"
    cfg = PrivacyConfig(secret_env="TEST_CRM_SECRET", secret_file=str(path))
    monkeypatch.delenv("TEST_CRM_SECRET", raising=False)
    with pytest.raises(privacy.SecretError, match="set the environment variable TEST_CRM_SECRET or create the file"):
        privacy.load_secret(cfg)
    created = privacy.load_secret(PrivacyConfig(secret_env="TEST_CRM_SECRET", secret_file=str(path),
                                                create_secret=True))
    assert len(created) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert privacy.load_secret(cfg) == created
    monkeypatch.setenv("TEST_CRM_SECRET", "from-the-environment-123")
    assert privacy.load_secret(cfg) == b"from-the-environment-123"
    monkeypatch.setenv("TEST_CRM_SECRET", "short")
    with pytest.raises(privacy.SecretError, match="at least 16 bytes"):
        privacy.load_secret(cfg)


def test_keyed_hash_is_hmac_sha256(spark):
    secret = b"0123456789abcdef-secret"
    ids = spark.createDataFrame([("C1",), ("Ünïcode",), (None,)], "id string")
    result = ids.select("id", privacy.keyed_hash(secret)(F.col("id")).alias("h"))
    expected = spark.createDataFrame(
        [(v, None if v is None else hmac.new(secret, v.encode(), hashlib.sha256).hexdigest())
         for v in ("C1", "Ünïcode", None)], "id string, h string")
    assertDataFrameEqual(result, expected)
    # The hash the erasure log keeps of an id is the same keyed hash.
    assert privacy.id_hash(secret, "Ünïcode") == hmac.new(secret, "Ünïcode".encode(), hashlib.sha256).hexdigest()


def test_erasure_request_ids(tmp_path):
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("C3\n\n C1 \nC2\n")
    assert erase.read_ids(["C1,C9", "C4"], str(ids_file)) == ["C1", "C2", "C3", "C4", "C9"]
    with pytest.raises(erase.ErasureError, match="no customer ids given"):
        erase.read_ids([" , "], None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["paths.lakehouse_dir=../elsewhere"], "config key 'paths.lakehouse_dir' (../elsewhere) is outside"),
        (["paths.raw_dir=/etc"], "config key 'paths.raw_dir' (/etc) is outside the allowed roots"),
        (["paths.raw_dir=s3://bucket/raw"], "config key 'paths.raw_dir' (s3://bucket/raw) is outside"),
        (["sources={orders: {path: ../../secrets, format: json}}"],
         "config key 'sources.orders.path' (../../secrets) leaves paths.raw_dir"),
        (["sources={orders: {path: /etc/passwd, format: csv}}"],
         "config key 'sources.orders.path' (/etc/passwd) leaves the allowed roots"),
        (["privacy.vacuum_retention_hours=0"], "config key 'privacy.vacuum_retention_hours' is below Delta's"),
    ],
)
def test_paths_stay_under_allowed_roots(tmp_path, monkeypatch, overrides, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(MINIMAL)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "c.yaml", overrides)
    assert str(caught.value).startswith(message)


def test_urls_and_extra_roots_are_allowed_when_listed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(MINIMAL)
    config = load_config(tmp_path / "c.yaml", ["paths.raw_dir=s3://bucket/raw", "paths.allowed_roots=[., 's3://bucket']",
                                               "privacy.vacuum_retention_hours=0",
                                               "privacy.allow_short_retention=true"])
    assert config.paths.raw_dir == "s3://bucket/raw"
    with pytest.raises(ConfigError, match="outside the allowed roots"):
        load_config(tmp_path / "c.yaml", ["paths.raw_dir=s3://bucket/../other", "paths.allowed_roots=['s3://bucket']"])

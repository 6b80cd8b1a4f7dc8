"""Runtime settings: defaults, then a settings file (YAML), then `LUPUS_*` environment.

Environment names are `LUPUS_<SECTION>_<FIELD>` in upper case, e.g.
`LUPUS_KAFKA_BOOTSTRAP_SERVERS=broker:9092`, `LUPUS_REDIS_URL=rediss://...`,
`LUPUS_WORKER_METRICS_PORT=9464`. The Kafka runtime is chosen when bootstrap servers
are configured; otherwise `lupus-stream run` uses the embedded runtime.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from lupus_stream import strict_yaml


class KafkaSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    bootstrap_servers: str | None = None
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    topic_prefix: str = ""
    replication_factor: Annotated[int, msgspec.Meta(ge=1)] = 3
    partitions: Annotated[int, msgspec.Meta(ge=1)] | None = None  # default: topics/ files


class RedisSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: str = "redis://127.0.0.1:6379/0"  # rediss:// for TLS
    username: str | None = None  # ACL user
    password: str | None = None
    ssl_ca_certs: str | None = None
    key_prefix: str = "lupus:"


class WorkerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    app_id: str = "lupus-stream"
    data_dir: str = "lupus-worker-data"
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = 9464
    max_poll_records: Annotated[int, msgspec.Meta(ge=1)] = 500
    snapshot_every: Annotated[int, msgspec.Meta(ge=1)] = 1000
    snapshot_interval: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    tick_interval: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    instance_id: str | None = None  # static group membership: a stable pod name


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    detectors: str = "detectors"
    topics: str = "topics"

    def topic(self, name: str) -> str:
        return self.kafka.topic_prefix + name


class SettingsError(ValueError):
    pass


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sections: dict[str, type[msgspec.Struct]] = {
        "kafka": KafkaSettings,
        "redis": RedisSettings,
        "worker": WorkerSettings,
    }
    for section, cls in sections.items():
        for field in msgspec.structs.fields(cls):
            value = env.get(f"LUPUS_{section.upper()}_{field.name.upper()}")
            if value is not None:
                out.setdefault(section, {})[field.name] = value
    for name in ("detectors", "topics"):
        value = env.get(f"LUPUS_{name.upper()}")
        if value is not None:
            out[name] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from an optional YAML file overridden by the environment."""
    raw: dict[str, Any] = {}
    where = "environment"
    if path is not None:
        try:
            loaded = strict_yaml.load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"{path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise SettingsError(f"{path}: expected a mapping of sections")
        raw = loaded
        where = f"{path} or environment"
    raw = _merge(raw, _from_env(os.environ if env is None else env))
    try:
        return msgspec.convert(raw, type=Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid settings ({where}): {exc}") from exc

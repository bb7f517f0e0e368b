"""Plain MQTT options for the delivery worker and the receiver, derived from ``MqttSettings``.

The worker is built from these rather than from the pydantic settings so that tests, the
benchmark and the daemon can compose it without a config file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from config.errors import ConfigError
from config.settings import MqttSettings


@dataclass(frozen=True)
class BrokerAddress:
    """One broker endpoint parsed from an ``mqtt://`` or ``mqtts://`` URL."""

    url: str
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse ``mqtt://host[:port]`` (default 1883) or ``mqtts://host[:port]`` (default 8883)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(f"{url!r} is not an mqtt:// or mqtts:// URL with a host name")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise ConfigError(f"{url!r}: the port is not a number 1-65535") from exc
        return cls(url=url, host=parts.hostname, port=port, tls=tls)


@dataclass(frozen=True)
class MqttOptions:
    """Everything the MQTT side needs, as plain values (no secrets in ``repr``)."""

    urls: tuple[str, ...] = ("mqtt://127.0.0.1:1883",)
    topic_prefix: str = "punchgate/v1"
    client_id: str = "punchgate"
    protocol: Literal["3.1.1", "5"] = "5"
    keepalive: float = 30.0
    connect_timeout: float = 10.0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    batch_size: int = 100
    batch_bytes: int = 65_536
    inflight: int = 32
    ack: Literal["broker", "backend"] = "broker"
    ack_timeout: float = 60.0
    reconnect_min: float = 1.0
    reconnect_max: float = 120.0
    commands: bool = True
    max_command_bytes: int = 16_384
    poll_interval: float = 0.5  # how often an idle worker looks for new rows in the outbox
    status_interval: float = 60.0  # re-publish the retained gateway status (backlog figures)

    @property
    def brokers(self) -> list[BrokerAddress]:
        return [BrokerAddress.parse(u) for u in self.urls]

    def with_(self, **changes: object) -> MqttOptions:
        """A copy with some fields changed (tests and the benchmark tune timings this way)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_settings(
        cls, mqtt: MqttSettings, *, client_id: str, status_interval: float = 60.0
    ) -> MqttOptions:
        """Options from the ``[mqtt]`` section; the loader has already resolved the password."""
        return cls(
            urls=tuple(mqtt.urls),
            topic_prefix=mqtt.topic_prefix,
            client_id=mqtt.client_id or client_id,
            protocol=mqtt.protocol,
            keepalive=mqtt.keepalive,
            connect_timeout=mqtt.connect_timeout,
            username=mqtt.username,
            password=mqtt.password.get_secret_value() if mqtt.password is not None else None,
            ca_file=mqtt.ca_file,
            cert_file=mqtt.cert_file,
            key_file=mqtt.key_file,
            tls_insecure=mqtt.tls_insecure,
            batch_size=mqtt.batch_size,
            batch_bytes=mqtt.batch_bytes,
            inflight=mqtt.inflight,
            ack=mqtt.ack,
            ack_timeout=mqtt.ack_timeout,
            reconnect_min=mqtt.reconnect_min,
            reconnect_max=mqtt.reconnect_max,
            commands=mqtt.commands,
            max_command_bytes=mqtt.max_command_bytes,
            status_interval=status_interval,
        )

"""Typed, validated settings. One model per section; devices are a union discriminated on ``kind``.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from config.values import (
    MIN_BACKUP_INTERVAL,
    AbsolutePath,
    Address,
    Duration,
    Identifier,
    TimeZoneName,
    check_broker_url,
    text_encoding,
)
from config.values import parse_duration as parse_duration  # callers import it from here


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentSettings(_Section):
    """``[agent]``: who this gateway is and where it keeps its state."""

    gateway_id: Identifier
    site: str = Field(default="", max_length=200)  # the punch schema's maxLength for site

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        # Every punch carries it: a NUL is refused by a PostgreSQL backend, an escape sequence
        # is obeyed by the terminal of whoever reads it, and then no punch is delivered.
        if any(unicodedata.category(c) == "Cc" for c in value):
            raise ValueError("site must not contain control characters (NUL, ESC, tab, ...)")
        return value

    state_dir: AbsolutePath = Path("/var/lib/punchgate")
    timezone: TimeZoneName = "UTC"
    status_interval: Duration = Field(default=15.0, gt=0)
    shutdown_timeout: Duration = Field(default=10.0, gt=0)

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.db"


class MqttSettings(_Section):
    """``[mqtt]``: the broker(s), credentials and delivery tuning."""

    url: str | list[str] = "mqtt://127.0.0.1:1883"
    topic_prefix: str = Field(default="punchgate/v1", min_length=1)
    client_id: str | None = None
    protocol: Literal["3.1.1", "5"] = "5"
    keepalive: Duration = Field(default=30.0, ge=5, le=3600)
    connect_timeout: Duration = Field(default=10.0, gt=0, le=300)
    username: str | None = None
    password: SecretStr | None = None
    password_file: AbsolutePath | None = None
    ca_file: AbsolutePath | None = None
    cert_file: AbsolutePath | None = None
    key_file: AbsolutePath | None = None
    tls_insecure: bool = False  # skip hostname verification; only for lab brokers
    batch_size: int = Field(default=100, ge=1, le=10_000)
    batch_bytes: int = Field(default=65_536, ge=1024, le=16_777_216)
    inflight: int = Field(default=32, ge=1, le=1000)
    ack: Literal["broker", "backend"] = "broker"
    ack_timeout: Duration = Field(default=60.0, gt=0)
    reconnect_min: Duration = Field(default=1.0, gt=0)
    reconnect_max: Duration = Field(default=120.0, gt=0)
    commands: bool = True  # accept commands on {prefix}/{gateway}/cmd/#
    max_command_bytes: int = Field(default=16_384, ge=256, le=1_048_576)  # larger: error reply

    @field_validator("url", mode="before")
    @classmethod
    def _url_type(cls, value: object) -> object:
        # Without this, "url = 1883" came back as two errors naming Python types (url.str,
        # url.list[str]) and no fix.
        example = "e.g. url = 'mqtt://10.0.0.5:1883'"
        if isinstance(value, list):
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    raise ValueError(f"url[{index}] = {item!r} is not a URL in quotes ({example})")
            return value
        if not isinstance(value, str):
            raise ValueError(
                f"{value!r} is not a broker URL in quotes ({example}) or a list of them"
            )
        return value

    @field_validator("url")
    @classmethod
    def _urls(cls, value: str | list[str]) -> str | list[str]:
        urls = [value] if isinstance(value, str) else value
        if not urls:
            raise ValueError("give at least one broker URL")
        for url in urls:
            check_broker_url(url)
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if any(c in value for c in "#+") or value.startswith("/") or value.endswith("/"):
            raise ValueError("topic_prefix must not contain '#' or '+' nor start or end with '/'")
        if value != value.strip():
            # A topic level "v1 " is not "v1": the backend's subscription would miss every punch.
            raise ValueError("topic_prefix must not start or end with a space")
        if value.startswith("$"):
            # Brokers reserve $-topics ($SYS); a backend's '#' or '+' subscription never sees them.
            raise ValueError("topic_prefix must not start with '$' (reserved for the broker)")
        if any(unicodedata.category(c) == "Cc" for c in value):
            # MQTT forbids NUL and brokers refuse control characters: every publish would fail.
            raise ValueError("topic_prefix must not contain control characters (NUL, tab, ...)")
        return value

    @model_validator(mode="after")
    def _secrets(self) -> MqttSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.reconnect_min > self.reconnect_max:
            raise ValueError("reconnect_min must not exceed reconnect_max")
        return self

    @property
    def urls(self) -> list[str]:
        return [self.url] if isinstance(self.url, str) else list(self.url)


class OutboxSettings(_Section):
    """``[outbox]``: retention, backups and the free-disk reserve."""

    retention_days: float = Field(default=30, ge=0, le=36500, allow_inf_nan=False)  # a century
    # Finite and bounded: the daemon converts it to bytes, and inf (or 1e308 MiB) crashed that.
    disk_reserve_mb: float = Field(default=100, ge=0, le=1e9, allow_inf_nan=False)
    backup_dir: AbsolutePath | None = None  # default: {state_dir}/backups
    backup_keep: int = Field(default=7, ge=1, le=365)
    backup_interval: Duration = Field(default=86400.0, gt=0)

    @field_validator("backup_interval")
    @classmethod
    def _backup_interval(cls, value: float) -> float:
        # Beside retention_days, "backup_interval = 1" means a day to the eye and a second to
        # the parser: a full copy of the outbox at every maintenance tick (once a minute).
        if value < MIN_BACKUP_INTERVAL:
            raise ValueError(
                f"{value:g} s is too short: a backup copies the whole outbox, at most once a "
                'minute; a bare number is seconds: write "1d" for daily'
            )
        return value


class ManualSettings(_Section):
    """``[manual]``: rules for correction punches entered by technicians."""

    max_age: Duration = Field(default=31 * 86400.0, gt=0)
    duplicate_window: Duration = Field(default=120.0, ge=0)


class _DeviceBase(_Section):
    id: Identifier
    name: str = ""
    timezone: TimeZoneName | None = None
    poll_interval: Duration = Field(default=30.0, ge=1, le=86400)
    timeout: Duration = Field(default=10.0, gt=0, le=300)
    enabled: bool = True


class ZkDeviceSettings(_DeviceBase):
    """A ZKTeco-family terminal on TCP or UDP port 4370."""

    kind: Literal["zk"]
    host: Address
    port: int = Field(default=4370, ge=1, le=65535)
    transport: Literal["tcp", "udp"] = "tcp"
    comm_key: int = Field(default=0, ge=0, le=999_999_999)
    live: bool = False
    clock_sync: bool = False
    max_drift: Duration = Field(default=60.0, ge=1)
    clear_after_read: bool = False
    clear_threshold: float = Field(default=0.9, gt=0, le=1)  # fraction of record capacity
    encoding: str = "utf-8"  # user names on the terminal

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        return text_encoding(value)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        # As terminal menus show it ("10.0.0.20:4370"): the check said OK and it never resolved.
        if "://" in value:
            raise ValueError(f"{value!r} is not a URL here: write the address, e.g. '10.0.0.20'")
        if value.count(":") == 1:  # an IPv6 address has two or more
            name, _, port = value.partition(":")
            raise ValueError(f"{value!r}: write host = {name!r} and port = {port} on its own line")
        return value


class SerialDeviceSettings(_DeviceBase):
    """A serial time clock or card reader on any pyserial URL."""

    kind: Literal["serial"]
    url: Address
    baudrate: int = Field(default=9600, ge=50, le=4_000_000)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: float = Field(default=1, ge=1, le=2, multiple_of=0.5)  # 1, 1.5 or 2
    format: Literal["lines", "em4100", "wiegand-ascii"] = "lines"
    pattern: str | None = None
    time_format: str = "%Y-%m-%d %H:%M:%S"
    encoding: str = "ascii"
    max_line: int = Field(default=512, ge=16, le=65_536)
    cards: dict[str, str] = Field(default_factory=dict)  # card number -> employee
    roster_file: AbsolutePath | None = None  # CSV card,employee
    dedup_window: Duration = Field(default=3.0, ge=0)
    serial: str | None = None  # identity for punch ids; default "serial:{id}"

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        return text_encoding(value)

    @field_validator("time_format")
    @classmethod
    def _time_format(cls, value: str) -> str:
        sample = datetime(2024, 1, 31, 23, 59, 58)
        try:
            datetime.strptime(sample.strftime(value), value)
        except ValueError as exc:
            raise ValueError(
                f"{value!r} is not a usable strptime format ({exc}); e.g. '%Y-%m-%d %H:%M:%S'"
            ) from exc
        return value

    @field_validator("cards")
    @classmethod
    def _cards(cls, value: dict[str, str]) -> dict[str, str]:
        for card, employee in value.items():
            if not card.strip() or not employee.strip():
                raise ValueError(
                    f"card {card!r} -> {employee!r}: card and employee must not be empty"
                )
        return value

    @model_validator(mode="after")
    def _pattern(self) -> SerialDeviceSettings:
        if self.format == "em4100":
            if self.pattern is not None:
                raise ValueError("pattern is not used with format = 'em4100'; remove it")
            return self
        if self.format == "lines" and not self.pattern:
            raise ValueError("format = 'lines' needs a pattern with an 'employee' or 'card' group")
        if self.pattern is None:
            return self  # wiegand-ascii reads one hex or decimal card number per line
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regular expression: {exc}") from exc
        groups = set(compiled.groupindex)
        if self.format == "wiegand-ascii" and "card" not in groups:
            raise ValueError("a wiegand-ascii pattern needs a named group 'card'")
        if not {"employee", "card"} & groups:
            raise ValueError("pattern needs a named group 'employee' or 'card'")
        return self


DeviceSettings = Annotated[ZkDeviceSettings | SerialDeviceSettings, Field(discriminator="kind")]


class Settings(_Section):
    """The whole configuration file."""

    agent: AgentSettings
    mqtt: MqttSettings = MqttSettings()
    outbox: OutboxSettings = OutboxSettings()
    manual: ManualSettings = ManualSettings()
    devices: list[DeviceSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_devices(self) -> Settings:
        seen: set[str] = set()
        for device in self.devices:
            if device.id in seen:
                raise ValueError(f"device id {device.id!r} is used more than once")
            seen.add(device.id)
        identities: dict[str, int] = {}
        for index, device in enumerate(self.devices):
            if isinstance(device, SerialDeviceSettings):
                # Punch ids hash this identity: two clocks sharing it would lose punches as dups.
                identity = device.serial or f"serial:{device.id}"
                if identity in identities:
                    raise ValueError(
                        f"devices[{index}].serial: the identity {identity!r} is used more than "
                        f"once (also devices[{identities[identity]}]); give each its own serial"
                    )
                identities[identity] = index
        return self

    def device(self, device_id: str) -> ZkDeviceSettings | SerialDeviceSettings | None:
        return next((d for d in self.devices if d.id == device_id), None)

    def device_timezone(self, device: ZkDeviceSettings | SerialDeviceSettings) -> ZoneInfo:
        return ZoneInfo(device.timezone or self.agent.timezone)

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"punchgate-{self.agent.gateway_id}"

"""The MQTT contract with the HR backend: topic names, payload builders and schema validation.

The machine-readable contract is ``agent/contract/asyncapi.yaml`` with one JSON Schema per payload
in ``agent/contract/schemas/``; the human-readable one is ``docs/mqtt-contract.md``. Every payload
built here validates against its schema (the tests check each message they see).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

if TYPE_CHECKING:
    from buffer import StoredPunch

CONTRACT_VERSION = "punchgate/v1"
SCHEMA_BASE = "https://schemas.punchgate.invalid/v1/"
SCHEMA_NAMES = (
    "common",
    "punch",
    "punches",
    "gateway-status",
    "device-status",
    "ack",
    "command-ping",
    "command-resend",
    "command-time-sync",
    "command-reply",
)


@dataclass(frozen=True)
class Topics:
    """Topic names of one gateway under ``prefix`` (``punchgate/v1`` by default)."""

    prefix: str
    gateway_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.gateway_id}"

    @property
    def punches(self) -> str:
        return f"{self.base}/punches"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def ack(self) -> str:
        return f"{self.base}/ack"

    @property
    def commands(self) -> str:
        """The subscription filter for commands addressed to this gateway only."""
        return f"{self.base}/cmd/+"

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    def reply(self, name: str) -> str:
        """Where a reply goes when the command named no MQTT 5 response topic."""
        return f"{self.base}/reply/{name}"

    def device_status(self, device_id: str) -> str:
        return f"{self.base}/devices/{device_id}/status"

    def command_name(self, topic: str) -> str | None:
        """The command name if ``topic`` is exactly this gateway's ``cmd/{name}``, else None."""
        head = f"{self.base}/cmd/"
        if not topic.startswith(head):
            return None
        name = topic[len(head) :]
        return name if name and "/" not in name else None


def punches_filter(prefix: str) -> str:
    """Subscription filter for every gateway's punch batches."""
    return f"{prefix}/+/punches"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription: each message goes to one member of ``group``."""
    return f"$share/{group}/{topic_filter}"


def gateway_of(prefix: str, topic: str) -> str | None:
    """The gateway id in ``{prefix}/{gateway_id}/...``, or None for a foreign topic."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    gateway, _, _rest = topic[len(head) :].partition("/")
    return gateway or None


def utc_timestamp(value: datetime | None = None) -> str:
    """An RFC 3339 UTC timestamp ending in ``Z``, millisecond precision."""
    value = value or datetime.now(UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def punch_payload(punch: StoredPunch, site: str, *, replayed: bool | None = None) -> dict[str, Any]:
    """The contract's JSON object for one stored punch (internal delivery columns left out)."""
    local: str | None = None
    if punch.time_utc is not None and punch.utc_offset_minutes is not None:
        zone = timezone(timedelta(minutes=punch.utc_offset_minutes))
        local = punch.time_utc.astimezone(zone).isoformat()
    return {
        "id": punch.id,
        "seq": punch.seq,
        "gateway_id": punch.gateway_id,
        "site": site,
        "device_id": punch.device_id,
        "device_serial": punch.device_serial,
        "employee": punch.employee,
        "card": punch.card,
        "device_time": _iso(punch.device_time),
        "time": local,
        "time_utc": _iso(punch.time_utc),
        "utc_offset_minutes": punch.utc_offset_minutes,
        "state": punch.state,
        "state_code": punch.state_code,
        "verify": punch.verify,
        "verify_code": punch.verify_code,
        "source": punch.source,
        "kind": punch.kind,
        "void_of": punch.void_of,
        "operator": punch.operator,
        "reason": punch.reason,
        "entered_at": _iso(punch.entered_at),
        "received_at": _iso(punch.received_at),
        "suspect": list(punch.suspect),
        "raw": punch.raw.hex() if punch.raw is not None else None,
        "replayed": punch.replayed if replayed is None else replayed,
    }


def encode(payload: Any) -> bytes:
    """Compact UTF-8 JSON, as every message of the contract is sent."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_batch(gateway_id: str, punches: list[dict[str, Any]]) -> bytes:
    """The body of one ``punches`` message."""
    return encode({"gateway_id": gateway_id, "punches": punches})


def ack_payload(
    ids: list[str],
    *,
    gateway_id: str | None = None,
    contiguous_seq: int | None = None,
    receiver: str | None = None,
) -> dict[str, Any]:
    """A backend acknowledgement: ``ids`` stored, and/or every seq <= ``contiguous_seq``."""
    out: dict[str, Any] = {"ids": ids, "time": utc_timestamp()}
    if gateway_id is not None:
        out["gateway_id"] = gateway_id
    if contiguous_seq is not None:
        out["contiguous_seq"] = contiguous_seq
    if receiver is not None:
        out["receiver"] = receiver
    return out


class ContractViolation(ValueError):
    """A payload does not match its schema; the message names the field and the rule."""


class Contract:
    """The JSON Schemas of the contract, loaded once and ready to validate payloads."""

    def __init__(self, schemas: dict[str, dict[str, Any]], *, tolerant: bool = False) -> None:
        # ``tolerant``: fields the schemas do not name are let through, as a consumer must
        # (fields are only ever added within v1); the schemas themselves stay exact, so that
        # the tests catch anything the gateway sends undocumented.
        self.schemas = schemas
        self.tolerant = tolerant
        self.registry: Registry[Any] = Registry().with_resources(
            (schema["$id"], Resource.from_contents(schema)) for schema in schemas.values()
        )
        self._validators: dict[str, Draft202012Validator] = {}

    @classmethod
    def load(cls, *, tolerant: bool = False) -> Contract:
        """Read every schema shipped in ``agent/contract/schemas``; see ``__init__``."""
        folder = resources.files("agent").joinpath("contract", "schemas")
        schemas = {
            name: json.loads(folder.joinpath(f"{name}.json").read_text(encoding="utf-8"))
            for name in SCHEMA_NAMES
        }
        return cls(schemas, tolerant=tolerant)

    def validator(self, schema: str | dict[str, Any]) -> Draft202012Validator:
        """A validator for a schema of the contract (by name) or any schema that may ref them."""
        if isinstance(schema, str):
            if schema not in self._validators:
                self._validators[schema] = self.validator(self.schemas[schema])
            return self._validators[schema]
        Draft202012Validator.check_schema(schema)
        return Draft202012Validator(
            self._inline(schema), registry=self.registry, format_checker=FormatChecker()
        )

    def _inline(self, node: Any, depth: int = 0) -> Any:
        """The schema with references to contract files replaced by their targets.

        Resolving ``common.json#/$defs/...`` through the registry on every field made
        validation about three times slower; the contract has no recursive references.
        """
        if depth > 32:
            raise ValueError("schema references nest too deep (a reference cycle?)")
        if isinstance(node, list):
            return [self._inline(item, depth + 1) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            name, _, fragment = ref.removeprefix(SCHEMA_BASE).partition("#")
            target: Any = self.schemas.get(name.removesuffix(".json"))
            if target is not None:
                for part in (p for p in fragment.split("/") if p):
                    target = target[part]
                target = {k: v for k, v in target.items() if k not in ("$id", "$schema")}
                resolved = self._inline(target, depth + 1)
                rest = {k: v for k, v in node.items() if k != "$ref"}
                if not rest:
                    return resolved
                return {"allOf": [resolved, self._inline(rest, depth + 1)]}
        return {
            k: self._inline(v, depth + 1)
            for k, v in node.items()
            if not (self.tolerant and k == "additionalProperties" and v is False)
        }

    def violations(
        self, schema: str | dict[str, Any], payload: Any
    ) -> list[tuple[tuple[Any, ...], str]]:
        """Every violation as (path in the payload, ``path: message``), in path order."""
        found = sorted(self.validator(schema).iter_errors(payload), key=lambda e: list(e.path))
        return [
            (tuple(e.path), f"{'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}")
            for e in found
        ]

    def errors(self, schema: str | dict[str, Any], payload: Any) -> list[str]:
        """Every violation as ``path: message``; empty when the payload is valid."""
        return [text for _path, text in self.violations(schema, payload)]

    def validate(self, schema: str | dict[str, Any], payload: Any) -> None:
        """Raise ``ContractViolation`` listing the first few violations."""
        problems = self.errors(schema, payload)
        if problems:
            raise ContractViolation("; ".join(problems[:5]))

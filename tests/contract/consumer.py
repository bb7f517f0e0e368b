"""An HR backend's consumer written from the MQTT contract documents alone: it judges every message.

Written from docs/mqtt-contract.md, agent/contract/asyncapi.yaml and agent/contract/schemas/*.json
without reading the agent's code: every claim those documents make that a subscriber can check
is checked here, and each breach is recorded in ``violations`` with the message that broke it.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from jsonschema import Draft202012Validator
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parents[2] / "agent" / "contract" / "schemas"
PREFIX = "punchgate/v1"
RECOVERY_JUMP = 1_000_000
GATEWAY_ID = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
ERROR_CODES = {"malformed", "too_large", "unknown_command", "invalid", "failed", "busy"}
# Fields a re-sent punch may change: seq only after a restore (not part of a day), replayed always.
RESEND_MAY_CHANGE = {"replayed"}


def load_schemas() -> dict[str, Draft202012Validator]:
    """One validator per schema file (by file stem), with the shared definitions resolvable."""
    documents = {p.stem: json.loads(p.read_text()) for p in sorted(SCHEMAS.glob("*.json"))}
    registry: Registry = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in documents.values()
    )
    return {
        stem: Draft202012Validator(doc, registry=registry)
        for stem, doc in documents.items()
        if stem != "common"
    }


def schema_errors(validator: Draft202012Validator, payload: Any) -> list[str]:
    """Every schema breach of ``payload``, each with the path of the field."""
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:200]}"
        for e in validator.iter_errors(payload)
    ]


@dataclass
class Received:
    """One message as the broker handed it to us (retain is as published: MQTT 5 option)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    at: float
    correlation: bytes | None = None
    response_topic: str | None = None

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class SentCommand:
    """A command we published and the reply the contract promises for it."""

    gateway: str
    name: str
    payload: bytes
    request_id: str | None
    expect_code: frozenset[str] | None  # None: ok is expected; else the acceptable error codes
    reply_topic: str
    correlation: bytes | None
    replies: list[Received] = field(default_factory=list)


class ContractConsumer:
    """Subscribes to everything on a broker and checks each message against the documents."""

    def __init__(self, url: str, *, prefix: str = PREFIX, client_id: str | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 1883
        self.prefix = prefix
        self.schemas = load_schemas()
        self.violations: list[str] = []
        self.messages: list[Received] = []
        # Documented expectations the test driver switches on and off around its actions.
        self.fresh_only = False  # no reconnect, resend or restart happening: replayed must be false
        self.expected_extra_topics: set[str] = set()  # our own response topics
        self.auto_ack: set[str] = set()  # gateways whose batches we ack (by ids) as we store them
        self._lock = threading.RLock()
        self._subscribed = threading.Event()
        self._by_id: dict[tuple[str, str], dict[str, Any]] = {}
        self._seq_to_id: dict[tuple[str, int], str] = {}
        self._seqs: dict[str, set[int]] = defaultdict(set)
        self._content_keys: dict[tuple[Any, ...], str] = {}
        self._boots: dict[str, list[int]] = defaultdict(list)
        self._commands: list[SentCommand] = []
        self._offline: dict[str, list[Received]] = defaultdict(list)
        self._batches_seen: set[bytes] = set()
        self.broker_duplicates = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"hr-backend-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a, **k: self._subscribed.set()
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.5)  # type: ignore[arg-type]

    # -- connection ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> ContractConsumer:
        """Connect with a persistent session (as the contract asks) and subscribe to all."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(self.host, self.port, keepalive=10, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise AssertionError(f"consumer could not subscribe within {timeout}s")
        return self

    def stop(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe("#", options=SubscribeOptions(qos=1, retainAsPublished=True))

    def _on_message(self, _client: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        received = Received(
            msg.topic,
            bytes(msg.payload),
            msg.qos,
            bool(msg.retain),
            time.monotonic(),
            getattr(props, "CorrelationData", None),
            getattr(props, "ResponseTopic", None),
        )
        with self._lock:
            self.messages.append(received)
            try:
                self._judge(received)
            except Exception as exc:  # a consumer bug must show, not kill paho's thread
                self._fail(received, f"consumer crashed judging it: {exc!r}")

    def _fail(self, message: Received, what: str) -> None:
        self.violations.append(f"{message.topic}: {what} [{message.payload[:300]!r}]")

    # -- waiting ------------------------------------------------------------------------------

    def wait(self, predicate: Any, timeout: float = 15.0, what: str = "") -> None:
        """Wait until ``predicate()`` is true (checked under the lock), or fail saying what."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate():
                    return
            time.sleep(0.02)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}; violations so far: {self.violations}"
        )

    def commands(self) -> list[SentCommand]:
        """Every command sent so far."""
        with self._lock:
            return list(self._commands)

    def all_replied(self) -> bool:
        """Whether every command sent so far has its reply."""
        with self._lock:
            return all(c.replies for c in self._commands)

    def punch_ids(self, gateway: str) -> set[str]:
        """Ids of every punch received from ``gateway``."""
        with self._lock:
            return {pid for (gw, pid) in self._by_id if gw == gateway}

    def punches(self, gateway: str) -> list[dict[str, Any]]:
        """Every distinct punch from ``gateway`` (first copy), by seq."""
        with self._lock:
            rows = [p for (gw, _), p in self._by_id.items() if gw == gateway]
        return sorted(rows, key=lambda p: p["seq"])

    def arrivals(self, gateway: str) -> list[dict[str, Any]]:
        """Every punch copy received from ``gateway``, in arrival order."""
        with self._lock:
            return [
                p
                for m in self.messages
                if m.topic == f"{self.prefix}/{gateway}/punches"
                for p in _safe_punches(m)
            ]

    def on(self, topic: str) -> list[Received]:
        """Messages received on exactly ``topic``."""
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def boots(self, gateway: str) -> list[int]:
        """Boot numbers of the online statuses of ``gateway``, in arrival order."""
        with self._lock:
            return list(self._boots[gateway])

    # -- sending as the backend ---------------------------------------------------------------

    def command(
        self,
        gateway: str,
        name: str,
        payload: dict[str, Any] | bytes,
        *,
        expect_code: str | set[str] | None = None,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        retain: bool = False,
    ) -> SentCommand:
        """Publish a command; the consumer checks that exactly one matching reply arrives."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        request_id = None  # what the reply must echo: only a valid one can be (the schema)
        if isinstance(payload, dict):
            given = payload.get("request_id")
            if isinstance(given, str) and 1 <= len(given) <= 128:
                request_id = given
        props = Properties(PacketTypes.PUBLISH)
        reply_topic = f"{self.prefix}/{gateway}/reply/{name or 'unknown'}"
        if response_topic is not None:
            props.ResponseTopic = response_topic
            if not response_topic.startswith(self.prefix + "/") or response_topic.startswith(
                f"{self.prefix}/{gateway}/reply/"
            ):
                reply_topic = response_topic
                self.expected_extra_topics.add(response_topic)
        if correlation is not None:
            props.CorrelationData = correlation
        codes = (
            None
            if expect_code is None
            else frozenset({expect_code} if isinstance(expect_code, str) else expect_code)
        )
        sent = SentCommand(gateway, name, body, request_id, codes, reply_topic, correlation)
        with self._lock:
            self._commands.append(sent)
        info = self.client.publish(
            f"{self.prefix}/{gateway}/cmd/{name}", body, qos=1, retain=retain, properties=props
        )
        info.wait_for_publish(5)
        return sent

    def ack(self, gateway: str, ids: list[str], *, contiguous_seq: int | None = None) -> None:
        """Publish a backend ack as the contract shows it."""
        body: dict[str, Any] = {"gateway_id": gateway, "ids": ids, "receiver": "hr-test"}
        if contiguous_seq is not None:
            body["contiguous_seq"] = contiguous_seq
        problems = schema_errors(self.schemas["ack"], body)
        assert not problems, f"our own ack breaks ack.json: {problems}"
        self.client.publish(
            f"{self.prefix}/{gateway}/ack", json.dumps(body), qos=1
        ).wait_for_publish(5)

    def wait_reply(self, sent: SentCommand, timeout: float = 15.0) -> dict[str, Any]:
        """The reply to ``sent`` (the first one), waiting for it."""
        self.wait(lambda: sent.replies, timeout, f"a reply to {sent.name} {sent.payload[:80]!r}")
        reply: dict[str, Any] = sent.replies[0].json()
        return reply

    # -- judging ------------------------------------------------------------------------------

    def _judge(self, m: Received) -> None:
        if m.topic in self.expected_extra_topics:
            self._judge_reply(m, gateway=None, name=None)
            return
        if not m.topic.startswith(self.prefix + "/"):
            self._fail(m, "topic outside the contract's prefix")
            return
        parts = m.topic[len(self.prefix) + 1 :].split("/")
        gateway = parts[0]
        if not GATEWAY_ID.match(gateway):
            self._fail(m, "gateway id in the topic is not lower-case letters, digits, dashes")
        rest = parts[1:]
        if rest in (["ack"],) or (len(rest) == 2 and rest[0] == "cmd"):
            return  # backend -> gateway: ours
        if m.qos != 1:
            self._fail(m, f"delivered at QoS {m.qos}, the contract says 1")
        try:
            payload = json.loads(m.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            self._fail(m, f"not UTF-8 JSON: {exc}")
            return
        compact = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        compact_ascii = json.dumps(payload, separators=(",", ":")).encode()
        if m.payload not in (compact, compact_ascii):
            self._fail(m, "payload is not compact JSON")
        if rest == ["punches"]:
            self._judge_batch(m, gateway, payload)
        elif rest == ["status"]:
            self._judge_gateway_status(m, gateway, payload)
        elif len(rest) == 3 and rest[0] == "devices" and rest[2] == "status":
            self._judge_device_status(m, gateway, rest[1], payload)
        elif len(rest) == 2 and rest[0] == "reply":
            self._judge_reply(m, gateway=gateway, name=rest[1])
        else:
            self._fail(m, "topic is not one the contract names")

    def _validate(self, m: Received, schema: str, payload: Any) -> bool:
        problems = schema_errors(self.schemas[schema], payload)
        for problem in problems[:5]:
            self._fail(m, f"breaks {schema}.json: {problem}")
        return not problems

    def _judge_batch(self, m: Received, gateway: str, batch: Any) -> None:
        if m.retain:
            self._fail(m, "punch batch published retained")
        if not self._validate(m, "punches", batch):
            return
        if m.payload in self._batches_seen:
            # The very same bytes again: the broker re-delivered its copy to us (QoS 1 after its
            # restart); the gateway did not send anything twice (a re-send says replayed).
            self.broker_duplicates += 1
            return
        self._batches_seen.add(m.payload)
        if batch["gateway_id"] != gateway:
            self._fail(m, "batch gateway_id differs from the topic's")
        seqs = [p["seq"] for p in batch["punches"]]
        if seqs != sorted(seqs):
            self._fail(m, f"batch not in ascending seq order: {seqs}")
        for punch in batch["punches"]:
            self._judge_punch(m, gateway, punch)
        if gateway in self.auto_ack:
            body = {"gateway_id": gateway, "ids": [p["id"] for p in batch["punches"]]}
            self.client.publish(f"{self.prefix}/{gateway}/ack", json.dumps(body), qos=1)

    def _judge_punch(self, m: Received, gateway: str, p: dict[str, Any]) -> None:
        pid, seq = p["id"], p["seq"]
        if p["gateway_id"] != gateway:
            self._fail(m, f"punch {pid} names gateway {p['gateway_id']}")
        try:
            uuid.UUID(pid)
        except ValueError:
            self._fail(m, f"punch id {pid!r} is not a UUID string")
        known = self._by_id.get((gateway, pid))
        if known is None:
            self._by_id[(gateway, pid)] = p
            if self.fresh_only and p["replayed"]:
                self._fail(m, f"punch {pid} seq {seq} sent for the first time with replayed true")
        else:
            if not p["replayed"]:
                self._fail(m, f"punch {pid} seq {seq} arrived again with replayed false")
            changed = {
                k
                for k in set(p) | set(known)
                if k not in RESEND_MAY_CHANGE and p.get(k) != known.get(k)
            }
            if changed:
                diff = {k: (known.get(k), p.get(k)) for k in sorted(changed)}
                self._fail(m, f"punch {pid} changed content when sent again: {diff}")
        owner = self._seq_to_id.setdefault((gateway, seq), pid)
        if owner != pid:
            self._fail(m, f"seq {seq} reused: was {owner}, now {pid}")
        self._seqs[gateway].add(seq)
        # A punch read twice from the terminal is one punch: its content gives one id.
        if p["source"] in ("device", "live") and p["kind"] == "punch":
            key = (gateway, p["device_serial"], p["employee"], p["device_time"], p["state_code"])
            first = self._content_keys.setdefault(key, pid)
            if first != pid:
                self._fail(m, f"one terminal record has two ids {first} and {pid} (seq {seq})")
        self._judge_punch_fields(m, p)

    def _judge_punch_fields(self, m: Received, p: dict[str, Any]) -> None:
        pid = p["id"]
        if p["kind"] == "void" or p["source"] == "manual":
            for name in ("operator", "reason", "entered_at"):
                if p[name] is None:
                    self._fail(m, f"manual punch or void {pid} has no {name}")
        if p["kind"] == "punch" and p["void_of"] is not None:
            self._fail(m, f"punch {pid} of kind punch has void_of")
        if p["time"] is None or p["time_utc"] is None:
            if "time_invalid" not in p["suspect"]:
                self._fail(m, f"punch {pid} has no time but is not suspect time_invalid")
        else:
            local = datetime.fromisoformat(p["time"])
            utc = datetime.fromisoformat(p["time_utc"])
            offset = local.utcoffset()
            if local != utc or utc.utcoffset() != timedelta(0):
                self._fail(m, f"punch {pid}: time {p['time']} and time_utc {p['time_utc']} differ")
            if offset is not None and p["utc_offset_minutes"] != offset.total_seconds() / 60:
                self._fail(m, f"punch {pid}: utc_offset_minutes disagrees with time")
            wall = local.replace(tzinfo=None)
            recorded = (
                None if p["device_time"] is None else datetime.fromisoformat(p["device_time"])
            )
            # Also in a DST gap: the recorded wall time with the offset before the gap, which
            # is the instant shifted forward (02:30+01:00 is 03:30+02:00).
            if recorded is not None and wall != recorded:
                self._fail(m, f"punch {pid}: time is not device_time with the offset")
        if p["suspect"] and p["source"] in ("device", "live") and p["raw"] is None:
            self._fail(m, f"suspect punch {pid} from a terminal has no raw bytes")
        if p["employee"] is None and p["card"] is None:
            self._fail(m, f"punch {pid} has neither employee nor card (null only for a card)")

    def _judge_gateway_status(self, m: Received, gateway: str, status: Any) -> None:
        if not m.retain:
            self._fail(m, "gateway status not retained")
        if not self._validate(m, "gateway-status", status):
            return
        if status["gateway_id"] != gateway:
            self._fail(m, "status gateway_id differs from the topic's")
        if status.get("contract", PREFIX) != self.prefix:
            self._fail(m, f"status names contract {status.get('contract')}")
        if status["state"] == "online":
            boots = self._boots[gateway]
            if boots and status["boot"] < boots[-1]:
                self._fail(m, f"boot went back from {boots[-1]} to {status['boot']}")
            boots.append(status["boot"])
        else:
            self._offline[gateway].append(m)

    def _judge_device_status(self, m: Received, gateway: str, device: str, status: Any) -> None:
        if not m.retain:
            self._fail(m, "device status not retained")
        if not self._validate(m, "device-status", status):
            return
        if status["gateway_id"] != gateway or status["device_id"] != device:
            self._fail(m, "device status ids differ from the topic's")

    def _judge_reply(self, m: Received, *, gateway: str | None, name: str | None) -> None:
        if m.retain:
            self._fail(m, "command reply published retained")
        if m.qos != 1:
            self._fail(m, f"reply delivered at QoS {m.qos}, the contract says 1")
        try:
            reply = json.loads(m.payload)
        except ValueError as exc:
            self._fail(m, f"reply is not JSON: {exc}")
            return
        if not self._validate(m, "command-reply", reply):
            return
        if gateway is not None and reply["gateway_id"] != gateway:
            self._fail(m, "reply gateway_id differs from the topic's")
        if (
            name is not None
            and reply["command"] != name[:64]  # the schema's limit; the topic has it all
            and not (name == "unknown" and not reply["command"])
        ):
            self._fail(m, f"reply on reply/{name} is for command {reply['command']!r}")
        matches = [
            c
            for c in self._commands
            if c.reply_topic == m.topic
            and c.gateway == reply["gateway_id"]
            and c.request_id == reply["request_id"]
            and not c.replies
        ]
        if not matches:
            self._fail(m, "reply to no command we sent (or a second reply)")
            return
        sent = matches[0]
        sent.replies.append(m)
        if sent.correlation is not None and m.correlation != sent.correlation:
            self._fail(
                m, f"reply lost the correlation data {sent.correlation!r}: {m.correlation!r}"
            )
        if sent.expect_code is None and not reply["ok"]:
            self._fail(m, f"command {sent.payload[:100]!r} failed: {reply.get('error')}")
        if sent.expect_code is not None:
            got = reply.get("error", {}).get("code") if not reply["ok"] else "ok"
            if got not in sent.expect_code:
                self._fail(m, f"expected error {sent.expect_code}, got {got}: {reply}")

    # -- the end of the day -------------------------------------------------------------------

    def seq_gaps(self, gateway: str) -> list[tuple[int, int]]:
        """Missing seq ranges of ``gateway`` (inclusive), from 1 to the highest seen."""
        with self._lock:
            seen = sorted(self._seqs[gateway])
        gaps, expected = [], 1
        for seq in seen:
            if seq > expected:
                gaps.append((expected, seq - 1))
            expected = seq + 1
        return gaps

    def final_violations(self) -> list[str]:
        """Per-message violations plus what can only be judged at the end of the day."""
        out = list(self.violations)
        with self._lock:
            commands = list(self._commands)
            gateways = set(self._seqs)
            offline = dict(self._offline)
        for sent in commands:
            if len(sent.replies) != 1:
                out.append(
                    f"command {sent.name} {sent.payload[:80]!r}: {len(sent.replies)} replies"
                )
        for gateway in gateways:
            for low, high in self.seq_gaps(gateway):
                if high - low + 1 < RECOVERY_JUMP // 2:
                    out.append(f"{gateway}: seq {low}..{high} never arrived")
        for gateway in gateways:
            for pid_key, p in self._by_id.items():
                if pid_key[0] == gateway and p["kind"] == "void":
                    if (gateway, p["void_of"]) not in self._by_id:
                        out.append(f"{gateway}: void {p['id']} cancels {p['void_of']}, never sent")
        for gateway, statuses in offline.items():
            shapes = {tuple(sorted(json.loads(s.payload))) for s in statuses}
            if len(shapes) > 1:
                out.append(
                    f"{gateway}: offline statuses (clean and will) differ in shape: {shapes}"
                )
        return out


def _safe_punches(m: Received) -> list[dict[str, Any]]:
    try:
        punches = m.json().get("punches", [])
    except (ValueError, AttributeError):
        return []
    return [p for p in punches if isinstance(p, dict)]

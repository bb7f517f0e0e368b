"""Commands from the backend: accepted only on this gateway's ``cmd/{name}`` topic, validated
against their schema, run one at a time on their own thread, and always answered.

Malformed, oversized, unknown or invalid commands get an error reply; a handler that raises gets
a ``failed`` reply. Nothing a command sender does can take the agent down. Replies go to the
MQTT 5 response topic with the command's correlation data, or to ``{prefix}/{gw}/reply/{name}``;
the JSON ``request_id`` is echoed either way (MQTT 3.1.1 has no response topic).
"""

from __future__ import annotations

import json
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.mqtt.contract import Contract, Topics, encode, utc_timestamp
from config.errors import PunchgateError

log = structlog.get_logger("mqtt.commands")

NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
_AWAITED = 64  # replies on a response topic whose PUBACK is awaited (older ones are forgotten)
Handler = Callable[[dict[str, Any]], dict[str, Any]]
"""A command handler: the validated request in, a JSON-ready result out; raise to fail."""


class CommandFailed(PunchgateError):
    """A handler could not do what was asked; the message goes into the error reply."""


class Publisher(Protocol):
    """What the dispatcher needs to send a reply (the connection)."""

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> object: ...


@dataclass(frozen=True)
class Command:
    """A registered command: its name, request schema and handler."""

    name: str
    schema: str | dict[str, Any]
    handler: Handler


@dataclass(frozen=True)
class Request:
    """A command message as it arrived, before parsing."""

    name: str
    payload: bytes
    response_topic: str | None
    correlation: bytes | None
    retained: bool  # delivered from the broker's retained store, not sent just now
    size: int  # bytes the payload had (an oversized one is not kept: it is never read)


class CommandDispatcher:
    """Validates and runs commands on a thread of its own; replies to every one."""

    def __init__(
        self,
        topics: Topics,
        contract: Contract,
        publisher: Publisher,
        *,
        max_bytes: int = 16_384,
        queue_size: int = 32,
        v5: bool = True,
    ) -> None:
        self.topics = topics
        self.contract = contract
        self.publisher = publisher
        self.max_bytes = max_bytes
        self.v5 = v5
        self._commands: dict[str, Command] = {}
        self._queue: queue.Queue[Request | None] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="mqtt-commands", daemon=True)
        self._log = log.bind(gateway=topics.gateway_id)
        # (generation, mid) -> a reply sent to a request's response topic, until its PUBACK.
        # Taken by the command thread and the delivery worker thread, never by paho callbacks.
        self._awaited: dict[tuple[int, int], tuple[str, str, bytes, Properties | None]] = {}
        self._awaited_lock = threading.Lock()
        self._refused_topics: set[str] = set()  # response topics already warned about

    def register(self, name: str, schema: str | dict[str, Any], handler: Handler) -> None:
        """Add (or replace) a command; ``schema`` is a contract schema name or a JSON Schema."""
        if not NAME.match(name):
            raise ValueError(f"command name {name!r} must match {NAME.pattern}")
        self.contract.validator(schema)  # a broken schema fails here, at registration
        self._commands[name] = Command(name, schema, handler)

    @property
    def names(self) -> list[str]:
        return sorted(self._commands)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass  # the thread is busy; it is a daemon thread and ends with the process
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- network thread: hand over quickly ----------------------------------------------------

    def submit(self, message: mqtt.MQTTMessage) -> None:
        """Called on the network thread for every message on the cmd filter; never blocks."""
        name = self.topics.command_name(message.topic)
        if name is None and message.topic == self.topics.command(""):
            name = ""  # ``cmd/`` (a sender's template with an empty name): an unknown command
        props = getattr(message, "properties", None)
        response = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        payload = bytes(message.payload)
        size = len(payload)
        if size > self.max_bytes:
            payload = b""  # held while earlier commands run: 32 large ones could exhaust memory
        request = Request(name or "", payload, response, correlation, bool(message.retain), size)
        if name is None:
            return  # not our gateway's cmd topic: the subscription should not deliver it
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            self._reply(request, None, error=("busy", "too many commands waiting; retry later"))

    # -- command thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            request = self._queue.get()
            if request is None:
                return
            try:
                self._handle(request)
            except Exception:  # noqa: BLE001 - the command thread must survive anything
                self._log.exception("command handling failed", command=request.name)

    def _handle(self, request: Request) -> None:
        if request.size > self.max_bytes:
            self._reply(
                request,
                None,
                error=(
                    "too_large",
                    f"command payload is {request.size} bytes; the limit is {self.max_bytes}: "
                    "send a smaller request",
                ),
            )
            return
        try:
            body = _parse(request.payload)
        except ValueError as exc:
            self._reply(
                request, None, error=("malformed", f"payload is not UTF-8 JSON: {exc}; {_SEND}")
            )
            return
        request_id = _request_id(body)
        if not isinstance(body, dict):
            self._reply(
                request, request_id, error=("malformed", f"payload must be a JSON object; {_SEND}")
            )
            return
        if request.retained:
            # The broker hands a retained command to every new subscription: if run, it would run
            # again at each connect of the gateway (a stale resend or time sync after a restart).
            self._reply(
                request,
                request_id,
                error=(
                    "invalid",
                    "retained commands are not run (they would run again at every connect): "
                    "publish commands without the retain flag, and clear the retained one",
                ),
            )
            return
        command = self._commands.get(request.name)
        if command is None:
            known = ", ".join(self.names) or "none"
            self._reply(
                request,
                request_id,
                error=("unknown_command", f"unknown command {request.name!r}; known: {known}"),
            )
            return
        problems = self.contract.errors(command.schema, body)
        if problems:
            hint = f"fix the request to match command-{request.name}.json and send it again"
            self._reply(
                request,
                request_id,
                error=("invalid", "; ".join([*(p[:300] for p in problems[:5]), hint])),
            )
            return
        self._log.info("command received", command=request.name, request_id=request_id)
        try:
            result = command.handler(body)
        except PunchgateError as exc:
            self._reply(request, request_id, error=("failed", str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - a handler bug becomes an error reply
            self._log.exception("command handler crashed", command=request.name)
            self._reply(
                request,
                request_id,
                error=("failed", f"internal error: {type(exc).__name__}: {exc}"),
            )
            return
        self._reply(request, request_id, result=result)

    def _reply(
        self,
        request: Request,
        request_id: str | None,
        *,
        result: dict[str, Any] | None = None,
        error: tuple[str, str] | None = None,
    ) -> None:
        payload: dict[str, Any] = {
            "request_id": request_id,
            "command": request.name[:64],
            "gateway_id": self.topics.gateway_id,
            "ok": error is None,
            "time": utc_timestamp(),
        }
        if error is None:
            payload["result"] = result if result is not None else {}
        else:
            payload["error"] = {"code": error[0], "message": error[1][:2000]}
            self._log.warning(
                "command rejected", command=request.name, code=error[0], message=error[1][:200]
            )
        topic = self.topics.reply(request.name or "unknown")
        properties = None
        if self.v5:
            if request.response_topic and self._allowed_response_topic(request.response_topic):
                topic = request.response_topic
            if request.correlation is not None:
                properties = Properties(PacketTypes.PUBLISH)
                properties.CorrelationData = request.correlation
        body = encode(payload)
        fallback = self.topics.reply(request.name or "unknown")
        with self._awaited_lock:  # recorded before its PUBACK can be handled
            sent = self.publisher.publish(topic, body, qos=1, properties=properties)
            key = (getattr(sent, "generation", None), getattr(sent, "mid", None))
            if topic != fallback and isinstance(key[0], int) and isinstance(key[1], int):
                if len(self._awaited) >= _AWAITED:
                    self._awaited.pop(next(iter(self._awaited)))
                self._awaited[(key[0], key[1])] = (topic, fallback, body, properties)

    def on_published(self, generation: int, mid: int, ok: bool, reason: str) -> bool:
        """A PUBACK; True if it answered a reply on a response topic (sent again if refused).

        A broker ACL that lets the gateway write only its own topics refuses a backend's
        response topic elsewhere: the reply then goes to ``{prefix}/{gw}/reply/{name}``.
        """
        with self._awaited_lock:
            entry = self._awaited.pop((generation, mid), None)
        if entry is None:
            return False
        if ok:
            return True
        topic, fallback, body, properties = entry
        if topic not in self._refused_topics:
            self._refused_topics.add(topic)
            self._log.warning(
                "broker refused a command reply on its response topic; replying on the "
                "gateway's reply topic",
                response_topic=topic,
                reason=reason,
                reply_topic=fallback,
                hint=f"let the gateway write to {topic} in the broker ACL, or have the backend "
                f"use a response topic under {self.topics.base}/reply/",
            )
        self.publisher.publish(fallback, body, qos=1, properties=properties)
        return True

    def _allowed_response_topic(self, topic: str) -> bool:
        """No wildcards, no ``$`` topics, nothing under the prefix but this gateway's reply tree.

        Otherwise a command could make the gateway publish over its own punches or status, or
        onto another gateway's topics (its punches, status, commands or replies).
        """
        if not topic or len(topic) > 512 or any(c in topic for c in "#+\0") or topic[0] == "$":
            return False
        if topic.startswith(self.topics.base + "/reply/"):
            return True
        return not topic.startswith(self.topics.prefix + "/")


_SEND = 'send a UTF-8 JSON object, e.g. {"request_id": "r1"}'


def _parse(payload: bytes) -> Any:
    """The command's JSON; ``ValueError`` saying why it is not UTF-8 JSON."""
    if not payload:
        # An empty message is how MQTT clears a retained command, and the broker forwards it to
        # the subscribed gateway: run as ``{}`` it set every terminal's clock (time-sync).
        raise ValueError("the payload is empty (that only clears a retained message)")
    try:
        body = json.loads(payload.decode("utf-8"))
        # A "\ud800" escape parses to a lone surrogate, which no UTF-8 text (nor the reply
        # echoing it) can carry: the same as invalid UTF-8.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise ValueError("arrays or objects nested too deep") from None
    return body


def _request_id(body: Any) -> str | None:
    if isinstance(body, dict):
        value = body.get("request_id")
        if isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return None

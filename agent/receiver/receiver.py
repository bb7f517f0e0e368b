"""The reference receiver: shared subscription to every gateway's punches, idempotent store,
backend acknowledgement only after the commit.

It is the HR backend team's worked example of the contract and our own end-to-end test peer:

1. subscribe to ``$share/{group}/{prefix}/+/punches`` (MQTT 5; several receivers in one group
   split the stream, each message goes to one of them) with a persistent session;
2. drain whatever messages have arrived, insert their punches by id in one transaction
   (a re-sent punch is ignored), commit;
3. only then publish ``{"ids": [...]}`` to ``{prefix}/{gateway}/ack``, one per numbering
   (``outbox_id``, named in the ack; split to fit the broker's packet limit) and acknowledge
   the MQTT messages (manual PUBACK), so a crash before the commit loses nothing: the broker
   and the gateway both send again. A batch the database cannot take (down, full, locked) is
   held and tried again until it can.

A punch whose values the database refuses (a NUL in a text for PostgreSQL, an integer beyond
64 bits) must not hold up every other gateway's punches stored with it: the batch is split in
halves until that punch stands alone, everything else is stored and acknowledged, and the punch
is logged and left unacknowledged. It stays pending at its gateway, which sends it again later.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import asdict, dataclass
from typing import Any

import paho.mqtt.client as mqtt
import structlog

from agent.mqtt.connection import MqttConnection
from agent.mqtt.contract import (
    Contract,
    ack_payload,
    encode,
    gateway_of,
    punches_filter,
    shared,
)
from agent.mqtt.options import MqttOptions
from agent.receiver.store import PunchStore, UnstorablePunches
from config.errors import PunchgateError

log = structlog.get_logger("receiver")

_MAX_MESSAGES_PER_COMMIT = 500
_MAX_IDS_PER_ACK = 100_000  # the ack schema's maxItems


def _punch_index(path: tuple[Any, ...]) -> int | None:
    """The batch index of the punch a contract violation at ``path`` lies in, if one."""
    if len(path) >= 2 and path[0] == "punches" and isinstance(path[1], int):
        return path[1]
    return None


@dataclass
class ReceiverStats:
    """Counters since start."""

    messages: int = 0
    punches: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    acks: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class _Incoming:
    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes


class Receiver:
    """Receives punch batches, stores them once, acknowledges after commit."""

    def __init__(
        self,
        options: MqttOptions,
        store: PunchStore,
        *,
        group: str = "punchgate",
        name: str = "receiver",
        session_expiry: int = 86_400,
        validate: bool = False,
    ) -> None:
        self.options = options
        self.store = store
        self.prefix = options.topic_prefix
        self.name = name
        self.stats = ReceiverStats()
        # Tolerant: a newer gateway's added fields must not get its punches refused forever.
        self.contract = Contract.load(tolerant=True) if validate else None
        self._queue: queue.SimpleQueue[_Incoming | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receiver-store", daemon=True)
        self.subscription = shared(group, punches_filter(self.prefix))
        self.connection = MqttConnection(
            options,
            self,
            subscriptions=[(self.subscription, 1)],
            name="receiver-net",
            session_expiry=session_expiry,
            manual_ack=True,
        )
        self._log = log.bind(receiver=name, group=group)

    def start(self) -> Receiver:
        self._thread.start()
        self.connection.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Store and acknowledge what has arrived, then disconnect (the session stays).

        False when the store thread still waits on the database after ``timeout`` s: close the
        store then, which cuts the statement short (its batch stays unacknowledged).
        """
        self._stopping.set()  # cut short the retry waits of a failing store
        self._queue.put(None)
        self._thread.join(timeout)
        self.connection.close(timeout)
        return not self._thread.is_alive()

    # -- ConnectionHandler (network thread) ---------------------------------------------------

    def on_connected(self, generation: int, broker_url: str) -> None:
        self._log.info("receiving", url=broker_url, subscription=self.subscription)

    def on_disconnected(self, generation: int, reason: str) -> None:
        pass  # the connection logs; unacknowledged messages come again after the reconnect

    def on_published(self, generation: int, mid: int, ok: bool, reason: str) -> None:
        if not ok:
            self._log.warning("broker refused an ack message", reason=reason)

    def on_message(self, generation: int, message: mqtt.MQTTMessage) -> None:
        self._queue.put(
            _Incoming(generation, message.mid, message.qos, message.topic, bytes(message.payload))
        )

    # -- store thread -------------------------------------------------------------------------

    def _run(self) -> None:
        # A batch the database could not take is held and tried again with the next messages,
        # never dropped: its messages stay unacknowledged until the commit, and the broker
        # re-sends unacknowledged messages only after a reconnect, which a database outage does
        # not cause. Left behind, they filled the broker's window for this receiver (20 on a
        # stock Mosquitto) and it was sent nothing more until restarted.
        held: list[_Incoming] = []
        held_punches: list[dict[str, Any]] = []  # parsed once: rejects are counted once
        failures = 0
        while True:
            batch, stop = self._take(held, failures)
            punches = held_punches + [p for i in batch[len(held) :] for p in self._parse(i)]
            if batch:
                if self._handle(batch, punches):
                    held, held_punches, failures = [], [], 0
                else:
                    held, held_punches, failures = batch, punches, failures + 1
            if stop:
                return

    def _take(self, held: list[_Incoming], failures: int) -> tuple[list[_Incoming], bool]:
        """(``held`` and the messages that arrived, up to one commit's worth; stop?).

        With nothing held, waits for a message; else at most a backoff (0.5 s, doubling up
        to 10 s) before trying ``held`` again.
        """
        try:
            if held:
                first = self._queue.get(timeout=min(0.5 * 2**failures, 10.0))
            else:
                first = self._queue.get()
        except queue.Empty:
            return held, False
        batch = held + ([first] if first is not None else [])
        stop = first is None
        while not stop and len(batch) < _MAX_MESSAGES_PER_COMMIT:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stop = True
            else:
                batch.append(item)
        self.stats.messages += len(batch) - len(held)
        return batch, stop

    def _handle(self, batch: list[_Incoming], punches: list[dict[str, Any]]) -> bool:
        """Store the ``punches`` of ``batch`` and acknowledge it; False when the database could
        not take them."""
        try:
            return self._store_and_ack(batch, punches)
        except Exception as exc:  # noqa: BLE001 - the store thread must outlive any batch
            # Nothing of this batch was acknowledged: the broker re-sends it after the next
            # reconnect, the gateway after its ack timeout.
            self._log.error("handling a batch failed", error=str(exc), kind=type(exc).__name__)
            return True

    def _store_and_ack(self, batch: list[_Incoming], punches: list[dict[str, Any]]) -> bool:
        stored = self._store(punches)
        if stored is None:
            return self._stopping.is_set()  # stopping: the broker re-sends to the next session
        inserted, refused = stored
        if refused:
            # Unacknowledged, these stay pending at their gateways, which send them again.
            kept = {id(p) for p in refused}
            punches = [p for p in punches if id(p) not in kept]
        # One ack per gateway and numbering: it names the outbox_id its punches came with.
        ids_by_numbering: dict[tuple[str, str | None], list[str]] = {}
        for punch in punches:
            key = (punch["gateway_id"], punch["outbox_id"])
            ids_by_numbering.setdefault(key, []).append(punch["id"])
        self.stats.punches += len(punches)
        self.stats.inserted += inserted
        self.stats.duplicates += len(punches) - inserted
        try:
            for (gateway, numbering), ids in ids_by_numbering.items():
                for body in self._ack_bodies(gateway, numbering, ids):
                    self.connection.publish(f"{self.prefix}/{gateway}/ack", body, qos=1)
                    self.stats.acks += 1
            for item in batch:
                self.connection.ack(item.generation, item.mid, item.qos)
        except OSError as exc:
            # paho raises (EBADF, EPIPE) when the network thread tears the connection down under
            # this call, as on a broker restart. The punches are committed; the broker re-sends
            # the unacknowledged messages after the reconnect and the store ignores them by id.
            self._log.warning("acknowledging failed; the broker will re-send", error=str(exc))
        return True

    def _ack(self, gateway: str, numbering: str | None, ids: list[str]) -> bytes:
        """One ack message; ``numbering``: the outbox_id of the punches acknowledged, if any."""
        body = ack_payload(ids, gateway_id=gateway, receiver=self.name)
        if numbering is not None:
            body["outbox_id"] = numbering
        return encode(body)

    def _ack_bodies(self, gateway: str, numbering: str | None, ids: list[str]) -> list[bytes]:
        """The ack messages for ``ids``: one, or as many as it takes to fit the broker's limit.

        A commit takes whatever has arrived (up to 500 messages, more after a database outage),
        so one gateway's ack can hold thousands of ids; a broker drops a client that sends a
        packet over its limit, and the same ack was too large again after the re-delivery.
        """
        body = self._ack(gateway, numbering, ids)
        limit = self.connection.max_payload
        if (limit is None or len(body) <= limit) and len(ids) <= _MAX_IDS_PER_ACK:
            return [body]
        empty = len(self._ack(gateway, numbering, []))
        chunks: list[list[str]] = [[]]
        size = empty
        for punch_id in ids:  # bounded by len(ids)
            cost = len(encode(punch_id)) + 1  # the id and its comma
            chunk = chunks[-1]
            if chunk and (
                (limit is not None and size + cost > limit) or len(chunk) >= _MAX_IDS_PER_ACK
            ):
                chunks.append([])
                size = empty
            chunks[-1].append(punch_id)
            size += cost
        return [self._ack(gateway, numbering, chunk) for chunk in chunks]

    def _store(self, punches: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]] | None:
        """Store ``punches``: (rows inserted, punches refused for their values), or None when
        the database failed (then nothing may be acknowledged)."""
        for attempt in range(3):
            try:
                return (self.store.store(punches) if punches else 0), []
            except UnstorablePunches:
                return self._store_apart(punches)
            except PunchgateError as exc:
                # Nothing is acknowledged: the broker re-sends after our reconnect, the gateway
                # after its ack timeout. Retry briefly in case the database was only busy.
                self._log.error("storing punches failed", error=str(exc), attempt=attempt + 1)
                self._stopping.wait(0.5 * (attempt + 1))
        return None

    def _store_apart(
        self, punches: list[dict[str, Any]]
    ) -> tuple[int, list[dict[str, Any]]] | None:
        """Store in halves around the punches the database refuses; those are logged, not stored.

        Bounded: every failed part is split in two, so at most 2n - 1 stores for n punches (and
        about 2k log n for k refused ones among them).
        """
        inserted = 0
        refused: list[dict[str, Any]] = []
        parts = [punches]
        while parts:
            part = parts.pop()
            try:
                inserted += self.store.store(part)
            except UnstorablePunches as exc:
                if len(part) > 1:
                    half = len(part) // 2
                    parts += [part[half:], part[:half]]  # the first half next: seq order
                    continue
                punch = part[0]
                refused.append(punch)
                self.stats.rejected += 1
                self._log.error(
                    "punch refused by the database; not acknowledged",
                    gateway=punch.get("gateway_id"),
                    id=punch.get("id"),
                    seq=punch.get("seq"),
                    error=str(exc),
                    action="it stays pending at its gateway; fix the value or the schema",
                )
            except PunchgateError as exc:
                # The database itself failed half-way: what was stored is committed and found
                # again by id when the gateways re-send; nothing is acknowledged now.
                self._log.error("storing punches failed", error=str(exc))
                return None
        return inserted, refused

    def _parse(self, item: _Incoming) -> list[dict[str, Any]]:
        """``_punches_of``, and a message that breaks it is rejected alone (never the thread)."""
        try:
            return self._punches_of(item)
        except Exception as exc:  # noqa: BLE001 - one message must not stop every gateway's
            return self._reject(item, f"{type(exc).__name__}: {exc}")

    def _punches_of(self, item: _Incoming) -> list[dict[str, Any]]:
        """The punches of one message that may be stored; anything else is logged and dropped."""
        gateway = gateway_of(self.prefix, item.topic)
        if gateway is None:  # ``{prefix}//punches``: '+' matches an empty level
            return self._reject(item, "no gateway id in the topic")
        try:
            body = json.loads(item.payload)
        except (ValueError, RecursionError):  # nested too deep: RecursionError
            return self._reject(item, "not JSON")
        invalid: dict[int, list[str]] = {}
        if self.contract is not None:
            # A punch that breaks the contract must not take the valid ones of its batch with
            # it (they would never be acknowledged): only a broken envelope rejects it whole.
            envelope = []
            for path, problem in self.contract.violations("punches", body):
                index = _punch_index(path)
                if index is None:
                    envelope.append(problem)
                else:
                    invalid.setdefault(index, []).append(problem)
            if envelope:
                return self._reject(item, "; ".join(envelope[:3]))
            for index, problems in invalid.items():
                self._log.warning(
                    "rejected a punch that breaks the contract; not acknowledged",
                    topic=item.topic,
                    index=index,
                    problems=problems[:3],
                )
        if not isinstance(body, dict) or not isinstance(body.get("punches"), list):
            return self._reject(item, "no 'punches' list")
        numbering = body.get("outbox_id")  # absent from an old gateway's batches
        if numbering is not None and not isinstance(numbering, str):
            return self._reject(item, "'outbox_id' is not text")
        self.stats.rejected += len(invalid)
        good = []
        for index, punch in enumerate(body["punches"]):
            if index in invalid:
                continue
            if (
                isinstance(punch, dict)
                and isinstance(punch.get("id"), str)
                and type(punch.get("seq")) is int  # not a bool: true is no sequence number
                and punch.get("gateway_id") == gateway  # a gateway speaks only for itself
            ):
                punch["outbox_id"] = numbering  # the numbering its seq counts in, stored with it
                good.append(punch)
            else:
                self.stats.rejected += 1
        return good

    def _reject(self, item: _Incoming, why: str) -> list[dict[str, Any]]:
        self.stats.rejected += 1
        self._log.warning("rejected a message", topic=item.topic, why=why, size=len(item.payload))
        return []

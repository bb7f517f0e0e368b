"""Status publishing for the delivery worker: the gateway's retained birth and each terminal's.

The gateway status (birth) goes out on every connect, every ``status_interval``, and at once
when a terminal appears, changes state or is removed. Each terminal's status is retained on its
own topic and published again on every connect, so that the backend never keeps a stale one.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from agent.mqtt.connection import MqttConnection
from agent.mqtt.contract import Contract, ContractViolation, Topics, encode
from agent.mqtt.drain import Drain
from agent.mqtt.options import MqttOptions
from agent.mqtt.status import DeviceStatus, GatewayIdentity
from buffer.outbox import Outbox


class StatusPublishing:
    """Mixed into ``DeliveryWorker``, which provides the attributes declared here."""

    options: MqttOptions
    outbox: Outbox
    topics: Topics
    clock: Callable[[], float]
    contract: Contract
    identity: GatewayIdentity
    connection: MqttConnection
    drain: Drain
    _events: queue.SimpleQueue[tuple[Any, ...]]
    _devices: dict[str, dict[str, Any]]
    _removed: dict[str, dict[str, Any]]
    _next_status: float

    # -- any thread ---------------------------------------------------------------------------

    def publish_device_status(self, device_id: str, status: DeviceStatus | dict[str, Any]) -> None:
        """Publish (retained) a terminal's status now or on the next connect.

        Raises ``ContractViolation`` (a ``ValueError``) if the payload does not fit the contract.
        """
        payload = (
            status.payload(self.topics.gateway_id) if isinstance(status, DeviceStatus) else status
        )
        if payload.get("device_id") != device_id:
            raise ContractViolation(
                f"device status payload is for {payload.get('device_id')!r}, not {device_id!r}"
            )
        self.contract.validate("device-status", payload)
        self._events.put(("device", device_id, payload))

    def forget_device(self, device_id: str) -> None:
        """A terminal removed from the configuration: no longer listed in the gateway status.

        Its last status (published before this call) is still sent on the next connect if it
        could not be sent yet, so that the backend does not keep its old retained one.
        """
        self._events.put(("forget", device_id))

    # -- worker thread ------------------------------------------------------------------------

    def _announce(self) -> None:
        """On connect: the birth, then every terminal's status (the removed ones' last)."""
        self._publish_birth()
        for payload in [*self._removed.values(), *self._devices.values()]:
            self._publish_device(payload)

    def _device_changed(self, device_id: str, payload: dict[str, Any]) -> None:
        before = self._devices.get(device_id)
        if before is None or before.get("state") != payload.get("state"):
            self._next_status = 0.0  # the gateway status lists it: say so now, not in 60 s
        self._devices[device_id] = payload
        self._removed.pop(device_id, None)
        if self.drain.generation:
            self._publish_device(payload)

    def _device_forgotten(self, device_id: str) -> None:
        if device_id in self._devices:
            self._removed[device_id] = self._devices.pop(device_id)
            self._next_status = 0.0

    def _publish_birth(self) -> None:
        stats = self.outbox.stats()
        payload = self.identity.online(
            broker=self.connection.status().broker_url,
            devices={d: p["state"] for d, p in self._devices.items()},
            backlog=stats.pending,
            oldest_pending_age_s=stats.oldest_pending_age_s,
            delivered=self.drain.delivered,
        )
        self.connection.publish(self.topics.status, encode(payload), qos=1, retain=True)
        self._next_status = self.clock() + self.options.status_interval

    def _publish_device(self, payload: dict[str, Any]) -> None:
        topic = self.topics.device_status(payload["device_id"])
        self.connection.publish(topic, encode(payload), qos=1, retain=True)

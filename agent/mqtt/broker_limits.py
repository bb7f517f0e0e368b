"""What the drain learns from a broker that refuses or drops its batches, and what to tell IT.

Two field configurations the broker does not announce: Mosquitto's ``message_size_limit``
(over MQTT 5 a larger message is answered with PUBACK reason 0x95, not a PUBACK reason code,
so paho drops the connection as a protocol error before we see the PUBACK), and a per-gateway
ACL that refuses our punches topic (PUBACK "Not authorized").
"""

from __future__ import annotations

import structlog

from agent.mqtt.options import MqttOptions


class BrokerLimits:
    """A batch byte cap learned from dropped connections, and hints for refusals."""

    def __init__(
        self, options: MqttOptions, gateway_id: str, log: structlog.typing.FilteringBoundLogger
    ) -> None:
        self.options = options
        self.gateway_id = gateway_id
        self._log = log
        self.size_cap: int | None = None  # for the life of the drain
        self._largest_sent = 0  # on the current connection

    def sent(self, size: int) -> None:
        """A batch of ``size`` bytes went out on the current connection."""
        self._largest_sent = max(self._largest_sent, size)

    def max_bytes(self, announced: int | None) -> int:
        """Bytes per batch: ``batch_bytes``, the broker's announced limit, the learned cap."""
        caps = [self.options.batch_bytes, announced, self.size_cap]
        return min(c for c in caps if c is not None)

    def dropped(self, reason: str, batches_in_flight: bool) -> str:
        """The connection is gone; returns what to add to the re-sent rows' error.

        A protocol error with batches in flight halves the batch size, down to one punch:
        re-sending the same batch would fail the same way at every reconnect, forever. Only
        bytes per message change; nothing is skipped.
        """
        largest, self._largest_sent = self._largest_sent, 0
        if not batches_in_flight or "protocol error" not in reason.lower():
            return ""
        old = self.options.batch_bytes if self.size_cap is None else self.size_cap
        cap = max(1, min(old, largest) // 2)
        self.size_cap = cap
        hint = (
            "the broker dropped the connection with batches in flight; Mosquitto does that "
            "when a message is larger than its message_size_limit: raise message_size_limit "
            f"above mqtt.batch_bytes ({self.options.batch_bytes}) or lower batch_bytes"
        )
        self._log.warning(
            "broker dropped a batch; sending smaller batches",
            largest_batch_bytes=largest,
            batch_bytes_now=cap,
            hint=hint,
        )
        return f" ({hint}; batches now at most {cap} bytes)"

    def refusal_hint(self, reason: str) -> str:
        """What to change on the broker for a refusal a site's ACL causes (MQTT 5 only)."""
        if "authori" not in reason.lower():
            return ""
        prefix = f"{self.options.topic_prefix}/{self.gateway_id}"
        return (
            f": the broker's ACL does not let this gateway write {prefix}/punches; allow write "
            f"on {prefix}/# (an ACL by %u: the user name is the gateway id; by %c: set "
            f"mqtt.client_id to the gateway id, the client id now is {self.options.client_id})"
        )

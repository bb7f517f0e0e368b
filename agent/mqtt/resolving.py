"""A paho client whose connect looks the broker's host name up with a deadline.

paho's ``connect()`` calls ``socket.create_connection((host, port), connect_timeout)``, whose
``getaddrinfo`` has no timeout: with the site's DNS server down it blocked the network thread
(and the doctor) for 20-40 s. Here the lookup is bounded by ``connect_timeout`` as well
(``drivers.netaddr``). paho keeps the host name in ``_host``, so TLS still checks the broker's
certificate against the name, not the address.
"""

from __future__ import annotations

import socket
from typing import Any

import paho.mqtt.client as mqtt

from drivers.netaddr import Resolver, create_connection


class ResolvingClient(mqtt.Client):
    """``mqtt.Client`` whose TCP connect resolves the host through ``resolver`` (bounded)."""

    def __init__(self, *args: Any, resolver: Resolver | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resolver = resolver or Resolver()

    def _create_socket_connection(self) -> socket.socket:
        if self._get_proxy() or self._bind_address or self._bind_port:
            # A proxy looks the name up itself; a bind address we never set: paho's own way.
            return super()._create_socket_connection()
        return create_connection(
            self._host, self._port, self._connect_timeout, resolver=self._resolver
        )

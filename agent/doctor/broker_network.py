"""The broker checks' first steps: the host name's DNS lookup and the TCP connect."""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any

from agent.doctor.broker_step import FAMILY, limit_note
from agent.doctor.result import CheckResult, fail, ok
from agent.mqtt.options import BrokerAddress, MqttOptions
from drivers.netaddr import LookupTimeout, Resolver, create_connection


def check_dns(
    broker: BrokerAddress, _o: MqttOptions, timeout: float, state: dict[str, Any]
) -> CheckResult:
    """The broker host name's addresses, looked up within ``timeout`` (none for an IP address)."""
    name = "DNS"
    try:
        ipaddress.ip_address(broker.host)
    except ValueError:
        pass
    else:
        state["addresses"] = [broker.host]
        return ok(FAMILY, broker.url, name, f"{broker.host} is an IP address (no lookup needed)")
    started = time.monotonic()
    try:
        resolver: Resolver = state["resolver"]
        infos = resolver.addresses(broker.host, broker.port, timeout, kind=socket.SOCK_STREAM)
    except LookupTimeout:
        return fail(
            FAMILY,
            broker.url,
            name,
            f"no answer from the DNS server for {broker.host} within {timeout:g}s",
            "check /etc/resolv.conf and the gateway's uplink (try: getent hosts "
            f"{broker.host}), or write the broker's IP address in mqtt.url",
        )
    except socket.gaierror as exc:
        return fail(
            FAMILY,
            broker.url,
            name,
            f"cannot resolve {broker.host}: {exc.strerror}",
            "check the host name in mqtt.url and the DNS settings "
            f"(try: getent hosts {broker.host})",
        )
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    state["addresses"] = addresses
    # The later steps connect to these addresses: no second lookup eats into their time.
    state["resolver"] = Resolver(lambda *_args: infos)
    took = (time.monotonic() - started) * 1000
    return ok(FAMILY, broker.url, name, f"{broker.host} -> {', '.join(addresses)} ({took:.0f} ms)")


def check_tcp(
    broker: BrokerAddress, options: MqttOptions, timeout: float, state: dict[str, Any]
) -> CheckResult:
    """A TCP connection to the broker's addresses; kept in ``state`` for the TLS step."""
    name = "TCP connect"
    where = f"{broker.host}:{broker.port}"
    started = time.monotonic()
    try:
        sock = create_connection(broker.host, broker.port, timeout, resolver=state["resolver"])
    except ConnectionRefusedError:
        return fail(
            FAMILY,
            broker.url,
            name,
            f"{where} refused the connection",
            "nothing listens there: check the broker is running and the port in mqtt.url",
        )
    except TimeoutError:
        return fail(
            FAMILY,
            broker.url,
            name,
            f"no answer from {where} within {timeout:g}s{limit_note(options, timeout)}",
            "a firewall or the network path drops the traffic: check routing and firewall rules",
        )
    except OSError as exc:
        return fail(
            FAMILY,
            broker.url,
            name,
            f"cannot connect to {where}: {exc.strerror or exc}",
            "check the network (ip route, cabling) and the host in mqtt.url",
        )
    state["socket"] = sock
    took = (time.monotonic() - started) * 1000
    if not broker.tls:
        sock.close()
    return ok(FAMILY, broker.url, name, f"{where} accepted the connection ({took:.0f} ms)")

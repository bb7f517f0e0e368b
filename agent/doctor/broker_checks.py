"""Doctor checks on each MQTT broker URL: DNS, TCP, TLS, certificate expiry, MQTT CONNECT.

The steps run in order on one URL and stop at the first failure (later steps are ``skip``), so
the report names the first broken layer. Every network step is bounded by ``timeout`` seconds,
and never longer than ``mqtt.connect_timeout``: a broker slower than that fails the daemon too.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import time
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.doctor.daemon_view import DaemonView
from agent.doctor.result import CheckResult, Job, fail, ok, skip, warn
from agent.mqtt.connection import build_ssl_context, describe_connack
from agent.mqtt.diagnose import QOS0_HINT
from agent.mqtt.options import BrokerAddress, MqttOptions
from agent.mqtt.resolving import ResolvingClient
from config import Settings
from config.errors import BrokerError
from drivers.netaddr import LookupTimeout, Resolver, create_connection

FAMILY = "broker"
CERT_WARN_DAYS = 30  # a broker certificate expiring sooner than this is reported as a warning
_STEPS = ("DNS", "TCP connect", "TLS handshake", "certificate", "MQTT login")


def broker_jobs(settings: Settings, timeout: float) -> list[Job]:
    """One job per configured broker URL."""
    options = MqttOptions.from_settings(settings.mqtt, client_id=settings.client_id)
    # A distinct client id: connecting with the daemon's own id would disconnect the daemon.
    options = options.with_(client_id=f"{options.client_id}-doctor-{os.getpid()}")
    step_timeout = min(timeout, options.connect_timeout)
    jobs = []
    for url in options.urls:
        jobs.append(
            Job(
                FAMILY,
                url,
                "broker",
                step_timeout * len(_STEPS) + 1.0,
                lambda url=url: check_broker(url, options, step_timeout),  # type: ignore[misc]
                next_step_on_timeout="check the network path to the broker and its firewall",
            )
        )
    return jobs


def check_broker(
    url: str, options: MqttOptions, timeout: float, *, resolver: Resolver | None = None
) -> list[CheckResult]:
    """Every step for one broker URL; after a failure the remaining steps are skipped."""
    try:
        broker = BrokerAddress.parse(url)
    except Exception as exc:  # noqa: BLE001 - config validation already ran; report, never crash
        return [fail(FAMILY, url, "URL", str(exc), "fix mqtt.url in the config")]
    results: list[CheckResult] = []
    steps = (_dns, _tcp, _tls, _certificate, _login)
    # Every lookup of the host name is bounded by ``timeout`` (getaddrinfo has no timeout).
    state: dict[str, Any] = {"resolver": resolver or Resolver()}
    for step in steps:
        result = step(broker, options, timeout, state)
        if result is None:
            continue
        results.append(result)
        if result.verdict == "fail":
            break
    if results and results[-1].verdict == "fail":
        failed = results[-1].name
        done = {r.name for r in results}
        for name in _STEPS:
            if name not in done and (broker.tls or name not in ("TLS handshake", "certificate")):
                results.append(skip(FAMILY, url, name, f"not run: {failed} failed"))
    return results


def _dns(
    broker: BrokerAddress, _o: MqttOptions, timeout: float, state: dict[str, Any]
) -> CheckResult:
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


def _tcp(
    broker: BrokerAddress, options: MqttOptions, timeout: float, state: dict[str, Any]
) -> CheckResult:
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
            f"no answer from {where} within {timeout:g}s{_limit(options, timeout)}",
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


def _tls(
    broker: BrokerAddress, options: MqttOptions, timeout: float, state: dict[str, Any]
) -> CheckResult | None:
    name = "TLS handshake"
    if not broker.tls:
        if options.username is not None and not _loopback(broker.host):
            return warn(
                FAMILY,
                broker.url,
                name,
                "no TLS: the MQTT user name and password cross the network in clear text",
                "use an mqtts:// URL (port 8883) with mqtt.ca_file",
            )
        return skip(FAMILY, broker.url, name, "not applicable: mqtt:// (no TLS)")
    sock: socket.socket = state.pop("socket")
    try:
        context = build_ssl_context(options)
    except BrokerError as exc:
        sock.close()
        return fail(FAMILY, broker.url, name, str(exc), "fix mqtt.ca_file / cert_file / key_file")
    sock.settimeout(timeout)
    try:
        tls = context.wrap_socket(sock, server_hostname=broker.host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        reason = exc.verify_message or str(exc)
        return fail(
            FAMILY, broker.url, name, f"certificate rejected: {reason}", _verify_fix(reason)
        )
    except ssl.SSLError as exc:
        sock.close()
        return fail(
            FAMILY,
            broker.url,
            name,
            f"TLS handshake failed: {exc.reason or exc}",
            "check that this port speaks TLS (mqtts://, usually 8883) and whether the broker "
            "requires a client certificate (mqtt.cert_file/key_file)",
        )
    except (TimeoutError, OSError) as exc:
        sock.close()
        return fail(
            FAMILY,
            broker.url,
            name,
            f"TLS handshake did not complete: {_os_reason(exc, timeout)}",
            "check that this port speaks TLS (mqtts://) and not plain MQTT",
        )
    try:
        state["peer_cert"] = tls.getpeercert()
        detail = f"{tls.version()} {(tls.cipher() or ('?',))[0]}, chain verified"
    finally:
        tls.close()
    if options.tls_insecure:
        return warn(
            FAMILY,
            broker.url,
            name,
            detail + ", host name NOT checked (tls_insecure = true)",
            "put the host name from the broker certificate in mqtt.url, then set "
            "tls_insecure = false",
        )
    return ok(FAMILY, broker.url, name, detail + f", host name {broker.host} matches")


def _certificate(
    broker: BrokerAddress, _o: MqttOptions, _t: float, state: dict[str, Any]
) -> CheckResult | None:
    name = "certificate"
    if not broker.tls:
        return None
    cert = state.get("peer_cert") or {}
    if "notAfter" not in cert:
        return warn(FAMILY, broker.url, name, "the broker sent no readable certificate dates", "")
    not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), UTC)
    days = (not_after - datetime.now(UTC)).total_seconds() / 86400
    subject = _name(cert.get("subject", ()))
    issuer = _name(cert.get("issuer", ()))
    detail = (
        f"{subject} issued by {issuer}, valid until {not_after:%Y-%m-%d} ({days:.0f} days left)"
    )
    if days < 0:
        return fail(FAMILY, broker.url, name, detail, "renew the broker certificate now")
    if days < CERT_WARN_DAYS:
        return warn(
            FAMILY,
            broker.url,
            name,
            detail,
            f"renew the broker certificate before {not_after:%Y-%m-%d}: after that the gateway "
            "cannot deliver",
        )
    return ok(FAMILY, broker.url, name, detail)


def _login(
    broker: BrokerAddress, options: MqttOptions, timeout: float, state: dict[str, Any]
) -> CheckResult:
    name = "MQTT login"
    who = f"as {options.username!r}" if options.username else "anonymously"
    v5 = options.protocol == "5"
    client = ResolvingClient(
        CallbackAPIVersion.VERSION2,
        client_id=options.client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else True,
        reconnect_on_failure=False,
        resolver=state["resolver"],
    )
    client.connect_timeout = timeout
    if options.username is not None:
        client.username_pw_set(options.username, options.password)
    if broker.tls:
        client.tls_set_context(build_ssl_context(options))
        if options.tls_insecure:
            client.tls_insecure_set(True)
    connack: list[Any] = []
    announced: list[Any] = []

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, properties: Any) -> None:
        announced.append(properties)
        connack.append(reason)

    client.on_connect = on_connect
    extra: dict[str, Any] = {}
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        extra = {"clean_start": True, "properties": props}
    try:
        client.connect(broker.host, broker.port, keepalive=max(5, int(timeout) + 5), **extra)
    except (OSError, ValueError) as exc:
        client._reset_sockets()
        reason = _os_reason(exc, timeout) if isinstance(exc, OSError) else str(exc)
        return fail(
            FAMILY, broker.url, name, f"cannot connect {who}: {reason}", "see the steps above"
        )
    try:
        deadline = time.monotonic() + timeout
        lost = False
        while not connack and time.monotonic() < deadline:
            if client.loop(0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                lost = not connack
                break
        if not connack:
            step = "the port does not answer like an MQTT broker: check the URL scheme and port"
            if not lost:
                detail = f"no CONNACK within {timeout:g}s{_limit(options, timeout)} {who}"
            else:
                detail = f"the broker closed the connection without a CONNACK {who}"
                step += "" if broker.tls else " (a TLS port, usually 8883, needs mqtts://)"
            return fail(FAMILY, broker.url, name, detail, step)
        reason = connack[0]
        if getattr(reason, "is_failure", False):
            text = describe_connack(broker, reason)
            step = (
                text.split("; ", 1)[1]
                if "; " in text
                else "read the broker log for this client; check its access rules (ACL)"
            )
            return fail(FAMILY, broker.url, name, f"CONNACK {who}: {reason}", step)
        client.disconnect()
        end = time.monotonic() + min(1.0, timeout)
        while client.want_write() and time.monotonic() < end:
            client.loop(0.05)
        detail = f"CONNACK {who}: {reason}, MQTT {options.protocol}"
        # The doctor registers no will; the daemon's (QoS 1, retained) meets these limits.
        if getattr(announced[0], "MaximumQoS", 1) == 0:
            return fail(
                FAMILY,
                broker.url,
                name,
                detail + ", but the broker allows only QoS 0: punches cannot be delivered",
                f"the broker limits QoS (Mosquitto: {QOS0_HINT}",
            )
        if getattr(announced[0], "RetainAvailable", 1) == 0:
            return warn(
                FAMILY,
                broker.url,
                name,
                detail + ", but the broker keeps no retained messages: the gateway status is "
                "published unretained, so the backend only sees it when it changes",
                "set retain_available true on the broker",
            )
        if not v5 and options.ack == "broker":
            return warn(
                FAMILY,
                broker.url,
                name,
                detail + ", with broker acks: over MQTT 3.1.1 a broker acknowledges a message "
                "its ACL refuses or that exceeds its size limit, and drops it; those punches are "
                "counted as delivered and never reach HR",
                'set mqtt.protocol = "5" (refusals are then seen and re-sent) or mqtt.ack = '
                '"backend"',
            )
        return ok(FAMILY, broker.url, name, detail)
    finally:
        client._reset_sockets()


def daemon_connection(settings: Settings, daemon: DaemonView) -> CheckResult | None:
    """The running daemon's own broker connection; None when no daemon runs (or says nothing).

    The checks above probe the broker with a connection of the doctor's own; the service's
    connection can still fail (its TLS files, client id or state), and then nothing is delivered.
    """
    state = daemon.broker
    if not daemon.running or "connected" not in state:
        return None
    name = "daemon connection"
    url = str(state.get("broker_url") or settings.mqtt.urls[0])
    if state["connected"]:
        delivered = state.get("delivered")
        detail = f"the running daemon (pid {daemon.pid}) is connected to {url}"
        return ok(FAMILY, url, name, detail + (f", {delivered} delivered" if delivered else ""))
    attempts = state.get("reconnect_attempts") or 0
    return fail(
        FAMILY,
        url,
        name,
        f"the running daemon (pid {daemon.pid}) is not connected, attempt {attempts}: "
        f"{state.get('last_error') or 'no error recorded'}",
        "punches are not being delivered: fix what the broker checks above report (the "
        "service reconnects by itself); if they all pass, the service's connection differs: "
        "read 'punchgate status' and journalctl -u punchgate, then restart the service "
        "(sudo systemctl restart punchgate)",
    )


def _verify_fix(reason: str) -> str:
    lowered = reason.lower()
    if "expired" in lowered:
        return "the broker certificate has expired: renew it on the broker"
    if "not yet valid" in lowered:
        return "the certificate is not valid yet: check the clocks of this gateway and the broker"
    if "hostname" in lowered or "ip address mismatch" in lowered:
        return "use the host name the certificate was issued for in mqtt.url"
    return "set mqtt.ca_file to the CA certificate that signed the broker certificate"


def _name(rdns: Any) -> str:
    for rdn in rdns:
        for key, value in rdn:
            if key == "commonName":
                return f"CN={value}"
    return "?"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _limit(options: MqttOptions, timeout: float) -> str:
    """Names the config key when the wait was the daemon's own connect timeout."""
    return " (mqtt.connect_timeout)" if timeout >= options.connect_timeout else ""


def _os_reason(exc: OSError, timeout: float) -> str:
    """An OSError in words ("Connection reset by peer"), not Python's "[Errno 104] ..."."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    return exc.strerror or str(exc)

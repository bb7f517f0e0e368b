"""The broker checks' TLS steps: the handshake (chain and host name) and the certificate's dates."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from datetime import UTC, datetime
from typing import Any

from agent.doctor.broker_step import FAMILY, os_reason
from agent.doctor.result import CheckResult, fail, ok, skip, warn
from agent.mqtt.connection import build_ssl_context
from agent.mqtt.options import BrokerAddress, MqttOptions
from config.errors import BrokerError

CERT_WARN_DAYS = 30  # a broker certificate expiring sooner than this is reported as a warning


def check_tls(
    broker: BrokerAddress, options: MqttOptions, timeout: float, state: dict[str, Any]
) -> CheckResult | None:
    """The TLS handshake on the TCP step's socket: chain and host name verified (mqtts:// only)."""
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
            f"TLS handshake did not complete: {os_reason(exc, timeout)}",
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


def check_certificate(
    broker: BrokerAddress, _o: MqttOptions, _t: float, state: dict[str, Any]
) -> CheckResult | None:
    """The broker certificate's expiry date (mqtts:// only; None for mqtt://)."""
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

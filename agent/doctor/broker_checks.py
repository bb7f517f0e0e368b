"""Doctor checks on each MQTT broker URL: DNS, TCP, TLS, certificate expiry, MQTT CONNECT.

The steps run in order on one URL and stop at the first failure (later steps are ``skip``), so
the report names the first broken layer. Every network step is bounded by ``timeout`` seconds,
and never longer than ``mqtt.connect_timeout``: a broker slower than that fails the daemon too.
"""

from __future__ import annotations

import os
from typing import Any

from agent.doctor.broker_login import check_login
from agent.doctor.broker_network import check_dns, check_tcp
from agent.doctor.broker_step import FAMILY as FAMILY
from agent.doctor.broker_tls import CERT_WARN_DAYS as CERT_WARN_DAYS
from agent.doctor.broker_tls import check_certificate, check_tls
from agent.doctor.daemon_view import DaemonView
from agent.doctor.result import CheckResult, Job, fail, ok, skip
from agent.mqtt.options import BrokerAddress, MqttOptions
from config import Settings
from drivers.netaddr import Resolver

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
    steps = (check_dns, check_tcp, check_tls, check_certificate, check_login)
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

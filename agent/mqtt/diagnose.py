"""Turning connection failures into one actionable line, and the TLS client context."""

from __future__ import annotations

import ssl
from typing import Any

from agent.mqtt.options import BrokerAddress, MqttOptions
from config.errors import BrokerError


def build_ssl_context(options: MqttOptions) -> ssl.SSLContext:
    """A verifying TLS client context from ``ca_file``/``cert_file``/``key_file``."""
    try:
        context = ssl.create_default_context(
            cafile=str(options.ca_file) if options.ca_file else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise BrokerError(
            f"cannot load the CA file {options.ca_file}: {_reason(exc)}; "
            "set mqtt.ca_file to a readable PEM file with the CA that signed the broker certificate"
        ) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if options.cert_file is not None:

        def no_pass_phrase() -> str:
            # Without this OpenSSL asks on the terminal and blocks whoever started us.
            raise BrokerError(
                f"the client key {options.key_file or options.cert_file} is encrypted: "
                "punchgate cannot ask for its pass phrase. Set mqtt.key_file to an unencrypted "
                "copy readable only by the service (openssl pkey -in KEY -out KEY.plain)"
            )

        try:
            context.load_cert_chain(
                str(options.cert_file), str(options.key_file), password=no_pass_phrase
            )
        except BrokerError:
            raise
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(
                f"cannot load the client certificate {options.cert_file} / key: {_reason(exc)}; "
                "check mqtt.cert_file and mqtt.key_file (PEM, matching pair, readable)"
            ) from exc
    if options.tls_insecure:
        context.check_hostname = False  # the chain is still verified; only the name is not
    return context


def _reason(exc: BaseException) -> str:
    """An OS or OpenSSL error as a person reads it: no ``[Errno 2]``, no ``[SSL: ...]`` tag."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


Stamp = tuple[tuple[str, int, int, int], ...]


def tls_files_stamp(options: MqttOptions) -> Stamp:
    """Which CA, certificate and key files are there now (inode, size, mtime of each)."""
    stamp = []
    for path in (options.ca_file, options.cert_file, options.key_file):
        if path is None:
            continue
        try:
            st = path.stat()
        except OSError:
            stamp.append((str(path), -1, -1, -1))
        else:
            stamp.append((str(path), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamp)


class RenewableSslContext:
    """The TLS client context, rebuilt when its files were replaced on disk since it was built.

    A gateway runs for months while its client certificate is renewed before it expires, or the
    CA bundle is replaced when the broker's CA changes, by copying the new files over the
    configured paths: a context built once at start would present or trust the old ones until
    a restart. A file caught half-written (or broken) keeps the previous context.
    """

    def __init__(self, options: MqttOptions) -> None:
        self._options = options
        self._stamp = tls_files_stamp(options)
        self._context = build_ssl_context(options)  # unloadable files fail here, at start
        self._refused: Stamp | None = None

    def current(self) -> tuple[ssl.SSLContext, str | None]:
        """The context to connect with, and what happened if the files changed (else None)."""
        stamp = tls_files_stamp(self._options)
        if stamp == self._stamp or stamp == self._refused:
            return self._context, None
        try:
            context = build_ssl_context(self._options)
        except BrokerError as exc:
            self._refused = stamp  # said once per version of the files, not at every retry
            return self._context, f"{exc}; connecting with the files loaded before"
        self._context, self._stamp, self._refused = context, stamp, None
        return context, "TLS files changed on disk: loaded again"


def describe_connect_error(
    broker: BrokerAddress, exc: BaseException, timeout: float | None = None
) -> str:
    """A one-line, actionable reason why the TCP/TLS part of a connect failed."""
    where = f"{broker.url}"
    if isinstance(exc, TimeoutError) and "handshake" in str(exc):
        # TCP was accepted, so the path is open: the TLS side is what stays silent.
        within = f" within {timeout:g}s" if timeout else ""
        return (
            f"{where} accepted the connection but did not answer the TLS handshake{within}: "
            "check that this port speaks TLS (mqtts://) and that the broker, or the proxy or "
            "load balancer in front of it, is up and not overloaded"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = str(exc.verify_message or exc).rstrip(".")  # OpenSSL's may end a sentence
        return (
            f"TLS certificate verification failed for {where}: {detail}; "
            "check that mqtt.ca_file is the CA that signed the broker certificate and that the "
            "URL host matches the certificate (tls_insecure skips only the host name check)"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"TLS handshake with {where} failed: {exc.reason or exc}; check that the port speaks "
            "TLS (mqtts://) and, if the broker requires one, mqtt.cert_file/key_file"
        )
    if isinstance(exc, ConnectionRefusedError):
        return f"connection to {where} refused: is the broker running and listening on that port?"
    if isinstance(exc, TimeoutError | OSError) and "timed out" in str(exc):
        return f"connection to {where} timed out: check the network path and firewall"
    return f"cannot connect to {where}: {exc}"


QOS0_HINT = (
    "max_qos 0), and punches are only delivered at least once with QoS 1: set max_qos 1 "
    "(or remove the line) on the broker listener the gateway uses"
)


def describe_connack(broker: BrokerAddress, reason: Any) -> str:
    """A one-line reason for a refused CONNACK."""
    text = str(reason)
    value = getattr(reason, "value", None)
    if value in (0x86, 0x87, 4, 5) or "authori" in text.lower() or "password" in text.lower():
        return (
            f"broker {broker.url} refused the connection: {text}; check mqtt.username and the "
            "password (mqtt.password_file or $PUNCHGATE_MQTT_PASSWORD)"
        )
    if value == 0x9A:
        return (
            f"broker {broker.url} refused the connection: {text}; it does not keep retained "
            "messages (Mosquitto: retain_available false), which the gateway's last will and "
            "status are: the gateway connects again without retaining them; set "
            "retain_available true on the broker so the backend sees the gateway status"
        )
    if value == 0x9B:
        return (
            f"broker {broker.url} refused the connection: {text}; it allows only QoS 0 "
            f"(Mosquitto: {QOS0_HINT})"
        )
    return f"broker {broker.url} refused the connection: {text}"

"""``punchgate receive``: the reference receiver of the backend side (docs/mqtt-contract.md)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import print_json, print_table, stop_on_signals
from agent.mqtt.options import MqttOptions
from agent.receiver import Receiver, open_store
from agent.receiver.dburl import redact_url
from agent.receiver.store import PunchStore, StoreError
from config.errors import ConfigError, UsageError
from config.loader import PASSWORD_ENV
from config.secrets import read_secret_file


def _report(store: PunchStore) -> None:
    summary = store.summary()
    if not summary:
        typer.echo("no punches stored yet")
        return
    print_table(
        ["gateway", "outbox", "punches", "first seq", "last seq", "missing"],
        [
            [s.gateway_id, s.outbox_id or "-", s.punches, s.first_seq, s.last_seq, s.missing]
            for s in summary
        ],
    )
    # A gateway re-installed numbers from 1 again under a new outbox_id: name the numbering of
    # a gap when its gateway has several, and that a re-send reaches only the current one.
    numberings: dict[str, int] = {}
    for s in summary:
        numberings[s.gateway_id] = numberings.get(s.gateway_id, 0) + 1
    for gap in store.gaps():
        several = numberings.get(gap.gateway_id, 0) > 1
        who = gap.gateway_id
        if several:
            who += f" (outbox {gap.outbox_id or 'without outbox_id'})"
        if gap.recovery_jump:
            lost = (
                f"; {gap.missing} number(s) before it were lost with the damaged file, their "
                "punches come back from the terminals with new seqs"
                if gap.missing
                else ""
            )
            typer.echo(
                f"recovery: {who} jumped from seq {gap.first_missing - 1} to "
                f"{gap.last_missing + 1} after recovering its outbox (expected, not missing)" + lost
            )
            continue
        current = (
            f" (a gateway re-sends from its current outbox only: check that its status says "
            f"outbox_id {gap.outbox_id})"
            if several and gap.outbox_id
            else " (a gateway re-sends from its current outbox only: this numbering had none)"
            if several
            else ""
        )
        typer.echo(
            f"gap: {who} is missing seq {gap.first_missing}-{gap.last_missing} "
            f'({gap.count}); ask it to re-send: publish {{"from_seq": {gap.first_missing}}} '
            f"to <prefix>/{gap.gateway_id}/cmd/resend" + current
        )


def receive(
    db: Annotated[
        str, typer.Option("--db", help="SQLite file path, or a postgresql:// URL (needs psycopg).")
    ],
    url: Annotated[
        list[str] | None,
        typer.Option(
            "--url", help="Broker URL (repeat for failover). Default mqtt://127.0.0.1:1883."
        ),
    ] = None,
    group: Annotated[
        str, typer.Option(help="Shared-subscription group: receivers in one group split the load.")
    ] = "punchgate",
    prefix: Annotated[str, typer.Option(help="Topic prefix of the contract.")] = "punchgate/v1",
    client_id: Annotated[
        str | None,
        typer.Option(
            help="Stable, unique per receiver instance. Default punchgate-receiver-GROUP-HOST."
        ),
    ] = None,
    username: Annotated[str | None, typer.Option(help="Broker user name.")] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(help=f"File holding the broker password (else ${PASSWORD_ENV})."),
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option(help="CA certificate for mqtts:// brokers.")
    ] = None,
    cert_file: Annotated[Path | None, typer.Option(help="Client certificate (PEM).")] = None,
    key_file: Annotated[Path | None, typer.Option(help="Client key (PEM).")] = None,
    validate: Annotated[
        bool, typer.Option(help="Validate every batch against the JSON Schema (slower).")
    ] = False,
    report_interval: Annotated[
        float, typer.Option(help="Seconds between progress and gap reports.")
    ] = 60.0,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (demos, tests).")
    ] = None,
    gaps: Annotated[
        bool, typer.Option("--gaps", help="Only print the stored punches and gaps per gateway.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --gaps: print JSON.")] = False,
) -> None:
    """Receive punches from every gateway, store each once, acknowledge after the commit.

    Example: punchgate receive --url mqtt://127.0.0.1:1883 --db /var/lib/hr/punches.db
    """
    if report_interval <= 0:
        # 0 printed the report in a busy loop: a core spinning, the database read each time.
        raise UsageError(
            f"--report-interval must be more than 0 seconds (got {report_interval:g}): it is "
            "how often the stats and the gap report are printed"
        )
    for broker in url or []:
        _refuse_credentials_in(broker)
    store = open_store(db)
    try:
        if gaps:
            if as_json:
                print_json(
                    {
                        "gateways": [vars(s) for s in store.summary()],
                        "gaps": [
                            {
                                **vars(g),
                                "count": g.count,
                                "missing": g.missing,
                                "recovery_jump": g.recovery_jump,
                            }
                            for g in store.gaps()
                        ],
                    }
                )
            else:
                _report(store)
            return
        password = None
        if password_file is not None:
            password = read_secret_file(password_file, "--password-file")
        elif os.environ.get(PASSWORD_ENV):
            password = os.environ[PASSWORD_ENV]
        if (cert_file is None) != (key_file is None):
            raise ConfigError("--cert-file and --key-file go together")
        options = MqttOptions(
            urls=tuple(url or ["mqtt://127.0.0.1:1883"]),
            topic_prefix=prefix,
            client_id=client_id or f"punchgate-receiver-{group}-{socket.gethostname()}",
            protocol="5",
            username=username,
            password=password,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            reconnect_min=0.5,
            reconnect_max=30.0,
            inflight=256,
        )
        _run(options, store, group, validate, report_interval, duration)
    finally:
        store.close()


def _refuse_credentials_in(broker: str) -> None:
    """A user or password in ``--url`` is never sent (paho takes them apart), yet it was shown
    in the banner, in every report and in the logs: refuse it, masked, saying where they go."""
    if "@" in broker.partition("://")[2]:  # also past an unencoded '/' in the password
        raise UsageError(
            f"--url {redact_url(broker)!r}: no user or password in the URL; use --username and "
            f"--password-file (or ${PASSWORD_ENV})"
        )


def _say_if_disconnected(receiver: Receiver) -> None:
    """With every report: a broker out of reach looks like a quiet fleet otherwise."""
    status = receiver.connection.status()
    if not status.connected:
        reason = status.last_error or "no answer yet"
        typer.echo(f"not connected to the broker: {reason} (still retrying)")


def _run(
    options: MqttOptions,
    store: PunchStore,
    group: str,
    validate: bool,
    report_interval: float,
    duration: float | None,
) -> None:
    done = threading.Event()
    finished = threading.Event()
    receiver = Receiver(options, store, group=group, name=options.client_id, validate=validate)
    watcher = threading.Thread(
        target=_cut_short, args=(done, finished, store), name="receive-stop", daemon=True
    )
    try:
        with stop_on_signals(done):
            receiver.start()
            watcher.start()
            stopped = _receive(receiver, store, done, report_interval, duration)
        typer.echo(f"stopped; stats: {receiver.stats.as_dict()}")
        if not stopped:
            # The store still waits on the database: the report would wait behind it. The caller
            # closes the store, which cuts that statement short.
            typer.echo(
                "the database did not answer the last store: its batch stays unacknowledged and "
                "the broker sends it again to the next session; check the database server",
                err=True,
            )
            return
        _report_unless_down(store)
    finally:
        finished.set()  # the watcher stands down


def _receive(
    receiver: Receiver,
    store: PunchStore,
    done: threading.Event,
    report_interval: float,
    duration: float | None,
) -> bool:
    """Report until ``done`` or ``duration``; then stop the receiver (False: it still waits
    on the database)."""
    try:
        typer.echo(
            f"receiving {receiver.subscription} from {', '.join(receiver.connection.options.urls)}"
            " (Ctrl-C to stop)"
        )
        deadline = None if duration is None else time.monotonic() + duration
        while not done.is_set():  # bounded by done and the deadline
            wait = report_interval
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    break
            if done.wait(max(wait, 0.0)):
                break
            typer.echo(f"stats: {receiver.stats.as_dict()}")
            _say_if_disconnected(receiver)
            _report_unless_down(store)
    except KeyboardInterrupt:
        pass  # a second Ctrl-C, or no signal handlers (not the main thread)
    finally:
        stopped = receiver.stop()
    return stopped


_STOP_GRACE = 10.0  # seconds after a stop signal before a database that does not answer is cut


def _cut_short(done: threading.Event, finished: threading.Event, store: PunchStore) -> None:
    """After a stop signal, close the store if the receiver still waits on it ``_STOP_GRACE``
    s later: a report stuck on a silent database otherwise held the signal off for minutes."""
    while not finished.is_set():  # bounded by the receiver's run
        if done.wait(0.5):
            if not finished.wait(_STOP_GRACE):
                store.close()  # cuts the statement under way; the report then says why
            return


def _report_unless_down(store: PunchStore) -> None:
    """The report, or why not: a database outage must not end the receiver, whose store
    thread holds the batches and tries again (the report raised it out of the command)."""
    try:
        _report(store)
    except StoreError as exc:
        typer.echo(
            f"no report: {exc} (still receiving: batches are held unacknowledged until the "
            "database takes them)",
            err=True,
        )

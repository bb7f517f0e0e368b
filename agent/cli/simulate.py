"""``punchgate simulate``: simulated terminals for demos, training and field tests."""

from __future__ import annotations

import random
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, TextIO

import typer

from agent.cli.common import stop_on_signals
from config.errors import UsageError
from drivers.zk.simulator import Faults, ZkSimulator

app = typer.Typer(help="Run simulated terminals (demos, training, tests).", no_args_is_help=True)

HELP_LINES = (
    "commands: punch USER_ID [STATE] [VERIFY] | status | help",
    "  STATE 0 in, 1 out, 2 break out, 3 break in, 4/5 overtime; VERIFY 1 finger, 2 card, 15 face",
)


@app.command("zk")
def zk(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="TCP and UDP port (0 picks a free one).")
    ] = 4370,
    users: Annotated[
        int, typer.Option(min=0, help="Users to enrol when the terminal is empty.")
    ] = 10,
    records: Annotated[
        int, typer.Option(min=0, help="Punches to generate when it is empty.")
    ] = 100,
    comm_key: Annotated[
        int, typer.Option(min=0, max=999_999_999, help="Comm key (0 = none), as in the config.")
    ] = 0,
    record_size: Annotated[int, typer.Option(help="Attendance record layout: 40, 16 or 8.")] = 40,
    user_size: Annotated[int, typer.Option(help="User record layout: 72 or 28.")] = 72,
    event_size: Annotated[int, typer.Option(help="Live event layout: 32 or 12.")] = 32,
    serial: Annotated[str, typer.Option(help="Serial number to report.")] = "SIM0001",
    state: Annotated[
        Path | None, typer.Option("--state", help="JSON file keeping users and log across runs.")
    ] = None,
    punch_every: Annotated[
        float | None, typer.Option(help="Record a punch of a random user every N seconds.")
    ] = None,
    record_capacity: Annotated[int, typer.Option(help="Log capacity.")] = 100_000,
    user_capacity: Annotated[int, typer.Option(help="User table capacity.")] = 10_000,
    seed: Annotated[int | None, typer.Option(help="Seed for generated data and faults.")] = None,
    segmentation: Annotated[
        str, typer.Option(help="Fault: TCP writes per reply: all, frame, random, trickle.")
    ] = "all",
    frame_latency: Annotated[
        float, typer.Option(help="Fault: seconds between the packets of one reply.")
    ] = 0.0,
    drop_after_bytes: Annotated[
        int | None, typer.Option(help="Fault: drop the connection after N bytes of a read.")
    ] = None,
    silent: Annotated[bool, typer.Option(help="Fault: accept but never answer.")] = False,
    refuse: Annotated[bool, typer.Option(help="Fault: reset every TCP connection.")] = False,
    corrupt_checksum: Annotated[
        str | None, typer.Option(help="Fault: bad checksum on the 'next' or 'all' packets.")
    ] = None,
    impossible_date_at: Annotated[
        int | None, typer.Option(help="Fault: log index of a record sent as 31 February.")
    ] = None,
    clock: Annotated[
        datetime | None, typer.Option(help="Fault: start with the clock at this time.")
    ] = None,
    single_session: Annotated[
        bool, typer.Option(help="Fault: one client at a time, like many real terminals.")
    ] = False,
    unknown_command: Annotated[
        list[int] | None,
        typer.Option(
            help="Fault: answer ACK_UNKNOWN to this command (repeatable; 500: no live events)."
        ),
    ] = None,
    record_size_override: Annotated[
        int | None,
        typer.Option(help="Fault: serve attendance records in this unknown size (e.g. 49)."),
    ] = None,
    name_encoding: Annotated[
        str, typer.Option(help="Code page the terminal keeps user names in (cp1251, gbk, ...).")
    ] = "utf-8",
) -> None:
    """Run a ZK terminal in the foreground until Ctrl-C; type 'punch 1001' to punch.

    Example: punchgate simulate zk --port 4370 --users 50 --records 5000 --state sim.json
    """
    if punch_every is not None and not punch_every > 0:
        # A negative interval punched at every turn of the loop: the log filled in a moment.
        raise UsageError("--punch-every must be more than 0 seconds (leave it out for none)")
    if records and not users:
        raise UsageError("--records needs --users of at least 1: punches are made by users")
    try:
        faults = Faults(
            segmentation=segmentation,
            frame_latency=frame_latency,
            drop_after_bytes=drop_after_bytes,
            silent=silent,
            refuse=refuse,
            corrupt_checksum=corrupt_checksum,
            impossible_date_at=impossible_date_at,
            single_session=single_session,
            unknown_commands=frozenset(unknown_command or ()),
            record_size_override=record_size_override,
        )
        sim = ZkSimulator(
            host,
            port,
            serial=serial,
            comm_key=comm_key,
            record_size=record_size,
            user_size=user_size,
            event_size=event_size,
            record_capacity=record_capacity,
            user_capacity=user_capacity,
            state_file=state,
            faults=faults,
            seed=seed,
            name_encoding=name_encoding,
        )
        if not sim.users and not sim.records and (users or records):
            sim.generate(users=users, records=records, seed=seed)
    except ValueError as exc:
        raise UsageError(f"{exc}; see punchgate simulate zk --help") from exc
    if clock is not None:
        sim.jump_clock(clock)
    _run(sim, punch_every, random.Random(seed))


def _run(sim: ZkSimulator, punch_every: float | None, rng: random.Random) -> None:
    stop = threading.Event()
    sim.start()
    with stop_on_signals(stop):
        try:
            typer.echo(
                f"ZK terminal {sim.serial} listening on {sim.host}:{sim.port} (TCP and UDP): "
                f"{len(sim.users)} users, {len(sim.records)} records; Ctrl-C to stop"
            )
            faults = sim.faults.describe()
            if faults:
                typer.echo("faults: " + ", ".join(f"{k}={v}" for k, v in faults.items()))
            if sim.profile.name_encoding != "utf-8":
                typer.echo(f"user names kept in {sim.profile.name_encoding}")
            typer.echo(HELP_LINES[0])
            reader = threading.Thread(
                target=_read_commands, args=(sim, sys.stdin, stop), name="zk-sim-stdin", daemon=True
            )
            reader.start()  # daemon: a blocked readline must not keep the process alive
            _serve(sim, punch_every, rng, stop)
        except KeyboardInterrupt:
            pass  # a second Ctrl-C, or no signal handlers (not the main thread)
        finally:
            sim.stop()
            typer.echo(f"stopped; {len(sim.records)} records on {sim.serial}")


def _serve(
    sim: ZkSimulator, punch_every: float | None, rng: random.Random, stop: threading.Event
) -> None:
    """Until ``stop``: punch every ``punch_every`` seconds when asked to (bounded by stop)."""
    last_state: dict[str, int] = {}
    next_punch = time.monotonic() + punch_every if punch_every else None
    while True:
        wait = 0.5 if next_punch is None else max(0.0, min(0.5, next_punch - time.monotonic()))
        if stop.wait(wait):
            return
        if next_punch is not None and punch_every and time.monotonic() >= next_punch:
            next_punch += punch_every
            _auto_punch(sim, rng, last_state)


def _auto_punch(sim: ZkSimulator, rng: random.Random, last_state: dict[str, int]) -> None:
    staff = sim.users
    if not staff:
        return
    user = rng.choice(staff)
    state = 1 if last_state.get(user.user_id, 1) == 0 else 0
    last_state[user.user_id] = state
    _punch(sim, user.user_id, state, 1)


def _punch(sim: ZkSimulator, user_id: str, state: int, verify: int) -> None:
    try:
        record = sim.punch(user_id, state=state, verify=verify)
    except ValueError as exc:
        typer.echo(f"not recorded: {exc}")
        return
    if record is None:
        typer.echo(f"not recorded: the log is full ({len(sim.records)} records)")
    else:
        typer.echo(f"punch {record.user_id} state={state} verify={verify} at {record.timestamp}")


def _read_commands(sim: ZkSimulator, stream: TextIO, stop: threading.Event) -> None:
    """Serve ``punch`` lines from stdin; EOF only ends the reading, never the terminal."""
    while not stop.is_set():
        try:
            line = stream.readline()
        except (OSError, ValueError):
            return
        if not line:
            return
        words = line.split()
        if not words:
            continue
        if words[0] == "punch" and 2 <= len(words) <= 4 and all(w.isdecimal() for w in words[2:]):
            numbers = [int(w) for w in words[2:]] + [0, 1][len(words) - 2 :]
            _punch(sim, words[1], numbers[0], numbers[1])
        elif words[0] == "status":
            typer.echo(
                f"{sim.serial} on {sim.host}:{sim.port}: {len(sim.users)} users, "
                f"{len(sim.records)} records, {len(sim.sessions)} sessions, clock {sim.clock}"
            )
        else:
            for help_line in HELP_LINES:
                typer.echo(help_line)

"""The contract documents against each other and against what the daemon really sends."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from agent.localbroker import LocalMosquitto
from tests.contract.conftest import Site
from tests.contract.consumer import ContractConsumer, load_schemas, schema_errors

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_MD = (ROOT / "docs" / "mqtt-contract.md").read_text(encoding="utf-8")
ASYNCAPI = (ROOT / "agent" / "contract" / "asyncapi.yaml").read_text(encoding="utf-8")


def _json_blocks() -> list[Any]:
    """Every ```json block of the contract that is JSON (placeholders like {punch} are not)."""
    out = []
    for block in re.findall(r"```json\n(.*?)```", CONTRACT_MD, re.S):
        try:
            out.append(json.loads(block))
        except ValueError:
            continue
    return out


def _schema_of_example(example: dict[str, Any]) -> str:
    if "punches" in example:
        return "punches"
    if "ids" in example:
        return "ack"
    return "command-reply"


def _command_examples() -> list[tuple[str, dict[str, Any]]]:
    """The request column of the commands table: (command, request)."""
    rows = re.findall(r"^\| `([a-z-]+)` \| `(\{.*?\})`", CONTRACT_MD, re.M)
    return [(name, json.loads(request)) for name, request in rows]


def _md_topics() -> list[str]:
    return re.findall(r"^\| `(\{prefix\}/\{gw\}/[^`]*)` \|", CONTRACT_MD, re.M)


def _asyncapi_addresses() -> list[str]:
    return re.findall(r"^    address: '([^']+)'", ASYNCAPI, re.M)


def _pattern(address: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(address)) + "$")


def _asyncapi_example_punch() -> dict[str, Any]:
    """The asyncapi example punch, read from its flat YAML block (no YAML parser is installed)."""
    block = ASYNCAPI.split("              - id: ", 1)[1].split("\n\n", 1)[0]
    lines = ("id: " + block).splitlines()
    punch: dict[str, Any] = {}
    for line in lines:
        key, _, value = line.strip().partition(": ")
        text = value.strip()
        punch[key] = (
            json.loads(text.replace("'", '"'))
            if text[:1] in "'[" or text in ("null", "true", "false") or text.lstrip("-").isdigit()
            else text
        )
    return punch


def _documented_punch_fields() -> set[str]:
    table = CONTRACT_MD.split("| field | meaning |", 1)[1].split("\n\n", 1)[0]
    names: set[str] = set()
    for row in table.splitlines()[2:]:
        names.update(re.findall(r"`([a-z_]+)`", row.split("|")[1]))
    return names


def test_every_example_in_the_contract_document_is_valid_against_its_schema() -> None:
    schemas = load_schemas()
    examples = _json_blocks()
    assert len(examples) >= 2, "the reply and ack examples"
    for example in examples:
        name = _schema_of_example(example)
        assert schema_errors(schemas[name], example) == [], (name, example)
    commands = _command_examples()
    assert {name for name, _ in commands} == {"ping", "resend", "time-sync"}
    for name, request in commands:
        assert schema_errors(schemas[f"command-{name}"], request) == [], (name, request)
    punch = _asyncapi_example_punch()
    assert schema_errors(schemas["punch"], punch) == [], punch
    assert _documented_punch_fields() == set(punch), "the field table and the asyncapi example"


def test_the_documents_name_the_topics_fields_and_commands_the_daemon_really_uses(
    site: Site, consumer: ContractConsumer, broker: LocalMosquitto
) -> None:
    gw = site.gateway
    site.start(consumer)
    site.terminals["term-1"].punch("1001")
    consumer.wait(lambda: consumer.punch_ids(gw), 15, "a punch")
    sent = consumer.command(gw, "ping", {"request_id": "doc"})
    reply = consumer.wait_reply(sent)
    site.agent.stop()
    consumer.wait(lambda: len(consumer.on(f"punchgate/v1/{gw}/status")) >= 2, 10, "offline")
    assert consumer.final_violations() == [], "\n".join(consumer.final_violations())

    # Topics: the markdown table and the asyncapi channels are the same six, and every topic the
    # daemon used is one of them.
    md = sorted(
        t.replace("{prefix}", "punchgate/v1").replace("{gw}", "{gateway_id}") for t in _md_topics()
    )
    asyncapi = sorted(a.replace("{command}", "{name}") for a in _asyncapi_addresses())
    assert md == asyncapi
    used = {m.topic for m in consumer.messages}
    patterns = [_pattern(a) for a in _asyncapi_addresses()]
    assert [t for t in used if not any(p.match(t) for p in patterns)] == []
    for suffix in ("/punches", "/status", "/devices/term-1/status", "/reply/ping"):
        assert f"punchgate/v1/{gw}{suffix}" in used

    # Fields: a real punch has exactly the documented fields, in the example's order.
    real = consumer.punches(gw)[0]
    assert list(real) == list(_asyncapi_example_punch())
    # The reply example shows the fields a real reply has.
    example_reply = next(e for e in _json_blocks() if "command" in e)
    assert set(example_reply) == set(reply)
    documented_ping = re.search(r"^\| `ping` \| `[^`]*` \| (.*) \|$", CONTRACT_MD, re.M)
    assert documented_ping is not None
    assert set(re.findall(r"`([a-z_]+)`", documented_ping.group(1))) == set(reply["result"])
    # Commands: the asyncapi enum is what the gateway says it knows.
    enum = re.search(r"enum: \[([^\]]*)\]", ASYNCAPI)
    assert enum is not None
    assert [c.strip() for c in enum.group(1).split(",")] == reply["result"]["commands"]

    # The MQTT binding: client id, clean session and keepalive as the asyncapi server says.
    log = broker.log_path.read_text(errors="replace")
    assert re.search(rf"as punchgate-{gw} \(p5, c1, k30", log), log[-2000:]

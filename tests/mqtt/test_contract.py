"""The contract itself: schemas, the AsyncAPI document, topic names, and the punch encoders."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.mqtt import Contract, Topics
from agent.mqtt.contract import SCHEMA_NAMES, punch_payload
from agent.mqtt.encoding import PunchEncoder
from buffer.outbox import Outbox
from drivers.base import Punch, PunchState, Source, Suspect, VerifyMethod
from tests.mqtt.conftest import GATEWAY, make_punches

CONTRACT_DIR = Path(__file__).resolve().parents[2] / "agent" / "contract"
DOC = Path(__file__).resolve().parents[2] / "docs" / "mqtt-contract.md"


def test_every_schema_is_valid_and_referenced_by_the_asyncapi_document(contract: Contract) -> None:
    files = {p.stem for p in (CONTRACT_DIR / "schemas").glob("*.json")}
    assert files == set(SCHEMA_NAMES)
    asyncapi = (CONTRACT_DIR / "asyncapi.yaml").read_text(encoding="utf-8")
    assert asyncapi.startswith("asyncapi: 3.0.0")
    referenced = set(re.findall(r"\$ref: '\./schemas/([a-z-]+)\.json'", asyncapi))
    assert referenced == set(SCHEMA_NAMES) - {"common", "punch"}
    assert contract.schemas["punches"]["properties"]["punches"]["items"] == {"$ref": "punch.json"}
    for name in SCHEMA_NAMES:
        assert contract.schemas[name]["$id"].endswith(f"/{name}.json")
        contract.validator(name)  # raises on an invalid schema


def test_asyncapi_channel_addresses_are_the_topics_the_code_uses() -> None:
    asyncapi = (CONTRACT_DIR / "asyncapi.yaml").read_text(encoding="utf-8")
    addresses = set(re.findall(r"address: '([^']+)'", asyncapi))
    topics = Topics("punchgate/v1", "{gateway_id}")
    assert addresses == {
        topics.punches,
        topics.status,
        topics.device_status("{device_id}"),
        topics.ack,
        topics.command("{command}"),
        topics.reply("{command}"),
    }


def test_the_human_readable_contract_names_every_topic_and_error_code(contract: Contract) -> None:
    doc = DOC.read_text(encoding="utf-8")
    for topic in ("/punches", "/status", "/devices/{device_id}/status", "/ack", "/cmd/{name}"):
        assert topic in doc, topic
    codes = contract.schemas["command-reply"]["properties"]["error"]["properties"]["code"]["enum"]
    for code in codes:
        assert f"`{code}`" in doc, code
    for field in contract.schemas["punch"]["required"]:
        assert f"`{field}`" in doc, field


def test_commands_are_recognised_only_on_the_gateways_own_topic() -> None:
    topics = Topics("punchgate/v1", "gw-1")
    assert topics.command_name("punchgate/v1/gw-1/cmd/ping") == "ping"
    assert topics.command_name("punchgate/v1/gw-2/cmd/ping") is None
    assert topics.command_name("punchgate/v1/gw-1/cmd/ping/extra") is None
    assert topics.command_name("punchgate/v1/gw-1/cmd/") is None


def _varied_rows(outbox: Outbox) -> list:
    """Device, live, manual, void, suspect-with-raw and DST-shifted punches, as stored."""
    invalid = Punch(
        device_id="dev-1",
        device_serial="SER-1",
        employee='O"Brien \\ Zoë',
        device_time=datetime(2000, 1, 1),
        time_utc=None,
        utc_offset_minutes=None,
        state=PunchState.UNKNOWN,
        state_code=9,
        verify=VerifyMethod.OTHER,
        verify_code=77,
        suspect=frozenset({Suspect.TIME_INVALID, Suspect.UNKNOWN_STATE}),
        raw=b"\x00\xffAB",
    )
    # 02:30 on 2024-03-31 does not exist in Berlin: localised to 03:30 CEST = 01:30 UTC.
    shifted = Punch(
        device_id="dev-1",
        device_serial="SER-1",
        employee="7",
        device_time=datetime(2024, 3, 31, 2, 30),
        time_utc=datetime(2024, 3, 31, 1, 30, tzinfo=UTC),
        utc_offset_minutes=120,
        suspect=frozenset({Suspect.TIME_NONEXISTENT}),
        source=Source.LIVE,
    )
    card = Punch(
        device_id="reader-1",
        device_serial="serial:reader-1",
        employee=None,
        card="0004567",
        device_time=datetime(2024, 5, 1, 7, 0),
        time_utc=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        utc_offset_minutes=-300,
        verify=VerifyMethod.CARD,
        suspect=frozenset({Suspect.UNKNOWN_CARD}),
    )
    outbox.add_punches([*make_punches(2), invalid, shifted, card])
    manual = outbox.add_manual(
        make_punches(1, start=50)[0], operator="tech-anna", reason="terminal lobby-1 was offline"
    )
    outbox.add_void(manual.id, operator="tech-anna", reason="entered twice")
    return outbox.next_batch(100)


def test_punch_payloads_of_every_kind_of_punch_fit_the_schema(
    outbox: Outbox, contract: Contract
) -> None:
    rows = _varied_rows(outbox)
    assert {r.kind for r in rows} == {"punch", "void"}
    assert {r.source for r in rows} == {"device", "live", "manual"}
    for row in rows:
        payload = punch_payload(row, "Berlin HQ")
        assert not contract.errors("punch", payload), (payload, contract.errors("punch", payload))
    void = next(r for r in rows if r.kind == "void")
    assert punch_payload(void, "")["void_of"] == next(r for r in rows if r.source == "manual").id


def test_fast_encoder_writes_exactly_the_punch_payload(outbox: Outbox) -> None:
    rows = _varied_rows(outbox)
    outbox.mark_sent([rows[0].id])  # one replayed row
    rows = outbox.next_batch(100)
    encoder = PunchEncoder('Site "Nord" – 1')
    for row in rows:
        assert json.loads(encoder.encode(row)) == punch_payload(row, 'Site "Nord" – 1')
    assert json.loads(encoder.encode(rows[0]))["replayed"] is True
    shifted = next(r for r in rows if r.suspect == ["time_nonexistent"])
    assert json.loads(encoder.encode(shifted))["time"] == "2024-03-31T03:30:00+02:00"


def test_sql_built_json_is_exactly_the_punch_payload_or_left_to_the_encoder(
    outbox: Outbox, contract: Contract
) -> None:
    rows = _varied_rows(outbox)
    odd = Punch(  # microseconds, a negative offset, control characters and a NUL in text
        device_id="dev-\x00\n2",
        device_serial='S"2\\',
        employee="Zoë\x01\u2028",
        device_time=datetime(2024, 6, 1, 9, 0, 0, 123456),
        time_utc=datetime(2024, 6, 1, 14, 30, 0, 123456, tzinfo=UTC),
        utc_offset_minutes=-330,
    )
    outbox.add_punches([odd])
    outbox.mark_sent([rows[0].id])  # one replayed row
    site = 'Site "Nord" – 1'
    stored = {r.id: r for r in outbox.next_batch(100)}
    payloads = outbox.next_payloads(100, site=site)
    assert [(seq, pid) for seq, pid, _ in payloads] == [(r.seq, r.id) for r in stored.values()]
    left_to_encoder = set()
    for _seq, pid, text in payloads:
        if text is None:
            left_to_encoder.add(pid)
            continue
        assert json.loads(text) == punch_payload(stored[pid], site)
        assert not contract.errors("punch", json.loads(text))
    # Only rows SQL cannot write exactly: suspect ones (flags, raw bytes, DST shifts).
    assert left_to_encoder == {r.id for r in stored.values() if r.suspect}
    by_id = {pid: text for _s, pid, text in payloads}
    assert json.loads(by_id[rows[0].id] or b"")["replayed"] is True
    assert json.loads(by_id[stored[rows[1].id].id] or b"")["replayed"] is False
    built = [r for r in stored.values() if by_id[r.id] is not None]
    assert {r.kind for r in built} == {"punch", "void"}
    assert {r.source for r in built} == {"device", "manual"}
    assert any(r.utc_offset_minutes == -330 for r in built)  # the odd row went through SQL


def test_custom_command_schemas_may_use_the_contracts_definitions(contract: Contract) -> None:
    schema = {
        "type": "object",
        "properties": {"device_id": {"$ref": "common.json#/$defs/identifier"}},
    }
    assert contract.errors(schema, {"device_id": "lobby-1"}) == []
    assert contract.errors(schema, {"device_id": "Lobby 1"})
    with pytest.raises(Exception, match="is not valid"):
        contract.validator({"type": 5})


def test_gateway_status_schema_rejects_an_offline_message_with_online_fields(
    contract: Contract,
) -> None:
    offline = {"state": "offline", "gateway_id": GATEWAY, "site": "", "version": "1", "boot": 1}
    assert contract.errors("gateway-status", offline) == []
    assert contract.errors("gateway-status", {**offline, "backlog": 3})
    assert contract.errors("gateway-status", {**offline, "state": "online"})


def test_sql_built_time_carries_every_kind_of_utc_offset_as_the_encoder_writes_it(
    outbox: Outbox,
) -> None:
    offsets = [-720, -570, -330, -61, -1, 0, 1, 59, 345, 765, 840]
    wall = datetime(2024, 6, 1, 9, 0, 0)
    outbox.add_punches(
        [
            Punch(
                device_id="lobby-1",
                device_serial="SER-1",
                employee=str(n),
                device_time=wall,
                time_utc=(wall - timedelta(minutes=minutes)).replace(tzinfo=UTC),
                utc_offset_minutes=minutes,
            )
            for n, minutes in enumerate(offsets)
        ]
    )
    stored = {r.id: r for r in outbox.next_batch(100)}
    payloads = outbox.next_payloads(100, site="s")
    times = []
    for _seq, pid, text in payloads:
        assert text is not None  # every one written by SQL
        assert json.loads(text) == punch_payload(stored[pid], "s")
        times.append(json.loads(text)["time"])
    assert times[0] == "2024-06-01T09:00:00-12:00" and times[-1] == "2024-06-01T09:00:00+14:00"
    assert times[1] == "2024-06-01T09:00:00-09:30" and times[3] == "2024-06-01T09:00:00-01:01"

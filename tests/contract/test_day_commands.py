"""Every command, with good and bad input, against the real daemon, judged by the HR consumer."""

from __future__ import annotations

import json
import re

from tests.contract.conftest import Site
from tests.contract.consumer import ContractConsumer


def test_every_command_with_good_and_bad_input_gets_one_correlated_reply_as_documented(
    site: Site, consumer: ContractConsumer
) -> None:
    gw = site.gateway
    lobby = site.terminals["term-1"]
    site.start(consumer)
    lobby.punch("1001")
    lobby.punch("1002")
    consumer.wait(lambda: len(consumer.punch_ids(gw)) == 2, 15, "two punches")

    good: list[tuple[str, dict[str, object]]] = [
        ("ping", {}),
        ("ping", {"request_id": "r1"}),
        ("ping", {"request_id": "é" * 128}),
        ("resend", {"request_id": "r2", "from_seq": 1}),
        ("resend", {"request_id": "r3", "from_seq": 9223372036854775807}),
        ("resend", {"request_id": "r3b", "from_seq": 2.0}),  # JSON Schema: 2.0 is an integer
        ("time-sync", {"request_id": "r4"}),
        ("time-sync", {"request_id": "r5", "device_id": "term-2", "force": False}),
    ]
    for name, body in good:
        consumer.command(gw, name, body)
    # MQTT 5 response topics: ours, the gateway's own reply branch, and a forbidden one.
    consumer.command(
        gw, "ping", {"request_id": "m1"}, response_topic="hr/replies/1", correlation=b"\x00c1"
    )
    consumer.command(
        gw,
        "ping",
        {"request_id": "m2"},
        response_topic=f"punchgate/v1/{gw}/reply/mine",
        correlation=b"c2",
    )
    consumer.command(
        gw,
        "ping",
        {"request_id": "m3"},
        response_topic="punchgate/v1/other-gw/status",
        correlation=b"c3",
    )
    # At most 32 commands wait (more get "busy"): let these be answered first.
    consumer.wait(consumer.all_replied, 20, "a reply to every good command")
    bad: list[tuple[str, dict[str, object] | bytes, str | set[str]]] = [
        ("ping", {"request_id": "x1", "extra": 1}, "invalid"),
        ("ping", {"request_id": ""}, "invalid"),
        ("ping", {"request_id": "y" * 129}, "invalid"),
        ("ping", {"request_id": 7}, "invalid"),
        ("resend", {"request_id": "x2"}, "invalid"),
        ("resend", {"request_id": "x3", "from_seq": 0}, "invalid"),
        ("resend", {"request_id": "x4", "from_seq": "5"}, "invalid"),
        ("resend", {"request_id": "x5", "from_seq": True}, "invalid"),
        ("resend", {"request_id": "x6", "from_seq": 9223372036854775808}, "invalid"),
        ("resend", {"request_id": "x6b", "from_seq": 1.5}, "invalid"),
        ("resend", {"request_id": "x6c", "from_seq": "9" * 15000}, "invalid"),
        ("time-sync", {"request_id": "x7", "device_id": "Term-1"}, "invalid"),
        ("time-sync", {"request_id": "x8", "device_id": "nope"}, {"invalid", "failed"}),
        ("time-sync", {"request_id": "x9", "force": "yes"}, "invalid"),
        ("reboot", {"request_id": "x10"}, "unknown_command"),
        ("x" * 100, {"request_id": "x10b"}, "unknown_command"),
        ("pïng", {"request_id": "x10c"}, "unknown_command"),
        ("", {"request_id": "x11"}, "unknown_command"),
        ("ping", b"not json", "malformed"),
        ("ping", b"", "malformed"),
        ("ping", b"[1, 2]", "malformed"),
        ("ping", b'{"request_id": "\\ud800"}', "malformed"),
        ("ping", b"\xff\xfe{}", "malformed"),
        ("ping", b"[" * 5000 + b"]" * 5000, "malformed"),
        ("ping", json.dumps({"request_id": "x12", "pad": "z" * 17000}).encode(), "too_large"),
    ]
    for name, request, code in bad:
        consumer.command(gw, name, request, expect_code=code)
    consumer.wait(consumer.all_replied, 20, "a reply to every command")
    site.agent.stop()
    assert consumer.final_violations() == [], "\n".join(consumer.final_violations())
    # The contract: an error "with a message saying what to do".
    for sent in consumer.commands():
        error = sent.replies[0].json().get("error")
        if error and error["code"] in ("malformed", "too_large", "invalid"):
            assert re.search(r"\b(send|publish)\b", error["message"]), error

"""`punchgate simulate zk` with arguments out of range: a usage error naming the option and its
range (exit 2), never an unforeseen OverflowError or the simulator's Python API words."""

from __future__ import annotations

import pytest

from tests.cli.test_field_json_errors import run_main

CASES = [
    (["--port", "70000"], ["Invalid value for '--port'", "65535"]),
    (["--port", "-1"], ["Invalid value for '--port'"]),
    (["--comm-key", "-1"], ["Invalid value for '--comm-key'"]),
    (["--comm-key", "99999999999"], ["Invalid value for '--comm-key'", "999999999"]),
    (["--users", "-1"], ["Invalid value for '--users'"]),
    (["--users", "0", "--records", "5"], ["--records needs --users"]),
    (["--records", "-5"], ["Invalid value for '--records'"]),
    (["--punch-every", "0"], ["--punch-every must be more than 0"]),
    (["--punch-every", "-1"], ["--punch-every must be more than 0"]),
]


@pytest.mark.parametrize(("args", "phrases"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_simulate_refuses_an_out_of_range_option_by_name(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    phrases: list[str],
) -> None:
    code, _out, err = run_main(["simulate", "zk", *args], capsys, monkeypatch)
    assert code == 2, err
    for phrase in phrases:
        assert phrase in err, err
    for leak in ("unexpected", "Traceback", "generate(", "add_user()"):
        assert leak not in err, err

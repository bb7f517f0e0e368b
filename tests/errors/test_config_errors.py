"""A technician's config mistakes, as the `punchgate` command prints them: one line each, which
key, what to do, exit code 2, never a traceback or a Python type."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.loader import example_config, load_settings
from tests.cli.test_field_json_errors import run_main  # main(), the boundary a shell meets
from tests.support.users import other_user

PUNCHGATE = Path(sys.executable).with_name("punchgate")
PYTHON_LEAKS = ("Traceback", "<class", "list[str]", ".str:", " should ", "None", "Settings")


def config_file(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "punchgate.toml"
    path.write_text(
        f'[agent]\ngateway_id = "gw1"\nstate_dir = "{tmp_path}"\n{extra}', encoding="utf-8"
    )
    return path


ZK = '[[devices]]\nid = "a"\nkind = "zk"\nhost = "h"\n'
CASES = [
    # (what the technician wrote, key path printed, phrases that say what to do)
    ("timezone = +1", "agent.timezone", ["IANA timezone name", "'Europe/Berlin'", "offset"]),
    ('timezone = "' + "x" * 300 + '"', "agent.timezone", ["IANA timezone name"]),
    (ZK + "timezone = 2", "devices[0].timezone", ["IANA timezone name"]),
    ('timezone = "Europe/Berlin "', "agent.timezone", ["ends with a space", "remove it"]),
    ('[mqtt]\nusername = "u"\npassword_file = "/"', "mqtt.password_file", ["not its directory"]),
    (
        '[mqtt]\nusername = "u"\npassword_file = "/nonexistent/pw"',
        "mqtt.password_file",
        ["No such file", "create the file"],
    ),
    ("[mqtt]\nurl = 1883", "mqtt.url", ["1883 is not a broker URL in quotes", "mqtt://"]),
    ('[mqtt]\nurl = ["mqtt://a:1883", 1883]', "mqtt.url", ["url[1] = 1883", "mqtt://"]),
    ("[mqtt]\nca_file = 1", "mqtt.ca_file", ["absolute path in quotes", "(got 1)"]),
    (ZK + "port = 99999", "devices[0].port", ["must be less than or equal to 65535", "99999"]),
    (ZK + 'port = "4370a"', "devices[0].port", ["must be a valid integer", "'4370a'"]),
    (ZK + 'transport = "TCP"', "devices[0].transport", ["must be 'tcp' or 'udp'", "'TCP'"]),
    (ZK + 'live = "on please"', "devices[0].live", ["true or false"]),
    ('site = "' + "S" * 201 + '"', "agent.site", ["must have at most 200 characters"]),
    ("[mqtt]\nurl = []", "mqtt.url", ["give at least one broker URL"]),
    ('[devices]\nid = "a"\nkind = "zk"\nhost = "h"', "devices", ["[[devices]]"]),
    ('[[mqtt]]\nurl = "mqtt://a:1"', "mqtt", ["write [mqtt] (single brackets)"]),
]


@pytest.mark.parametrize(("extra", "key", "phrases"), CASES, ids=[c[1] for c in CASES])
def test_config_error_names_the_key_and_the_fix_without_python_internals(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: str,
    key: str,
    phrases: list[str],
) -> None:
    path = config_file(tmp_path, extra)
    for args, expected in ((["config", "check"], 2), (["status", "--json"], 2), (["doctor"], 6)):
        code, out, err = run_main([*args, "--config", str(path)], capsys, monkeypatch)
        shown = out + err
        assert code == expected, shown
        assert f"{path}: {key}: " in shown, shown
        for phrase in phrases:
            assert phrase in shown, shown
        for leak in PYTHON_LEAKS:
            assert leak not in shown, shown
        if "--json" in args:
            error = json.loads(out)["error"]
            assert error["type"] == "ConfigError" and error["exit_code"] == 2


def test_timezone_written_as_an_offset_is_one_line_from_the_installed_command(
    tmp_path: Path,
) -> None:
    path = config_file(tmp_path, "timezone = +1")
    result = subprocess.run(
        [str(PUNCHGATE), "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"{path}: agent.timezone: 1 is not an IANA timezone name: write one in quotes, "
        "e.g. 'Europe/Berlin' (an offset such as +1 is not a zone) (line 4)"
    ]


def test_config_nested_beyond_the_parser_is_a_config_error_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path, "x = " + "[" * 5000 + "]" * 5000)
    code, _out, err = run_main(["config", "check", "--config", str(path)], capsys, monkeypatch)
    assert code == 2, err
    assert err.strip() == (
        f"{path}: arrays or tables nested too deeply: check that this is the punchgate config"
    )


def test_config_path_naming_a_directory_says_to_pass_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run_main(["status", "--config", str(tmp_path)], capsys, monkeypatch)
    assert code == 2, err
    assert err.splitlines()[0] == (
        f"error: {tmp_path}: is a directory; pass the config file itself "
        f"(--config {tmp_path / 'punchgate.toml'})"
    )


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('[mqtt]\nusername = "u"\npassword = 73519', "mqtt.password"),
        ('[mqtt]\nusername = "u"\npassword = ["73519"]', "mqtt.password"),
        (ZK + 'comm_key = "73519x"', "devices[0].comm_key"),
        (ZK + "comm_key = 7351900000", "devices[0].comm_key"),
    ],
)
def test_a_wrong_secret_is_named_by_its_key_and_never_echoed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: str,
    key: str,
) -> None:
    path = config_file(tmp_path, extra)
    for args in (["config", "check"], ["status", "--json"], ["doctor", "--json"]):
        code, out, err = run_main([*args, "--config", str(path)], capsys, monkeypatch)
        assert code in (2, 6), err
        assert f"{key}: must be" in out + err
        assert "73519" not in out + err


def test_each_config_problem_names_the_line_an_editor_jumps_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(
        tmp_path,
        "# the gate terminals\n"
        '[[devices]]\nid = "hall"\nkind = "zk"\nhost = "10.0.0.20"\n\n'
        '[[devices]]  # dock\nid = "dock"\nkind = "zk"\nhost = "10.0.0.21"\n'
        "'port' = 0\ncolour = \"red\"\n\n"
        '[[devices]]\nkind = "zk"\n',
    )
    code, _out, err = run_main(["config", "check", "--config", str(path)], capsys, monkeypatch)
    assert code == 2
    assert err.strip().splitlines() == [
        f"{path}: devices[1].port: must be greater than or equal to 1 (got 0) (line 14)",
        f"{path}: devices[1].colour: unknown key (check the spelling; see "
        f"{example_config()}) (line 15)",
        f"{path}: devices[2].id: required key is missing (line 17)",
        f"{path}: devices[2].host: required key is missing (line 17)",
    ]


SYNTAX = [
    ("host = 10.0.0.20", ["line 7", "in quotes", 'host = "10.0.0.20"']),
    ("host = 10.0.0.20  # the gate", ["in quotes", 'host = "10.0.0.20"']),
    ("host = lobby-gate", ["in quotes", 'host = "lobby-gate"']),
    ("timeout = 10s", ["in quotes", 'timeout = "10s"']),
    ("enabled = True", ["enabled = true or enabled = false", "lowercase"]),
    ('host = "10.0.0.20', ["not closed", "same quote"]),
    ('id = "b"', ["line 7", "more than once", "keep one"]),
    ('host "10.0.0.20"', ["key = value"]),
]


@pytest.mark.parametrize(("line", "phrases"), SYNTAX, ids=[s[0] for s in SYNTAX])
def test_toml_syntax_error_on_a_device_line_says_how_to_write_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    line: str,
    phrases: list[str],
) -> None:
    path = config_file(tmp_path, f'[[devices]]\nid = "a"\nkind = "zk"\n{line}\n')
    code, _out, err = run_main(["config", "check", "--config", str(path)], capsys, monkeypatch)
    assert code == 2
    assert err.startswith(f"{path}: TOML syntax error: "), err
    for phrase in phrases:
        assert phrase in err, err


def test_missing_config_named_by_the_environment_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = tmp_path / "old-test.toml"
    monkeypatch.setenv("PUNCHGATE_CONFIG", str(gone))
    code, _out, err = run_main(["status"], capsys, monkeypatch)
    assert code == 2
    assert err.splitlines()[0] == (
        f"error: {gone}: no such file (named by $PUNCHGATE_CONFIG); fix or unset "
        "$PUNCHGATE_CONFIG, or pass --config /etc/punchgate/punchgate.toml"
    )


@pytest.mark.parametrize("name", ["/dev/zero", "big"])
def test_config_path_naming_an_endless_or_huge_file_is_refused_after_a_bounded_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    path = Path(name) if name.startswith("/") else tmp_path / "outbox.db"
    if not name.startswith("/"):
        path.write_bytes(b"SQLite format 3\x00" + b"\x00" * (3 * 2**20))
    code, _out, err = run_main(["config", "check", "--config", str(path)], capsys, monkeypatch)
    assert code == 2
    assert err.strip() == (
        f"{path}: larger than 1 MiB, far more than a punchgate config: check that --config "
        "names the config file (e.g. /etc/punchgate/punchgate.toml)"
    )


@pytest.mark.parametrize("content", [None, b"not a certificate\n"], ids=["missing", "not-pem"])
def test_config_check_refuses_a_ca_file_the_daemon_could_not_load(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: bytes | None,
) -> None:
    """The unit's ExecStartPre said OK, then `run` exited 4 on every restart."""
    ca = tmp_path / "plant-ca.pem"
    if content is not None:
        ca.write_bytes(content)
    path = config_file(tmp_path, f'[mqtt]\nurl = "mqtts://127.0.0.1:8883"\nca_file = "{ca}"\n')
    code, out, err = run_main(["config", "check", "--config", str(path)], capsys, monkeypatch)
    assert code == 2, out + err
    assert "OK" not in out
    assert err.startswith(f"{path}: mqtt.ca_file: cannot load the CA file {ca}"), err


def test_a_missing_config_points_at_the_example_the_install_put_beside_the_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # scripts/install.sh copies it to $PREFIX/share; a source checkout has it under config/.
    assert example_config() == "config/punchgate.example.toml in the punchgate sources"
    installed = tmp_path / "share" / "punchgate.example.toml"
    installed.parent.mkdir()
    installed.write_text("# example\n")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    with pytest.raises(ConfigError, match=f"create it from {re.escape(str(installed))} or pass"):
        load_settings(tmp_path / "missing.toml", env={})


def test_the_example_config_hint_survives_a_venv_the_user_cannot_look_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A technician without sudo, punchgate installed where only root may look: no crash."""
    prefix = tmp_path / "venv"
    (prefix / "share").mkdir(parents=True)
    (prefix / "share" / "punchgate.example.toml").write_text("# example\n")
    prefix.chmod(0o700)
    monkeypatch.setattr(sys, "prefix", str(prefix))
    try:
        with other_user():
            shown = example_config()
    finally:
        prefix.chmod(0o755)
    assert shown == "config/punchgate.example.toml in the punchgate sources"

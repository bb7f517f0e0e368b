"""The config loader: typed settings, every problem named with file, key path and reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config import load_settings
from config.loader import resolve_path
from config.settings import (
    AgentSettings,
    SerialDeviceSettings,
    ZkDeviceSettings,
    parse_duration,
)
from tests.config.files import MINIMAL, problems_of, write

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "punchgate.example.toml"


def test_example_config_documents_every_key_and_validates() -> None:
    settings = load_settings(EXAMPLE, env={})
    assert settings.agent.gateway_id == "plant1-gw1"
    assert [d.kind for d in settings.devices] == ["zk", "serial"]
    text = EXAMPLE.read_text()
    # Every settable key of every section appears in the example (commented or not).
    from config.settings import (
        AgentSettings,
        ManualSettings,
        MqttSettings,
        OutboxSettings,
        SerialDeviceSettings,
        ZkDeviceSettings,
    )

    for model in (
        AgentSettings,
        MqttSettings,
        OutboxSettings,
        ManualSettings,
        ZkDeviceSettings,
        SerialDeviceSettings,
    ):
        for key in model.model_fields:
            if key == "password":
                continue  # documented through password_file / PUNCHGATE_MQTT_PASSWORD
            assert f"{key} =" in text or f"[devices.{key}]" in text, f"{model.__name__}.{key}"


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), env={})
    assert settings.mqtt.urls == ["mqtt://127.0.0.1:1883"]
    assert settings.mqtt.topic_prefix == "punchgate/v1"
    assert settings.client_id == "punchgate-gw-1"
    assert settings.agent.outbox_path == Path("/var/lib/punchgate/outbox.db")


def test_missing_file_is_named_with_the_way_out(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path / "nope.toml")
    assert "nope.toml: no such file" in problem and "--config" in problem


def test_toml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[agent]\ngateway_id = "gw"\nsite = "unterminated\n')
    (problem,) = problems_of(path)
    assert "TOML syntax error" in problem and "line 3" in problem and str(path) in problem


def test_wrong_type_names_the_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[[devices]]\nid = "a"\nkind = "zk"\nhost = "h"\nport = "x"\n')
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: devices[0].port: ") and "integer" in problem


def test_unknown_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, MINIMAL + "gatway = 1\n"))
    assert "agent.gatway: unknown key" in problem


def test_out_of_range_value_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path, MINIMAL + '[[devices]]\nid = "a"\nkind = "zk"\nhost = "h"\nport = 70000\n'
    )
    (problem,) = problems_of(path)
    assert "devices[0].port" in problem and "65535" in problem


def test_bad_url_scheme_is_reported(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, MINIMAL + '[mqtt]\nurl = "http://b:1883"\n'))
    assert "mqtt.url" in problem and "mqtt:// or mqtts://" in problem


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path) -> None:
    text = (
        '[agent]\ngateway_id = "Bad Id"\ncolour = "blue"\ntimezone = "Mars/Olympus"\n'
        '[mqtt]\nurl = "http://b"\n'
        '[[devices]]\nid = "a"\nkind = "zk"\nhost = "h"\nport = "x"\npoll_interval = "soon"\n'
        '[[devices]]\nid = "b"\nkind = "fax"\n'
    )
    problems = problems_of(write(tmp_path, text))
    joined = "\n".join(problems)
    for key in (
        "agent.gateway_id",
        "agent.colour",
        "agent.timezone",
        "mqtt.url",
        "devices[0].port",
        "devices[0].poll_interval",
        "devices[1]",
    ):
        assert key in joined, key
    assert len(problems) == 7


def test_duplicate_device_ids_are_errors(tmp_path: Path) -> None:
    dev = '[[devices]]\nid = "a"\nkind = "zk"\nhost = "h"\n'
    (problem,) = problems_of(write(tmp_path, MINIMAL + dev + dev))
    assert "'a' is used more than once" in problem


def test_device_timezone_defaults_to_agent_timezone(tmp_path: Path) -> None:
    text = MINIMAL + 'timezone = "Europe/Berlin"\n[[devices]]\nid = "a"\nkind = "zk"\nhost = "h"\n'
    settings = load_settings(write(tmp_path, text), env={})
    assert settings.device_timezone(settings.devices[0]).key == "Europe/Berlin"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("500ms", 0.5),
        (" 7 ", 7.0),
    ],
)
def test_durations_accept_seconds_and_units(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "-1s", True, "", None])
def test_durations_reject_nonsense(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_config_path_comes_from_flag_then_env_then_default(tmp_path: Path) -> None:
    flag = tmp_path / "a.toml"
    assert resolve_path(flag, env={"PUNCHGATE_CONFIG": "/x.toml"}) == flag
    assert resolve_path(None, env={"PUNCHGATE_CONFIG": "/x.toml"}) == Path("/x.toml")
    assert resolve_path(None, env={}) == Path("/etc/punchgate/punchgate.toml")


def test_password_comes_from_environment(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), env={"PUNCHGATE_MQTT_PASSWORD": "s3cret"})
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())


def test_password_file_is_read_and_a_world_readable_one_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    os.chmod(secret, 0o644)
    path = write(tmp_path, MINIMAL + f'[mqtt]\npassword_file = "{secret}"\n')
    from agent import logs

    logs.configure("info", stream=__import__("sys").stderr, json=True)
    settings = load_settings(path, env={})
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "hunter2"
    err = capsys.readouterr().err
    assert "readable by other users" in err and "hunter2" not in err
    os.chmod(secret, 0o600)
    load_settings(path, env={})
    assert "readable by other users" not in capsys.readouterr().err


def test_unreadable_password_file_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + f'[mqtt]\npassword_file = "{tmp_path / "missing"}"\n')
    (problem,) = problems_of(path)
    assert "mqtt.password_file" in problem and "cannot read" in problem


def test_serial_lines_format_needs_a_usable_pattern(tmp_path: Path) -> None:
    dev = '[[devices]]\nid = "s"\nkind = "serial"\nurl = "loop://"\nformat = "lines"\n'
    (problem,) = problems_of(write(tmp_path, MINIMAL + dev + "pattern = '(?P<x>\\\\d+)'\n"))
    assert "devices[0]" in problem and "'employee' or 'card'" in problem


def test_example_names_the_default_of_every_key_it_sets_to_another_value() -> None:
    # The file promises "every key, with its default": a key set to an example value must say
    # what it is without the line (a technician deleting it gets the default, not the example).
    from config.settings import ManualSettings, MqttSettings, OutboxSettings

    models = {"agent": AgentSettings, "mqtt": MqttSettings, "outbox": OutboxSettings}
    models["manual"] = ManualSettings
    settings = load_settings(EXAMPLE, env={})
    sections: list[list[str]] = []  # the lines of each table, in file order
    for line in EXAMPLE.read_text().splitlines():
        if line.startswith("[") and not line.startswith("[devices."):
            sections.append([])
        elif sections:
            sections[-1].append(line)
    kinds = {"zk": ZkDeviceSettings, "serial": SerialDeviceSettings}
    placed = [(name, getattr(settings, name), model) for name, model in models.items()]
    placed += [(f"devices[{i}]", d, kinds[d.kind]) for i, d in enumerate(settings.devices)]
    undocumented = []
    for (where, values, model), lines in zip(placed, sections, strict=True):
        for key, field in model.model_fields.items():
            line = next((x for x in lines if x.startswith(f"{key} = ")), None)
            if line is None or getattr(values, key) == field.get_default(call_default_factory=True):
                continue
            comment = line.partition(" #")[2]
            if "default" not in comment and "required" not in comment:
                undocumented.append(f"{where}.{key}")
    assert undocumented == [], undocumented

"""Config files as the field writes them: Notepad BOMs, secrets in URLs, odd password files."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent import logs
from config import load_settings
from config.settings import parse_duration
from tests.config.files import MINIMAL, one_key, problems_of, write


def test_config_saved_by_notepad_with_a_utf8_bom_loads(tmp_path: Path) -> None:
    path = tmp_path / "punchgate.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.replace("\n", "\r\n").encode())
    assert load_settings(path, env={}).agent.gateway_id == "gw-1"


def test_password_file_that_is_not_utf8_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_bytes(b"zq\xf6rtx9\n")  # saved as Latin-1
    secret.chmod(0o600)
    text = MINIMAL + f'[mqtt]\nusername = "u"\npassword_file = "{secret}"\n'
    (problem,) = problems_of(write(tmp_path, text))
    assert "mqtt.password_file" in problem and "UTF-8" in problem and "zq" not in problem


def test_empty_password_file_is_a_config_error(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("\n")
    secret.chmod(0o600)
    text = MINIMAL + f'[mqtt]\nusername = "u"\npassword_file = "{secret}"\n'
    (problem,) = problems_of(write(tmp_path, text))
    assert "mqtt.password_file" in problem and "empty" in problem


def test_password_without_username_is_warned_about_as_it_is_never_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    secret.chmod(0o600)
    logs.configure("info", stream=sys.stderr, json=True)
    load_settings(write(tmp_path, MINIMAL + f'[mqtt]\npassword_file = "{secret}"\n'), env={})
    err = capsys.readouterr().err
    assert "mqtt.username" in err and "hunter2" not in err
    load_settings(
        write(tmp_path, MINIMAL + '[mqtt]\nusername = "u"\n'), env={"PUNCHGATE_MQTT_PASSWORD": "x"}
    )
    assert "mqtt.username" not in capsys.readouterr().err


def test_broker_url_with_a_password_is_refused_and_the_password_never_printed(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, MINIMAL + '[mqtt]\nurl = "mqtt://tech:s3cret@broker:1883"\n')
    (problem,) = problems_of(path)
    assert "mqtt.url" in problem and "password_file" in problem and "s3cret" not in problem
    for command in (["config", "check"], ["config", "show"], ["config", "show", "--json"]):
        result = subprocess.run(
            [sys.executable, "-c", "from agent.cli import main; main()", *command, "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, command
        assert "mqtt.url" in result.stderr and "s3cret" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "http://tech:s3cret@broker",
        "mqtt://tech:s3cret@broker:99999",
        "mqtt://tech:s3cret@[::1",
        "mqtt://:s3cret@",
    ],
)
def test_a_rejected_broker_url_is_reported_without_its_password(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, MINIMAL + f'[mqtt]\nurl = ["mqtt://ok:1883", "{url}"]\n')
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: mqtt.url: ") and "s3cret" not in problem


def test_broker_url_with_port_zero_is_refused(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, MINIMAL + '[mqtt]\nurl = "mqtt://broker:0"\n'))
    assert "mqtt.url" in problem and "1-65535" in problem


@pytest.mark.parametrize("url", ["mqtt://[::1]:1883", "mqtts://[fe80::1%25eth0]", "mqtt://b"])
def test_ipv6_literals_and_default_ports_are_accepted(tmp_path: Path, url: str) -> None:
    settings = load_settings(write(tmp_path, MINIMAL + f'[mqtt]\nurl = "{url}"\n'), env={})
    assert settings.mqtt.urls == [url]


@pytest.mark.parametrize("value", [math.inf, math.nan, 1e308, "99999999999d", "36501d"])
def test_durations_refuse_infinity_nan_and_more_than_a_century(value: object) -> None:
    # A wait this long overflows (threading: "timestamp out of range"): the daemon would crash.
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_a_century_is_still_a_duration() -> None:
    assert parse_duration("36500d") == 36500 * 86400.0


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("agent", "status_interval", "inf"),
        ("mqtt", "ack_timeout", "inf"),
        ("mqtt", "reconnect_max", '"100000000d"'),
        ("manual", "max_age", "1e300"),
        ("outbox", "backup_interval", "nan"),
    ],
)
def test_unbounded_durations_in_the_file_are_reported_with_their_key(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    (problem,) = problems_of(one_key(tmp_path, section, f"{key} = {value}"))
    assert f"{section}.{key}: " in problem and "duration" in problem


@pytest.mark.parametrize("prefix", ["a\u0000b", "plant\u0007", "$SYS/punchgate", "a\u0085b"])
def test_topic_prefix_the_broker_would_refuse_or_hide_is_an_error(
    tmp_path: Path, prefix: str
) -> None:
    escaped = prefix.encode("unicode_escape").decode().replace("\\x", "\\u00")
    (problem,) = problems_of(write(tmp_path, MINIMAL + f'[mqtt]\ntopic_prefix = "{escaped}"\n'))
    assert "mqtt.topic_prefix" in problem


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("agent", "state_dir"),
        ("mqtt", "ca_file"),
        ("outbox", "backup_dir"),
    ],
)
@pytest.mark.parametrize("value", ["~/punchgate", "state", "./state"])
def test_paths_must_be_absolute_so_daemon_and_cli_agree(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    # The daemon runs from /, a technician's CLI from their shell's directory: a relative or
    # '~' path would give them two different outboxes.
    (problem,) = problems_of(one_key(tmp_path, section, f'{key} = "{value}"'))
    assert f"{section}.{key}: " in problem and "absolute" in problem


@pytest.mark.parametrize(("first", "second"), [("x", "x"), ("serial:b", None)])
def test_two_serial_clocks_with_one_punch_identity_are_refused(
    tmp_path: Path, first: str, second: str | None
) -> None:
    # Punch ids hash the serial identity: a copied block would merge both clocks' punches and
    # drop one of two people punching in the same second as a duplicate.
    def block(device_id: str, serial: str | None) -> str:
        line = "" if serial is None else f'serial = "{serial}"\n'
        return f'[[devices]]\nid = "{device_id}"\nkind = "serial"\nurl = "loop://"\n' + (
            f"format = 'em4100'\n{line}"
        )

    (problem,) = problems_of(write(tmp_path, MINIMAL + block("a", first) + block("b", second)))
    assert "devices" in problem and "serial" in problem and "more than once" in problem


@pytest.mark.parametrize("kind", ["zk", "serial"])
@pytest.mark.parametrize("encoding", ["hex", "rot13", "base64", "utf-16", "utf-32", "cp037"])
def test_an_encoding_that_cannot_read_names_or_lines_is_refused_by_the_check(
    tmp_path: Path, kind: str, encoding: str
) -> None:
    """Known to Python's codecs, but codecs (bytes to bytes) or not ASCII-compatible: the check
    passed them and the terminal then failed on its first name or line."""
    where = 'host = "10.0.0.20"' if kind == "zk" else 'url = "loop://"'
    device = f'[[devices]]\nid = "d"\nkind = "{kind}"\n{where}\nencoding = "{encoding}"\n'
    (problem,) = problems_of(write(tmp_path, MINIMAL + device))
    assert "devices[0]" in problem and "encoding" in problem and encoding in problem


@pytest.mark.parametrize("encoding", ["ascii", "utf-8", "latin-1", "cp1251", "gbk", "shift_jis"])
def test_ascii_compatible_encodings_are_accepted(tmp_path: Path, encoding: str) -> None:
    device = f'[[devices]]\nid = "d"\nkind = "zk"\nhost = "10.0.0.20"\nencoding = "{encoding}"\n'
    assert load_settings(write(tmp_path, MINIMAL + device), env={}).devices[0].encoding == encoding


@pytest.mark.parametrize("value", ["inf", "nan", "1e9", "36501"])
def test_retention_beyond_a_century_or_not_a_number_is_refused(tmp_path: Path, value: str) -> None:
    """ "Keep forever" written as inf or a huge number crashed the daemon's pruning."""
    (problem,) = problems_of(one_key(tmp_path, "outbox", f"retention_days = {value}"))
    assert "outbox.retention_days" in problem


def test_retention_of_a_century_is_accepted(tmp_path: Path) -> None:
    path = one_key(tmp_path, "outbox", "retention_days = 36500")
    assert load_settings(path, env={}).outbox.retention_days == 36500


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_config_saved_as_windows_1252_names_the_line_and_says_to_save_it_as_utf8(
    tmp_path: Path, bom: bytes
) -> None:
    """A site name typed on Windows (cp1252 'Café – Nord') said only 'not UTF-8 text (byte 41)':
    no line to look at and no way out."""
    path = tmp_path / "punchgate.toml"
    text = '[agent]\r\ngateway_id = "gw-1"\r\nsite = "Café – Nord"\r\n'
    path.write_bytes(bom + text.encode("cp1252"))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: line 3: ") and "save it as UTF-8" in problem
    assert f"byte {len(bom) + 41}: 0xe9" in problem


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be"])
def test_config_saved_as_utf16_says_so_and_how_to_fix_it(tmp_path: Path, codec: str) -> None:
    """Notepad's 'Unicode' is UTF-16: the first byte was reported as 'not UTF-8 (byte 0)'."""
    path = tmp_path / "punchgate.toml"
    path.write_bytes(
        ("\ufeff" if codec.endswith("be") else "").encode(codec) + MINIMAL.encode(codec)
    )
    (problem,) = problems_of(path)
    assert "UTF-16" in problem and "save it as UTF-8" in problem


def test_password_file_the_service_user_may_not_read_says_how_to_let_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made root-only (0600, as the example used to say), the service's ExecStartPre check
    failed with a bare 'Permission denied'."""
    secret = tmp_path / "mqtt-password"
    secret.write_text("hunter2\n")
    real_open = Path.open

    def open_as_the_service_user(self: Path, *args: Any, **kwargs: Any) -> Any:
        # Root reads any file: refuse it the way the kernel refuses the punchgate user.
        if self == secret:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_as_the_service_user)
    text = MINIMAL + f'[mqtt]\nusername = "u"\npassword_file = "{secret}"\n'
    (problem,) = problems_of(write(tmp_path, text))
    assert "Permission denied" in problem
    assert f"chown root:punchgate {secret} && chmod 640 {secret}" in problem


@pytest.mark.parametrize(
    ("kind", "key", "value"),
    [
        ("zk", "host", "10.0.0.20 "),
        ("zk", "host", " 10.0.0.20"),
        ("zk", "host", "10.0.0.20\t"),
        ("serial", "url", "/dev/ttyUSB0 "),
        ("serial", "url", " socket://10.0.0.30:4001"),
    ],
)
def test_a_terminal_address_pasted_with_a_space_fails_the_check_not_the_site(
    tmp_path: Path, kind: str, key: str, value: str
) -> None:
    """Copied from a spreadsheet with a trailing space, 'config check' said OK and the terminal
    then never answered ('the host name cannot be resolved', 'port not found')."""
    extra = "" if kind == "zk" else "format = 'em4100'\n"
    device = f'[[devices]]\nid = "d"\nkind = "{kind}"\n{key} = "{value}"\n{extra}'
    (problem,) = problems_of(write(tmp_path, MINIMAL + device))
    assert f"devices[0].{key}: " in problem and "space" in problem


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("url", "mqtt://broker:1883 "),
        ("url", "mqtts://broker\t"),
        ("topic_prefix", "punchgate/v1 "),
    ],
)
def test_broker_settings_with_a_stray_space_are_refused_saying_so(
    tmp_path: Path, key: str, value: str
) -> None:
    """'mqtt://broker:1883 ' was reported as 'the port is not a number 1-65535', 'mqtts://broker '
    passed and never resolved; a prefix with a trailing space passed, and every topic then
    missed the backend's 'punchgate/v1/#'. (A leading space in a URL works: urlsplit drops it.)"""
    (problem,) = problems_of(write(tmp_path, MINIMAL + f'[mqtt]\n{key} = "{value}"\n'))
    assert f"mqtt.{key}: " in problem and "space" in problem


@pytest.mark.parametrize("value", ["1", "7", "30", '"30s"'])
def test_backup_interval_written_as_days_is_refused_not_a_backup_every_minute(
    tmp_path: Path, value: str
) -> None:
    """Beside 'retention_days = 30', 'backup_interval = 1' (meant: daily) is one second: the
    daemon copied the whole outbox at every maintenance tick, 1440 times a day on an SD card."""
    (problem,) = problems_of(one_key(tmp_path, "outbox", f"backup_interval = {value}"))
    assert "outbox.backup_interval: " in problem and '"1d"' in problem


@pytest.mark.parametrize(("value", "seconds"), [("60", 60.0), ('"1h"', 3600.0), ('"1d"', 86400.0)])
def test_backup_interval_of_a_minute_or_more_is_accepted(
    tmp_path: Path, value: str, seconds: float
) -> None:
    path = one_key(tmp_path, "outbox", f"backup_interval = {value}")
    assert load_settings(path, env={}).outbox.backup_interval == seconds


def test_shutdown_timeout_longer_than_the_unit_allows_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """shutdown_timeout = "60s" with a broker down: the flush alone waited 30 s, and systemd
    (TimeoutStopSec=30s) killed the daemon mid-shutdown; a reload waits up to twice it, past
    WatchdogSec=60s. The file still loads (a drop-in may raise both), with a warning."""
    logs.configure("info", stream=sys.stderr, json=True)
    settings = load_settings(one_key(tmp_path, "agent", 'shutdown_timeout = "60s"'), env={})
    assert settings.agent.shutdown_timeout == 60.0
    err = capsys.readouterr().err
    assert "agent.shutdown_timeout" in err and "TimeoutStopSec" in err
    load_settings(one_key(tmp_path, "agent", 'shutdown_timeout = "25s"'), env={})
    assert "shutdown_timeout" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "line",
    [
        'pattern = "^(?P<employee>\\d+),(?P<time>[0-9: -]+)$"',
        'roster_file = "C:\\Users\\it\\cards.csv"',
        'pattern = "^(?P<card>\\w{10})\\r?$"',
    ],
)
def test_a_backslash_in_double_quotes_says_to_use_single_quotes(tmp_path: Path, line: str) -> None:
    """A regex retyped in "double quotes" (\\d is no TOML escape) said only 'TOML syntax error:
    Unescaped '\\' in a string (at line 7, column 28)': nothing about the way out."""
    device = f'[[devices]]\nid = "d"\nkind = "serial"\nurl = "loop://"\n{line}\n'
    (problem,) = problems_of(write(tmp_path, MINIMAL + device))
    assert "TOML syntax error" in problem and "line 8" in problem
    assert "'single quotes'" in problem


@pytest.mark.parametrize(
    ("section", "line", "key"),
    [
        ("agent", 'gateway_id = "Plant1_GW"', "agent.gateway_id"),
        ("devices", 'id = "Lobby 1"\nkind = "zk"\nhost = "h"', "devices[0].id"),
    ],
)
def test_an_id_with_capitals_or_spaces_is_explained_in_words_not_as_a_regex(
    tmp_path: Path, section: str, line: str, key: str
) -> None:
    """IT got "String should match pattern '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'"."""
    text = f"[agent]\n{line}\n" if section == "agent" else MINIMAL + f"[[devices]]\n{line}\n"
    (problem,) = problems_of(write(tmp_path, text))
    assert f"{key}: " in problem and "lowercase letters, digits and '-'" in problem
    assert "[a-z0-9]" not in problem


@pytest.mark.parametrize("value", ["inf", "1e308", "2e9"])
def test_a_disk_reserve_that_is_infinite_or_beyond_any_disk_is_refused(
    tmp_path: Path, value: str
) -> None:
    """'disk_reserve_mb = inf' passed config check, then 'punchgate run' died on
    OverflowError (cannot convert float infinity to integer) converting it to bytes."""
    (problem,) = problems_of(one_key(tmp_path, "outbox", f"disk_reserve_mb = {value}"))
    assert "outbox.disk_reserve_mb: " in problem


def test_the_largest_disk_reserve_accepted_still_converts_to_bytes(tmp_path: Path) -> None:
    settings = load_settings(one_key(tmp_path, "outbox", "disk_reserve_mb = 1e9"), env={})
    assert int(settings.outbox.disk_reserve_mb * 2**20) == 10**9 * 2**20


@pytest.mark.parametrize(
    "line",
    [
        "gateway_id = \u201cplant1-gw1\u201d",
        "gateway_id = \u2018plant1-gw1\u2019",
        "site = \u201eWerk 1\u201c",
    ],
)
def test_typographic_quotes_pasted_from_a_document_say_what_to_retype(
    tmp_path: Path, line: str
) -> None:
    """A config pasted from Word or a mail has curly quotes: 'Invalid value (at line 2,
    column 14)' named no cause, and the quotes look right on screen."""
    text = f"[agent]\n{line}\n" if "gateway_id" in line else f"{MINIMAL}{line}\n"
    (problem,) = problems_of(write(tmp_path, text))
    assert "TOML syntax error" in problem and "typographic quotes" in problem

"""Read a TOML file into ``Settings``, reporting every problem with file, key path and reason."""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
from pydantic import SecretStr, ValidationError

from config.errors import ConfigError
from config.lines import line_of
from config.secrets import private_step, read_bounded, read_secret_file
from config.settings import Settings
from config.syntax import line_hint
from config.values import ID_PATTERN, ID_RULE

DEFAULT_CONFIG_PATH = Path("/etc/punchgate/punchgate.toml")
CONFIG_ENV = "PUNCHGATE_CONFIG"
MAX_CONFIG_BYTES = 2**20  # a config is a few KiB; reading more only fills the memory
PASSWORD_ENV = "PUNCHGATE_MQTT_PASSWORD"  # noqa: S105 - a variable name, not a secret
_DEVICE_KINDS = {"zk", "serial"}
# The unit (systemd/punchgate.service) kills a stop after TimeoutStopSec=30s, and a reload,
# which may wait twice shutdown_timeout without a watchdog ping, after WatchdogSec=60s.
SYSTEMD_SHUTDOWN_LIMIT = 25.0
_TYPOGRAPHIC_QUOTES = "\u201c\u201d\u201e\u2018\u2019\u201a\u00ab\u00bb"

log = structlog.get_logger("config")


def resolve_path(path: Path | None, env: Mapping[str, str] | None = None) -> Path:
    """``--config`` wins, then ``$PUNCHGATE_CONFIG``, then the default path."""
    env = os.environ if env is None else env
    if path is not None:
        return path
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH


def _keys(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """The keys and indexes of a pydantic location as the file has them (union tags dropped)."""
    keys: list[int | str] = []
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            keys.append(part)
        elif isinstance(previous, int) and part in _DEVICE_KINDS:
            pass  # the discriminated union's tag, not a key in the file
        elif not part.startswith(("function-", "union[")):
            keys.append(part)
        previous = part
    return tuple(keys)


def format_location(loc: tuple[int | str, ...]) -> str:
    """``('devices', 0, 'zk', 'port')`` -> ``devices[0].port`` (union tags dropped)."""
    out = ""
    for part in _keys(loc):
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out or "(top level)"


_TYPE_HINTS = {
    # pydantic's own words name Python classes ("<class 'pathlib.Path'>", "AgentSettings").
    "path_type": "must be an absolute path in quotes, e.g. '/var/lib/punchgate'",
    "model_type": "must be a section: write [name] on a line of its own, then its keys",
    "model_attributes_type": "must be a section: write [name] on a line of its own, then its keys",
    "dict_type": "must be a table: key = value lines under a [section] header, or { ... }",
    "bool_type": "must be true or false (lowercase, no quotes)",
    "bool_parsing": "must be true or false (lowercase, no quotes)",
}


def _shown(value: object) -> str:
    """The value as written in the file, cut short (a pasted certificate is not a setting)."""
    if value == "***":
        return value  # a secret, masked as `config show` masks it
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_SECRET_KEYS = {"password", "comm_key"}  # their values are never echoed, even when wrong


def example_config() -> str:
    """Where the annotated example config is: installed beside the venv, or in the sources."""
    installed = Path(sys.prefix) / "share" / "punchgate.example.toml"  # scripts/install.sh
    try:
        if installed.is_file():
            return str(installed)
    except OSError:  # a venv this user cannot look into (is_file() raises on EACCES)
        pass
    return "config/punchgate.example.toml in the punchgate sources"


def _problem_text(error: Mapping[str, Any], location: str = "") -> str:
    message = str(error["msg"])
    if location.rpartition(".")[2] in _SECRET_KEYS:
        error = {**error, "input": "***"}
    if error["type"] == "extra_forbidden":
        return f"unknown key (check the spelling; see {example_config()})"
    if error["type"] == "missing":
        return "required key is missing"
    if error["type"] == "list_type" and location == "devices":
        return "write each terminal as its own [[devices]] table (double brackets)"
    if error["type"] == "model_type" and isinstance(error["input"], list):
        return f"must be one section: write [{location}] (single brackets), not [[{location}]]"
    if error["type"] in _TYPE_HINTS:
        hint = _TYPE_HINTS[error["type"]].replace("[name]", f"[{location}]")
        return f"{hint} (got {_shown(error['input'])})"
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if (
        error["type"] == "string_pattern_mismatch"
        and error.get("ctx", {}).get("pattern") == ID_PATTERN
    ):
        return f"{error['input']!r} is not an id: use {ID_RULE}"
    if error["type"] == "union_tag_invalid":
        return "kind must be one of 'zk', 'serial'"
    if error["type"] == "union_tag_not_found":
        return "kind is missing: set kind = 'zk' or kind = 'serial'"
    should = re.match(r"(Input|String|List|Dictionary|Value) should (.*)", message)
    if should:
        # "Input should be less than or equal to 65535": say it as a rule, with the value given.
        return f"must {should.group(2)} (got {_shown(error['input'])})"
    return message


def parse_settings(data: Mapping[str, Any], source: str, text: str | None = None) -> Settings:
    """Validate a parsed TOML document; raise ``ConfigError`` listing every problem.

    With the file's ``text``, each problem ends with the line it is on, where that is clear.
    """
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = format_location(tuple(err["loc"]))
            line = line_of(text, _keys(tuple(err["loc"]))) if text is not None else None
            at = f" (line {line})" if line is not None else ""
            problems.append(f"{source}: {where}: {_problem_text(err, where)}{at}")
        raise ConfigError(
            f"{source}: {len(problems)} problem(s) in the configuration", problems
        ) from None


def _read_secret_file(path: Path, source: str) -> str:
    return read_secret_file(path, f"{source}: mqtt.password_file")


def not_utf8(
    raw: bytes,
    start: int,
    fix: str = "save it as UTF-8 (Notepad: Save As, Encoding UTF-8)",
    unicode_name: str = "Notepad's 'Unicode'",
) -> str:
    """Where a file that is not UTF-8 goes wrong, and how to save it (Windows editors)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return f"saved as UTF-16 ({unicode_name}); {fix}"
    line = raw.count(b"\n", 0, start) + 1
    return f"line {line}: not UTF-8 text (byte {start}: 0x{raw[start]:02x}); {fix}"


def _syntax_hint(raw: bytes, error: str) -> str:
    """The way out for the usual field causes on the failing line: a backslash in "double
    quotes" (a regex, a Windows path) or typographic quotes pasted from a document."""
    where = re.search(r"at line (\d+)", error)
    lines = raw.decode("utf-8-sig", errors="replace").split("\n")  # as tomllib counts
    if where is None or not 0 < int(where.group(1)) <= len(lines):
        return ""
    line = lines[int(where.group(1)) - 1]
    if any(q in line for q in _TYPOGRAPHIC_QUOTES):
        return (
            "; the line has typographic quotes (\u201c \u201d \u201e \u2018 \u2019, from Word or "
            "a mail): retype them as plain \" or '"
        )
    if "\\" not in line or '"' not in line:
        return line_hint(line, error)
    return (
        '; a backslash in "double quotes" starts a TOML escape: write regular expressions '
        f"and Windows paths in 'single quotes', as {example_config()} does"
    )


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load and validate the config file; secrets come from files or the environment."""
    env = os.environ if env is None else env
    from_env = path is None and bool(env.get(CONFIG_ENV))
    path = resolve_path(path, env)
    source = str(path)
    try:
        raw = read_bounded(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        msg = f"{source}: no such file; create it from {example_config()} or pass --config"
        if from_env:  # a forgotten export in a shell profile: say where the name came from
            msg = f"{source}: no such file (named by ${CONFIG_ENV}); fix or unset ${CONFIG_ENV}"
            msg += f", or pass --config {DEFAULT_CONFIG_PATH}"
        raise ConfigError(msg, [msg]) from None
    except IsADirectoryError:
        inside = path / "punchgate.toml"
        msg = f"{source}: is a directory; pass the config file itself (--config {inside})"
        raise ConfigError(msg, [msg]) from None
    except OSError as exc:
        msg = f"{source}: cannot read: {exc.strerror}"
        if isinstance(exc, PermissionError):
            # The installed file is root:punchgate 0640 in a 0750 directory: the service reads
            # it through its group, a technician runs commands as the service user.
            msg += (
                f"; it must be readable by the service ({private_step(path)}); run commands "
                "as the service user (sudo -u punchgate punchgate ...)"
            )
        raise ConfigError(msg, [msg]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        msg = (
            f"{source}: larger than {MAX_CONFIG_BYTES // 2**20} MiB, far more than a punchgate "
            f"config: check that --config names the config file (e.g. {DEFAULT_CONFIG_PATH})"
        )
        raise ConfigError(msg, [msg])
    try:
        text = raw.decode("utf-8-sig")  # Windows Notepad writes a BOM
        data = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        # utf-8-sig counts from after a BOM: the offset in the file is 3 bytes further.
        start = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        msg = f"{source}: {not_utf8(raw, start)}"
        raise ConfigError(msg, [msg]) from None
    except RecursionError:  # tomllib recurses once per nesting level of [ and {
        msg = (
            f"{source}: arrays or tables nested too deeply: check that this is the punchgate config"
        )
        raise ConfigError(msg, [msg]) from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"{source}: TOML syntax error: {exc}{_syntax_hint(raw, str(exc))}"
        raise ConfigError(msg, [msg]) from None
    settings = parse_settings(data, source, text)
    if settings.agent.shutdown_timeout > SYSTEMD_SHUTDOWN_LIMIT:
        log.warning(
            "agent.shutdown_timeout is longer than the systemd unit allows",
            file=source,
            shutdown_timeout=settings.agent.shutdown_timeout,
            why="TimeoutStopSec=30s kills a longer shutdown; a reload may wait twice it, "
            "past WatchdogSec=60s",
            action=f"keep it at {SYSTEMD_SHUTDOWN_LIMIT:g}s or less, or raise TimeoutStopSec "
            "and WatchdogSec in a drop-in (systemctl edit punchgate)",
        )
    mqtt = settings.mqtt
    password: str | None = None
    if mqtt.password_file is not None:
        password = _read_secret_file(mqtt.password_file, source)
    elif mqtt.password is None and env.get(PASSWORD_ENV):
        password = env[PASSWORD_ENV]
    if mqtt.username is None and (password is not None or mqtt.password is not None):
        log.warning(
            "an MQTT password without a user name is never sent; set mqtt.username",
            file=source,
        )
    if password is not None:
        settings = settings.model_copy(
            update={"mqtt": mqtt.model_copy(update={"password": SecretStr(password)})}
        )
    return settings

"""The docs are tested: every TOML example validates, every command they name exists."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from config.loader import parse_settings
from tests.support.cli_parse import parse_strictly

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)
MINIMAL_AGENT = '[agent]\ngateway_id = "doc-gw"\n'


def blocks(lang: str) -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for i, match in enumerate(FENCE.finditer(doc.read_text(encoding="utf-8"))):
            if match.group(1) == lang:
                found.append((f"{doc.relative_to(ROOT)}#{i}", match.group(2)))
    return found


@pytest.mark.parametrize(("where", "text"), blocks("toml"), ids=lambda v: v if "#" in v else "")
def test_every_toml_example_in_the_docs_validates(where: str, text: str) -> None:
    data = tomllib.loads(text)
    if "agent" not in data:  # a fragment showing one section: complete it minimally
        data = {**tomllib.loads(MINIMAL_AGENT), **data}
    parse_settings(data, where)


def commands_in_docs() -> list[tuple[str, list[str]]]:
    """``punchgate a b ...`` invocations in shell blocks and in inline code."""
    found: list[tuple[str, list[str]]] = []
    command = re.compile(r"^(?:.*&& )?(?:sudo )?(?:\S*/)?punchgate((?: [a-z][a-z-]*)+)")
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        snippets = [m.group(2) for m in FENCE.finditer(text) if m.group(1) in ("sh", "bash", "")]
        lines = [line for snippet in snippets for line in snippet.splitlines()]
        lines += re.findall(r"`([^`\n]+)`", FENCE.sub("", text))
        for line in lines:
            if match := command.match(line.strip()):
                found.append((doc.name, shlex.split(match.group(1))))
    return found


def test_every_command_named_in_the_docs_exists() -> None:
    runner = CliRunner()
    missing = []
    for doc, words in commands_in_docs():
        # Walk down as far as the words are subcommands; the rest are arguments.
        path: list[str] = []
        for word in words:
            probe = runner.invoke(app, [*path, word, "--help"])
            if probe.exit_code != 0:
                break
            path.append(word)
        if not path:
            missing.append(f"{doc}: punchgate {' '.join(words)}")
    assert missing == []


def test_every_cli_command_appears_in_the_readme() -> None:
    """Each leaf command is named in the README's command table."""
    import typer

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = []

    def walk(cmd: object, path: list[str]) -> None:
        commands = getattr(cmd, "commands", None)
        if commands is None:
            words = " ".join(path)
            if f"`punchgate {words}" not in readme and f"`{words}`" not in readme:
                missing.append(words)
            return
        for name, sub in commands.items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    assert missing == []


def test_the_readmes_json_error_example_is_what_a_failing_command_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's ``--json`` failure document: same keys, type and exit code as the real one."""
    import json
    import socket
    import sys

    import structlog

    from agent.cli import main

    (example,) = [json.loads(t) for where, t in blocks("json") if where.startswith("README")]
    with socket.socket() as probe:  # a port on 127.0.0.1 where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "punchgate.toml"
    config.write_text(
        f'[agent]\ngateway_id = "doc-gw"\nstate_dir = "{tmp_path}"\n\n[[devices]]\n'
        f'id = "lobby-1"\nkind = "zk"\nhost = "127.0.0.1"\nport = {port}\ntimeout = 2\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(sys, "argv", ["punchgate", "devices", "ping", "lobby-1", "--json",
                                      "--config", str(config)])  # fmt: skip
    with pytest.raises(SystemExit) as exited:
        main()
    structlog.reset_defaults()
    real = json.loads(capsys.readouterr().out)
    assert exited.value.code == example["error"]["exit_code"]
    assert real.keys() == example.keys() and real["error"].keys() == example["error"].keys()
    assert real["error"]["type"] == example["error"]["type"]
    assert "refused the connection" in real["error"]["message"]
    assert "refused the connection" in example["error"]["message"]


def full_commands_in_docs() -> list[str]:
    """Whole ``punchgate ...`` invocations of shell blocks (options included, comments cut)."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group(1) not in ("sh", "bash"):
                continue
            for line in match.group(2).splitlines():
                for part in line.split("&&"):
                    words = shlex.split(part, comments=True)
                    # `punchgate ...`, `sudo [-u punchgate] /opt/punchgate/bin/punchgate ...`
                    while words[:1] == ["sudo"] or words[:1] == ["-u"]:
                        words = words[2:] if words[0] == "-u" else words[1:]
                    if words and words[0].split("/")[-1] == "punchgate":
                        found.append(f"{doc.name}: {shlex.join(words)}")
    return found


@pytest.mark.parametrize("line", full_commands_in_docs())
def test_every_shell_example_in_the_docs_parses_with_its_options(line: str) -> None:
    """Options and values too: a renamed or mistyped option in a doc fails here."""
    args = shlex.split(line.split(": ", 1)[1])[1:]
    root_options = {"--log-level": 2, "--debug": 1}
    while args and args[0] in root_options:
        args = args[root_options[args[0]] :]
    if args == ["--version"]:
        return
    parse_strictly(args, line)

"""scripts/install.sh and the example config as IT meets them on a stock Debian/Raspberry Pi OS."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from config.secrets import private_step

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install.sh"
EXAMPLE = ROOT / "config" / "punchgate.example.toml"
# Directories a stock Debian 12 / Raspberry Pi OS with systemd has. Not /etc/sysusers.d: Debian's
# systemd package ships /usr/lib/sysusers.d only.
STOCK_DIRS = {"/etc", "/etc/systemd/system", "/usr/local/bin"}


def _commands() -> list[list[str]]:
    """install.sh's simple commands, one per line, continuation lines joined."""
    text = INSTALL.read_text().replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            commands.append(shlex.split(line, comments=True))
    return commands


def test_install_script_parses_as_bash() -> None:
    result = subprocess.run(
        ["bash", "-n", str(INSTALL)], capture_output=True, text=True, timeout=10, check=False
    )
    assert result.returncode == 0, result.stderr


def test_install_creates_every_directory_it_installs_a_file_into() -> None:
    """On Debian 12 /etc/sysusers.d does not exist: 'install FILE /etc/sysusers.d/x' failed with
    'No such file or directory' and stopped every fresh install after building the venv."""
    created = set(STOCK_DIRS)
    missing = []
    for words in _commands():
        if not words or words[0] not in ("install", "ln"):
            continue
        operands = [w for w in words[1:] if not w.startswith("-")]
        # install's -m/-o/-g take a value: drop the word after each of them.
        values = {i + 1 for i, w in enumerate(words) if w in ("-m", "-o", "-g")}
        operands = [w for i, w in enumerate(words) if i > 0 and w in operands and i not in values]
        if words[0] == "install" and "-d" in words:
            created.update(operands)
            continue
        target = operands[-1]
        parent = str(Path(target).parent)
        if "-D" not in words and parent not in created and not parent.startswith("$"):
            missing.append(f"{' '.join(words)} (into {parent})")
    assert missing == [], missing


def test_install_puts_the_punchgate_command_on_the_path() -> None:
    """README and docs/operations.md run 'punchgate status' and 'punchgate --version' right after
    the install; /opt/punchgate/bin is on nobody's PATH, so they said 'command not found'."""
    links = [w for w in _commands() if w[:1] == ["ln"] and w[-1] == "/usr/local/bin/punchgate"]
    assert links, "install.sh links no /usr/local/bin/punchgate"
    assert links[0][-2] == "$PREFIX/bin/punchgate"


def test_install_makes_the_whole_state_dir_the_service_users() -> None:
    """A state dir left by an earlier run as root: install -d chowns only the directory itself,
    and systemd's StateDirectory= fix-up then sees a matching owner and skips the files below,
    so the service could not write an outbox.db owned by root."""
    chowns = [w for w in _commands() if w[:1] == ["chown"]]
    assert ["chown", "-R", "punchgate:punchgate", "/var/lib/punchgate"] in chowns


def test_example_password_file_mode_is_one_the_service_can_read() -> None:
    """The example said 'mode 0600': root-owned 0600, as IT then makes it, the punchgate user
    cannot read, and the service failed its ExecStartPre config check."""
    line = next(x for x in EXAMPLE.read_text().splitlines() if "password_file =" in x)
    comment = line.partition("#")[2].partition("#")[2]
    modes = re.findall(r"\b0?[0-7]{3}\b", comment)
    assert modes and all(int(m, 8) & 0o040 for m in modes), comment
    assert "punchgate" in comment and private_step("/x").startswith("chown root:punchgate")


def test_install_checks_the_config_as_the_service_user_before_restarting() -> None:
    """The unit's ExecStartPre runs 'config check' as punchgate; install.sh ran it as root, who
    reads a root-only password file: the upgrade restarted a service that then failed to start."""
    text = INSTALL.read_text().replace("\\\n", " ")
    (check,) = [line for line in text.splitlines() if "config check" in line]
    assert "runuser -u punchgate --" in check, check
    after = text[text.index(check) :]
    assert "NOT restarted" in after and "exit 1" in after


def test_install_takes_the_python_from_PYTHON_as_setup_sh_does() -> None:
    """Ubuntu 22.04's python3 is 3.10 (python3.11 is a separate package): with no way to name
    another interpreter, install.sh refused to install on a documented platform."""
    text = INSTALL.read_text()
    assert "PY=${PYTHON:-python3}" in text
    assert not re.search(r"^\s*python3 ", text, re.M), "a bare python3 call is left"


def test_install_refuses_a_venv_the_service_user_cannot_run() -> None:
    """Root's pyenv python (or any under /root) made a venv whose interpreter punchgate cannot
    execute: the service then failed with 203/EXEC, while install.sh said 'installed'."""
    text = INSTALL.read_text().replace("\\\n", " ")
    start = text.index("--version >/dev/null")
    probe = text[text.rindex("\n", 0, start) : text.index("\n}", start)]
    assert "runuser -u punchgate --" in probe and "PYTHON=/usr/bin/python3" in probe
    assert "exit 1" in probe and start < text.index("config check --config")


def test_example_says_what_the_unit_does_with_paths() -> None:
    """The example said 'the service runs from /' (the unit's WorkingDirectory is the state dir)
    and nothing of ProtectSystem=strict: a state_dir moved to a data disk was read-only."""
    unit = (ROOT / "systemd" / "punchgate.service").read_text()
    workdir = next(x for x in unit.splitlines() if x.startswith("WorkingDirectory="))
    text = EXAMPLE.read_text()
    assert f"the service runs in {workdir.partition('=')[2]}" in text
    assert "ProtectSystem=strict" in unit and "ReadWritePaths=" in text


def test_install_points_the_unit_at_the_prefix_it_installed_into(tmp_path: Path) -> None:
    """PREFIX=/srv/punchgate put the venv there but installed the unit verbatim: ExecStart and
    ExecStartPre still named /opt/punchgate/bin/punchgate, and the service failed 203/EXEC."""
    text = INSTALL.read_text()
    (render,) = [x for x in text.splitlines() if "systemd/punchgate.service" in x and "sed" in x]
    unit = tmp_path / "unit"
    script = f'PREFIX=/srv/pg; unit="{unit}"; {render}'
    subprocess.run(["bash", "-c", script], cwd=ROOT, check=True, timeout=10)
    rendered = unit.read_text()
    assert "ExecStart=/srv/pg/bin/punchgate run " in rendered
    assert "ExecStartPre=/srv/pg/bin/punchgate config check " in rendered
    assert "/opt/punchgate" not in rendered
    assert re.search(r'install -m 0644 "\$unit" /etc/systemd/system/punchgate\.service', text)


def test_the_package_metadata_uses_no_setuptools_form_due_for_removal() -> None:
    """'pip install .' (install.sh, setup.sh) warned: "project.license as a TOML table is
    deprecated ... By 2027-Feb-18 ... your builds will no longer be supported": an upgrade
    months from now would not build with the setuptools pip then fetches."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(project["project"]["license"], str)  # an SPDX expression
    floor = next(r for r in project["build-system"]["requires"] if r.startswith("setuptools"))
    assert floor == "setuptools>=77"  # the first to read an SPDX license string


def test_an_upgrade_builds_from_the_checkout_not_from_a_stale_build_dir() -> None:
    """setuptools copies sources into build/lib and never deletes from it: after 'git pull' a
    module or schema file deleted upstream was still built into the wheel and installed."""
    commands = _commands()
    build = next(i for i, w in enumerate(commands) if w[-2:] == ["install", "."] or w[-1:] == ["."])
    assert ["rm", "-rf", "build"] in commands[:build]

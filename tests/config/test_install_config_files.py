"""The installed config file as IT then meets it: /etc/punchgate is root:punchgate 0750."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config.files import MINIMAL, problems_of, write


def test_a_config_file_the_user_may_not_read_says_how_to_run_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: 'punchgate config check --config /etc/punchgate/punchgate.toml' run by IT's own
    account said only 'cannot read: Permission denied' (the directory is root:punchgate 0750)."""
    path = write(tmp_path, MINIMAL)
    real_read = Path.read_bytes

    def read_as_another_user(self: Path) -> bytes:
        # Root reads any file: refuse it the way the kernel refuses an account outside the group.
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_as_another_user)
    (problem,) = problems_of(path)
    assert "Permission denied" in problem and "sudo -u punchgate" in problem
    # Made root-only by hand before install.sh ran, the service itself cannot read it either.
    assert f"chown root:punchgate {path} && chmod 640 {path}" in problem


@pytest.mark.parametrize(
    ("host", "hint"),
    [
        ("10.0.0.20:4370", "port = 4370"),
        ("tcp://10.0.0.20", "not a URL"),
        ("zk1.plant:4370", "port = 4370"),
    ],
)
def test_a_terminal_host_written_with_its_port_or_as_a_url_fails_the_check(
    tmp_path: Path, host: str, hint: str
) -> None:
    """'host = "10.0.0.20:4370"' (as terminal menus show it) passed config check, and the
    terminal then never answered: 'the host name cannot be resolved'."""
    device = f'[[devices]]\nid = "d"\nkind = "zk"\nhost = "{host}"\n'
    (problem,) = problems_of(write(tmp_path, MINIMAL + device))
    assert "devices[0].host: " in problem and hint in problem


@pytest.mark.parametrize("host", ["10.0.0.20", "fe80::1", "2001:db8::20", "zk1.plant.local"])
def test_addresses_and_names_are_accepted_as_terminal_hosts(tmp_path: Path, host: str) -> None:
    from config import load_settings

    device = f'[[devices]]\nid = "d"\nkind = "zk"\nhost = "{host}"\n'
    settings = load_settings(write(tmp_path, MINIMAL + device), env={})
    assert settings.devices[0].host == host  # type: ignore[union-attr]


@pytest.mark.parametrize("content", [b"\xef\xbb\xbfs3cret\r\n", b"\xef\xbb\xbfs3cret"])
def test_a_password_file_saved_by_notepad_with_a_bom_gives_the_password_without_it(
    tmp_path: Path, content: bytes
) -> None:
    """Notepad's UTF-8 starts with a BOM: it was sent as part of the password, and the broker
    answered 'bad user name or password' for a password that looked right in every editor."""
    from config import load_settings

    secret = tmp_path / "mqtt-password"
    secret.write_bytes(content)
    secret.chmod(0o600)
    text = MINIMAL + f'[mqtt]\nusername = "u"\npassword_file = "{secret}"\n'
    settings = load_settings(write(tmp_path, text), env={})
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "s3cret"

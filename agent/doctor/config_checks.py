"""Doctor checks on the configuration file and the files it points to."""

from __future__ import annotations

import os
from pathlib import Path

from agent.doctor.result import CheckResult, fail, ok, skip, warn
from config import Settings, load_settings
from config.errors import ConfigError
from config.loader import PASSWORD_ENV, example_config, resolve_path
from config.secrets import exposure, private_step

FAMILY = "config"
SYSTEMD_STATE_DIR = Path("/var/lib/punchgate")  # StateDirectory=punchgate in the unit


def load_config(path: Path | None) -> tuple[Settings | None, list[CheckResult]]:
    """Load the config; on failure the settings are ``None`` and the result lists every problem."""
    where = str(resolve_path(path))
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        problems = exc.problems or [str(exc)]
        shown = "; ".join(problems[:5]) + (
            f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        )
        step = f"fix the file, then check it with: punchgate config check --config {where}"
        if isinstance(exc.__cause__ or exc.__context__, PermissionError):
            # The file is fine; this user may not read it (or the password file it names).
            step = "run the doctor as root or as the service user: sudo /opt/punchgate/bin/"
            step += f"punchgate doctor --config {where}"
        return None, [fail(FAMILY, where, "config file", shown, step)]
    devices = len(settings.devices)
    return settings, [
        ok(
            FAMILY,
            where,
            "config file",
            f"valid: gateway {settings.agent.gateway_id}, {devices} device(s)",
        )
    ]


def check_config_files(settings: Settings, path: Path | None) -> list[CheckResult]:
    """Devices configured, state directory usable, secret and TLS files readable and private."""
    where = str(resolve_path(path))
    results = [_devices(settings, where), _state_dir(settings.agent.state_dir, where)]
    mqtt = settings.mqtt
    held = _secrets_in_file(settings)
    if held:
        results.append(_secret_file(Path(where), "config secrets", f" (it holds {held})"))
    if mqtt.password_file is not None:
        results.append(_secret_file(mqtt.password_file, "mqtt.password_file"))
    if mqtt.key_file is not None:
        results.append(_secret_file(mqtt.key_file, "mqtt.key_file"))
    for key, file in (("mqtt.ca_file", mqtt.ca_file), ("mqtt.cert_file", mqtt.cert_file)):
        if file is not None and not os.access(file, os.R_OK):
            results.append(
                fail(
                    FAMILY,
                    str(file),
                    key,
                    f"{file} does not exist or is not readable by this user",
                    f"copy the file there or fix {key} in {where}",
                )
            )
    return results


def _devices(settings: Settings, where: str) -> CheckResult:
    enabled = [d.id for d in settings.devices if d.enabled]
    disabled = [d.id for d in settings.devices if not d.enabled]
    if not settings.devices:
        return warn(
            FAMILY,
            where,
            "devices",
            "no [[devices]] configured: nothing will be read",
            f"add a [[devices]] section to {where} (see {example_config()})",
        )
    detail = f"{len(enabled)} enabled ({', '.join(enabled) or 'none'})"
    if disabled:
        detail += f", {len(disabled)} disabled ({', '.join(disabled)})"
    if not enabled:
        return warn(FAMILY, where, "devices", detail, "set enabled = true on the devices to read")
    return ok(FAMILY, where, "devices", detail)


def _state_dir(state_dir: Path, where: str) -> CheckResult:
    name = "state directory"
    repoint = f"point agent.state_dir in {where} at a directory (default {SYSTEMD_STATE_DIR})"
    if not state_dir.exists():
        blocker = next((p for p in state_dir.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            detail = f"{blocker} is a file, so {state_dir} cannot be created"
            return fail(FAMILY, str(state_dir), name, detail, repoint)
        if state_dir == SYSTEMD_STATE_DIR:
            step = "start the service once (systemd creates it)"
        else:
            # The unit's StateDirectory= creates only /var/lib/punchgate, and ProtectSystem=strict
            # keeps every other path read-only for the service.
            step = (
                f"create it: sudo install -d -o punchgate -g punchgate -m 750 {state_dir}; "
                f"let the service write there: sudo systemctl edit punchgate, add [Service] "
                f"ReadWritePaths={state_dir}"
            )
        return warn(FAMILY, str(state_dir), name, f"{state_dir} does not exist yet", step)
    if not state_dir.is_dir():
        return fail(FAMILY, str(state_dir), name, f"{state_dir} is not a directory", repoint)
    if not os.access(state_dir, os.W_OK | os.X_OK):
        return warn(
            FAMILY,
            str(state_dir),
            name,
            f"{state_dir} is not writable by this user ({_user()})",
            "run the CLI as the service user: sudo -u punchgate punchgate ...",
        )
    return ok(FAMILY, str(state_dir), name, f"{state_dir} is writable")


def _secrets_in_file(settings: Settings) -> str:
    """What secrets the config file itself holds ('' if none), named, never their values."""
    held = [f"the comm_key of {d.id}" for d in settings.devices if getattr(d, "comm_key", 0)]
    password = settings.mqtt.password
    # The loader puts a password from password_file or the environment there too.
    env = os.environ.get(PASSWORD_ENV)
    if password is not None and settings.mqtt.password_file is None:
        if env is None or password.get_secret_value() != env:
            held.insert(0, "mqtt.password")
    return ", ".join(held)


def _secret_file(file: Path, key: str, held: str = "") -> CheckResult:
    try:
        st = file.stat()
    except OSError as exc:
        return fail(
            FAMILY, str(file), key, f"cannot read {file}: {exc.strerror}", f"create it or fix {key}"
        )
    exposed = exposure(st)
    if exposed:
        return warn(FAMILY, str(file), key, f"{file}{held} is {exposed}", private_step(file))
    mode = oct(st.st_mode & 0o777)
    return ok(FAMILY, str(file), key, f"{file}{held} is private (mode {mode})")


def skipped_without_config(family: str) -> CheckResult:
    """What every other family reports when the config could not be loaded."""
    return skip(family, "", family, "not run: the configuration did not load (see config above)")


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())

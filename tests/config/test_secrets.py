"""Who else can read a secret file: the rule shared by the loader's warning and the doctor."""

from __future__ import annotations

import grp
import os
import stat

import pytest

from config.secrets import SERVICE_GROUP, exposure, private_step


def _stat(mode: int, gid: int) -> os.stat_result:
    """A stat of a regular file with ``mode`` and group ``gid`` (only these fields are read)."""
    return os.stat_result((stat.S_IFREG | mode, 1, 1, 1, 0, gid, 7, 0, 0, 0))


def _foreign_gid() -> int:
    """A group id that is neither this process's nor the service's."""
    taken = {os.getegid()}
    try:
        taken.add(grp.getgrnam(SERVICE_GROUP).gr_gid)
    except KeyError:
        pass
    return next(g for g in range(1, 70_000) if g not in taken)


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o440])
def test_the_owner_and_our_own_group_may_read_it(mode: int) -> None:
    assert exposure(_stat(mode, os.getegid())) is None


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        (0o644, "every user"),
        (0o602, "every user"),
        (0o604, "every user"),
        (0o620, "writable by group"),
        (0o660, "writable by group"),
    ],
)
def test_other_users_or_a_writable_group_expose_it(mode: int, why: str) -> None:
    exposed = exposure(_stat(mode, os.getegid()))
    assert exposed is not None and why in exposed and oct(mode) in exposed


def test_group_read_for_a_group_that_is_not_the_service_exposes_it() -> None:
    exposed = exposure(_stat(0o640, _foreign_gid()))
    assert exposed is not None and exposed.startswith("readable by group")


def test_the_step_is_the_documented_install() -> None:
    secret = "/etc/punchgate/mqtt-password"
    assert private_step(secret) == f"chown root:punchgate {secret} && chmod 640 {secret}"

"""Whose punch is it: user ids, slots and re-enrolments as the ZK driver attributes them."""

from __future__ import annotations

import pytest

from config.errors import UsageError
from tests.drivers.zk.driver_support import driver_for, simulator


def test_eight_byte_records_follow_a_user_re_enrolled_into_a_freed_slot_between_reads() -> None:
    """A technician deletes a leaver and enrols a new hire with the CLI while the daemon runs.

    The new hire gets the freed slot, so the user count is unchanged: the daemon's driver must
    still attribute the new hire's punches to the new hire, not to the leaver.
    """
    with simulator(users=3, records=6, variant="old-fw-8") as sim:
        daemon = driver_for(sim, "udp", device_id="lobby-1")
        daemon.open()
        try:
            punches, mark = daemon.read_new(None)
            leaver = sim.users[1]
            assert leaver.user_id in {p.employee for p in punches}

            cli = driver_for(sim, "udp", device_id="lobby-1")
            cli.open()
            try:
                assert cli.delete_user(leaver.user_id)
                hired = cli.upsert_user("2001", "New Hire")
            finally:
                cli.close()
            assert hired.uid == leaver.uid and len(sim.users) == 3

            sim.punch("2001", state=0)
            tail, _mark = daemon.read_new(mark)
        finally:
            daemon.close()
    assert [p.employee for p in tail] == ["2001"]


def test_numeric_id_firmware_updates_and_deletes_a_user_typed_with_leading_zeros() -> None:
    """Badges print "0001001"; a terminal storing user ids as numbers knows the user as 1001.

    Enrolling "0001001" must update user 1001 in its slot, not add a second user 1001 in
    another slot (two users with one badge number: punches go to either), and deleting it must
    delete user 1001, not answer that there is no such user.
    """
    with simulator(users=2, variant="old-fw-16") as sim:
        existing = sim.users[0]
        assert existing.user_id == "1001"
        driver = driver_for(sim, "udp")
        driver.open()
        try:
            written = driver.upsert_user("0001001", "Ana C.")
            assert [u.user_id for u in sim.users] == ["1001", "1002"]
            assert written.uid == existing.uid and written.user_id == "1001"
            assert sim.users[0].name == "Ana C."
            assert driver.delete_user("01001") is True
            assert [u.user_id for u in sim.users] == ["1002"]
        finally:
            driver.close()


def test_eight_byte_records_of_a_deleted_user_are_not_given_to_the_user_whose_id_is_the_slot() -> (
    None
):
    """A leaver in slot 2 punched, then was deleted; user "2" (another person, in slot 3) stays.

    The record carries only the slot: with nobody enrolled there, the punch must not become
    user "2"'s punch (pyzk's fallback, the slot number as the user id, did exactly that).
    """
    with simulator(variant="old-fw-8") as sim:
        sim.add_user("1001")
        leaver = sim.add_user("1002")
        other = sim.add_user(str(leaver.uid))
        assert other.uid != leaver.uid and other.user_id == "2"
        sim.punch("1002", state=0)
        sim.punch("2", state=0)
        admin = driver_for(sim, "udp")
        admin.open()
        try:
            assert admin.delete_user("1002")
        finally:
            admin.close()
        daemon = driver_for(sim, "udp")
        daemon.open()
        try:
            punches, _mark = daemon.read_new(None)
        finally:
            daemon.close()
    employees = [p.employee for p in punches]
    assert employees == [f"uid:{leaver.uid}", "2"]


@pytest.mark.parametrize("card", [2**32, 12_345_678_901, -1])
def test_a_card_number_wider_than_the_terminals_32_bits_is_refused_before_sending(
    card: int,
) -> None:
    """A 40-bit EM4100 number does not fit the user record's card field (a struct.error)."""
    with simulator(users=1) as sim:
        driver = driver_for(sim)
        driver.open()
        try:
            with pytest.raises(UsageError, match=f"card number {card} .*32-bit"):
                driver.upsert_user("4711", "Ana", card=card)
            assert [u.user_id for u in sim.users] == ["1001"]
        finally:
            driver.close()

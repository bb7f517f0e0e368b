"""Whose punch is it: user ids, slots and re-enrolments as the ZK driver attributes them."""

from __future__ import annotations

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

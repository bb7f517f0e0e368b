"""Users (list, upsert, delete, name encodings) and clearing the log only when it is safe."""

from __future__ import annotations

import pytest

from config.errors import UsageError
from tests.drivers.zk.driver_support import VARIANTS, driver_for, simulator


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_upsert_creates_then_updates_in_place_and_delete_removes(variant: str) -> None:
    with simulator(users=3, variant=variant) as sim:
        driver = driver_for(sim, "udp" if variant != "tcp-fw-40" else "tcp")
        driver.open()
        try:
            created = driver.upsert_user("4711", "Ana Costa", card=998877)
            assert [u.user_id for u in sim.users][-1] == "4711"
            updated = driver.upsert_user("4711", "Ana C.", privilege=14)
            assert updated.uid == created.uid
            listed = {u.user_id: u for u in driver.users()}
            assert listed["4711"].name == "Ana C." and listed["4711"].privilege == 14
            assert listed["4711"].card == 0 and len(listed) == 4
            assert driver.delete_user("4711") is True
            assert driver.delete_user("4711") is False
            assert "4711" not in {u.user_id for u in sim.users}
        finally:
            driver.close()


@pytest.mark.parametrize(("encoding", "name"), [("cp1251", "Ольга Ким"), ("gbk", "李雷")])
def test_names_are_written_and_read_in_the_configured_encoding(encoding: str, name: str) -> None:
    with simulator(name_encoding=encoding) as sim:
        driver = driver_for(sim, encoding=encoding)
        driver.open()
        driver.upsert_user("12", name)
        (user,) = driver.users()
        driver.close()
        (stored,) = sim.users  # decoded with the terminal's code page
    assert user.name == name and user.user_id == "12"
    assert stored.name == name


def test_a_driver_on_the_wrong_encoding_garbles_the_name_on_the_terminal() -> None:
    """A round trip alone hides it: the driver reads its bytes back, the terminal shows others."""
    name = "Ольга Ким"
    with simulator(name_encoding="cp1251") as sim:
        driver = driver_for(sim, encoding="utf-8")
        driver.open()
        driver.upsert_user("12", name)
        (user,) = driver.users()
        driver.close()
        (stored,) = sim.users
    assert stored.name != name
    assert stored.name == name.encode("utf-8").decode("cp1251")  # "РћР»СЊРіР° ..."
    assert user.name == name


def test_old_firmware_refuses_non_numeric_ids_before_sending() -> None:
    with simulator(users=1, variant="old-fw-16") as sim:
        driver = driver_for(sim)
        driver.open()
        with pytest.raises(UsageError, match="numeric user ids only"):
            driver.upsert_user("A-17", "X")
        driver.close()


def test_empty_terminal_lists_no_users() -> None:
    with simulator() as sim:
        driver = driver_for(sim)
        driver.open()
        assert driver.users() == []
        driver.close()


# clear_after_read


def test_log_is_never_cleared_when_clear_after_read_is_off() -> None:
    with simulator(users=2, records=50, record_capacity=50) as sim:
        driver = driver_for(sim)
        driver.open()
        _, mark = driver.read_new(None)
        assert driver.clear_log_if_due(int(mark["count"])) is False  # type: ignore[call-overload]
        driver.close()
        assert len(sim.records) == 50


def test_log_below_the_threshold_is_kept() -> None:
    with simulator(users=2, records=40, record_capacity=50) as sim:
        driver = driver_for(sim, clear_after_read=True, clear_threshold=0.9)
        driver.open()
        _, mark = driver.read_new(None)
        assert driver.clear_log_if_due(int(mark["count"])) is False  # type: ignore[call-overload]
        driver.close()
        assert len(sim.records) == 40


def test_full_log_is_cleared_once_everything_read_is_durable() -> None:
    with simulator(users=2, records=46, record_capacity=50) as sim:
        driver = driver_for(sim, clear_after_read=True, clear_threshold=0.9)
        driver.open()
        _, mark = driver.read_new(None)
        assert driver.clear_log_if_due(45) is False  # the caller stored less than we read
        assert len(sim.records) == 46
        assert driver.clear_log_if_due(46) is True
        assert sim.records == []
        sim.punch(sim.users[0].user_id)
        after, mark2 = driver.read_new(mark)  # the old watermark still works: it falls back
        driver.close()
    assert len(after) == 1 and mark2["count"] == 1


def test_punch_recorded_after_the_read_blocks_the_clear() -> None:
    with simulator(users=2, records=46, record_capacity=50) as sim:
        driver = driver_for(sim, clear_after_read=True, clear_threshold=0.9)
        driver.open()
        _, mark = driver.read_new(None)
        sim.punch(sim.users[0].user_id)
        assert driver.clear_log_if_due(int(mark["count"])) is False  # type: ignore[call-overload]
        driver.close()
        assert len(sim.records) == 47

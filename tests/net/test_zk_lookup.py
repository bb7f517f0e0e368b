"""A ZK terminal given by host name: the lookup is bounded by the device's timeout."""

from __future__ import annotations

import pytest

from config.errors import DeviceUnavailable
from drivers.netaddr import Resolver
from drivers.zk import ZkDriver, ZkOptions
from drivers.zk.transport import ZkConnection
from tests.drivers.zk.driver_support import TZ, simulator
from tests.net.support import dead_dns, hosts_file


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_terminal_whose_name_the_dns_never_answers_fails_within_its_timeout(
    transport: str,
) -> None:
    with simulator() as sim, dead_dns() as dns:
        options = ZkOptions(host="clock1.site.lan", port=sim.port, transport=transport, timeout=0.3)
        driver = ZkDriver("lobby-1", options, TZ)
        driver.conn = ZkConnection(driver.endpoint, timeout=0.3, resolver=Resolver(dns))
        with pytest.raises(DeviceUnavailable) as caught:
            driver.open()
        assert not dns.release.is_set()  # back while the lookup still hangs
        assert dns.calls == ["clock1.site.lan"]
    message = str(caught.value)
    assert message.startswith("lobby-1: could not look up 'clock1.site.lan' within 0.3 s")
    assert "DNS server does not answer" in message and "IP address" in message
    assert not driver.conn.connected


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_terminal_given_by_a_name_the_resolver_knows_is_read(transport: str) -> None:
    with simulator(users=2, records=5) as sim:
        options = ZkOptions(host="clock1.site.lan", port=sim.port, transport=transport, timeout=2)
        driver = ZkDriver("lobby-1", options, TZ)
        names = hosts_file({"clock1.site.lan": "127.0.0.1"})
        driver.conn = ZkConnection(driver.endpoint, timeout=2, resolver=Resolver(names))
        driver.open()
        try:
            assert driver.serial == sim.serial
            punches, _mark = driver.read_new(None)
            assert len(punches) == 5
        finally:
            driver.close()


def test_a_terminal_at_localhost_is_reached_through_the_real_resolver() -> None:
    with simulator() as sim:
        driver = ZkDriver("lobby-1", ZkOptions(host="localhost", port=sim.port, timeout=2), TZ)
        driver.open()  # localhost may list ::1 first, where the simulator does not listen
        try:
            assert driver.serial == sim.serial
        finally:
            driver.close()


def test_a_terminal_name_the_dns_does_not_know_says_to_check_the_host() -> None:
    with simulator() as sim:
        options = ZkOptions(host="nosuch.site.lan", port=sim.port, timeout=2)
        driver = ZkDriver("lobby-1", options, TZ)
        driver.conn = ZkConnection(driver.endpoint, timeout=2, resolver=Resolver(hosts_file({})))
        with pytest.raises(DeviceUnavailable, match=r"cannot be resolved .*check host"):
            driver.open()


def test_a_host_no_dns_name_can_have_is_a_device_error_saying_to_fix_the_host() -> None:
    # A label over 63 characters (a pasted note, a doubled name): the IDNA encoding refuses it.
    host = "clock-" + "x" * 60 + ".site.lan"
    driver = ZkDriver("lobby-1", ZkOptions(host=host, port=4370, timeout=2), TZ)
    with pytest.raises(DeviceUnavailable) as caught:
        driver.open()
    message = str(caught.value)
    assert message.startswith(f"lobby-1 ({host}:4370): the host name cannot be resolved")
    assert "63 characters" in message and "check host in the config" in message

"""A ZK terminal simulator faithful to real hardware, with fault injection.

A product feature (demos, training, field tests) as much as a test fixture: see
``punchgate simulate zk`` and ``ZkSimulator``.
"""

from drivers.zk.simulator.faults import Faults
from drivers.zk.simulator.network import SessionInfo
from drivers.zk.simulator.server import ZkSimulator
from drivers.zk.simulator.terminal import DIRECT_DATA_MAX

__all__ = ["DIRECT_DATA_MAX", "Faults", "SessionInfo", "ZkSimulator"]

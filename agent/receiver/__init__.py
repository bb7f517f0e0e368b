"""The reference receiver for the backend side: ``punchgate receive``."""

from agent.receiver.gaps import Gap, GatewaySummary
from agent.receiver.receiver import Receiver, ReceiverStats
from agent.receiver.store import PunchStore, open_store

__all__ = ["Gap", "GatewaySummary", "PunchStore", "Receiver", "ReceiverStats", "open_store"]

"""The reference receiver for the backend side: ``punchgate receive``."""

from agent.receiver.receiver import Receiver, ReceiverStats
from agent.receiver.store import Gap, GatewaySummary, PunchStore, open_store

__all__ = ["Gap", "GatewaySummary", "PunchStore", "Receiver", "ReceiverStats", "open_store"]

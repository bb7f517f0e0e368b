"""The in-flight window: backend acks resolve to seqs of batches in flight."""

from __future__ import annotations

from agent.mqtt.window import InFlight, Window


def _window() -> Window:
    window = Window()
    window.add(InFlight(mid=(1, 1), seqs=[1, 2], ids=["a", "b"], sent_at=0.0), track_ids=True)
    window.add(InFlight(mid=(1, 2), seqs=[3, 4], ids=["c", "d"], sent_at=0.0), track_ids=True)
    return window


def test_backend_acks_give_seqs_of_punches_in_flight_and_ids_of_others() -> None:
    window = _window()
    done, seqs, unknown = window.ack_ids(["b", "zz", "a", "c"])
    assert [b.mid for b in done] == [(1, 1)]
    assert seqs == [2, 1, 3]
    assert unknown == ["zz"]
    assert len(window) == 1
    done, seqs, unknown = window.ack_ids(["c"])  # acked twice: not in flight any more
    assert (done, seqs, unknown) == ([], [], ["c"])


def test_contiguous_seq_ack_lists_only_unacknowledged_ids_up_to_it() -> None:
    window = _window()
    window.ack_ids(["a"])
    assert window.ids_up_to(3) == ["b", "c"]
    done, seqs, _ = window.ack_ids(window.ids_up_to(4))
    assert sorted(seqs) == [2, 3, 4] and len(done) == 2 and not window

"""The outbox's lock: first come first served, re-entrant, never stuck on a thread that left."""

from __future__ import annotations

import threading

import pytest

from buffer.fairlock import FairRLock
from tests.support.wait import wait_for


def _queue(lock: FairRLock, name: str, order: list[str]) -> threading.Thread:
    """A thread that waits for the lock, notes its turn and releases; started and queued."""
    before = lock.waiting

    def take() -> None:
        with lock:
            order.append(name)

    thread = threading.Thread(target=take, name=name)
    thread.start()
    wait_for(lambda: lock.waiting == before + 1, timeout=5, what=f"{name} queued")
    return thread


def test_a_thread_that_releases_and_takes_the_lock_again_goes_behind_those_waiting() -> None:
    """What starved a device worker behind a prune: with threading.RLock the releasing thread,
    still running, takes the lock again before the woken waiter gets to it."""
    lock, order = FairRLock(), []
    lock.acquire()
    waiters = [_queue(lock, name, order) for name in ("device-1", "device-2")]
    for _ in range(3):  # three more rounds of the long job
        lock.release()
        with lock:
            order.append("prune")
        lock.acquire()
    lock.release()
    for thread in waiters:
        thread.join(5)
    assert order[:2] == ["device-1", "device-2"] and order[2:] == ["prune"] * 3
    assert lock.waiting == 0


def test_the_lock_is_re_entrant_and_only_the_last_release_lets_the_next_thread_in() -> None:
    lock, order = FairRLock(), []
    with lock, lock:
        waiter = _queue(lock, "other", order)
        order.append("inner done")
    waiter.join(5)
    assert order == ["inner done", "other"]


def test_a_waiter_that_gave_up_does_not_hold_up_the_ones_behind_it() -> None:
    lock, order = FairRLock(), []
    lock.acquire()
    gave_up: list[bool] = []
    quitter = threading.Thread(target=lambda: gave_up.append(lock.acquire(timeout=0.2)))
    quitter.start()
    wait_for(lambda: lock.waiting == 1, timeout=5, what="the quitter queued")
    waiter = _queue(lock, "patient", order)
    quitter.join(5)
    assert gave_up == [False] and lock.waiting == 1
    lock.release()
    waiter.join(5)
    assert order == ["patient"] and lock.waiting == 0
    assert lock.acquire(timeout=1)  # and the lock is free again
    lock.release()


def test_releasing_a_lock_the_thread_does_not_hold_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="does not hold"):
        FairRLock().release()

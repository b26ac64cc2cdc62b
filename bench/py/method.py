"""What every method of pair.py shares, apart from pair.py so that a method
kept in a module of its own (iox2_method.py, imported only when asked for)
needs nothing of pair.py: the Method interface, the clocks, and the stamp a
frame carries in its first 8 bytes."""

from __future__ import annotations

import time

import numpy as np

ns = time.perf_counter_ns  # CLOCK_MONOTONIC on Linux, as time.monotonic_ns
now = time.monotonic_ns


def stamp_of(arr: np.ndarray) -> int:
    return int(arr.reshape(-1)[:8].view("<u8")[0])


def put_stamp(arr: np.ndarray, value: int) -> None:
    arr.reshape(-1)[:8].view("<u8")[0] = value


def stamp_slot(arr: np.ndarray) -> memoryview:
    """The frame's stamp as a one-item view (native uint64, which is "<u8"
    here), made before the clock is read: then only a store lies between
    the stamp and the publish, as in C (stamp_slot(arr)[0] = now()); a
    memoryview's store is the cheapest Python has (NumPy's scalar store
    took 1-3 us more with cold caches)."""
    return memoryview(arr).cast("B")[:8].cast("Q")


class Method:
    """Writer side: open, send(src) -> ns spent in the hand-over (and the fill
    apart for zero-copy methods). Reader side: recv(timeout) -> (array,
    release, key) or None; key tells one frame from another (equal keys: the
    same frame again)."""

    fill_ns = 0
    store_ns = 0  # shmlane: from the stamp to the clock read just before the publish call
    published_ns = 0  # shmlane: the publish time stored with the frame received last
    # The clock read by recv the moment it holds the frame (its array), before
    # its own bookkeeping (the frame's key, its publish time): latency ends
    # there, as in C right after the receive. 0: when recv returned.
    held_ns = 0

    def close(self) -> None:
        pass

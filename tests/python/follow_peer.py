"""The Python side of test_stream_follow.py: a writer that changes its
stream's layout three times, and a reader that follows it, checking every
frame against its metadata record and its layout. The same plan as
c_follow.c, so either side can be C or Python.

    python follow_peer.py write|write-live NAME FRAMES READERS

write closes its writer and opens another with replace=True for each new
layout; write-live keeps one writer and calls its replace().
"""

from __future__ import annotations

import ctypes
import sys
import time
from typing import Dict, List, Tuple

import numpy as np

import shmlane

# (shape, dtype, slots): the layouts of c_follow.c's LAYOUTS, in order.
LAYOUTS: List[Tuple[Tuple[int, ...], str, int]] = [
    ((48, 64, 3), "u1", 4),
    ((24, 32, 3), "u1", 6),
    ((30, 40), "<u2", 4),
    ((48, 64, 3), "u1", 8),
]


class Header(ctypes.Structure):
    """c_follow.c's struct meta."""

    _fields_ = [
        ("frame", ctypes.c_uint64),
        ("layout", ctypes.c_uint64),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
    ]


def painted(seq: int, dtype: np.dtype) -> int:
    """The value every element of frame seq holds."""
    return seq % (1 << (8 * np.dtype(dtype).itemsize))


def write(name: str, frames: int, readers: int, live: bool = False) -> int:
    """Publish `frames` frames in each layout; returns the last number."""
    seq = 0
    w = None
    for k, (shape, dtype, slots) in enumerate(LAYOUTS):
        if w is None:
            w = shmlane.Writer(
                name, shape=shape, dtype=dtype, slots=slots, block=True, meta=Header, replace=True
            )
        else:
            w.replace(shape, dtype, slots=slots)
        # Readers register on a new stream when they follow it.
        deadline = time.monotonic() + 20
        while w.info().readers < readers:
            if time.monotonic() > deadline:
                sys.exit(f"follow_peer: {readers} readers did not come")
            time.sleep(0.001)
        for _ in range(frames):
            loan = w.loan(timeout=10)
            seq = w.next_seq
            loan.array[...] = painted(seq, dtype)
            loan.meta.frame, loan.meta.layout = seq, k
            loan.meta.width, loan.meta.height = shape[1], shape[0]
            loan.publish()
        if not live:
            w.close()
            w = None
    if w is not None:
        w.close()
    return seq


def read(name: str, total: int) -> Dict[str, object]:
    """Receive until frame `total`, following every replacement: what was
    counted, as c_follow.c's read prints it."""
    counts: Dict[str, object] = {"frames": 0, "lost": 0, "bad": 0, "moves": 0, "gone": 0}
    shapes: List[str] = []
    deadline = time.monotonic() + 60
    with shmlane.Reader(name, policy="all", timeout=20, meta=Header) as r:
        last = 0
        while last < total and time.monotonic() < deadline:
            try:
                sample = r.receive(timeout=1)
            except TimeoutError:
                continue
            except shmlane.WriterGone:  # between one writer's close and the next one's replacement
                counts["gone"] += 1  # type: ignore[operator]
                continue
            with sample:
                m = sample.meta
                if sample.new_stream:
                    counts["moves"] += 1  # type: ignore[operator]
                if sample.new_stream or not shapes:
                    shapes.append(f"{r.shape[0]}x{r.shape[1]}")
                counts["frames"] += 1  # type: ignore[operator]
                counts["lost"] += sample.lost  # type: ignore[operator]
                ok = (
                    m.frame == sample.seq
                    and (m.height, m.width) == r.shape[:2]
                    and sample.array.shape == r.shape
                    and bool((sample.array == painted(sample.seq, r.dtype)).all())
                )
                counts["bad"] += not ok  # type: ignore[operator]
                last = sample.seq
    counts["shapes"] = ";".join(shapes)
    return counts


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] not in ("write", "write-live"):
        sys.exit("usage: follow_peer.py write|write-live NAME FRAMES READERS")
    last = write(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[1] == "write-live")
    print("done", last, flush=True)

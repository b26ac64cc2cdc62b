"""The metadata record that write.py publishes with each frame and read.py
checks, as struct frame_meta in examples/c/frame_meta.h (the C writer and
reader use that one: the two describe the same stored format, so either
writer feeds either reader).

    w = shmlane.Writer(name, shape=..., dtype="u1", meta=FrameMeta)
    w.meta.frame = w.next_seq             # set before the frame is published
    r = shmlane.Reader(name, meta=FrameMeta)
    sample.meta.frame                     # a read-only FrameMeta of that frame
"""

from __future__ import annotations

import ctypes
from typing import Optional

import numpy as np


class FrameMeta(ctypes.Structure):
    _fields_ = [
        ("frame", ctypes.c_uint64),  # the sequence number stamped into the frame
        ("capture_ns", ctypes.c_int64),  # CLOCK_MONOTONIC (time.monotonic_ns()) at capture
        ("realtime_ns", ctypes.c_int64),  # CLOCK_REALTIME (time.time_ns()) at capture
        ("exposure", ctypes.c_double),  # the camera's, as OpenCV reports it; else a frame count
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
    ]


def disagreement(meta: FrameMeta, frame: np.ndarray) -> Optional[str]:
    """What in the record does not match the (height, width, 3) frame it came
    with: its frame number against the number stamped at the start of the
    frame's first row (frame_stamp.py), its size against the frame's. None
    if both match."""
    stamp = int(np.ascontiguousarray(frame.reshape(frame.shape[0], -1)[0, :8]).view("<u8")[0])
    if meta.frame != stamp:
        return f"metadata says frame {meta.frame}, the frame is stamped {stamp}"
    height, width = frame.shape[:2]
    if (meta.width, meta.height) != (width, height):
        return f"metadata says {meta.width}x{meta.height}, the frame is {width}x{height}"
    return None

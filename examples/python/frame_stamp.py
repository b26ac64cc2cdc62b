"""The stamp that lets a reader tell a torn frame, as examples/c/frame_stamp.h
(write.py and read.py, and the C writer and reader, share it): every byte of
a frame depends on its sequence number.

- the first 8 bytes of each row hold the number (little-endian);
- every other byte keeps its picture in the upper 6 bits, and in its two low
  bits two bits of the number: byte i of a row holds bits 2 * (i % 8) and
  2 * (i % 8) + 1, so each 8 bytes carry its low 16 bits.

The picture changes by at most 3 in 255. Frames are (height, width, 3) uint8
arrays (C-contiguous); both functions are vectorised.
"""

from __future__ import annotations

import numpy as np


def _rows(frame: np.ndarray) -> np.ndarray:
    return frame.reshape(frame.shape[0], -1)


def _low_bits(seq: int, row_bytes: int) -> np.ndarray:
    """The low two bits of bytes 8.. of a row of frame seq."""
    return ((seq >> (2 * (np.arange(8, row_bytes) % 8))) & 3).astype(np.uint8)


def stamp(frame: np.ndarray, seq: int) -> None:
    rows = _rows(frame)
    rows[:, :8] = np.frombuffer(seq.to_bytes(8, "little"), np.uint8)
    rest = rows[:, 8:]
    np.bitwise_and(rest, np.uint8(0xFC), out=rest)
    np.bitwise_or(rest, _low_bits(seq, rows.shape[1]), out=rest)


def intact(frame: np.ndarray, seq: int) -> bool:
    """True if every byte of the frame carries frame seq's stamp."""
    rows = _rows(frame)
    if not (np.ascontiguousarray(rows[:, :8]).view("<u8") == seq).all():
        return False
    return bool(((rows[:, 8:] & 3) == _low_bits(seq, rows.shape[1])).all())


def check_works() -> bool:
    """The check's canary: a frame of which only the middle of a row comes
    from the next frame must be reported torn."""
    frame, following = np.zeros((3, 16, 3), np.uint8), np.zeros((3, 16, 3), np.uint8)
    stamp(frame, 41)
    stamp(following, 42)
    if not intact(frame, 41):
        return False
    _rows(frame)[1, 20:28] = _rows(following)[1, 20:28]
    return not intact(frame, 41)

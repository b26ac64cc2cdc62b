"""A frame a Reader received (_stream.Reader), pinned until released."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import _shmlane
from ._stream_layout import Meta, Wrap


class Sample:
    """A published frame (and its metadata record), pinned: the writer does
    not reuse its slot until the sample is released and no view of it remains. Leaving the `with`
    block or calling release() releases it. `array` is a read-only view,
    valid until then; an array kept longer stays valid and keeps the slot
    pinned (np.array(s.array) copies the frame instead)."""

    __slots__ = ("_raw", "_wrap", "_array", "_meta_spec", "_meta")

    def __init__(self, raw: _shmlane.Sample, wrap: Wrap, meta: Optional[Meta]) -> None:
        self._raw = raw
        self._wrap = wrap
        self._array: Optional[np.ndarray] = None
        self._meta_spec = meta
        self._meta: Any = None

    @property
    def meta(self) -> Any:
        """The frame's metadata record, read-only, or None for a stream
        without metadata: an instance of the ctypes type given as the
        reader's meta=, else a NumPy record. Taken while the frame is
        pinned, so it always belongs to this frame; it stays valid after
        release()."""
        if self._meta is None and self._meta_spec is not None:
            self._meta = self._meta_spec.record(self._raw.meta)
        return self._meta

    @property
    def new_stream(self) -> bool:
        """The first frame from a stream the reader followed its name to:
        the reader's shape, dtype and meta_dtype are that stream's now."""
        return self._raw.new_stream

    @property
    def array(self) -> np.ndarray:
        """The frame as a read-only ndarray over the shared slot (zero-copy)."""
        if self._array is None:
            if self._raw.released:  # np.asarray would make an object array of it
                raise ValueError(f"sample {self.seq} was released")
            self._array = self._wrap(self._raw)
        return self._array

    @property
    def seq(self) -> int:
        """The frame's sequence number: 1, 2, ... over the stream's life."""
        return self._raw.seq

    @property
    def timestamp_ns(self) -> int:
        """When it was published: CLOCK_MONOTONIC ns, comparable with
        time.monotonic_ns() in any process on this machine."""
        return self._raw.timestamp_ns

    @property
    def lost(self) -> int:
        """Frames published since the previous sample and never delivered to
        this reader (skipped with policy "latest", lapped with "all")."""
        return self._raw.lost

    def release(self) -> None:
        """Give the slot back (idempotent); views kept elsewhere delay it."""
        if self._meta_spec is not None and not self._raw.released:
            self.meta  # taken while pinned: it stays readable after
        self._array = None
        self._raw.release()

    def __enter__(self) -> Sample:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<shmlane.Sample seq={self.seq} lost={self.lost}>"

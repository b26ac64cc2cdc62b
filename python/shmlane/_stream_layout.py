"""What a stream looks like from Python: its bookkeeping (StreamInfo), how a
frame becomes an ndarray, its metadata records, and how an existing stream
differs from the one a Writer asked for. Writer and Reader (_stream.py) build
on these; nothing here holds a handle.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Tuple, Union

import numpy as np

from . import _ctypes, _dtype, _layout, _shmlane
from ._common import ALIVE
from ._shmlane import LayoutMismatch


# A reader's receive policy by name, and back.
POLICIES = {"latest": _shmlane.RECV_LATEST, "all": _shmlane.RECV_ALL}
_POLICY_NAMES = {code: name for name, code in POLICIES.items()}


class ReaderEntry(NamedTuple):
    """One reader of a stream as it recorded itself (StreamInfo.reader_entries):
    for people, as `shmlane top` shows it; a peer that may write the stream
    may write any number here."""

    pid: int  # in the reader's own PID namespace
    alive: Optional[bool]  # False: died, its slots not yet reclaimed; None: cannot tell
    policy: str  # "latest" or "all"
    pinned: int  # slots it holds now
    next_seq: int  # an "all" reader's next frame wanted
    lost: int  # frames it missed, as it counts them


class StreamInfo(NamedTuple):
    """A stream's bookkeeping: Writer.info(), Reader.info(), SegmentInfo.stream."""

    slots: int
    max_readers: int
    block: bool
    readers: int  # live readers
    writer_pid: int  # 0 if none
    writer_alive: Optional[bool]  # None: cannot tell
    last_seq: int  # 0 before the first frame
    last_timestamp_ns: int  # CLOCK_MONOTONIC, as time.monotonic_ns()
    meta_size: int = 0  # bytes of each frame's metadata record, 0 for none
    first_seq: int = 1  # frames are numbered from here (more than 1 after a replacement)
    replaced: bool = False  # a writer put a newer stream under the name
    period_ns: int = 0  # the frame period the writer declared (Writer(fps=)), 0 unknown
    reader_entries: Tuple[ReaderEntry, ...] = ()  # the readers in the stream's table

    @property
    def fps(self) -> float:
        """The frame rate the writer declared, 0.0 if it did not; to the
        thousandth, which the period in whole nanoseconds keeps (30.0, 29.97)."""
        return round(1e9 / self.period_ns, 3) if self.period_ns else 0.0


def stream_info(raw: Union[_shmlane.Handle, _shmlane.Writer, _shmlane.Reader]) -> StreamInfo:
    info = raw.stream_info() if isinstance(raw, _shmlane.Handle) else raw.info()
    return StreamInfo(
        slots=info["slots"],
        max_readers=info["max_readers"],
        block=info["block"],
        readers=info["readers_alive"],
        writer_pid=info["writer_pid"],
        writer_alive=ALIVE.get(info["writer_alive"]),
        last_seq=info["last_seq"],
        last_timestamp_ns=info["last_timestamp_ns"],
        meta_size=info["meta_size"],
        first_seq=info["base_seq"] + 1,
        replaced=info["replaced"],
        period_ns=info["period_ns"],
        reader_entries=tuple(
            ReaderEntry(pid, ALIVE.get(alive), _POLICY_NAMES.get(policy, str(policy)),
                        bin(pinned).count("1"), next_seq, lost)
            for pid, alive, policy, pinned, next_seq, lost in info["reader_entries"]),
    )


Wrap = Callable[[Any], np.ndarray]




def frames(raw: Union[_shmlane.Writer, _shmlane.Reader]) -> Tuple[Wrap, np.dtype, Tuple[int, ...]]:
    """How to turn a loan or sample of this stream into an ndarray, and the
    frame's dtype and shape, read once from the frame's format. Per frame,
    np.asarray reads the export's shape and strides in one step; it would
    parse a struct format again (tens of microseconds), so those get
    np.frombuffer with the cached dtype.
    Both keep the export (the pin) for as long as the array lives;
    np.ndarray(buffer=...) would drop it at once."""
    layout = raw.layout()
    dtype, shape = _dtype.element(layout, f"stream '{raw.name}'")
    if dtype.fields is None or not layout["c_contiguous"]:
        return np.asarray, dtype, shape
    ndim = len(layout["shape"])

    def structured(frame: Any) -> np.ndarray:
        view = memoryview(frame)  # one frame, or zero frames (a reader's, a stand-in's)
        return np.frombuffer(view, dtype).reshape(view.shape[: view.ndim - ndim] + shape)

    return structured, dtype, shape


class Meta:
    """How a stream's metadata records look in Python: the dtype the format
    reads as, and the ctypes type the caller asked for (records are then
    instances of it) or None (NumPy records)."""

    __slots__ = ("dtype", "ctype", "format")

    def __init__(self, dtype: np.dtype, ctype: Any, fmt: str) -> None:
        self.dtype, self.ctype, self.format = dtype, ctype, fmt

    def record(self, data: Any) -> Any:
        """A record over `data` (a buffer of one record's bytes): a ctypes
        instance (a copy) or a NumPy record, writable only if data is."""
        if self.ctype is not None:
            return self.ctype.from_buffer_copy(data)
        array = np.frombuffer(data, self.dtype)
        return array[0] if self.dtype.fields is not None else array.reshape(())

    def blank(self) -> Tuple[Any, Any]:
        """A zeroed record of the writer's own, and the buffer holding it."""
        if self.ctype is not None:
            record = self.ctype()
            return record, record
        array = np.zeros(1, self.dtype)
        return (array[0] if self.dtype.fields is not None else array.reshape(())), array


def period_from_fps(what: str, fps: Optional[float]) -> int:
    """The frame period a declared rate stands for; 0 for None (unknown)."""
    if fps is None:
        return 0
    if not 0 < fps <= 1e9:  # also refuses NaN
        raise ValueError(f"{what}: fps must be more than 0 (frames a second), or None, not {fps!r}")
    return max(1, round(1e9 / fps))


def meta_wanted(what: str, meta: Any) -> Tuple[Optional[np.dtype], Any]:
    """The metadata asked for: a ctypes type or anything np.dtype() takes.
    Arrays of single bytes in it are byte strings (b"cam0"), however given."""
    if meta is None:
        return None, None
    if _ctypes.is_ctype(meta):
        return _layout.requested(what, None, meta), meta
    return _dtype.chars_as_bytes(_layout.requested(what, meta, None)), None


def meta_held(raw: Union[_shmlane.Writer, _shmlane.Reader], ctype: Any) -> Optional[Meta]:
    """The metadata of the stream `raw` reads or writes now, or None."""
    fmt = raw.meta_format()
    if fmt is None:
        return None
    try:
        dtype = _dtype.from_format(fmt)
    except ValueError as exc:
        raise ValueError(f"stream '{raw.name}': NumPy cannot use its metadata format: {exc}") from None
    return Meta(dtype, ctype, fmt)


def meta_difference(wanted: np.dtype, held: np.dtype) -> Optional[str]:
    """How two metadata records differ, field by field (None: they do not)."""
    found = _dtype.difference(wanted, held, there_is="in the stream's metadata")
    return found and found.replace("element type: ", "", 1)


def verify_meta(what: str, wanted: Optional[np.dtype], held: Optional[Meta]) -> None:
    """LayoutMismatch unless the stream's metadata is the one asked for."""
    if wanted is None:
        return
    if held is None:
        raise LayoutMismatch(f"{what}: metadata {wanted} here, none in the stream")
    found = meta_difference(wanted, held.dtype)
    if found:
        raise LayoutMismatch(f"{what}: metadata: {found}")


def how_it_differs(
    name: str,
    dtype: np.dtype,
    shape: Tuple[int, ...],
    meta: Optional[np.dtype],
    slots: Optional[int],
) -> Optional[str]:
    """For Writer's LayoutMismatch: how the existing stream differs from the
    one asked for (frames, metadata field by field, slots), with what to do;
    None if that cannot be told (gone or unreadable since, not a stream)."""
    try:
        handle = _shmlane.open(name, True, 0, 0, 0, False, True)  # described, never mapped
        try:
            if handle.layout()["kind"] != _shmlane.KIND_STREAM:
                return None
            held, held_shape = _dtype.element(handle.layout(), f"stream '{name}'")
            fmt = handle.meta_format()
            held_meta = None if fmt is None else _dtype.from_format(fmt)
            held_slots = stream_info(handle).slots
        finally:
            handle.close()
    except (OSError, ValueError, _shmlane.Error):
        return None
    there = "in the stream"
    found = _dtype.difference(dtype, held, there_is=there)
    if found or shape != held_shape:
        part, found = "frames", found or f"shape {shape} here, {held_shape} {there}"
    elif (meta is None) != (held_meta is None):
        part = "metadata"
        found = f"none here, {fmt} in the stream" if meta is None else "given here, none in the stream"
    elif meta is not None and held_meta is not None:
        part, found = "metadata", meta_difference(meta, held_meta)
    if not found and slots is not None and slots != held_slots:
        part, found = "slots", f"{slots} here, {held_slots} {there}"
    if not found:
        return None
    return f"exists with other {part}: {found} (Writer(..., replace=True) replaces it, and its readers follow)"

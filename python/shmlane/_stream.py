"""Streams: one writer publishes frames of a fixed layout into a ring of
slots, readers in other processes receive them zero-copy.

    w = shmlane.Writer("cam0", shape=(480, 640, 3), dtype="u1")
    with w.loan() as frame:       # a view of a free slot
        frame[...] = image        # published on a clean exit
    r = shmlane.Reader("cam0", policy="latest")
    with r.receive(timeout=1.0) as s:
        s.array, s.seq, s.timestamp_ns, s.lost

See the Streams section of docs/python.md.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, NamedTuple, Optional, Tuple, Union

import numpy as np

from . import _dtype, _layout, _shmlane
from ._common import (
    Described,
    OwnerLike,
    ShapeLike,
    deprecated,
    in_slices,
    owner_arg,
    shape_tuple,
    spin_ns,
)
from ._shmlane import LayoutMismatch, WriterGone

__all__ = ["Loan", "Reader", "Sample", "StreamInfo", "Writer"]

_POLICIES = {"latest": _shmlane.RECV_LATEST, "all": _shmlane.RECV_ALL}

# How long loan() and publish() wait for a free slot by default: readers that
# keep every slot pinned then get named in the error instead of a silent hang.
LOAN_TIMEOUT = 5.0


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


def stream_info(raw: Union[_shmlane.Handle, _shmlane.Writer, _shmlane.Reader]) -> StreamInfo:
    info = raw.stream_info() if isinstance(raw, _shmlane.Handle) else raw.info()
    return StreamInfo(
        slots=info["slots"],
        max_readers=info["max_readers"],
        block=info["block"],
        readers=info["readers_alive"],
        writer_pid=info["writer_pid"],
        writer_alive={1: True, 0: False}.get(info["writer_alive"]),
        last_seq=info["last_seq"],
        last_timestamp_ns=info["last_timestamp_ns"],
    )


Wrap = Callable[[Any], np.ndarray]


def _described(array: Any) -> str:
    """What was given to publish(), for its error message."""
    shape, dtype = getattr(array, "shape", None), getattr(array, "dtype", None)
    if shape is None or dtype is None:
        return f"a {type(array).__name__}"
    return f"shape {shape}, {dtype}"


def _frames(raw: Union[_shmlane.Writer, _shmlane.Reader]) -> Tuple[Wrap, np.dtype, Tuple[int, ...]]:
    """How to turn a loan or sample of this stream into an ndarray, and the
    frame's dtype and shape, read once from the frame's format. Per frame,
    np.asarray reads the export's shape and strides in one step; it would
    parse a struct format again (tens of microseconds), so those get
    np.frombuffer with the cached dtype.
    Both keep the export (the pin) for as long as the array lives;
    np.ndarray(buffer=...) would drop it at once."""
    dtype, shape = _dtype.element(raw.layout(), f"stream '{raw.name}'")
    if dtype.fields is None or not raw.layout()["c_contiguous"]:
        return np.asarray, dtype, shape

    def structured(frame: Any) -> np.ndarray:
        return np.frombuffer(memoryview(frame), dtype).reshape(shape)

    return structured, dtype, shape


class Loan:
    """A free slot loaned to the writer. `array` is a writable view of it
    until publish() or discard(). As a context manager, the `with` block gets
    the array and publishes on a clean exit, discards on an exception. The
    array is made read-only afterwards: writing through a view kept past
    publish() would change a frame readers may hold."""

    __slots__ = ("_raw", "array")

    def __init__(self, raw: _shmlane.Loan, wrap: Wrap) -> None:
        self._raw = raw
        self.array: Optional[np.ndarray] = wrap(raw)

    def _retire(self) -> None:
        if self.array is not None:
            self.array.setflags(write=False)
            self.array = None

    def publish(self) -> int:
        """Publish the frame; returns its sequence number. Readers wake."""
        try:
            return self._raw.publish()
        finally:
            self._retire()

    def discard(self) -> None:
        """Give the slot back unpublished."""
        try:
            self._raw.discard()
        finally:
            self._retire()

    def __enter__(self) -> np.ndarray:
        if self._raw.state != "loaned":  # also when the writer's close() discarded it
            self._retire()
            raise ValueError("the loan is already published or discarded")
        assert self.array is not None
        return self.array

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._end(publish=exc_type is None)

    def _end(self, publish: bool) -> None:
        """Publish or discard, unless that happened already (in the `with`
        block, or by the writer's close())."""
        if self._raw.state != "loaned":
            self._retire()
        elif publish:
            self.publish()
        else:
            self.discard()


class Writer(Described):
    """The writer of stream `name`: creates it, or takes over an existing
    stream of the same frame layout whose writer is gone (readers carry on).
    Frames are `shape` elements of `dtype`. slots: ring size for a new stream,
    2 to 64, default 8; an existing stream keeps its own, and asking for
    another raises LayoutMismatch. max_readers (1 to 256), block and mode
    apply to a new stream (mode: permission bits). block=True makes loan()
    wait for live readers of policy "all" instead of lapping them. Raises StreamBusy if a live writer
    holds the stream."""

    def __init__(
        self,
        name: str,
        shape: ShapeLike,
        dtype: Any,
        *,
        slots: Optional[int] = None,
        max_readers: int = 64,
        block: bool = False,
        mode: int = 0o600,
    ) -> None:
        wanted = np.dtype(dtype)
        base, sub = _dtype.split_subarray(wanted)
        frame_shape = shape_tuple(shape, f"stream '{name}'") + sub
        if slots is not None and not 2 <= slots <= _shmlane.STREAM_MAX_SLOTS:
            raise ValueError(f"stream '{name}': slots must be 2..{_shmlane.STREAM_MAX_SLOTS}")
        if not 1 <= max_readers <= _shmlane.STREAM_MAX_READERS:
            raise ValueError(
                f"stream '{name}': max_readers must be 1..{_shmlane.STREAM_MAX_READERS}"
            )
        flags = _shmlane.STREAM_BLOCK if block else 0
        try:
            raw = _shmlane.writer_open(
                name, _dtype.format_of(base), frame_shape, slots or 0, max_readers, flags, mode
            )
        except LayoutMismatch as exc:
            raise LayoutMismatch(f"{exc}{_what_it_holds(name)}") from None
        try:
            self._wrap, self._dtype, self._shape = _frames(raw)
            self._contiguous = raw.layout()["c_contiguous"]
            found = _dtype.difference(base, self._dtype)
            if found:  # the stored format must read back as exactly this dtype
                raise ValueError(f"stream '{name}': {wanted} does not round-trip: {found}")
        except BaseException:
            raw.close()
            raise
        self._raw = raw

    @property
    def next_seq(self) -> int:
        """The sequence number the next publish stamps: 1 for a new stream;
        after a takeover, one past the last frame published."""
        return self._raw.next_seq

    def info(self) -> StreamInfo:
        return stream_info(self._raw)

    def __repr__(self) -> str:
        closed = " closed" if self.closed else ""
        return f"<shmlane.Writer '{self.name}' {self._dtype} {self._shape}{closed}>"

    def loan(self, timeout: Optional[float] = LOAN_TIMEOUT) -> Loan:
        """A free slot, as a Loan (a context manager giving a writable array).
        Waits only while readers pin every free slot, or on a blocking stream
        for readers of policy "all": TimeoutError after `timeout` seconds (5 by
        default; None waits as long as it takes), naming the pids of the
        readers that pin the slots when they are the reason. Blocks without
        the GIL; Ctrl-C interrupts it. One loan at a time: RuntimeError while
        another is outstanding."""
        return Loan(self._raw.loan(timeout), self._wrap)

    def publish(self, array: Any, timeout: Optional[float] = LOAN_TIMEOUT) -> int:
        """Copy `array` into a loaned slot and publish it; returns its sequence
        number. The copy follows np.copyto (broadcasting, same-kind casts).
        A C-contiguous array of the frame's dtype and shape is copied in one
        call, with no Loan or view made: the cheap way for small messages.
        Waits for a slot as loan() does."""
        if (
            type(array) is np.ndarray
            and array.shape == self._shape
            and array.dtype == self._dtype
            and array.flags.c_contiguous
            and self._contiguous
        ):
            return self._raw.publish_copy(array, timeout)
        loan = self.loan(timeout)
        try:
            np.copyto(loan.array, array)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:  # a cast or a broadcast refused
            loan._end(publish=False)
            message = (
                f"stream '{self.name}': cannot publish {_described(array)} into frames of "
                f"shape {self._shape}, {self._dtype}: {exc}"
            )
            raise (TypeError if isinstance(exc, TypeError) else ValueError)(message) from None
        except BaseException:
            loan._end(publish=False)
            raise
        return loan.publish()

    def close(self) -> None:
        """Stop writing (idempotent): an outstanding loan is discarded and the
        writer role given up at once; readers learn that the writer is gone
        once they have every frame. Views of loans stay valid: the mapping
        goes with the last one. The stream itself stays until unlinked."""
        self._raw.close()

    def unlink(self) -> None:
        """Remove the stream's name; processes that have it open keep it."""
        _shmlane.unlink(self.name)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Sample:
    """A published frame, pinned: the writer does not reuse its slot until
    the sample is released and no view of it remains. Leaving the `with`
    block or calling release() releases it. `array` is a read-only view,
    valid until then; an array kept longer stays valid and keeps the slot
    pinned (np.array(s.array) copies the frame instead)."""

    __slots__ = ("_raw", "_wrap", "_array")

    def __init__(self, raw: _shmlane.Sample, wrap: Wrap) -> None:
        self._raw = raw
        self._wrap = wrap
        self._array: Optional[np.ndarray] = None

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
        self._array = None
        self._raw.release()

    def __enter__(self) -> Sample:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<shmlane.Sample seq={self.seq} lost={self.lost}>"


class Reader(Described):
    """A reader of stream `name`. Waits up to `timeout` seconds (None: no
    limit) for the stream to appear, then FileNotFoundError. policy "latest"
    receives the newest frame and skips older ones (a display); "all" receives
    every frame in order, counting in `lost` those the writer lapped (a
    recorder); `mode=` is its deprecated old name. Raises StreamBusy if the
    reader table is full. spin: seconds (at most 0.001) each receive() polls
    before it sleeps; a frame published meanwhile arrives without the
    kernel's wake-up, and its publish needs no system call. Worth it for
    frames that come more often than that.
    max_pinned: samples (and arrays of them) this reader may hold at once;
    None: half the slots less one, at least 1, so that a reader that keeps
    its arrays never stalls the writer or the other readers; receive() raises
    shmlane.Error past it. owner: whose streams to read: None, this user's or
    root's; a user name or uid: that user's too; "any": anyone's.
    shape, dtype and ctype, when given, are checked against the stream's
    frames (LayoutMismatch, worded as open()'s)."""

    def __init__(
        self,
        name: str,
        policy: Optional[str] = None,
        timeout: Optional[float] = 5.0,
        *,
        shape: Optional[ShapeLike] = None,
        dtype: Any = None,
        ctype: Any = None,
        spin: float = 0.0,
        max_pinned: Optional[int] = None,
        owner: OwnerLike = None,
        mode: Optional[str] = None,
    ) -> None:
        what = f"stream '{name}'"
        wanted = _layout.requested(what, dtype, ctype)
        want_shape = None if shape is None else shape_tuple(shape, what)
        if mode is not None:
            if policy is not None:
                raise TypeError(f"stream '{name}': give policy= only (mode= is its old name)")
            deprecated("Reader(mode=...)", "Reader(policy=...)")
            policy = mode
        if policy is None:
            policy = "latest"
        if policy not in _POLICIES:
            raise ValueError(
                f"stream '{name}': policy must be 'latest' or 'all', not {policy!r}"
            )
        if max_pinned is not None and not 1 <= max_pinned <= _shmlane.STREAM_MAX_SLOTS:
            raise ValueError(
                f"stream '{name}': max_pinned must be 1..{_shmlane.STREAM_MAX_SLOTS} or None"
            )
        spin_time = spin_ns(spin)
        owner_policy, uid = owner_arg(owner)
        raw = _shmlane.reader_open(
            name, _POLICIES[policy], timeout, max_pinned or 0, owner_policy, uid
        )
        try:
            raw.spin_ns = spin_time
            self._wrap, self._dtype, self._shape = _frames(raw)
            _layout.verify(what, "the stream", wanted, want_shape, self._dtype, self._shape)
        except BaseException:
            raw.close()
            raise
        self._raw = raw
        self._policy = policy

    @property
    def policy(self) -> str:
        """The receive policy: "latest" or "all"."""
        return self._policy

    @property
    def mode(self) -> str:
        """Deprecated: the old name of `policy`."""
        deprecated("Reader.mode", "Reader.policy")
        return self._policy

    def info(self) -> StreamInfo:
        return stream_info(self._raw)

    def __repr__(self) -> str:
        closed = " closed" if self.closed else ""
        return f"<shmlane.Reader '{self.name}' {self._policy} {self._dtype} {self._shape}{closed}>"

    def receive(self, timeout: Optional[float] = None) -> Sample:
        """The next frame (per the policy), pinned. Waits up to `timeout` seconds
        (None: no limit; 0: do not wait) for one to be published: TimeoutError.
        WriterGone once every frame is received and the writer is gone (noticed
        within 100 ms); a writer that takes over later resumes delivery. Blocks
        without the GIL; Ctrl-C interrupts it."""
        return Sample(self._raw.receive(timeout), self._wrap)

    def receive_into(self, out: Any, timeout: Optional[float] = None) -> Tuple[int, int, int]:
        """Copy the next frame (per the policy) into `out` and release its slot
        at once; returns (seq, timestamp_ns, lost). `out`: a writable
        C-contiguous buffer of exactly one frame's bytes (say an ndarray of
        the stream's shape and dtype), copied byte for byte. No Sample or
        array is made per frame: the cheap way for small messages. Waits and
        raises as receive()."""
        return self._raw.receive_into(out, timeout)

    async def receive_async(self, timeout: Optional[float] = None) -> Sample:
        """receive() for asyncio: runs in the loop's default executor in short
        slices, so cancelling the task takes effect promptly."""
        return Sample(await in_slices(self._raw.receive, timeout), self._wrap)

    def __iter__(self) -> Iterator[Sample]:
        """Every frame received, waiting as long as it takes; each sample is
        released when the next one is requested. Ends when the writer is gone
        (WriterGone is not raised)."""
        while True:
            try:
                sample = self.receive()
            except WriterGone:
                return
            try:
                yield sample
            finally:
                sample.release()

    def close(self) -> None:
        """Leave the stream (idempotent). Samples and arrays still held keep
        their slots pinned, and the reader registered, until they go."""
        self._raw.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _what_it_holds(name: str) -> str:
    """For a LayoutMismatch message: the frames of the existing stream."""
    try:
        handle = _shmlane.open(name, True, 0)
        try:
            if handle.layout()["kind"] != _shmlane.KIND_STREAM:
                return ""
            frame = _dtype.array_of(handle, f"stream '{name}'")  # slot 0
            info = stream_info(handle)
        finally:
            handle.close()
    except (OSError, ValueError, _shmlane.Error):
        return ""  # gone or unreadable since: the core's message stands alone
    return f"; it holds frames of shape {frame.shape}, {frame.dtype}, in {info.slots} slots"

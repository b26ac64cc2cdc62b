"""Streams: one writer publishes frames of a fixed layout into a ring of
slots, readers in other processes receive them zero-copy.

    w = shmlane.Writer("cam0", shape=(480, 640, 3), dtype="u1")
    with w.loan() as frame:       # a view of a free slot
        frame[...] = image        # published on a clean exit
    r = shmlane.Reader("cam0", policy="latest")
    with r.receive(timeout=1.0) as s:
        s.array, s.seq, s.timestamp_ns, s.lost

A stream may carry a typed metadata record beside each frame (meta=, a
ctypes Structure or a structured dtype), and a writer may replace a stream
with one of another layout (replace=True): its readers follow the name.

See the Streams section of docs/python.md.
"""

from __future__ import annotations

import weakref
from time import monotonic as _monotonic
from typing import Any, Callable, Iterator, Optional, Tuple, Union

import numpy as np

from . import _dtype, _layout, _shmlane
from ._common import (
    Described,
    OwnerLike,
    ShapeLike,
    deprecated,
    owner_arg,
    shape_tuple,
    spin_ns,
)
from ._handover import Handover
from ._sample import Sample
from ._shmlane import LayoutChanged, LayoutMismatch, WriterGone
from ._stream_layout import (
    POLICIES as _POLICIES,
    ReaderEntry,
    StreamInfo,
    Wrap,
    frames,
    how_it_differs,
    meta_held,
    meta_wanted,
    period_from_fps,
    verify_meta,
    stream_info,
)

__all__ = ["Loan", "Reader", "ReaderEntry", "Sample", "StreamInfo", "Writer"]

# spin="auto": how many times receive() takes a frame's way with the core's
# stand-in once the next frame is due (the first, cold, is slow).
_REHEARSALS = 2

# How long loan() and publish() wait for a free slot by default: readers that
# keep every slot pinned then get named in the error instead of a silent hang.
LOAN_TIMEOUT = 5.0


def _described(array: Any) -> str:
    """What was given to publish(), for its error message."""
    shape, dtype = getattr(array, "shape", None), getattr(array, "dtype", None)
    if shape is None or dtype is None:
        return f"a {type(array).__name__}"
    return f"shape {shape}, {dtype}"


class Loan:
    """A free slot loaned to the writer. `array` is a writable view of it
    until publish() or discard(). As a context manager, the `with` block gets
    the array and publishes on a clean exit, discards on an exception. The
    array is made read-only afterwards: writing through a view kept past
    publish() would change a frame readers may hold. `meta` (streams with
    metadata; else None) is the writer's metadata record (Writer.meta): set
    its fields before publishing, and publish() stores it with the frame.

    publish() -> int publishes the frame, with `meta` as its metadata record,
    and returns its sequence number; readers wake. It is the extension's own
    call, set on each loan: a frame's publish reaches the core with no Python
    frame on its way (cold after a fill, one took a few tenths of a
    microsecond)."""

    __slots__ = ("_raw", "array", "meta", "publish", "__weakref__")
    array: Optional[np.ndarray]
    publish: Callable[[], int]

    def __init__(self, raw: _shmlane.Loan, wrap: Wrap, meta: Any, meta_buffer: Any) -> None:
        self._raw = raw
        self.array = wrap(raw)
        self.meta = meta
        # When the loan ends, the extension makes the array read-only and
        # sets self.array to None.
        raw.arm(self, self.array, meta_buffer)
        self.publish = raw.publish

    def discard(self) -> None:
        """Give the slot back unpublished."""
        self._raw.discard()

    def __enter__(self) -> np.ndarray:
        if self.array is None:  # also when the writer's close() discarded it
            raise ValueError("the loan is already published or discarded")
        return self.array

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._end(publish=exc_type is None)

    def _end(self, publish: bool) -> None:
        """Publish or discard, unless that happened already (in the `with`
        block, or by the writer's close())."""
        if self.array is None:
            return
        if publish:
            self.publish()
        else:
            self.discard()


class Writer(Described):
    """The writer of stream `name`: creates it, or takes over an existing
    stream of the same frame layout whose writer is gone (readers carry on).
    Frames are `shape` elements of `dtype`. meta: a ctypes type (a
    Structure) or a dtype: each frame carries one such record beside it
    (Writer.meta, Loan.meta, Sample.meta). replace=True: an existing stream
    of another layout (frames, metadata or slots) whose writer is gone is
    replaced by a new one; its readers follow the name to it, frame numbers
    going on. Without it that raises LayoutMismatch, never silently. slots: ring size for a new stream,
    2 to 64, default 8; an existing stream keeps its own, and asking for
    another raises LayoutMismatch. max_readers (1 to 256), block and mode
    apply to a new stream (mode: permission bits). block=True makes loan()
    wait for live readers of policy "all" instead of lapping them. fps: the
    rate the writer means to keep (a camera's), stored with the stream for
    readers (StreamInfo.fps, VideoCapture's CAP_PROP_FPS); None: unknown, or
    at a takeover the stream's as it is. Raises StreamBusy if a live writer
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
        meta: Any = None,
        replace: bool = False,
        fps: Optional[float] = None,
    ) -> None:
        what = f"stream '{name}'"
        period_ns = period_from_fps(what, fps)
        meta_dtype, meta_ctype = meta_wanted(what, meta)
        wanted = np.dtype(dtype)
        base, sub = _dtype.split_subarray(wanted)
        frame_shape = shape_tuple(shape, f"stream '{name}'") + sub
        if slots is not None and not 2 <= slots <= _shmlane.STREAM_MAX_SLOTS:
            raise ValueError(f"stream '{name}': slots must be 2..{_shmlane.STREAM_MAX_SLOTS}")
        if not 1 <= max_readers <= _shmlane.STREAM_MAX_READERS:
            raise ValueError(
                f"stream '{name}': max_readers must be 1..{_shmlane.STREAM_MAX_READERS}"
            )
        flags = (_shmlane.STREAM_BLOCK if block else 0) | (
            _shmlane.STREAM_REPLACE if replace else 0
        )
        meta_format = None if meta_dtype is None else _dtype.format_of(meta_dtype)
        try:
            raw = _shmlane.writer_open(
                name,
                _dtype.format_of(base),
                frame_shape,
                slots or 0,
                max_readers,
                flags,
                mode,
                meta_format,
                period_ns,
            )
        except LayoutMismatch as exc:
            found = how_it_differs(name, base, frame_shape, meta_dtype, slots)
            raise LayoutMismatch(f"{what}: {found}" if found else str(exc)) from None
        self._attach(raw, wanted, base, meta_dtype, meta_ctype)

    def _attach(
        self, raw: _shmlane.Writer, wanted: np.dtype, base: np.dtype, meta_dtype: Any, meta_ctype: Any
    ) -> None:
        """Write through raw, whose layout must read back as the one asked for."""
        name = raw.name
        try:
            self._wrap, self._dtype, self._shape = frames(raw)
            self._contiguous = raw.layout()["c_contiguous"]
            found = _dtype.difference(base, self._dtype)
            if found:  # the stored format must read back as exactly this dtype
                raise ValueError(f"stream '{name}': {wanted} does not round-trip: {found}")
            self._meta = meta_held(raw, meta_ctype)
            found = self._meta and _dtype.difference(meta_dtype, self._meta.dtype)
            if found:
                raise ValueError(f"stream '{name}': metadata {meta_dtype} does not round-trip: {found}")
            self._meta_record, self._meta_buffer = self._meta.blank() if self._meta else (None, None)
        except BaseException:
            raw.close()
            raise
        self._raw = raw

    def replace(
        self,
        shape: ShapeLike,
        dtype: Any,
        *,
        slots: Optional[int] = None,
        meta: Any = ...,
        fps: Optional[float] = None,
    ) -> None:
        """Go on with frames of another layout (a camera switching
        resolution): a new stream of `shape` and `dtype` replaces this one
        under its name, and this writer writes it. Readers receive the old
        stream's frames, then follow to the new one without ever getting
        WriterGone; frame numbers go on. slots: the new ring's size (None:
        the old one's); meta: the new metadata record type (None for none;
        by default the old one's); fps: the new rate (None: the old one).
        max_readers, block and mode stay. No loan may be outstanding
        (RuntimeError)."""
        what = f"stream '{self.name}'"
        period_ns = period_from_fps(what, fps)
        if meta is ...:
            meta_dtype, meta_ctype = (self._meta.dtype, self._meta.ctype) if self._meta else (None, None)
        else:
            meta_dtype, meta_ctype = meta_wanted(what, meta)
        wanted = np.dtype(dtype)
        base, sub = _dtype.split_subarray(wanted)
        frame_shape = shape_tuple(shape, what) + sub
        if slots is not None and not 2 <= slots <= _shmlane.STREAM_MAX_SLOTS:
            raise ValueError(f"{what}: slots must be 2..{_shmlane.STREAM_MAX_SLOTS}")
        flags = _shmlane.STREAM_BLOCK if self.info().block else 0
        meta_format = None if meta_dtype is None else _dtype.format_of(meta_dtype)
        raw = _shmlane.writer_replace(
            self._raw, _dtype.format_of(base), frame_shape, slots or 0, 0, flags, 0, meta_format,
            period_ns,
        )
        self._attach(raw, wanted, base, meta_dtype, meta_ctype)

    @property
    def next_seq(self) -> int:
        """The sequence number the next publish stamps: 1 for a new stream;
        after a takeover or a replacement, one past the last frame published."""
        return self._raw.next_seq

    @property
    def fps(self) -> float:
        """The frame rate declared to readers (StreamInfo.fps, VideoCapture's
        CAP_PROP_FPS), 0.0 if unknown. Set it when the source's rate changes
        (a camera switching modes); None declares it unknown."""
        return stream_info(self._raw).fps

    @fps.setter
    def fps(self, fps: Optional[float]) -> None:
        self._raw.set_period(period_from_fps(f"stream '{self.name}'", fps))

    @property
    def meta(self) -> Any:
        """The writer's metadata record (None for a stream without metadata):
        a ctypes instance if meta= was a ctypes type, else a NumPy record.
        Every publish stores its current value with the frame; fields not
        set again keep their value from frame to frame."""
        return self._meta_record

    @property
    def meta_dtype(self) -> Optional[np.dtype]:
        """The dtype of the metadata records, or None."""
        return self._meta.dtype if self._meta else None

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
        return Loan(self._raw.loan(timeout), self._wrap, self._meta_record, self._meta_buffer)

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
            return self._raw.publish_copy(array, timeout, self._meta_buffer)
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


class Reader(Described):
    """A reader of stream `name`. Waits up to `timeout` seconds (None: no
    limit) for the stream to appear, then FileNotFoundError. policy "latest"
    receives the newest frame and skips older ones (a display); "all" receives
    every frame in order, counting in `lost` those the writer lapped (a
    recorder); `mode=` is its deprecated old name. Raises StreamBusy if the
    reader table is full. spin: seconds (at most 0.001) each receive() polls
    before it sleeps; a frame published meanwhile arrives without the
    kernel's wake-up, and its publish needs no system call. Worth it for
    frames that come more often than that. spin="auto": the predictive wait
    for frames that come at a steady pace (a camera): the reader learns the
    period from the frames' publish times, sleeps until shortly before the
    next frame is due and polls only in a window around that time (at most
    1 ms, and an eighth of the period); frames that stop coming on time end
    the polling until the next frame, and an idle reader makes no wake-up
    (docs/performance.md).
    max_pinned: samples (and arrays of them) this reader may hold at once;
    None: half the slots less one, at least 1, so that a reader that keeps
    its arrays never stalls the writer or the other readers; receive() raises
    shmlane.Error past it. owner: whose streams to read: None, this user's or
    root's; a user name or uid: that user's too; "any": anyone's.
    shape, dtype and ctype, when given, are checked against the stream's
    frames, and meta (a ctypes type or a dtype) against its metadata records
    (LayoutMismatch, worded as open()'s); with meta a ctypes type, Sample.meta
    is an instance of it. follow: go on with the stream put under the name
    when this one is replaced (see receive()); False: LayoutChanged.
    A stream whose writer already left (an earlier run's) has no new frames:
    receive() waits, within its timeout, for a writer to take it over (or for
    a new stream under the name) and delivers that writer's frames.
    keep_last=True instead delivers such a stream's final frame, then raises
    WriterGone, for a reader that wants the end of a finished run."""

    def __init__(
        self,
        name: str,
        policy: Optional[str] = None,
        timeout: Optional[float] = 5.0,
        *,
        shape: Optional[ShapeLike] = None,
        dtype: Any = None,
        ctype: Any = None,
        meta: Any = None,
        follow: bool = True,
        keep_last: bool = False,
        spin: Union[float, str] = 0.0,
        max_pinned: Optional[int] = None,
        owner: OwnerLike = None,
        mode: Optional[str] = None,
    ) -> None:
        what = f"stream '{name}'"
        wanted = _layout.requested(what, dtype, ctype)
        want_shape = None if shape is None else shape_tuple(shape, what)
        meta_dtype, meta_ctype = meta_wanted(what, meta)
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
        if isinstance(spin, str) and spin != "auto":
            raise ValueError(f"stream '{name}': spin must be seconds or 'auto', not {spin!r}")
        spin_time = _shmlane.SPIN_AUTO if spin == "auto" else spin_ns(spin)
        owner_policy, uid = owner_arg(owner)
        flags = (0 if follow else _shmlane.READER_NO_FOLLOW) | (
            _shmlane.READER_KEEP_LAST if keep_last else 0
        )
        raw = _shmlane.reader_open(
            name, _POLICIES[policy], timeout, max_pinned or 0, owner_policy, uid, flags
        )
        self._wanted = (wanted, want_shape, meta_dtype, meta_ctype)
        self._refused: Optional[str] = None
        self._handover = Handover(raw)  # receive_async()'s slices, and what a cancelled one left
        try:
            raw.spin_ns = spin_time
            self._learn_layout(raw)
        except BaseException:
            raw.close()
            raise
        self._raw = raw
        self._policy = policy
        if spin == "auto":
            # receive() is then the extension's: a frame made ready ahead goes
            # back with no Python frame on its way (see _rehearse). Weak
            # methods, so that dropping this reader still closes it at once.
            raw.auto(weakref.WeakMethod(self._rehearse), weakref.WeakMethod(self._sample))
            self.receive = raw.receive_auto  # type: ignore[method-assign]

    def _learn_layout(self, raw: _shmlane.Reader) -> None:
        """Take the layout of the stream raw reads now, checked against the
        one asked for (LayoutMismatch)."""
        wanted, want_shape, meta_dtype, meta_ctype = self._wanted
        what = f"stream '{raw.name}'"
        self._wrap, self._dtype, self._shape = frames(raw)
        self._meta = meta_held(raw, meta_ctype)
        _layout.verify(what, "the stream", wanted, want_shape, self._dtype, self._shape)
        verify_meta(what, meta_dtype, self._meta)

    def _moved(self, sample: _shmlane.Sample) -> None:
        """The reader followed the name to a new stream: its layout from now
        on. One the caller did not ask for, or that NumPy cannot read (a
        ValueError: the old layout would go on reading its frames), ends the
        reader (LayoutChanged)."""
        try:
            self._learn_layout(self._raw)
        except (LayoutMismatch, ValueError) as exc:
            sample.release()
            self.__dict__.pop("receive", None)  # receive_auto: the check below first
            self._refused = (
                f"stream '{self.name}' was replaced by one this reader does not accept: {exc}"
            )
            raise LayoutChanged(self._refused) from None

    def _sample(self, raw: _shmlane.Sample) -> Sample:
        if raw.new_stream:
            self._moved(raw)
        return Sample(raw, self._wrap, self._meta)

    def _check_refused(self) -> None:
        if self._refused is not None:
            raise LayoutChanged(self._refused)

    @property
    def meta_dtype(self) -> Optional[np.dtype]:
        """The dtype of the stream's metadata records, or None."""
        return self._meta.dtype if self._meta else None

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
        within 100 ms); a writer that takes over later resumes delivery. A
        stream replaced under its name (Writer(replace=True), or removed and
        created again) is followed once every frame of the old one is
        received: the sample's new_stream is then True, and shape, dtype and
        meta_dtype describe the new stream; with follow=False, or a layout
        other than the shape/dtype/meta this reader asked for, LayoutChanged
        instead. Blocks without the GIL; Ctrl-C interrupts it."""
        self._check_refused()
        kept = self._handover.take()
        return self._sample(kept if kept is not None else self._raw.receive(timeout))

    def _rehearse(self, timeout: Optional[float]) -> Tuple[Optional[Sample], Optional[float]]:
        """receive() of spin="auto" (the extension's receive_auto) runs this
        first. While the next frame is due, the core answers at once with a
        stand-in (no frame) instead of spinning; the stand-in goes the way a
        frame goes, through its Sample and array, so that the interpreter's
        path is warm, and the core opens the next windows earlier by the
        time the rounds took (src/pace.c). In the first round, each slot the
        frame may land in gets its Sample and array made ahead (_prepare).
        Returns (the frame, None) if one came meanwhile, else (None, the
        time left): the extension then waits for the frame, spinning in its
        window without the GIL, and hands out the object made for its slot
        straight to the caller."""
        kept = self._handover.take()
        if kept is not None:
            return self._sample(kept), None
        raw_reader, deadline = self._raw, None
        for rounds in range(_REHEARSALS, 0, -1):
            raw = raw_reader.receive_due(timeout)
            sample = self._sample(raw)
            try:
                sample.array
            except BufferError:  # a stand-in of a reader closed meanwhile: the next call says so
                pass
            if not raw.standin:
                return sample, None
            sample.release()
            del sample, raw  # freed here, not on the frame's way out
            if rounds == _REHEARSALS:
                self._prepare()
            if timeout is not None:
                if deadline is None:
                    deadline = _monotonic() + timeout
                timeout = max(0.0, deadline - _monotonic())
        return None, timeout

    def _prepare(self) -> None:
        """A Sample and its array over each slot whose frame address the
        reader knows and that has none yet, unpinned and kept by the core's
        reader, which hands one out only once a frame is pinned in its slot."""
        raw_reader = self._raw
        for raw in raw_reader.prepare():
            sample = Sample(raw, self._wrap, self._meta)
            sample.array
            raw_reader.ready(raw, sample)

    def receive_into(self, out: Any, timeout: Optional[float] = None) -> Tuple[int, int, int]:
        """Copy the next frame (per the policy) into `out` and release its slot
        at once; returns (seq, timestamp_ns, lost). `out`: a writable
        C-contiguous buffer of exactly one frame's bytes (say an ndarray of
        the stream's shape and dtype), copied byte for byte. No Sample or
        array is made per frame: the cheap way for small messages. Waits and
        raises as receive(); a followed stream whose frames differ raises
        LayoutChanged (that frame is dropped), and the next call takes
        frames of the new layout."""
        self._check_refused()
        kept = self._handover.take()
        if kept is not None:
            return self._copy_out(kept, out)
        try:
            return self._raw.receive_into(out, timeout)
        except LayoutChanged:
            self._learn_layout(self._raw)
            raise

    async def receive_async(self, timeout: Optional[float] = None) -> Sample:
        """receive() for asyncio: runs in the loop's default executor, in
        slices of a second; cancelling the task wakes the slice running,
        which ends at once. A frame that slice took at that moment is not
        lost: the next receive of this reader delivers it."""
        self._check_refused()
        return self._sample(await self._handover.receive(timeout))

    def _copy_out(self, raw: _shmlane.Sample, out: Any) -> Tuple[int, int, int]:
        """receive_into() of a frame pinned already (_handover): copied into
        out and released; kept for the next receive if out cannot take it."""
        if raw.new_stream:
            self._moved(raw)
        try:
            return raw.copy_into(out)
        except BaseException:
            self._handover.keep(raw, first=True)
            raise

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
        self._raw.close()  # ends a slice of receive_async() at once
        self._handover.clear()  # not held by the caller: released now

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

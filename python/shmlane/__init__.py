"""shmlane: NumPy arrays and ctypes Structures shared by name between
unrelated processes, zero-copy, over POSIX shared memory.

    seg = shmlane.create("calib", shape=(3, 3), dtype="<f8")
    seg = shmlane.open("calib", readonly=True)
    seg.array, seg.struct, seg.lock(), seg.notify(), seg.wait()

See docs/python.md for the full reference.
"""

from __future__ import annotations

import builtins
import enum
import warnings
from typing import Any, NamedTuple, Optional, Tuple, Union

import numpy as np

from . import _ctypes, _dtype, _layout, _shmlane
from ._common import (
    ALIVE,
    OWNER_ANY,
    OWNER_CREATOR,
    Described,
    OwnerLike,
    deprecated,
    ShapeLike,
    in_slices,
    owner_arg,
    owner_text,
    shape_tuple,
    spin_ns,
)
from ._shmlane import (
    CorruptSegment,
    Error,
    LayoutChanged,
    LayoutMismatch,
    LockRecovered,
    StreamBusy,
    WriterGone,
)
from ._stream import Loan, Reader, ReaderEntry, Sample, StreamInfo, Writer, stream_info
from . import _video
from ._video import *  # noqa: F401,F403 - VideoCapture, VideoWriter and OpenCV's CAP_PROP_* numbers

__all__ = [
    "CorruptSegment",
    "Error",
    "Held",
    "LayoutChanged",
    "LayoutMismatch",
    "Loan",
    "LockRecovered",
    "Reader",
    "ReaderEntry",
    "Sample",
    "Segment",
    "SegmentInfo",
    "StreamBusy",
    "StreamInfo",
    "Writer",
    "WriterGone",
    "create",
    "list",
    "open",
    "unlink",
] + _video.__all__
__version__ = _shmlane.core_version

DTypeLike = Any  # anything np.dtype() accepts

# How long open() and create(exist_ok=True) wait for a creator that is still
# initialising the segment, while it lives: reserving 4 GiB takes about 1 s.
OPEN_TIMEOUT = 10.0


class _Default(enum.Enum):
    """open()'s timeout when none is given: a missing name fails at once, a
    creator still initialising is waited for up to OPEN_TIMEOUT."""

    TIMEOUT = 0

    def __repr__(self) -> str:
        return "<default>"


def _view(handle: _shmlane.Handle) -> np.ndarray:
    """The payload as an array, its dtype read from the header's format."""
    return _dtype.array_of(handle, f"segment '{handle.name}'")


# The segment's lock held by a thread (see its doc): the extension's own
# type, so that the lock goes with it even when Ctrl-C lands the moment
# lock() returns it.
Held = _shmlane.Held


class Segment(Described):
    """An open segment. Make one with shmlane.create() or shmlane.open().

    Views (seg.array, seg.struct, anything derived from them) share the segment's
    memory. close() detaches the segment at once, but the mapping stays until
    the last view is gone, so a view never dangles."""

    def __init__(self, handle: _shmlane.Handle, ctype: Any = None) -> None:
        layout = handle.layout()
        if layout["kind"] == _shmlane.KIND_STREAM:
            handle.close()
            raise ValueError(
                f"segment '{handle.name}' is a stream: receive its frames with "
                f"shmlane.Reader({handle.name!r}), publish with shmlane.Writer"
            )
        self._raw = handle
        try:
            self._array: Optional[np.ndarray] = _view(handle)
        except BaseException:  # a format NumPy cannot read: the mapping goes now, not at GC
            handle.close()
            raise
        self._dtype = self._array.dtype
        self._shape: Tuple[int, ...] = self._array.shape
        self._ctype = ctype
        self._struct_type: Any = None
        self._struct: Any = None
        self._contiguous: bool = layout["c_contiguous"]
        self._seen: int = handle.changes

    # ------------------------------------------------------------ description

    @property
    def changes(self) -> int:
        """The change counter: how many notify() calls the segment has seen."""
        return self._raw.changes

    @property
    def version(self) -> int:
        """Deprecated: the old name of `changes`."""
        deprecated("Segment.version", "Segment.changes")
        return self._raw.changes

    @property
    def readonly(self) -> bool:
        return self._raw.readonly

    @property
    def nbytes(self) -> int:
        """Payload size in bytes."""
        return self._raw.nbytes

    def __repr__(self) -> str:
        state = " readonly" if self.readonly else ""
        state += " closed" if self.closed else ""
        return f"<shmlane.Segment '{self.name}' {self._dtype} {self._shape}{state}>"

    # ------------------------------------------------------------ views

    def _live(self) -> None:
        if self._raw.closed:
            raise ValueError(f"segment '{self.name}' is closed")

    @property
    def array(self) -> np.ndarray:
        """The payload as a NumPy array (zero-copy; read-only if the segment is);
        a 0-d structured array for a struct segment. Always the same object."""
        self._live()
        assert self._array is not None
        return self._array

    @array.setter
    def array(self, value: Any) -> None:
        # `seg.array = x` would only rebind a name here: no process would see x.
        raise AttributeError(f"segment '{self.name}': seg.array is the shared memory, not a name "
                             "to rebind: write into it, seg.array[...] = value")

    @property
    def struct(self) -> Any:
        """The payload as a ctypes instance of the ctype given to create/open,
        or of one built from the header. Zero-copy over the shared bytes, except
        on a read-only segment: ctypes cannot map read-only memory safely, so
        each access returns a fresh snapshot copy there (take it under
        seg.lock() for a consistent one)."""
        self._live()
        if self._struct is not None:
            return self._struct
        if not self._contiguous:  # ctypes said TypeError or BufferError, by the mapping
            raise ValueError(f"segment '{self.name}' is strided: ctypes has no strided arrays; "
                             "use seg.array")
        if self._struct_type is None:
            element = self._ctype if self._ctype is not None else _ctypes.ctype_of(self._dtype)
            # A ctypes array given as the element type covers the trailing dimensions.
            sub = _dtype.split_subarray(np.dtype(element))[1]
            outer = self._shape[: len(self._shape) - len(sub)]
            self._struct_type = _ctypes.array_type(element, outer)
        if self.readonly:
            return self._struct_type.from_buffer_copy(self._raw)
        self._struct = self._struct_type.from_buffer(self._raw)
        return self._struct

    @struct.setter
    def struct(self, value: Any) -> None:
        raise AttributeError(f"segment '{self.name}': seg.struct is the shared memory, not a name "
                             "to rebind: set its fields (seg.struct.x = 1), or copy a whole value "
                             "in with ctypes.pointer(seg.struct)[0] = value")

    # ------------------------------------------------------------ lock, notify, wait

    def lock(self, timeout: Optional[float] = None) -> Held:
        """Acquire the segment's robust lock (None: no time limit), as a context
        manager. Blocks without the GIL; Ctrl-C interrupts it. Raises
        TimeoutError. When the previous holder died holding it, returns with
        held.recovered True and warns LockRecovered."""
        self._live()
        held = self._raw.lock(timeout)
        if held.recovered:
            warnings.warn(
                f"segment '{self.name}': the lock's previous holder died while holding it; "
                "the data it guards may be half-written",
                LockRecovered,
                stacklevel=2,
            )
        return held

    def notify(self) -> int:
        """Bump the change counter and wake every waiter in every process;
        returns the new count (`changes`)."""
        self._seen = self._raw.notify()
        return self._seen

    def wait(
        self, timeout: Optional[float] = None, since: Optional[int] = None, *, spin: float = 0.0
    ) -> int:
        """Wait until the change counter (`changes`: the notify() calls so far)
        differs from `since` and return it. since=None means the last count this
        object saw (at open, or returned by wait or notify), so a notify arriving between two waits is not missed. Blocks
        without the GIL; Ctrl-C interrupts it. Raises TimeoutError. spin:
        seconds to poll on a CPU before sleeping (at most 0.001), which saves
        the wake-up's latency when changes come that often."""
        self._live()
        start = self._seen if since is None else since
        self._seen = self._raw.wait(start, timeout, spin_ns(spin))
        return self._seen

    async def wait_async(self, timeout: Optional[float] = None, since: Optional[int] = None) -> int:
        """wait() for asyncio: runs in the loop's default executor in short
        slices, so cancelling the task takes effect promptly."""
        self._live()
        start = self._seen if since is None else since
        self._seen = await in_slices(lambda step: self._raw.wait(start, step), timeout)
        return self._seen

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Detach from the segment (idempotent). Releases the lock if this
        thread holds it; a lock another thread holds stays held, and the
        segment mapped, until that thread releases it (one that has ended
        never will: its lock is marked dead, for the next lock() to
        recover, once no view is left). Views taken earlier
        stay valid; the memory is unmapped when the last one is released.
        The segment itself stays until unlinked. In a child made by fork(),
        closing an inherited segment changes nothing shared: no unlock of
        the parent's lock, no unlink_on_close."""
        self._array = self._struct = None
        self._raw.close()

    def unlink(self) -> None:
        """Remove the segment's name; processes that have it open keep it."""
        unlink(self.name)

    def __enter__(self) -> Segment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(
    name: str,
    *,
    dtype: DTypeLike = None,
    shape: Optional[ShapeLike] = None,
    ctype: Any = None,
    readonly: bool = False,
    timeout: Union[float, None, _Default] = _Default.TIMEOUT,
    owner: OwnerLike = None,
) -> Segment:
    """Open a segment by name; its layout comes from the header. dtype,
    shape and ctype, when given, are checked against it (LayoutMismatch).
    readonly maps the payload read-only. timeout, when given (seconds; None:
    no limit), bounds the wait both for a name that does not exist yet
    (FileNotFoundError after) and for a creator that is still initialising
    the segment. Without it, a missing name raises FileNotFoundError at
    once and an initialising creator is waited for up to OPEN_TIMEOUT.
    Either wait for a creator lasts only while it lives: a dead one raises
    CorruptSegment at once. owner: whose segment to accept: None (yours or
    root's), a user name or uid, or "any"; another owner raises
    PermissionError."""
    wanted = _layout.requested(f"segment '{name}'", dtype, ctype)
    want_shape = None if shape is None else shape_tuple(shape, f"segment '{name}'")
    wait_name = not isinstance(timeout, _Default)
    limit = OPEN_TIMEOUT if isinstance(timeout, _Default) else timeout
    policy, uid = owner_arg(owner)
    return _opened(name, wanted, want_shape, ctype, readonly, limit, policy, uid, wait_name)


def _opened(
    name: str,
    wanted: Optional[np.dtype],
    want_shape: Optional[Tuple[int, ...]],
    ctype: Any,
    readonly: bool,
    timeout: Optional[float],
    policy: int,
    uid: int,
    wait_name: bool = False,
) -> Segment:
    seg = Segment(_shmlane.open(name, readonly, timeout, policy, uid, wait_name), ctype)
    try:
        _layout.verify(f"segment '{name}'", "the segment", wanted, want_shape, seg.dtype, seg.shape)
    except LayoutMismatch:
        seg.close()
        raise
    return seg


def create(
    name: str,
    shape: ShapeLike = (),
    dtype: DTypeLike = None,
    *,
    ctype: Any = None,
    mode: int = 0o600,
    exist_ok: bool = False,
    unlink_on_close: bool = False,
    replace: bool = False,
    timeout: Optional[float] = OPEN_TIMEOUT,
) -> Segment:
    """Create a zero-filled segment of `shape` elements of `dtype` (or of the
    ctypes type `ctype`). mode: permission bits. exist_ok: open an existing
    segment of the same layout instead (LayoutMismatch if it differs), only
    if this user owns it (PermissionError otherwise: never another user's),
    waiting up to `timeout` for its creator while that creator lives.
    replace: unlink an existing one first. unlink_on_close: this process's
    close() also removes the name. Nothing is ever removed at exit otherwise."""
    wanted = _layout.requested(f"segment '{name}'", dtype, ctype)
    if wanted is None:
        raise ValueError(f"segment '{name}': create needs a dtype or a ctype")
    user_shape = shape_tuple(shape, f"segment '{name}'")
    base, sub = _dtype.split_subarray(wanted)
    try:
        fmt = _dtype.format_of(base)
    except ValueError as exc:
        raise ValueError(f"segment '{name}': {exc}") from None
    flags = (_shmlane.CREATE_REPLACE if replace else 0) | (
        _shmlane.CREATE_UNLINK_ON_CLOSE if unlink_on_close else 0
    )
    try:
        handle = _shmlane.create(name, fmt, user_shape + sub, mode, flags)
    except FileExistsError:
        if not exist_ok:
            raise
        return _opened(name, wanted, user_shape, ctype, False, timeout, OWNER_CREATOR, 0)
    try:
        seg = Segment(handle, ctype)
        found = _dtype.difference(base, seg.dtype)
        if found:  # the stored format must read back as exactly this dtype
            raise ValueError(f"segment '{name}': {wanted} does not round-trip: {found}")
    except BaseException:
        handle.close()
        _shmlane.unlink(name)
        raise
    return seg


def unlink(name: str) -> None:
    """Remove a segment's name. Processes that have it open keep their mapping."""
    _shmlane.unlink(name)


_KINDS = {
    _shmlane.KIND_ARRAY: "array",
    _shmlane.KIND_STRUCT: "struct",
    _shmlane.KIND_STREAM: "stream",
}


class _SegmentInfoFields(NamedTuple):
    name: str
    dtype: Optional[np.dtype] = None
    shape: Optional[Tuple[int, ...]] = None
    nbytes: Optional[int] = None
    changes: Optional[int] = None  # the change counter: notify() calls so far
    creator_pid: Optional[int] = None
    alive: Optional[bool] = None  # creator still has it open; None if that cannot be told
    error: Optional[str] = None
    kind: Optional[str] = None  # "array", "struct" or "stream"
    stream: Optional[StreamInfo] = None
    uid: Optional[int] = None  # the owner
    owner: Optional[str] = None  # the owner as people read it: "nobody (uid 65534)"


class SegmentInfo(_SegmentInfoFields):
    """One entry of shmlane.list(). The layout fields are None, and `error`
    says why, for a segment that could not be opened. For a stream, dtype and
    shape describe one frame, and `stream` has the stream's counters.
    `version` is the deprecated old name of `changes` (the same place in the
    tuple), read or given."""

    __slots__ = ()

    def __new__(cls, *args: Any, **fields: Any) -> SegmentInfo:
        if "version" in fields:
            deprecated("SegmentInfo(version=...)", "SegmentInfo(changes=...)")
            fields["changes"] = fields.pop("version")
        return super().__new__(cls, *args, **fields)

    @property
    def version(self) -> Optional[int]:
        """Deprecated: the old name of `changes`."""
        deprecated("SegmentInfo.version", "SegmentInfo.changes")
        return self.changes


def _info(name: str) -> Optional[SegmentInfo]:
    try:
        # Only a look at the header: every owner's segments are listed, with
        # their owner. Read, never mapped (describe): an owner who cuts the
        # object short meanwhile makes this an error, where a mapping would
        # kill this process with SIGBUS.
        handle = _shmlane.open(name, True, 0, OWNER_ANY, 0, False, True)
        try:
            info = handle.info()
            # For a stream, the layout is one frame's.
            dtype, shape = _dtype.element(handle.layout(), f"segment '{name}'")
            stream = stream_info(handle) if info["kind"] == _shmlane.KIND_STREAM else None
        finally:
            handle.close()
    except FileNotFoundError:
        return None  # removed since it was listed
    except (OSError, Error, ValueError) as exc:
        return SegmentInfo(name, error=str(exc))
    return SegmentInfo(
        name,
        dtype=dtype,
        shape=shape,
        nbytes=info["payload_size"],
        changes=info["changes"],
        creator_pid=info["creator_pid"],
        alive=ALIVE.get(info["creator_alive"]),
        kind=_KINDS.get(info["kind"]),
        stream=stream,
        uid=info["uid"],
        owner=owner_text(info["uid"]),
    )


def list() -> builtins.list[SegmentInfo]:
    """Every shmlane segment on this machine, by name. Opens each read-only
    to read its header; changes nothing."""
    found = (_info(name) for name in sorted(_shmlane.names()))
    return [info for info in found if info is not None]


def __dir__() -> builtins.list[str]:
    """The public names only: the helpers this module imports for itself
    (np, warnings, typing's names, the private submodules) stay usable but
    out of dir(), help() and completion."""
    public = set(__all__) | {"OPEN_TIMEOUT", "__version__"}
    return sorted(public | {name for name in ("camera", "config") if name in globals()})

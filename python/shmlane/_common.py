"""Helpers shared by segments and streams."""

from __future__ import annotations

import asyncio
import operator
import warnings
from typing import Any, Callable, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np

from . import _shmlane

ShapeLike = Union[int, Sequence[int]]
T = TypeVar("T")

# How long an asyncio cancellation may wait for the thread running a blocking call.
ASYNC_SLICE = 0.05
# The same for a receive, which the cancellation wakes: only a task whose
# event loop was closed under it (never cancelled) leaves its thread waiting
# that long, and an idle receive_async() wakes once per slice.
RECEIVE_SLICE = 1.0
SPIN_MAX = _shmlane.SPIN_MAX_NS / 1e9  # seconds; the core caps a wait's spin there
# The core's answers to "is it alive?" (1, 0, -1: cannot tell) as True, False, None.
ALIVE = {1: True, 0: False}


def deprecated(old: str, new: str) -> None:
    """Warn that the caller of the function calling this used `old`, the
    name `new` had before (DeprecationWarning, pointing at that caller)."""
    warnings.warn(f"{old} is deprecated: use {new}", DeprecationWarning, stacklevel=3)


def spin_ns(spin: float) -> int:
    """A spin time in seconds, checked, as the core's nanoseconds."""
    if not 0.0 <= spin <= SPIN_MAX:
        raise ValueError(f"spin must be between 0 and {SPIN_MAX} seconds, not {spin!r}")
    return int(spin * 1e9)


class Described:
    """What a Segment, a Writer and a Reader all describe: the name, the dtype
    and shape (of the payload; for a stream, of one frame), and whether the
    handle `_raw` is closed."""

    _raw: Any
    _dtype: np.dtype
    _shape: Tuple[int, ...]

    @property
    def name(self) -> str:
        return self._raw.name

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def shape(self) -> Tuple[int, ...]:
        return self._shape

    @property
    def closed(self) -> bool:
        return self._raw.closed


SHAPE_MAX = 2**63 - 1  # the core's dimensions are 64-bit, and extents fit in int64


def shape_tuple(shape: ShapeLike, what: str) -> Tuple[int, ...]:
    """A shape as a tuple of sizes, checked: ValueError naming `what`
    ("segment 'x'") unless it is an integer or a sequence of integers, each
    between 0 and SHAPE_MAX."""
    try:
        dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        sizes = tuple(operator.index(n) for n in dims)
    except TypeError:
        raise ValueError(f"{what}: shape must be an integer or integers, not {shape!r}") from None
    if any(not 0 <= n <= SHAPE_MAX for n in sizes):
        raise ValueError(f"{what}: shape sizes must be between 0 and 2**63 - 1, not {shape!r}")
    return sizes


async def in_slices(call: Callable[[Optional[float]], T], timeout: Optional[float],
                    longest: float = ASYNC_SLICE) -> T:
    """call(seconds) in the running loop's default executor, in slices of at
    most `longest` seconds, until it returns or raises something other than
    TimeoutError, or `timeout` (None: no limit) is up. The loop keeps running,
    and cancelling the task takes effect within one slice (at once for a
    call that the canceller wakes)."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - loop.time())
        step = longest if left is None else min(longest, left)
        try:
            return await loop.run_in_executor(None, call, step)
        except TimeoutError:
            if left is not None and step >= left:
                raise


# Owner policies of the core (shl_owner_policy). OWNER_CREATOR: exactly this
# effective uid, what opening in place of creating requires.
OWNER_SELF, OWNER_UID, OWNER_ANY, OWNER_CREATOR = 0, 1, 2, 3

OwnerLike = Union[None, int, str]


def owner_arg(owner: OwnerLike) -> Tuple[int, int]:
    """An `owner=` argument as the core's (policy, uid): None accepts objects
    of this user or root; a user name or uid accepts that user too; "any"
    accepts every owner (an explicit choice to read another user's object)."""
    if owner is None:
        return OWNER_SELF, 0
    if isinstance(owner, str) and owner == "any":
        return OWNER_ANY, 0
    if isinstance(owner, (int, np.integer)) and not isinstance(owner, bool):
        if not 0 <= owner < 2**32 - 1:
            raise ValueError(f"owner uid must be between 0 and {2**32 - 2}, not {owner}")
        return OWNER_UID, int(owner)
    if isinstance(owner, str):
        import pwd

        try:
            return OWNER_UID, pwd.getpwnam(owner).pw_uid
        except KeyError:
            raise ValueError(f"owner {owner!r}: no such user") from None
    raise TypeError(f"owner must be None, a user name, a uid or 'any', not {owner!r}")


def owner_text(uid: int) -> str:
    """A uid as people read it: 'nobody (uid 65534)'."""
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"

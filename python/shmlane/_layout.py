"""The layout a caller asks for (dtype, ctype, shape) and its check against
the one an object's header holds: shared by open() and Reader, so that both
explain a difference in the same words (LayoutMismatch)."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from . import _ctypes, _dtype
from ._shmlane import LayoutMismatch


def requested(what: str, dtype: Any, ctype: Any) -> Optional[np.dtype]:
    """The element type asked for by dtype and/or ctype (None if neither).
    Errors start with `what` ("segment 'cam'"), and keep their type
    (TypeError, ValueError)."""
    try:
        from_ctype = None if ctype is None else _ctypes.dtype_of(ctype)
        wanted = None if dtype is None else np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{what}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if wanted is None:
        return from_ctype
    if from_ctype is not None:
        found = _dtype.difference(wanted, from_ctype, there_is="in the ctype")
        if found:
            raise ValueError(f"{what}: dtype and ctype disagree: {found}")
    return wanted


def verify(
    what: str,
    where: str,
    dtype: Optional[np.dtype],
    shape: Optional[Tuple[int, ...]],
    held_dtype: np.dtype,
    held_shape: Tuple[int, ...],
) -> None:
    """Raise LayoutMismatch if the layout held (held_dtype, held_shape: the
    element and the shape of the object `what`, called `where` in the
    message, "the segment") is not the one asked for."""
    sub: Tuple[int, ...] = ()
    if dtype is not None:
        base, sub = _dtype.split_subarray(dtype)
        found = _dtype.difference(base, held_dtype, there_is=f"in {where}")
        if found:
            raise LayoutMismatch(f"{what}: {found}")
    if shape is not None:
        if shape + sub != held_shape:
            raise LayoutMismatch(f"{what}: shape {shape + sub} here, {held_shape} in {where}")
    elif sub and held_shape[len(held_shape) - len(sub) :] != sub:
        raise LayoutMismatch(f"{what}: trailing shape {sub} here, {held_shape} in {where}")

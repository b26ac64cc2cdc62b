"""ctypes types <-> NumPy dtypes.

np.dtype(ctype) recomputes field offsets from alignment rules; checking them
against the offsets ctypes really uses catches any case where the two
disagree. In the other direction, np.ctypeslib.as_ctypes_type names its
padding fields so that np.dtype() cannot read the result back, hence the
small builder here.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ._dtype import chars_as_bytes, fields_of

_SCALARS: Dict[Tuple[str, int], Any] = {
    ("b", 1): ctypes.c_bool,
    ("i", 1): ctypes.c_int8, ("i", 2): ctypes.c_int16,
    ("i", 4): ctypes.c_int32, ("i", 8): ctypes.c_int64,
    ("u", 1): ctypes.c_uint8, ("u", 2): ctypes.c_uint16,
    ("u", 4): ctypes.c_uint32, ("u", 8): ctypes.c_uint64,
    ("f", 4): ctypes.c_float, ("f", 8): ctypes.c_double,
}  # fmt: skip
_FOREIGN_ORDER = ">" if sys.byteorder == "little" else "<"


def is_ctype(obj: Any) -> bool:
    """obj is a ctypes type (a Structure, Union, Array or scalar class)."""
    kinds = (ctypes.Structure, ctypes.Union, ctypes.Array, ctypes._SimpleCData)
    return isinstance(obj, type) and issubclass(obj, kinds)


def _check_offsets(ctype: Any, dtype: np.dtype) -> None:
    if ctypes.sizeof(ctype) != dtype.itemsize:
        raise ValueError(
            f"{ctype.__name__}: ctypes says {ctypes.sizeof(ctype)} bytes, NumPy {dtype.itemsize}"
        )
    if issubclass(ctype, ctypes.Array):
        # Compare the innermost elements: NumPy may or may not merge nested arrays.
        while issubclass(ctype, ctypes.Array):
            ctype = ctype._type_
        while dtype.subdtype is not None:
            dtype = dtype.subdtype[0]
        _check_offsets(ctype, dtype)
    elif issubclass(ctype, ctypes.Structure):
        ftypes = {f[0]: f[1] for f in ctype._fields_}
        for name, fdtype, offset in fields_of(dtype):
            if getattr(ctype, name).offset != offset:
                raise ValueError(
                    f"{ctype.__name__}: field `{name}` sits at {getattr(ctype, name).offset} "
                    f"in ctypes but NumPy computes {offset}"
                )
            _check_offsets(ftypes[name], fdtype)


def dtype_of(ctype: Any) -> np.dtype:
    """np.dtype(ctype), checked against the offsets ctypes really uses, with
    fields of `c_char * n` as bytes of n (S<n>), as ctypes itself reads them,
    rather than NumPy's n separate bytes."""
    try:
        dtype: np.dtype = np.dtype(ctype)
    except (TypeError, NotImplementedError) as exc:  # bitfields, pointers
        raise ValueError(f"{getattr(ctype, '__name__', ctype)}: {exc}") from None
    _check_offsets(ctype, dtype)
    return chars_as_bytes(dtype) if dtype.names is not None else dtype


def array_type(ctype: Any, shape: Sequence[int]) -> Any:
    """ctype, wrapped in ctypes arrays for each dimension of shape (C order)."""
    for n in reversed(shape):
        ctype = ctype * n
    return ctype


def _offsets_match(ctype: Any, dtype: np.dtype) -> bool:
    return ctypes.sizeof(ctype) == dtype.itemsize and all(
        getattr(ctype, name).offset == offset for name, _, offset in fields_of(dtype)
    )


def _check_field_name(name: str) -> None:
    # A header's names are the creator's: as ctypes fields, _fields_, _pack_,
    # __class__ or from_buffer would reconfigure or break the class.
    if (name.startswith("_") and name.endswith("_")) or hasattr(ctypes.Structure, name):
        raise ValueError(f"field `{name}` is a name ctypes keeps for itself; use seg.array")


def _structure(dtype: np.dtype) -> Any:
    fields = [(name, ctype_of(fdtype), offset) for name, fdtype, offset in fields_of(dtype)]
    for name, _, _ in fields:
        _check_field_name(name)
    natural = type("Struct", (ctypes.Structure,), {"_fields_": [f[:2] for f in fields]})
    if _offsets_match(natural, dtype):
        return natural  # np.dtype() of it equals dtype, as for the ctypes class it came from
    # Packed or unusually padded: place every field with explicit padding.
    packed: List[Tuple[str, Any]] = []
    pad = "_pad"
    while any(name.startswith(pad) for name, _, _ in fields):
        pad += "_"  # padding never hides a field of the same name
    end = 0
    for name, ftype, offset in fields:
        if offset > end:
            packed.append((f"{pad}{end}", ctypes.c_uint8 * (offset - end)))
        packed.append((name, ftype))
        end = offset + ctypes.sizeof(ftype)
    if dtype.itemsize > end:
        packed.append((f"{pad}{end}", ctypes.c_uint8 * (dtype.itemsize - end)))
    attrs = {"_pack_": 1, "_layout_": "ms", "_fields_": packed}  # _layout_: Python 3.14+
    return type("Struct", (ctypes.Structure,), attrs)


# One type per layout: ctypes caches every array type it makes, keeping its
# element type alive, so building afresh on each open would leak.
@functools.lru_cache(maxsize=None)
def ctype_of(dtype: np.dtype) -> Any:
    """A ctypes type with the same bytes at the same offsets as dtype."""
    if dtype.names is not None:
        return _structure(dtype)
    if dtype.subdtype is not None:
        return array_type(ctype_of(dtype.subdtype[0]), dtype.subdtype[1])
    if dtype.kind == "S":
        return ctypes.c_char if dtype.itemsize == 1 else ctypes.c_char * dtype.itemsize
    scalar = _SCALARS.get((dtype.kind, dtype.itemsize))
    if scalar is None:
        raise ValueError(f"`{dtype.str}` has no ctypes equivalent; use seg.array")
    if dtype.byteorder == _FOREIGN_ORDER:
        return scalar.__ctype_be__ if dtype.byteorder == ">" else scalar.__ctype_le__
    return scalar

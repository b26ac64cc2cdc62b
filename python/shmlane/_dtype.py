"""NumPy dtypes to the canonical element format stored in segment headers,
and the comparison that explains how two layouts differ.

The canonical format is a PEP 3118 string that both the C core and NumPy
read the same way: standard sizes with an explicit byte order ('<' or '>',
never native), explicit 'x' padding between fields and at the end so the
format's size is the dtype's itemsize, sub-arrays as "(2,3)<f", nested
structs as "T{...}" and field names as ":name:". Neither ctypes' export
(which drops padding) nor NumPy's (native sizes) is stored as-is.
"""

from __future__ import annotations

import sys
from typing import List, Optional, Tuple

import numpy as np

_NATIVE_ORDER = "<" if sys.byteorder == "little" else ">"

# Standard-size codes by (dtype kind, itemsize).
_CODES = {
    ("b", 1): "?",
    ("i", 1): "b", ("i", 2): "h", ("i", 4): "i", ("i", 8): "q",
    ("u", 1): "B", ("u", 2): "H", ("u", 4): "I", ("u", 8): "Q",
    ("f", 2): "e", ("f", 4): "f", ("f", 8): "d",
    ("c", 8): "Zf", ("c", 16): "Zd",
}  # fmt: skip


def split_subarray(dtype: np.dtype) -> Tuple[np.dtype, Tuple[int, ...]]:
    """A sub-array dtype ('<f8', (3,)) is an element type plus dimensions.
    Nested ones, as ctypes arrays of arrays give, merge into one shape."""
    shape: Tuple[int, ...] = ()
    while dtype.subdtype is not None:
        dtype, inner = dtype.subdtype
        shape += tuple(inner)
    return dtype, shape


def fields_of(dtype: np.dtype) -> List[Tuple[str, np.dtype, int]]:
    """(name, dtype, offset) of each field of a struct dtype, in order."""
    assert dtype.names is not None and dtype.fields is not None
    return [(name, dtype.fields[name][0], dtype.fields[name][1]) for name in dtype.names]


def _byte_order(dtype: np.dtype) -> str:
    return _NATIVE_ORDER if dtype.byteorder == "=" else dtype.byteorder


def _padding(nbytes: int) -> str:
    return "x" if nbytes == 1 else f"{nbytes}x"


def _check_field_name(name: str) -> None:
    # The format delimits names with ':' and the core accepts printable ASCII.
    if not name or ":" in name or not (name.isascii() and name.isprintable()):
        raise ValueError(f"field name {name!r} cannot be stored: use printable ASCII without ':'")


def _struct_format(dtype: np.dtype) -> str:
    parts = []
    end = 0
    for name, field, offset in fields_of(dtype):
        if offset < end:
            raise ValueError(f"field `{name}` overlaps the one before it or is out of offset order")
        _check_field_name(name)
        if offset > end:
            parts.append(_padding(offset - end))
        parts.append(f"{format_of(field)}:{name}:")
        end = offset + field.itemsize
    if dtype.itemsize > end:
        parts.append(_padding(dtype.itemsize - end))
    return "T{" + "".join(parts) + "}"


def format_of(dtype: np.dtype) -> str:
    """The canonical PEP 3118 format of one element of `dtype`."""
    if dtype.names is not None:
        return _struct_format(dtype)
    if dtype.subdtype is not None:
        base, shape = split_subarray(dtype)
        return "(" + ",".join(str(n) for n in shape) + ")" + format_of(base)
    if dtype.kind == "S":
        return f"{dtype.itemsize}s"
    if dtype.kind == "U":
        return f"{_byte_order(dtype)}{dtype.itemsize // 4}w"
    code = _CODES.get((dtype.kind, dtype.itemsize))
    if code is None:
        raise ValueError(f"dtype {dtype} has no standard-size PEP 3118 code to store")
    return code if dtype.itemsize == 1 else _byte_order(dtype) + code


def _describe(dtype: np.dtype) -> str:
    if dtype.names is not None:
        return f"a struct of {dtype.itemsize} bytes"
    if dtype.subdtype is not None:
        base, shape = split_subarray(dtype)
        return f"a sub-array {shape} of {_describe(base)}"
    return f"`{dtype.str}`"


def difference(
    here: np.dtype, there: np.dtype, path: str = "", there_is: str = "in the segment"
) -> Optional[str]:
    """None if the two element types lay out bytes identically, else the first
    difference, worded from the caller's side: "... here, ... in the segment"."""
    what = f"field `{path}`" if path else "element type"
    if (here.names is None) != (there.names is None) or (here.subdtype is None) != (
        there.subdtype is None
    ):
        return f"{what}: {_describe(here)} here, {_describe(there)} {there_is}"
    if here.subdtype is not None:
        (my_base, my_shape), (their_base, their_shape) = split_subarray(here), split_subarray(there)
        if my_shape != their_shape:
            return f"{what}: shape {my_shape} here, {their_shape} {there_is}"
        return difference(my_base, their_base, path, there_is)
    if here.names is not None:
        return _struct_difference(here, there, path, what, there_is)
    if here != there:
        return f"{what}: `{here.str}` here, `{there.str}` {there_is}"
    return None


def _struct_difference(
    here: np.dtype, there: np.dtype, path: str, what: str, there_is: str
) -> Optional[str]:
    mine, theirs = fields_of(here), fields_of(there)
    my_names, their_names = [f[0] for f in mine], [f[0] for f in theirs]
    missing = [n for n in my_names if n not in their_names]
    if missing:
        return f"{what}: field `{missing[0]}` is here but not {there_is}"
    extra = [n for n in their_names if n not in my_names]
    if extra:
        return f"{what}: field `{extra[0]}` is {there_is} but not here"
    if my_names != their_names:
        return f"{what}: fields in order {tuple(my_names)} here, {tuple(their_names)} {there_is}"
    for (name, my_type, my_offset), (_, their_type, their_offset) in zip(mine, theirs):
        sub = f"{path}.{name}" if path else name
        if my_offset != their_offset:
            return f"field `{sub}`: offset {my_offset} here, {their_offset} {there_is}"
        found = difference(my_type, their_type, sub, there_is)
        if found:
            return found
    if here.itemsize != there.itemsize:
        return f"{what}: {here.itemsize} bytes here, {there.itemsize} {there_is}"
    return None

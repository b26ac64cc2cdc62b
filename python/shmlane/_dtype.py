"""NumPy dtypes to the canonical element format stored in segment headers
and back, and the comparison that explains how two layouts differ.

The canonical format is a PEP 3118 string that both the C core and NumPy
read the same way: standard sizes with an explicit byte order ('<' or '>',
never native), explicit 'x' padding between fields and at the end so the
format's size is the dtype's itemsize, sub-arrays as "(2,3)<f", nested
structs as "T{...}" and field names as ":name:". Neither ctypes' export
(which drops padding) nor NumPy's (native sizes) is stored as-is.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import _shmlane


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


def _strings(dtype: np.dtype) -> np.dtype:
    """An array of single bytes (S1, shape (..., n)) as one of n-byte strings
    (S<n>, shape (...)): the same bytes; any other dtype as it is."""
    if dtype.subdtype is None:
        return dtype
    base, shape = split_subarray(dtype)
    if base.kind != "S" or base.itemsize != 1:
        return dtype
    strings = np.dtype(f"S{shape[-1]}")
    return np.dtype((strings, shape[:-1])) if len(shape) > 1 else strings


def chars_as_bytes(dtype: np.dtype) -> np.dtype:
    """dtype with every field that is an array of single bytes made n-byte
    strings (_strings), at every depth: how C's `char name[n]` reads (b"cam0"),
    where NumPy's conversion of ctypes' `c_char * n` gives n separate bytes."""
    if dtype.names is not None:
        fields = fields_of(dtype)
        return np.dtype({
            "names": [name for name, _, _ in fields],
            "formats": [chars_as_bytes(_strings(field)) for _, field, _ in fields],
            "offsets": [offset for _, _, offset in fields],
            "itemsize": dtype.itemsize,
        })  # fmt: skip
    if dtype.subdtype is not None:
        base, shape = split_subarray(dtype)
        return np.dtype((chars_as_bytes(base), shape))
    return dtype


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
    fmt = _shmlane.format_from_typestr(dtype.str)
    if fmt is None:
        raise ValueError(f"dtype {dtype} has no standard-size PEP 3118 code to store")
    return fmt


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
    here, there = _strings(here), _strings(there)  # b"..." or its bytes: the same layout
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


# ---------------------------------------------------------------- format to dtype
#
# A header's format comes from whoever created the segment. NumPy's own PEP
# 3118 parser takes time superlinear in the number of fields (minutes for a
# few thousand), so dtypes are built here from the core's walk of the format
# (shl_format_walk), in one pass: the dtype gets the core's itemsize and
# offsets, and the core's reading of every item.

Field = Tuple[Optional[str], np.dtype, int]  # name (None: unnamed), dtype, offset

# The walk's codes of numbers and strings: NumPy's kind.
_KINDS = {
    "b": "i", "h": "i", "i": "i", "l": "i", "q": "i", "n": "i",
    "B": "u", "H": "u", "I": "u", "L": "u", "Q": "u", "N": "u", "P": "u",
    "?": "b", "e": "f", "f": "f", "d": "f", "Zf": "c", "Zd": "c", "s": "S", "w": "U",
}  # fmt: skip


def _item_dtype(code: str, order: str, itemsize: int) -> np.dtype:
    """The dtype of one item the walk reported (not a struct)."""
    if code in ("g", "Zg"):
        return np.dtype(np.longdouble if code == "g" else np.clongdouble).newbyteorder(order)
    kind = _KINDS.get(code)
    if kind is None:
        raise ValueError(f"NumPy has no type for code {code!r}")
    if kind == "S":
        return np.dtype(f"S{itemsize}")
    if kind == "U":
        return np.dtype(f"{order}U{itemsize // 4}")
    return np.dtype(f"{'|' if itemsize == 1 else order}{kind}{itemsize}")


def _struct_dtype(fields: List[Field], itemsize: int) -> np.dtype:
    """Unnamed fields get NumPy's names: f0, f1, ... skipping names in use."""
    taken = {name for name, _, _ in fields if name is not None}
    names: List[str] = []
    unnamed = 0
    for name, _, _ in fields:
        if name is None:
            while f"f{unnamed}" in taken:
                unnamed += 1
            name = f"f{unnamed}"
            taken.add(name)
            unnamed += 1
        names.append(name)
    spec: Dict[str, Any] = {
        "names": names,
        "formats": [dtype for _, dtype, _ in fields],
        "offsets": [offset for _, _, offset in fields],
        "itemsize": itemsize,
    }
    return np.dtype(spec)


def from_format(fmt: str) -> np.dtype:
    """The dtype of one element of format `fmt`, with the core's itemsize and
    field offsets, from one walk of the format (which the core bounds at
    FORMAT_MAX bytes and FORMAT_MAX_FIELDS items). ValueError if malformed
    or if NumPy has no type for it."""
    itemsize, items = _shmlane.format_walk(fmt)
    structs: List[List[Field]] = [[]]  # the fields of each struct open, the element's first
    try:
        for _, code, order, shape, offset, size, name in items:
            if code == "T":
                structs.append([])
                continue
            if code == "}":
                dtype = _struct_dtype(structs.pop(), size)
            else:
                dtype = _item_dtype(code, order, size)
            if 0 in shape or (size == 0 and code != "}"):
                continue  # no bytes: nothing to address
            structs[-1].append((name, np.dtype((dtype, shape)) if shape else dtype, offset))
    except ValueError as exc:
        shown = fmt if len(fmt) <= 60 else fmt[:60] + "..."
        raise ValueError(f"format {shown!r}: {exc}") from None
    (fields,) = structs
    if len(fields) == 1:
        name, dtype, offset = fields[0]
        if name is None and offset == 0 and dtype.itemsize == itemsize:
            return dtype  # one unnamed item: that type itself
    return _struct_dtype(fields, itemsize)


def element(layout: Dict[str, Any], what: str) -> Tuple[np.dtype, Tuple[int, ...]]:
    """The dtype and shape of the array a header's layout describes, as NumPy
    would present them (a sub-array element adds its dimensions to the
    shape), read by from_format. `what` names the segment in errors."""
    try:
        dtype = from_format(layout["format"])
    except ValueError as exc:
        raise ValueError(f"{what}: NumPy cannot use its element format: {exc}") from None
    base, sub = split_subarray(dtype)
    return base, tuple(layout["shape"]) + sub


def array_of(exporter: Any, what: str) -> np.ndarray:
    """The array a segment handle exports, dtype from element(). The array
    keeps the export (the mapping) for as long as it lives."""
    layout = exporter.layout()
    dtype, shape = element(layout, what)
    if not layout["c_contiguous"]:
        # Only NumPy can take the strides from the export; it parses the
        # format again, bounded by the core's FORMAT_MAX_FIELDS.
        try:
            return np.asarray(exporter)
        except (RuntimeError, ValueError, NotImplementedError) as exc:
            raise ValueError(f"{what}: NumPy cannot use its element format: {exc}") from None
    # np.frombuffer keeps the memoryview, and the memoryview the export.
    return np.frombuffer(memoryview(exporter), dtype).reshape(shape)

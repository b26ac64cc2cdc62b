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

import struct
import sys
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import _shmlane

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
# few thousand), so headers are read here instead, in one pass, with the
# core's rules and limits: the dtype gets the core's itemsize and offsets.

_MAX_DEPTH = 32  # nested T{...}, as the core
_SPACE = " \t\n\v\f\r"
Field = Tuple[Optional[str], np.dtype, int]  # name (None: unnamed), dtype, offset
_ORDERS = {"@": "=", "^": "=", "=": "=", "<": "<", ">": ">", "!": ">"}

# code: (NumPy kind, standard size; 0 where the code has native size only)
_SCALARS = {
    "x": ("V", 1), "c": ("S", 1), "b": ("i", 1), "B": ("u", 1), "s": ("S", 1),
    "?": ("b", 1), "h": ("i", 2), "H": ("u", 2), "e": ("f", 2), "w": ("U", 4),
    "i": ("i", 4), "I": ("u", 4), "l": ("i", 4), "L": ("u", 4), "q": ("i", 8),
    "Q": ("u", 8), "f": ("f", 4), "d": ("f", 8), "g": ("g", np.dtype(np.longdouble).itemsize),
    "n": ("i", 0), "N": ("u", 0), "P": ("u", 0), "u": ("", 2), "p": ("", 1),
}  # fmt: skip


def _native_size(code: str) -> int:
    if code in "uw":
        return _SCALARS[code][1]
    if code == "g":
        return np.dtype(np.longdouble).itemsize
    return struct.calcsize("@" + code)


class _FormatParser:
    """One pass over a format; every step moves `i` forward."""

    def __init__(self, fmt: str) -> None:
        self.s, self.i, self.items, self.depth = fmt, 0, 0, 0

    def fail(self, why: str) -> ValueError:
        shown = self.s if len(self.s) <= 60 else self.s[:60] + "..."
        return ValueError(f"format {shown!r}, at character {self.i}: {why}")

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip_space(self) -> None:
        while self.peek() and self.peek() in _SPACE:
            self.i += 1

    def count(self) -> int:
        start = self.i
        while self.peek().isdigit():
            self.i += 1
        if self.i == start:
            raise self.fail("a number was expected")
        return int(self.s[start : self.i])

    def dims(self) -> Tuple[int, ...]:
        self.i += 1  # '('
        found = []
        while True:
            self.skip_space()
            found.append(self.count())
            self.skip_space()
            ch = self.peek()
            self.i += 1
            if ch == ")":
                return tuple(found)
            if ch != ",":
                raise self.fail("a sub-array shape needs ',' or ')'")

    def name(self) -> Optional[str]:
        self.skip_space()
        if self.peek() != ":":
            return None
        end = self.s.find(":", self.i + 1)
        if end <= self.i + 1:
            raise self.fail("a field name needs a closing ':'")
        name = self.s[self.i + 1 : end]
        self.i = end + 1
        return name

    def scalar(self, code: str, mode: str) -> Tuple[np.dtype, int, int]:
        """dtype, size and alignment of one scalar code."""
        if code not in _SCALARS:
            raise self.fail(f"unknown type code {code!r}")
        kind, size = _SCALARS[code]
        if mode in "@^":
            size = _native_size(code)
        if size == 0:
            raise self.fail(f"type code {code!r} has a native size only")
        if not kind:
            raise self.fail(f"NumPy has no type for code {code!r}")
        align = size if mode == "@" else 1
        if kind == "g":
            return np.dtype(np.longdouble).newbyteorder(_ORDERS[mode]), size, align
        if kind == "U":
            return np.dtype(f"{_ORDERS[mode]}U1"), size, align
        order = "|" if kind in "SV" or size == 1 else _ORDERS[mode]
        return np.dtype(f"{order}{kind}{size}"), size, align

    def struct(self, mode: str, nested: bool) -> Tuple[List[Field], int, int]:
        """The items up to the closing '}' (or the end): fields, size and
        alignment, as the core computes them."""
        fields: List[Field] = []
        offset, max_align = 0, 1
        while True:
            self.skip_space()
            ch = self.peek()
            if not ch:
                if nested:
                    raise self.fail("'T{' is not closed")
                return fields, offset, max_align
            if ch == "}":
                if not nested:
                    raise self.fail("'}' without 'T{'")
                self.i += 1
                return fields, offset, max_align
            if ch in _ORDERS:
                mode = ch
                self.i += 1
                continue
            self.items += 1
            if self.items > _shmlane.FORMAT_MAX_FIELDS:
                raise self.fail(f"more than {_shmlane.FORMAT_MAX_FIELDS} items")
            mode, offset, max_align = self.item(mode, offset, max_align, fields)

    def item(
        self, mode: str, offset: int, max_align: int, fields: List[Field]
    ) -> Tuple[str, int, int]:
        """One item, added to fields at its offset: the mode after it, the
        offset after it and the alignment so far."""
        shape: Tuple[int, ...] = ()
        repeat = None  # a count after a sub-array's shape: "(8)1s"
        if self.peek() == "(":
            shape = self.dims()
            self.skip_space()
            while self.peek() and self.peek() in _ORDERS:  # "(3)<f"
                mode = self.peek()
                self.i += 1
            if self.peek().isdigit():
                repeat = self.count()
        elif self.peek().isdigit():
            shape = (self.count(),)
        while self.peek() and self.peek() in _ORDERS:
            mode = self.peek()
            self.i += 1
        code = self.peek()
        self.i += 1
        if code == "T":
            if self.peek() != "{":
                raise self.fail("'T' must be followed by '{'")
            self.i += 1
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise self.fail(f"structs nest deeper than {_MAX_DEPTH}")
            inner, size, align = self.struct(mode, True)
            self.depth -= 1
            if mode == "@" and size % align:  # a native struct is padded like C's
                size += align - size % align
            dtype = _struct_dtype(inner, size)
        elif code == "Z":
            part = self.peek()
            self.i += 1
            if not part or part not in "fdg":
                raise self.fail("'Z' must be followed by 'f', 'd' or 'g'")
            base, size, align = self.scalar(part, mode)
            size *= 2
            if part == "g":
                dtype = np.dtype(np.clongdouble).newbyteorder(base.byteorder)
            else:
                dtype = np.dtype(f"{base.byteorder}c{size}")
        else:
            dtype, size, align = self.scalar(code, mode)
        if repeat is not None:
            if code in "sw":  # each element a string of `repeat`
                dtype, size = np.dtype(dtype.str[:-1] + str(repeat)), size * repeat
            else:
                shape += (repeat,)
        count = 1
        for n in shape:
            count *= n
        name = self.name()
        if code == "x":
            return mode, offset + count, max_align
        if code in "sw" and len(shape) == 1 and repeat is None:  # "10s": one string of 10
            dtype, shape = np.dtype(dtype.str[:-1] + str(count)), ()
        elif shape:
            dtype = np.dtype((dtype, shape))
        if offset % align:
            offset += align - offset % align
        if count:
            fields.append((name, dtype, offset))
        return mode, offset + size * count, max(max_align, align)


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
    field offsets, in time linear in the format (which the core bounds at
    FORMAT_MAX bytes and FORMAT_MAX_FIELDS items). ValueError if malformed
    or if NumPy has no type for it."""
    if len(fmt) > _shmlane.FORMAT_MAX:
        raise ValueError(f"format of {len(fmt)} characters, more than {_shmlane.FORMAT_MAX}")
    parser = _FormatParser(fmt)
    fields, size, _ = parser.struct("@", False)
    if len(fields) == 1:
        name, dtype, offset = fields[0]
        if name is None and offset == 0 and dtype.itemsize == size:
            return dtype  # one unnamed item: that type itself
    return _struct_dtype(fields, size)


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

"""Element types: every supported dtype round-trips through the header
exactly, bytes included, and ctypes types built from headers match."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import shmlane
from shmlane._dtype import difference

POINT = np.dtype([("x", "<f4"), ("y", ">f4")])
DTYPES = [
    "<f8", ">i4", "u1", "?", "<c16", ">f2", "S7", "<U3", ">U2", "<i8", ">u2",
    [("a", "<i4"), ("b", ">f8")],  # packed, mixed byte order
    np.dtype([("flag", "u1"), ("value", "<f8")], align=True),  # padding inside
    np.dtype({"names": ["a", "b"], "formats": ["<u2", "<i4"], "offsets": [2, 8], "itemsize": 16}),
    [("points", POINT, (2, 3)), ("ok", "?"), ("name", "S3")],  # nested struct sub-array
    [("m", ">f8", (2, 2)), ("inner", [("deep", [("v", "<i2")])])],  # nesting
]  # fmt: skip


def _fill(seg: shmlane.Segment) -> bytes:
    """Writes arbitrary bytes over the whole payload, padding included."""
    data = bytes((i * 37 + 11) % 251 for i in range(seg.nbytes))
    ctypes.memmove(seg.array.ctypes.data, data, seg.nbytes)
    return data


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dtype_round_trips(name, dtype):
    dtype = np.dtype(dtype)
    with shmlane.create(name, shape=(3,), dtype=dtype) as seg:
        data = _fill(seg)
    with shmlane.open(name, dtype=dtype, shape=3) as seg:
        assert seg.dtype == dtype
        assert seg.array.tobytes() == data
        assert seg.nbytes == 3 * dtype.itemsize


def test_subarray_dtype_adds_trailing_dimensions(name):
    with shmlane.create(name, shape=(4,), dtype=("<f4", (2, 3))) as seg:
        assert (seg.shape, seg.dtype) == ((4, 2, 3), np.dtype("<f4"))
    with shmlane.open(name, dtype=("<f4", (2, 3))) as seg:
        assert seg.shape == (4, 2, 3)


def test_zero_dimensional_array(name):
    with shmlane.create(name, dtype=">i8") as seg:
        seg.array[()] = -5
        assert seg.shape == ()
    with shmlane.open(name) as seg:
        assert seg.array[()] == -5


class Inner(ctypes.Structure):
    _fields_ = [("a", ctypes.c_int16), ("b", ctypes.c_float * 3)]


class Pose(ctypes.Structure):  # 48 bytes, padding after flag and at the end
    _fields_ = [
        ("frame", ctypes.c_uint64),
        ("xy", ctypes.c_double * 2),
        ("flag", ctypes.c_uint8),
        ("inner", Inner),
    ]


class BigPose(ctypes.BigEndianStructure):
    _fields_ = [("flag", ctypes.c_uint8), ("t", ctypes.c_double), ("ids", ctypes.c_int32 * 2)]


class LittlePose(ctypes.LittleEndianStructure):
    _fields_ = [("flag", ctypes.c_uint8), ("t", ctypes.c_double)]


class Packed(ctypes.Structure):
    _pack_ = 1
    _layout_ = "ms"
    _fields_ = [("tag", ctypes.c_char), ("value", ctypes.c_double), ("n", ctypes.c_uint16)]


class Grid(ctypes.Structure):  # sub-array of structs, nested arrays
    _fields_ = [("cells", Inner * 2), ("m", (ctypes.c_int8 * 3) * 2), ("pose", Pose)]


class Named(ctypes.Structure):  # a char array: NumPy makes it 8 items of S1, stored as "8s"
    _fields_ = [("id", ctypes.c_uint32), ("device", ctypes.c_char * 8)]


@pytest.mark.parametrize(
    "ctype", [Pose, BigPose, LittlePose, Packed, Grid, Named], ids=lambda t: t.__name__
)
def test_ctypes_built_from_header_match(name, ctype):
    with shmlane.create(name, ctype=ctype) as seg:
        assert seg.array.shape == ()
        # NumPy writes nested ctypes arrays as nested sub-arrays, the header as one shape.
        assert difference(np.dtype(ctype), seg.dtype) is None
        assert isinstance(seg.struct, ctype)
        data = _fill(seg)
    with shmlane.open(name) as seg:
        built = type(seg.struct)
        assert np.dtype(built) == np.dtype(ctype)
        assert ctypes.sizeof(built) == ctypes.sizeof(ctype)
        for field in (f[0] for f in ctype._fields_):
            assert getattr(built, field).offset == getattr(ctype, field).offset
        assert bytes(seg.struct) == data
        original = ctype.from_buffer_copy(data)
        for field in ("flag", "t", "frame", "value", "n"):
            if hasattr(original, field):
                assert getattr(seg.struct, field) == getattr(original, field)


def test_canonical_format_has_explicit_padding(name):
    with shmlane.create(name, ctype=Pose) as seg:
        assert seg._raw.layout()["format"] == (
            "T{<Q:frame:(2)<d:xy:B:flag:3xT{<h:a:2x(3)<f:b:}:inner:4x}"
        )


def test_array_of_structs_as_ctypes(name):
    with shmlane.create(name, shape=(2,), ctype=Pose) as seg:
        seg.struct[1].frame = 9
        assert seg.array["frame"].tolist() == [0, 9]
    with shmlane.open(name, ctype=Pose) as seg:
        assert len(seg.struct) == 2 and seg.struct[1].frame == 9


@pytest.mark.parametrize(
    "dtype",
    [
        object,
        "M8[s]",
        "V8",
        np.longdouble,
        np.dtype(
            {"names": ["a", "b"], "formats": ["<i4", "<i4"], "offsets": [0, 2], "itemsize": 8}
        ),
        [("bad:name", "<i4")],
    ],
    ids=["object", "datetime", "raw-void", "longdouble", "overlap", "colon-name"],
)
def test_unstorable_dtypes_raise_value_error(name, dtype):
    with pytest.raises(ValueError):
        shmlane.create(name, dtype=dtype)
    with pytest.raises(FileNotFoundError):
        shmlane.open(name)


def test_unions_and_bitfields_raise_value_error(name):
    class U(ctypes.Union):
        _fields_ = [("i", ctypes.c_int32), ("f", ctypes.c_float)]

    class Bits(ctypes.Structure):
        _fields_ = [("a", ctypes.c_uint32, 3)]

    for ctype in (U, Bits):
        with pytest.raises(ValueError):
            shmlane.create(name, ctype=ctype)


@pytest.mark.parametrize("field", ["from_buffer", "_fields_", "_pack_", "__class__", "_objects"])
def test_header_field_named_as_ctypes_own_is_a_clear_error(name, field):
    """Names are the creator's: as fields of a ctypes type built from the
    header they reconfigured or broke it (TypeError "'CField' object is not
    callable"). The array still reads them."""
    with shmlane.create(name, dtype=[(field, "<i4")]) as seg:
        seg.array[field] = 7
    for readonly in (False, True):
        with shmlane.open(name, readonly=readonly) as seg:
            assert seg.array[field] == 7
            with pytest.raises(ValueError, match=f"field `{field}` is a name ctypes keeps"):
                seg.struct


def test_header_field_named_as_padding_reads_as_itself(name):
    """A packed struct's padding gets names of its own, never a field's."""
    with shmlane.create(name, dtype={"names": ["a", "_pad1"], "formats": ["i1", "<i4"],
                                     "offsets": [0, 3], "itemsize": 7}) as seg:
        seg.array["_pad1"] = 123456
    with shmlane.open(name) as seg:
        assert seg.struct._pad1 == 123456 and ctypes.sizeof(seg.struct) == 7

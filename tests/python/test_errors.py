"""Errors: each maps to the documented exception, and its message names the segment."""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest

import shmlane
from conftest import SHM_DIR


@pytest.mark.parametrize("bad", ["", "-lead", "a/b", "x" * 27, "sp ace", "dot/../x"])
def test_bad_names_raise_value_error(bad):
    for call in (
        lambda: shmlane.create(bad, dtype="u1"),
        lambda: shmlane.open(bad),
        lambda: shmlane.unlink(bad),
    ):
        with pytest.raises(ValueError, match="invalid segment name"):
            call()


def test_missing_segment(name):
    with pytest.raises(FileNotFoundError, match=name):
        shmlane.open(name)
    with pytest.raises(FileNotFoundError, match=name):
        shmlane.unlink(name)


def test_existing_segment(name):
    with shmlane.create(name, dtype="<i4"):
        with pytest.raises(FileExistsError, match=f"segment '{name}' exists: shmlane.open") as exists:
            shmlane.create(name, dtype="<i4")
        assert "exist_ok=True" in str(exists.value) and exists.value.filename == name
        with shmlane.create(name, dtype="<i4", exist_ok=True) as again:
            assert again.dtype == np.dtype("<i4")
        with shmlane.create(name, (2,), "<f8", replace=True) as fresh:
            assert fresh.shape == (2,)


class _Pose(ctypes.Structure):
    _fields_ = [("frame", ctypes.c_uint64), ("x", ctypes.c_double)]


def test_rebinding_a_view_says_how_to_write(name):
    """`seg.array = x` reaches no other process: it is refused with the way
    that does, and the way the struct's message names works."""
    with shmlane.create(name, ctype=_Pose, unlink_on_close=True) as seg:
        with pytest.raises(AttributeError, match=r"write into it, seg.array\[...\] = value"):
            seg.array = np.zeros((), seg.dtype)
        with pytest.raises(AttributeError, match=r"ctypes.pointer\(seg.struct\)\[0\] = value"):
            seg.struct = _Pose(7, 0.5)
        ctypes.pointer(seg.struct)[0] = _Pose(7, 0.5)
        assert (int(seg.array["frame"]), float(seg.array["x"])) == (7, 0.5)


def test_create_needs_a_layout(name):
    with pytest.raises(ValueError, match=name):
        shmlane.create(name)


class Pose(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double)]


class PoseF(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_float)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ctype": PoseF}, "field `y`: `<f4` here, `<f8` in the segment"),
        ({"dtype": [("x", "<f8")]}, "field `y` is in the segment but not here"),
        ({"dtype": [("x", "<f8"), ("z", "<f8")]}, "field `z` is here but not in the segment"),
        ({"dtype": [("y", "<f8"), ("x", "<f8")]}, "fields in order"),
        ({"dtype": "<f8"}, "element type: `<f8` here, a struct of 16 bytes in the segment"),
        ({"dtype": np.dtype(Pose), "shape": (2,)}, r"shape \(2,\) here, \(\) in the segment"),
        ({"shape": 3}, r"shape \(3,\) here, \(\) in the segment"),
        ({"ctype": Pose * 2}, r"trailing shape \(2,\) here, \(\) in the segment"),
        ({"dtype": [("x", ">f8"), ("y", "<f8")]}, "field `x`: `>f8` here, `<f8` in the segment"),
        (
            {"dtype": {"names": ["x", "y"], "formats": ["<f8", "<f8"], "offsets": [0, 16]}},
            "field `y`: offset 16 here, 8 in the segment",
        ),
    ],
    ids=[
        "ctype",
        "extra",
        "missing",
        "order",
        "scalar",
        "shape",
        "shape-only",
        "ctype-array",
        "byteorder",
        "offset",
    ],
)
def test_layout_mismatch_names_the_difference(name, kwargs, message):
    with shmlane.create(name, ctype=Pose):
        with pytest.raises(shmlane.LayoutMismatch, match=message) as info:
            shmlane.open(name, **kwargs)
        assert name in str(info.value)
        assert isinstance(info.value, ValueError) and isinstance(info.value, shmlane.Error)


def test_exist_ok_with_another_layout_is_a_mismatch(name):
    with shmlane.create(name, (3,), "<f8"):
        with pytest.raises(shmlane.LayoutMismatch, match=r"shape \(4,\) here"):
            shmlane.create(name, (4,), "<f8", exist_ok=True)


def test_dtype_and_ctype_must_agree(name):
    with pytest.raises(ValueError, match="disagree: field `y`: `<f4` here, `<f8` in the ctype"):
        shmlane.create(name, dtype=[("x", "<f8"), ("y", "<f4")], ctype=Pose)


def test_readonly_segment(name):
    with shmlane.create(name, ctype=Pose) as seg:
        seg.struct.x = 1.0
    with shmlane.open(name, readonly=True) as seg:
        assert seg.readonly and not seg.array.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            seg.array["x"] = 2.0
        with pytest.raises(TypeError, match="read-only"):
            memoryview(seg.array).cast("B")[0] = 0
        snapshot = seg.struct  # a copy: ctypes cannot map read-only memory safely
        snapshot.x = 5.0
        assert seg.struct.x == 1.0 and seg.struct is not snapshot


def _corrupt(name: str, offset: int, data: bytes) -> None:
    with open(SHM_DIR / f"shl.{name}", "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs /dev/shm")
@pytest.mark.parametrize(
    "offset, data",
    [
        (0, b"NOTSHML\0"),
        (8, (99).to_bytes(4, "little")),
        (24, (1 << 40).to_bytes(8, "little")),
        (60, (9).to_bytes(4, "little")),
        (512, b"T{<d:x:<f:y:"),
    ],
    ids=["magic", "version", "total_size", "ndim", "format"],
)
def test_corrupt_header_raises_corrupt_segment(name, offset, data):
    shmlane.create(name, ctype=Pose).close()
    _corrupt(name, offset, data)
    with pytest.raises(shmlane.CorruptSegment, match=name):
        shmlane.open(name)


@pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs /dev/shm")
def test_foreign_and_unfinished_files(name):
    path = SHM_DIR / f"shl.{name}"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(shmlane.CorruptSegment, match="not a shmlane segment"):
        shmlane.open(name)
    path.write_bytes(b"")  # what a creator that died before sizing it leaves
    with pytest.raises(TimeoutError, match=name):
        shmlane.open(name, timeout=0.2)
    listed = {info.name: info for info in shmlane.list()}
    assert listed[name].error and listed[name].dtype is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another user")
def test_permission_denied_for_another_user(new_name, run_py):
    private, shared = new_name(), new_name()
    with shmlane.create(private, dtype="<f8"), shmlane.create(shared, dtype="<f8", mode=0o644):
        script = """
import os, sys
import shmlane  # before dropping privileges: the interpreter may be in root's home
os.setgid(65534); os.setuid(65534)  # nobody
try:
    shmlane.open(sys.argv[1])
except PermissionError as exc:
    print("denied", sys.argv[1] in str(exc))
seg = shmlane.open(sys.argv[2], readonly=True)  # read permission only
print("readable", seg.array[()])
try:
    seg.lock(timeout=0)
except PermissionError as exc:
    print("lock denied", sys.argv[2] in str(exc))
"""
        assert run_py(script, private, shared).split("\n")[:3] == [
            "denied True",
            "readable 0.0",
            "lock denied True",
        ]


def test_closed_segment_refuses_use(name):
    seg = shmlane.create(name, dtype="<i4")
    seg.close()
    seg.close()  # idempotent
    for call in (
        lambda: seg.array,
        lambda: seg.struct,
        lambda: seg.lock(),
        seg.notify,
        lambda: seg.wait(timeout=0),
    ):
        with pytest.raises(ValueError, match=f"segment '{name}' is closed"):
            call()


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"dtype": object}, ValueError),  # no PEP 3118 code to store
        ({"dtype": "no such type"}, TypeError),
        ({"dtype": "u1", "shape": (-1, 3)}, ValueError),  # was OverflowError, unnamed
        ({"dtype": "u1", "shape": (2**64,)}, ValueError),
        ({"dtype": "u1", "shape": (2.5,)}, ValueError),  # was truncated to 2
        ({"dtype": "u1", "shape": "3"}, ValueError),
        ({"dtype": "<f8", "ctype": Pose}, ValueError),  # dtype and ctype disagree
    ],
    ids=["object", "unknown", "negative", "too-big", "float", "text", "disagree"],
)
def test_create_errors_name_the_segment(name, kwargs, error):
    with pytest.raises(error, match=f"^segment '{name}': "):
        shmlane.create(name, **kwargs)
    with pytest.raises(FileNotFoundError):
        shmlane.open(name)  # nothing was left behind


def test_open_errors_name_the_segment(name):
    with shmlane.create(name, (2,), "u1"):
        for kwargs, error in (
            ({"shape": (-1,)}, ValueError),
            ({"dtype": "no such type"}, TypeError),
            ({"dtype": object}, shmlane.LayoutMismatch),
        ):
            with pytest.raises(error, match=f"^segment '{name}': "):
                shmlane.open(name, **kwargs)


def test_publish_errors_name_the_stream(name):
    with shmlane.Writer(name, shape=(4,), dtype="u1") as writer:
        refused = f"^stream '{name}': cannot publish shape \\(4,\\), float64"
        with pytest.raises(TypeError, match=refused):
            writer.publish(np.ones(4))  # float64 into uint8: not a same-kind cast
        with pytest.raises(ValueError, match=f"^stream '{name}': cannot publish shape \\(5,\\)"):
            writer.publish(np.zeros(5, "u1"))
        assert writer.publish(np.arange(4, dtype="u1")) == 1  # the refused loans were given back
    with pytest.raises(ValueError, match=f"^stream '{name}': shape"):
        shmlane.Writer(name, shape=(-1,), dtype="u1")

"""Lifetime: views keep the mapping alive after close(); nothing is removed
unless asked."""

from __future__ import annotations

import ctypes
import gc

import pytest

import shmlane


class Pose(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("n", ctypes.c_int32)]


def test_views_outlive_close(name):
    seg = shmlane.create(name, shape=(4,), ctype=Pose)
    array, struct, raw = seg.array, seg.struct, memoryview(seg.array)
    seg.close()
    del seg
    gc.collect()
    array["x"] = 2.5  # still the shared memory, still mapped
    struct[1].n = 9
    assert raw.tobytes()[16 + 8 : 16 + 12] == (9).to_bytes(4, "little")
    with shmlane.open(name, ctype=Pose) as again:
        assert again.array["x"].tolist() == [2.5] * 4 and again.struct[1].n == 9


def test_views_outlive_close_in_a_fresh_interpreter(name, run_py):
    # A crash (use after unmap) would kill the interpreter: run it apart.
    script = """
import gc, sys
import shmlane
seg = shmlane.create(sys.argv[1], shape=(1000,), dtype="<f8")
views = [seg.array, seg.array[::2], seg.struct, memoryview(seg.array)]
seg.close()
del seg
gc.collect()
views[0][:] = 1.0
print(float(views[1].sum()), views[2][999], views[3].tobytes()[-8:].hex())
del views
gc.collect()
"""
    assert run_py(script, name).split() == ["500.0", "1.0", "000000000000f03f"]


def test_unlink_on_close(name):
    seg = shmlane.create(name, dtype="<f8", unlink_on_close=True)
    view = seg.array
    seg.close()
    shmlane.open(name).close()  # the name goes with the mapping, after the last view
    del view
    gc.collect()
    with pytest.raises(FileNotFoundError):
        shmlane.open(name)


def test_segment_unlink_keeps_open_mappings(name):
    with shmlane.create(name, dtype="<i8") as seg, shmlane.open(name, readonly=True) as other:
        seg.unlink()
        seg.array[()] = 3  # still shared: seen through the other mapping
        assert other.array[()] == 3
        with pytest.raises(FileNotFoundError):
            shmlane.open(name)


def test_properties(name):
    with shmlane.create(name, (2, 3), "<f4", mode=0o640) as seg:
        assert (seg.name, seg.shape, seg.nbytes, seg.version, seg.readonly) == (
            name,
            (2, 3),
            24,
            0,
            False,
        )
        assert seg.array is seg.array
    assert seg.closed

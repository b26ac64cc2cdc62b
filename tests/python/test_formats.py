"""Header formats read from other processes: parsed by shmlane itself in
linear time with the core's rules and limits (SHL_FORMAT_MAX_FIELDS), so
opening or listing any segment stays quick, whatever its creator wrote."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pytest

import shmlane
from conftest import SHM_DIR, build_c
from shmlane import _shmlane
from shmlane._dtype import from_format

MAX_FIELDS = _shmlane.FORMAT_MAX_FIELDS
# Unnamed items: the slowest case for NumPy's own parser (cubic in their number).
WORST = "b" * MAX_FIELDS

PLANTER = r"""
#include <shmlane.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* planter NAME FORMAT [strided]: an array of 2 elements, C order or every
 * other element (strides twice the itemsize). */
int main(int argc, char **argv) {
  int64_t itemsize = shl_format_itemsize(argv[2]);
  shl_layout layout = {.format = argv[2], .ndim = 1, .shape = {2}};
  if (argc > 3) layout.strides[0] = 2 * itemsize;
  shl_segment *seg;
  int rc = shl_create(&seg, argv[1], &layout, NULL);
  if (rc < 0) {
    printf("%s\n", shl_err_name(rc));
    return 1;
  }
  shl_close(seg);
  return 0;
}
"""


@pytest.fixture(scope="module")
def planter(tmp_path_factory):
    out = tmp_path_factory.mktemp("planter")
    source = out / "planter.c"
    source.write_text(PLANTER)
    return build_c(source, out)


def _timed(call):
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


@pytest.mark.parametrize("strided", [False, True], ids=["c_order", "strided"])
def test_format_at_the_limit_opens_and_lists_quickly(name, planter, strided):
    subprocess.run([str(planter), name, WORST] + (["strided"] if strided else []), check=True)
    seg, took = _timed(lambda: shmlane.open(name, readonly=True))
    with seg:
        assert len(seg.dtype.names) == MAX_FIELDS and seg.shape == (2,)
    assert took < 2.0  # generous: NumPy's parser took ~70 s for 4095 such items
    listed, took = _timed(shmlane.list)
    assert [info.dtype.itemsize for info in listed if info.name == name] == [MAX_FIELDS]
    assert took < 2.0 * max(1, len(listed))


def test_struct_of_a_strided_segment_is_a_clear_error(name, planter):
    """ctypes has no strides: ValueError, read-only or not (it was a
    TypeError from ctypes, or the export's BufferError); seg.array reads it."""
    subprocess.run([str(planter), name, "T{<i:a:}", "strided"], check=True)
    for readonly in (False, True):
        with shmlane.open(name, readonly=readonly) as seg:
            assert seg.array.strides == (8,)
            with pytest.raises(ValueError, match="strided: ctypes has no strided arrays"):
                seg.struct


def test_a_format_numpy_cannot_read_closes_the_segment(name):
    """open() of a header NumPy cannot read (two fields named `a`) raises
    ValueError and lets the object go at once: the handle stayed open (its
    descriptor and mapping) for as long as the exception lived."""
    _shmlane.create(name, "T{B:a:B:a:}", (), 0o600, 0).close()
    try:
        shmlane.open(name)
    except ValueError as exc:  # alive here, its traceback with it
        assert "NumPy cannot use its element format" in str(exc)
        open_files = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                open_files.append(os.readlink(f"/proc/self/fd/{fd}"))
            except FileNotFoundError:  # the listing's own descriptor, closed since
                pass
        assert f"/dev/shm/shl.{name}" not in open_files
    else:
        pytest.fail("opened")


def test_format_past_the_limit_is_refused(name, planter):
    over = WORST + "b"
    run = subprocess.run([str(planter), name, over], capture_output=True, text=True)
    assert run.stdout.strip() == "SHL_E_BAD_FORMAT"
    many = np.dtype([(f"f{i}", "u1") for i in range(MAX_FIELDS + 1)])
    with pytest.raises(ValueError, match=rf"segment '{name}'.*256 items"):
        shmlane.create(name, dtype=many)
    with pytest.raises(ValueError, match="more than 256 items"):
        from_format(over)


@pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs /dev/shm")
def test_planted_format_past_the_limit_is_corrupt(name):
    _shmlane.create(name, WORST, (), 0o600, 0).close()
    # One item more, no byte more ("0x"): only the item count is wrong.
    with open(SHM_DIR / f"shl.{name}", "r+b") as f:
        data = (WORST + "0x").encode()
        f.seek(56)  # format_len
        f.write(len(data).to_bytes(4, "little"))
        f.seek(512)  # the format
        f.write(data + b"\0")
    with pytest.raises(shmlane.CorruptSegment, match=rf"segment '{name}'.*256 items"):
        shmlane.open(name)
    (entry,) = [info for info in shmlane.list() if info.name == name]
    assert entry.dtype is None and "256 items" in entry.error


@pytest.mark.parametrize(
    "fmt, itemsize",
    [
        ("^bd", 9),  # native sizes, no alignment, as PEP 3118 and NumPy
        ("@bd", 16),
        ("<bd", 9),
        ("T{^b:a:T{d:b:}:n:}", 9),
    ],
)
def test_native_packed_format(fmt, itemsize, name):
    assert from_format(fmt).itemsize == itemsize
    handle = _shmlane.create(name, fmt, (2,), 0o600, 0)
    try:
        assert handle.layout()["itemsize"] == itemsize
    finally:
        handle.close()
        shmlane.unlink(name)


def test_native_struct_formats_open_with_the_cores_itemsize(name, planter):
    # "ib" native: 5 bytes for the core (no trailing padding at the top level),
    # 8 for NumPy's own parser, which refused it before.
    subprocess.run([str(planter), name, "ib"], check=True)
    with shmlane.open(name) as seg:
        fields = {"names": ["f0", "f1"], "formats": ["=i4", "i1"], "offsets": [0, 4]}
        assert seg.dtype == np.dtype({**fields, "itemsize": 5})
        assert seg.nbytes == 10


@pytest.mark.parametrize(
    "fmt", ["T{<I:id:(8)1s:dev:}", "T{<I:id:(8)<c:dev:}", "T{<I:id:8c:dev:}", "T{<I:id:8s:dev:}"]
)
def test_c_char_arrays_read_as_bytes(fmt, name):
    # C's char dev[8], however the header spells it: one 8-byte string.
    handle = _shmlane.create(name, fmt, (2,), 0o600, 0)
    try:
        memoryview(handle).cast("B")[:24] = b"\1\0\0\0cam0\0\0\0\0\2\0\0\0cam12345"
    finally:
        handle.close()
    with shmlane.open(name) as seg:
        assert seg.dtype == np.dtype([("id", "<u4"), ("dev", "S8")])
        assert seg.array["dev"].tolist() == [b"cam0", b"cam12345"]
    shmlane.unlink(name)


def test_walk_reads_what_the_core_reads():
    assert from_format("(2,8)1s") == np.dtype(("S8", (2,)))
    assert from_format("T{b:a:d:b:}") == np.dtype({"names": ["a", "b"], "formats": ["i1", "=f8"],
                                                   "offsets": [0, 8], "itemsize": 16})
    with pytest.raises(ValueError, match="at character 7"):
        from_format("T{<d:x:")
    with pytest.raises(ValueError, match=f"more than {_shmlane.FORMAT_MAX_DIMS} dimensions"):
        from_format("(" + ",".join(["1"] * (_shmlane.FORMAT_MAX_DIMS + 1)) + ")B")
    with pytest.raises(ValueError, match="NumPy has no type for code 'u'"):
        from_format("<2u")
    assert shmlane._common.SPIN_MAX == _shmlane.SPIN_MAX_NS / 1e9 == 0.001

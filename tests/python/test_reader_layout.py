"""Reader(name, shape=, dtype=, ctype=) checks the stream's frame layout, in
the words open() uses for a segment (LayoutMismatch)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import shmlane


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_float), ("y", ctypes.c_float)]


@pytest.fixture
def cam(name):
    with shmlane.Writer(name, shape=(4, 6, 3), dtype="u1") as w:
        yield w


def test_matching_layout_is_accepted(name, cam):
    for kwargs in (
        {},
        {"shape": (4, 6, 3)},
        {"dtype": "u1"},
        {"shape": [4, 6, 3], "dtype": np.uint8},
        {"ctype": ctypes.c_uint8},
        {"dtype": ("u1", (3,))},
        {"dtype": ("u1", (3,)), "shape": (4, 6)},
    ):
        with shmlane.Reader(name, **kwargs) as r:
            cam.publish(np.full((4, 6, 3), 7, "u1"))
            with r.receive(timeout=5) as s:
                assert s.array.shape == (4, 6, 3) and s.array[0, 0, 0] == 7


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shape": (4, 6)}, "shape (4, 6) here, (4, 6, 3) in the stream"),
        ({"dtype": "<u2"}, "`<u2` here, `|u1` in the stream"),
        ({"ctype": ctypes.c_int16}, "here, `|u1` in the stream"),
        ({"dtype": ("u1", (4,))}, "trailing shape (4,) here, (4, 6, 3) in the stream"),
    ],
)
def test_mismatch_is_named(name, cam, kwargs, message):
    with pytest.raises(shmlane.LayoutMismatch, match=f"^stream '{name}': ") as exc:
        shmlane.Reader(name, **kwargs)
    assert message in str(exc.value)
    assert cam.info().readers == 0  # the reader that failed left the table


def test_same_words_as_open(name, new_name):
    """The difference is described as open() describes it for a segment."""
    seg_name = new_name()
    xy = np.dtype([("x", "<f4"), ("y", "<f4")])
    with shmlane.create(seg_name, shape=(2,), ctype=Point) as seg, shmlane.Writer(
        name, shape=(2,), dtype=xy
    ):
        del seg
        want = np.dtype([("x", "<f4"), ("z", "<f4")])
        with pytest.raises(shmlane.LayoutMismatch) as by_open:
            shmlane.open(seg_name, dtype=want)
        with pytest.raises(shmlane.LayoutMismatch) as by_reader:
            shmlane.Reader(name, dtype=want)
        opened = str(by_open.value).replace(f"segment '{seg_name}'", "X").replace("segment", "Y")
        read = str(by_reader.value).replace(f"stream '{name}'", "X").replace("stream", "Y")
        assert opened == read
        with shmlane.Reader(name, ctype=Point, shape=(2,)) as r:
            assert r.dtype == xy


def test_bad_request_is_refused_before_waiting(name):
    with pytest.raises(ValueError, match=f"stream '{name}': dtype and ctype disagree"):
        shmlane.Reader(name, dtype="<f8", ctype=ctypes.c_int32, timeout=30)

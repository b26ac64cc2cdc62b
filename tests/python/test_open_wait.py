"""open(name, timeout=...) waits for a name that does not exist yet, created
later by another process, in either start order; without a timeout a
missing name fails at once, as before."""

from __future__ import annotations

import json
import threading
import time

import pytest

import shmlane
from conftest import expect_line, read_line

AT_ONCE = 0.5  # far above an open that does not wait, even on a loaded machine

CREATOR = """
import sys, time
import shmlane

time.sleep(float(sys.argv[2]))
seg = shmlane.create(sys.argv[1], shape=(3,), dtype="<u2")
print("created", flush=True)
"""  # exits without unlinking: the segment stays

OPENER = """
import json, sys
import shmlane

print("waiting", flush=True)
seg = shmlane.open(sys.argv[1], timeout=30, readonly=True)
print(json.dumps({"dtype": seg.dtype.str, "shape": list(seg.shape)}), flush=True)
"""


def test_default_fails_at_once(name):
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundError):
        shmlane.open(name)
    assert time.monotonic() - t0 < AT_ONCE


def test_timeout_expires(name):
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundError):
        shmlane.open(name, timeout=0.3)
    took = time.monotonic() - t0
    assert 0.3 <= took < 0.3 + AT_ONCE
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundError):
        shmlane.open(name, timeout=0)  # one look
    assert time.monotonic() - t0 < AT_ONCE


def test_waits_for_a_creator_started_later(name, spawn_py):
    creator = spawn_py(CREATOR, name, "0.3")
    t0 = time.monotonic()
    with shmlane.open(name, timeout=30, dtype="<u2", shape=(3,)) as seg:
        assert time.monotonic() - t0 >= 0.2
        assert seg.shape == (3,)
    assert read_line(creator) == "created"
    assert creator.wait(timeout=30) == 0


def test_opener_in_another_process_waits(name, spawn_py):
    opener = spawn_py(OPENER, name)
    expect_line(opener, "waiting")
    time.sleep(0.2)
    with shmlane.create(name, shape=(3,), dtype="<u2"):
        got = json.loads(read_line(opener))
    assert got == {"dtype": "<u2", "shape": [3]}
    assert opener.wait(timeout=30) == 0


def test_creator_first(name, run_py):
    run_py(CREATOR, name, "0")
    t0 = time.monotonic()
    with shmlane.open(name, timeout=5) as seg:
        assert seg.shape == (3,)
    assert time.monotonic() - t0 < AT_ONCE
    with shmlane.open(name) as seg:  # the default, as before
        assert seg.dtype.str == "<u2"


def test_no_limit(name):
    def create() -> None:
        shmlane.create(name, shape=(2,), dtype="<i4").close()

    timer = threading.Timer(0.2, create)
    timer.start()
    try:
        with shmlane.open(name, timeout=None) as seg:
            assert seg.shape == (2,)
    finally:
        timer.join()

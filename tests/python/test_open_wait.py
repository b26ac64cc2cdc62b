"""open(name, timeout=...) waits for a name that does not exist yet, created
later by another process, in either start order; without a timeout a
missing name fails at once, as before."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

import shmlane
from conftest import ROOT, build_c, expect_line, read_line

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


# Across languages: a C opener waits for a Python creator, and the reverse.


@pytest.fixture(scope="module")
def c_peer_exe(tmp_path_factory):
    return build_c(ROOT / "tests/python/c_peer.c", tmp_path_factory.mktemp("c_peer_wait"))


def test_c_opener_waits_for_a_python_creator(name, c_peer_exe):
    opener = subprocess.Popen(
        [str(c_peer_exe), "wait-read-array", name], stdout=subprocess.PIPE, text=True
    )
    try:
        expect_line(opener, "waiting")
        time.sleep(0.2)
        with shmlane.create(name, shape=(2, 3), dtype="<f8"):
            out, _ = opener.communicate(timeout=30)
    finally:
        opener.kill()
        opener.wait()
    assert opener.returncode == 0
    assert out.split()[:2] == ["<d", "2,3"]


def test_python_opener_waits_for_a_c_creator(name, c_peer):
    seen = {}

    def opener() -> None:
        with shmlane.open(name, timeout=30, readonly=True) as seg:
            seen["layout"] = (seg.dtype.str, seg.shape)

    thread = threading.Thread(target=opener)
    thread.start()
    time.sleep(0.2)
    assert "layout" not in seen  # still waiting
    c_peer("create-array", name)
    thread.join(timeout=30)
    assert seen["layout"] == ("<f8", (2, 3))
    with shmlane.open(name) as seg:
        assert seg.array.ravel().tolist() == [i * 1.5 for i in range(6)]

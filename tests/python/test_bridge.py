"""The bridge seen from Python (docs/bridge.md): a Python writer with a
metadata record on "host A", `shmlane bridge send` and `recv` over ipc://,
and a Python Reader on "host B" that checks the layout as for a local stream,
gets the frames with their metadata and sequence numbers, and follows a
layout change. Skipped when the bridge was not built (no libzmq)."""

from __future__ import annotations

import ctypes
import subprocess
import threading
import time
from typing import Callable, Iterator, List

import numpy as np
import pytest

import shmlane

from conftest import core_build


class Header(ctypes.Structure):
    _fields_ = [("frame", ctypes.c_uint64), ("exposure", ctypes.c_float)]


@pytest.fixture
def bridge(new_name: Callable[[], str], tmp_path) -> Iterator[Callable[[], tuple]]:
    """Starts a send/recv pair; (name on A, name on B)."""
    program = core_build() / "bridge" / "shmlane-bridge"
    if not program.is_file():
        pytest.skip("shmlane-bridge not built (needs libzmq: make deps)")
    procs: List[subprocess.Popen] = []
    sockdir = tmp_path

    def start() -> tuple:
        a, b = new_name(), new_name()
        endpoint = "ipc://%s/%s.sock" % (sockdir, a)
        for args in (["send", a, endpoint], ["recv", endpoint, b]):
            procs.append(subprocess.Popen([str(program), *args, "--quiet"],
                                          stderr=subprocess.PIPE, text=True))
        return a, b

    yield start
    for p in procs:
        p.terminate()
        _, err = p.communicate(timeout=10)
        assert p.returncode == 0, err


def publishing(w: shmlane.Writer, stop: threading.Event) -> threading.Thread:
    """Publishes frame n (every element n % 256, meta.frame n) every 10 ms."""

    def run() -> None:
        n = 0
        while not stop.wait(0.01):
            n += 1
            with w.loan() as frame:
                frame[...] = n % 256
                w.meta.frame, w.meta.exposure = n, n / 4

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_frames_metadata_and_layout_change(bridge: Callable[[], tuple]) -> None:
    a, b = bridge()
    stop = threading.Event()
    w = shmlane.Writer(a, shape=(4, 5), dtype="u1", slots=4, meta=Header)
    t = publishing(w, stop)
    try:
        # Verified like a local stream: shape, dtype and metadata layout.
        r = shmlane.Reader(b, shape=(4, 5), dtype="u1", meta=Header, policy="all", timeout=10)
        follower = shmlane.Reader(b, meta=Header, timeout=0)  # any layout
        last = 0
        for _ in range(20):
            with r.receive(timeout=5) as s:
                n = s.meta.frame
                assert isinstance(s.meta, Header) and s.meta.exposure == n / 4
                assert (s.array == n % 256).all() and s.seq == n  # the sender's numbers
                assert s.seq > last
                last = s.seq
        stop.set()
        t.join()
        w.close()
        r.close()
        # Host A's stream replaced by another layout: readers follow. Between
        # the close and the new writer they see WriterGone, as on host A.
        stop.clear()
        w = shmlane.Writer(a, shape=(2, 3), dtype="<f4", slots=4, meta=Header, replace=True)
        t = publishing(w, stop)
        new = False
        for _ in range(200):
            try:
                with follower.receive(timeout=5) as s:
                    new = s.new_stream
            except shmlane.WriterGone:
                time.sleep(0.02)
                continue
            if new:
                break
        assert new and follower.shape == (2, 3) and follower.dtype == np.dtype("<f4")
        with follower.receive(timeout=5) as s:
            assert (s.array == s.meta.frame % 256).all() and s.meta.exposure == s.meta.frame / 4
        follower.close()
    finally:
        stop.set()
        t.join()
        w.close()

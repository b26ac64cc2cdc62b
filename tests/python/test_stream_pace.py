"""Reader(spin="auto"), the predictive wait: the reader learns the stream's
pace from its frames' publish times and polls (from Python, so that the
interpreter's path is warm) only while the next frame is due. What is
checked is behaviour, never time: every frame arrives, at one pace and at
another; once frames stop the receiving thread ends up asleep in the futex
and stays there (context switches from /proc); an idle reader makes no
wake-up; time-outs hold. The arithmetic of the prediction (windows, rate
changes, a stopped writer) is tests/c/test_stream_pace.c's."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import shmlane
from conftest import blocked_in_futex, blocked_in_thread, expect_line, futex_waitv_expected

PACED_WRITER = """
import sys, time
import numpy as np
import shmlane
frame = np.zeros(8, "<u8")
with shmlane.Writer(sys.argv[1], shape=(8,), dtype="<u8") as writer:
    print("ready", flush=True)
    sys.stdin.readline()
    at = time.monotonic()
    for i in range(40):  # 4 ms apart, then 8 ms, on an absolute schedule
        at += 0.004 if i < 20 else 0.008
        time.sleep(max(0.0, at - time.monotonic()))
        frame[...] = i + 1
        writer.publish(frame)
    print("done", flush=True)
    sys.stdin.readline()  # alive, publishing nothing, until told
"""


def switches(tid: int) -> int:
    """Voluntary and involuntary context switches of thread tid of this process."""
    with open(f"/proc/self/task/{tid}/status") as f:
        return sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)


def settles(reader: shmlane.Reader) -> tuple:
    """A receive that gets nothing, in a thread: (context switches of that
    thread over 0.2 s from when it is first asleep in the futex, asleep
    again at the end). A reader that kept polling is never asleep; one that
    kept predicting frames wakes each period."""
    thread, outcome = blocked_in_thread(reader.receive, timeout=0.4)
    tid = thread.native_id
    before = switches(tid)
    time.sleep(0.2)
    woke = switches(tid) - before
    asleep = blocked_in_futex(tid, timeout=0.05)
    thread.join(10)
    assert [type(x) for x in outcome] == [TimeoutError]
    return woke, asleep


def test_spin_auto_is_asked_by_name(name):
    with shmlane.Writer(name, shape=(8,), dtype="<u8"):
        with pytest.raises(ValueError, match="spin"):
            shmlane.Reader(name, spin="fast")
        with shmlane.Reader(name, spin="auto") as reader:
            assert reader._raw.spin_ns == shmlane._shmlane.SPIN_AUTO
        with shmlane.Reader(name, spin=0.0005) as reader:
            reader._raw.spin_ns = shmlane._shmlane.SPIN_AUTO  # and back
            reader._raw.spin_ns = 1000
            assert reader._raw.spin_ns == 1000
            with pytest.raises(ValueError):
                reader._raw.spin_ns = 2_000_000


def test_every_frame_at_two_paces_then_a_plain_sleep(name, spawn_py):
    if not futex_waitv_expected():
        pytest.skip("readers sleep in slices without futex_waitv (Linux 5.16)")
    writer = spawn_py(PACED_WRITER, name)
    expect_line(writer, "ready")
    with shmlane.Reader(name, policy="all", spin="auto") as reader:
        writer.stdin.write("go\n")
        writer.stdin.flush()
        for want in range(1, 41):
            with reader.receive(timeout=5) as sample:
                assert (sample.seq, sample.lost, int(sample.array[0])) == (want, 0, want)
        expect_line(writer, "done")
        woke, asleep = settles(reader)
        assert asleep and woke <= 3, f"{woke} context switches in 0.2 s, asleep {asleep}"
    writer.stdin.write("end\n")
    writer.stdin.flush()


def test_an_idle_reader_makes_no_wake_up(name):
    if not futex_waitv_expected():
        pytest.skip("readers sleep in slices without futex_waitv (Linux 5.16)")
    with shmlane.Writer(name, shape=(8,), dtype="<u8") as writer:
        with shmlane.Reader(name, spin="auto") as reader:
            woke, asleep = settles(reader)  # no frame ever
            assert asleep and woke <= 1
            for value in (1, 2, 3):  # three frames 5 ms apart: a pace, then nothing
                writer.publish(np.full(8, value, "<u8"))
                with reader.receive(timeout=5) as sample:
                    assert int(sample.array[0]) == value
                time.sleep(0.005)
            woke, asleep = settles(reader)
            assert asleep and woke <= 3


def test_time_outs_hold(name):
    with shmlane.Writer(name, shape=(8,), dtype="<u8") as writer:
        with shmlane.Reader(name, spin="auto") as reader:
            with pytest.raises(TimeoutError):
                reader.receive(timeout=0)
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                reader.receive(timeout=0.05)
            assert time.monotonic() - t0 >= 0.05
            threading.Timer(0.05, writer.publish, (np.full(8, 7, "<u8"),)).start()
            with reader.receive(timeout=5) as sample:
                assert int(sample.array[0]) == 7

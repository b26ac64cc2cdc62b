"""Reader(spin="auto"), the predictive wait: the reader learns the stream's
pace from its frames' publish times and, once the next frame is due, takes
a frame's way on the core's stand-in (so that the interpreter's path is
warm) before the core waits for the frame. What is checked is behaviour,
never time: every frame arrives, at one pace and at another; once frames
stop the receiving thread ends up asleep in the futex and stays there
(context switches from /proc); an idle reader makes no wake-up; time-outs
hold; the stand-in pins nothing and exports no frame. The arithmetic of the
prediction (windows, rate changes, a stopped writer, the caller's warm-up)
is tests/c/test_stream_pace.c's."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import shmlane
from shmlane._stream_layout import frames
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


def due_stand_in(writer: shmlane.Writer, reader: shmlane.Reader) -> object:
    """receive_due()'s answer once the window after a frame opens: the writer
    declared its rate, so one frame predicts the next, which never comes. A
    reader that overslept the whole window (a loaded machine) times out, and
    tries again."""
    for attempt in range(20):
        writer.publish(np.full(writer.shape, attempt, writer.dtype))
        reader.receive(timeout=5).release()
        try:
            return reader._raw.receive_due(0.5)
        except TimeoutError:
            continue
    pytest.fail("the window never opened")


def test_a_due_poll_answers_with_a_stand_in(name):
    with shmlane.Writer(name, shape=(8,), dtype="<u8", fps=50, meta="<u4") as writer:
        with shmlane.Reader(name, spin="auto", max_pinned=1) as reader:
            standin = due_stand_in(writer, reader)
            assert standin.standin and not standin.pinned and not standin.released
            assert (standin.seq, standin.timestamp_ns, standin.lost) == (0, 0, 0)
            assert standin.meta == bytes(4)  # a record of zeros
            for _ in range(2):  # rehearsed with, released, and again
                assert np.asarray(standin).shape == (0, 8)
                standin.release()
                assert not standin.released
            writer.publish(np.full(8, 99, "<u8"))  # it pins nothing: max_pinned=1 has room
            with reader.receive(timeout=5) as sample:
                assert int(sample.array[0]) == 99 and not sample._raw.standin
            reader.close()
            with pytest.raises(BufferError, match="closed"):
                memoryview(standin)


def test_frames_after_the_window(name):
    """A frame that comes after its window, when receive() has taken a
    frame's way with the stand-in: structured frames (zero of them) and a
    metadata record (zeros) included."""
    pose = np.dtype([("t", "<u8"), ("xy", "<f4", (2,))], align=True)
    with shmlane.Writer(name, shape=(3,), dtype=pose, fps=50, meta=[("n", "<u4")]) as writer:
        with shmlane.Reader(name, spin="auto") as reader:
            wrap, dtype, shape = frames(reader._raw)
            assert wrap is not np.asarray and wrap(reader._raw).shape == (0, 3)
            for t in (1, 2, 3):
                frame = np.zeros(3, pose)
                frame["t"] = t
                writer.meta["n"] = t
                threading.Timer(0.04, writer.publish, (frame,)).start()  # 2 periods
                with reader.receive(timeout=5) as sample:
                    assert sample.array["t"].tolist() == [t] * 3 and sample.meta["n"] == t

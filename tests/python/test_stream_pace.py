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


def test_samples_made_ahead_keep_their_frames(name):
    """In the window, receive() makes each slot's Sample and array before a
    frame lands there (_prepare); the receive that pins a frame in a slot
    hands out that slot's, with its array. What it hands out keeps its frame
    as any sample does; the ones never handed out pin nothing, and are let
    go with their reader."""
    with shmlane.Writer(name, shape=(8,), dtype="<u8") as writer:
        with shmlane.Reader(name, spin="auto", max_pinned=3) as reader:
            assert reader._raw.prepare() == []  # no slot's address known yet
            known = set()
            for value in range(1, 5):
                writer.publish(np.full(8, value, "<u8"))
                with reader.receive(timeout=5) as sample:
                    known.add(sample._raw.slot)
            made = reader._raw.prepare()
            assert {raw.slot for raw in made} == known and not any(raw.pinned for raw in made)
            assert all(np.asarray(raw).shape == (8,) for raw in made)
            kept, handed = [], 0
            for value in range(5, 25):
                reader._prepare()
                assert reader._raw.prepare() == []  # each known slot has its object
                writer.publish(np.full(8, value, "<u8"))
                got = reader._raw.receive_ready(5)
                ahead = isinstance(got, shmlane.Sample)  # the one made for its slot
                sample = got if ahead else shmlane.Sample(got, reader._wrap, None)
                assert ahead == (sample._raw.slot in known) and sample._raw.pinned
                assert not ahead or sample._array is not None
                handed += ahead
                known.add(sample._raw.slot)
                assert (sample.seq, int(sample.array[0])) == (value, value)
                if value in (8, 13):
                    kept.append((sample.array, value))  # pins its slot past release()
                sample.release()
            assert handed >= 15
            for array, value in kept:  # the writer put no frame there since
                assert array.tolist() == [value] * 8
            with pytest.raises(ValueError, match="prepare"):
                reader._raw.ready(made[0], object())  # handed out, or has its object
            writer.publish(np.full(8, 25, "<u8"))
            reader._raw.receive_ready(5).release()
            left = reader._raw.prepare()  # for the slots handed out since _prepare()
            assert left and np.asarray(left[0]).shape == (8,)
        # closed, though the kept arrays pin their frames: it exports nothing
        with pytest.raises(BufferError, match="let this sample go"):
            memoryview(left[0])
        for array, value in kept:
            assert array.tolist() == [value] * 8


def test_a_followed_stream_gets_no_sample_made_for_the_old_one(name):
    with shmlane.Writer(name, shape=(8,), dtype="<u8") as writer:
        reader = shmlane.Reader(name, spin="auto")
        for value in range(1, 9):
            writer.publish(np.full(8, value, "<u8"))
            reader.receive(timeout=5).release()
        old = reader._raw.prepare()
        reader._prepare()  # their objects
        assert old and reader._raw.prepare() == []
    with shmlane.Writer(name, shape=(4,), dtype="<u2", replace=True) as writer:
        writer.publish(np.full(4, 7, "<u2"))
        with reader:
            raw = reader._raw.receive_ready(5)
            assert not isinstance(raw, shmlane.Sample) and raw.new_stream
            assert np.asarray(raw).shape == (4,)
            fresh = reader._raw.prepare()  # the new stream's slot known so far
            assert [x.slot for x in fresh] == [raw.slot] and np.asarray(fresh[0]).shape == (4,)
            raw.release()
            with pytest.raises(BufferError, match="let this sample go"):
                memoryview(old[0])


def test_receive_is_the_extension_s_call(name):
    """spin="auto": receive() is the extension's own call, so a frame made
    ready ahead goes back with no Python frame on its way; it takes the
    time-out as receive() does, by position or by name, and nothing else."""
    with shmlane.Writer(name, shape=(8,), dtype="<u8", fps=100) as writer:
        with shmlane.Reader(name, spin="auto") as reader:
            plain = shmlane.Reader(name)
            assert reader.receive.__self__ is reader._raw and plain.receive.__self__ is plain
            plain.close()
            with pytest.raises(TypeError, match="timeout"):
                reader.receive(timeout=1, wait=2)
            with pytest.raises(TypeError, match="timeout"):
                reader.receive(1, 2)
            with pytest.raises(TypeError, match="timeout"):
                reader.receive(wait=1)
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                reader.receive(timeout=0.05)
            assert 0.05 <= time.monotonic() - start < 2
            for value in range(1, 30):  # a pace of 100 fps: frames in their windows
                threading.Timer(0.01, writer.publish, (np.full(8, value, "<u8"),)).start()
                sample = reader.receive(5) if value % 2 else reader.receive(timeout=5)
                assert isinstance(sample, shmlane.Sample)
                assert (sample.seq, sample.array.tolist()) == (value, [value] * 8)
                sample.release()


def test_receive_of_a_reader_dropped_meanwhile(name):
    """The extension reaches the reader through weak methods: a reader that
    is dropped is closed at once, as without spin="auto", and its receive()
    kept elsewhere says so."""
    with shmlane.Writer(name, shape=(8,), dtype="<u8") as writer:
        reader = shmlane.Reader(name, spin="auto")
        receive = reader.receive
        assert writer.info().readers == 1
        del reader
        with pytest.raises(ReferenceError, match="Reader .* is gone"):
            receive(0)
        del receive
        assert writer.info().readers == 0


def test_receive_of_a_closed_reader_says_it_is_closed(name):
    """A closed reader's receive() raises what it raises without spin="auto"
    (ValueError), also once the core's reader is gone with its weak methods,
    and from a receive() taken before the close."""
    with shmlane.Writer(name, shape=(8,), dtype="<u8"):
        reader = shmlane.Reader(name, spin="auto")
        receive = reader.receive
        reader.close()
        for call in (reader.receive, receive):
            with pytest.raises(ValueError, match="is closed"):
                call(0)
            with pytest.raises(ValueError, match="is closed"):
                call(timeout=None)


def test_a_refused_follow_ends_the_fast_path(name):
    """A stream replaced by one of a layout the reader did not ask for:
    LayoutChanged, and again at every later receive()."""
    with shmlane.Writer(name, shape=(8,), dtype="<u8") as writer:
        reader = shmlane.Reader(name, spin="auto", shape=(8,), dtype="<u8")
        writer.publish(np.full(8, 1, "<u8"))
        reader.receive(timeout=5).release()
    with shmlane.Writer(name, shape=(4,), dtype="<u2", replace=True) as writer:
        writer.publish(np.full(4, 7, "<u2"))
        with reader:
            for _ in range(2):
                with pytest.raises(shmlane.LayoutChanged, match="does not accept"):
                    reader.receive(timeout=5)

"""Streams within one process: the API, modes, lifetime and pinning, errors,
threads and asyncio. Tests across processes are in test_stream_processes.py."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import fcntl
import gc
import os
import queue
import struct
import subprocess
import sys
import threading
import time
from typing import Callable

import numpy as np
import pytest

import shmlane
from conftest import (
    SHM_DIR,
    blocked_in_futex,
    blocked_in_thread,
    check_async_wait,
    fork_gets_fork_error,
    futex_waitv_expected,
    sleeping,
    sleeps,
)

SHAPE = (4, 8, 3)  # rows of 24 bytes: three little-endian uint64 stamps each


def stamp(frame: np.ndarray, seq: int) -> None:
    """Every 8 bytes of the frame hold its sequence number."""
    frame.reshape(-1).view("<u8")[...] = seq


def stamped(array: np.ndarray, seq: int) -> bool:
    return bool((array.reshape(-1).view("<u8") == seq).all())


def publish(writer: shmlane.Writer, n: int = 1) -> None:
    for _ in range(n):
        seq = writer.next_seq
        with writer.loan(timeout=5) as frame:
            stamp(frame, seq)


@pytest.fixture
def stream(name):
    with shmlane.Writer(name, shape=SHAPE, dtype="u1", slots=4) as writer:
        yield writer


def test_loan_publish_receive(stream, name):
    with shmlane.Reader(name, policy="all") as reader:
        assert (reader.dtype, reader.shape, reader.policy) == (np.dtype("u1"), SHAPE, "all")
        assert (stream.dtype, stream.shape, stream.next_seq) == (np.dtype("u1"), SHAPE, 1)
        with stream.loan() as frame:
            assert frame.shape == SHAPE and frame.flags.writeable
            stamp(frame, 1)
        assert not frame.flags.writeable  # published: writing now would change a shared frame
        assert stream.publish(np.full(SHAPE, 2, np.uint8)) == 2
        before = time.monotonic_ns()
        with reader.receive(timeout=5) as sample:
            assert (sample.seq, sample.lost) == (1, 0)
            assert stamped(sample.array, 1)
            assert not sample.array.flags.writeable
            assert sample.timestamp_ns <= before  # CLOCK_MONOTONIC, as time.monotonic_ns()
            assert before - sample.timestamp_ns < 60e9
        with reader.receive(timeout=5) as sample:
            assert sample.seq == 2 and (sample.array == 2).all()
        with pytest.raises(TimeoutError, match=name):
            reader.receive(timeout=0)


def test_spinning_reader(stream, name):
    for bad in (-1e-6, 0.002, float("nan")):
        with pytest.raises(ValueError, match="spin"):
            shmlane.Reader(name, spin=bad)
    with shmlane.Reader(name, policy="all", spin=0.001) as reader:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            reader.receive(timeout=0.0005)  # the spin counts against the timeout
        assert time.monotonic() - start < 5
        # A frame that comes after the spin, while the reader sleeps, wakes it.
        tid = threading.get_native_id()
        thread = threading.Thread(target=lambda: blocked_in_futex(tid) and publish(stream))
        thread.start()
        try:
            with reader.receive(timeout=30) as sample:
                assert sample.seq == 1 and stamped(sample.array, 1)
        finally:
            thread.join()


# Publishes a frame, on each line read, 200 us after reading it; at
# real-time priority where permitted, as the reader.
SPIN_PEER = """
import os, sys, time
import numpy as np
import shmlane
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
except PermissionError:
    pass
frame = np.zeros(8, "<u8")
with shmlane.Writer(sys.argv[1], shape=(8,), dtype="<u8") as writer:
    print("ready", flush=True)
    for line in sys.stdin:
        until = time.perf_counter() + 0.0002
        frame[...] = writer.next_seq
        while time.perf_counter() < until:
            pass
        writer.publish(frame)
        print("published", flush=True)
"""


def test_frame_inside_the_spin_is_taken_without_sleeping(name):
    # The C test (test_stream.c, test_spin_taken) explains the trials. Here
    # the writer is another interpreter, so that no GIL hand-off puts this
    # thread to sleep: it asks for a frame and receives at once, the peer
    # publishes it 200 us later, inside the 1 ms spin.
    trials, needed = 30, 10
    peer = subprocess.Popen([sys.executable, "-c", SPIN_PEER, name], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    policy = os.sched_getscheduler(0)
    try:
        assert peer.stdout.readline() == "ready\n"
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except PermissionError:
            print("note: no real-time priority here; spin trials may be disturbed")
        spun = 0
        with shmlane.Reader(name, policy="all", spin=0.001, timeout=30) as reader:
            for seq in range(1, trials + 1):
                before = sleeps()
                peer.stdin.write("go\n")
                peer.stdin.flush()
                with reader.receive(timeout=30) as sample:
                    spun += sleeps() == before
                    assert sample.seq == seq and (sample.array == seq).all()
                assert peer.stdout.readline() == "published\n"
        assert spun >= needed, f"only {spun} of {trials} frames taken while spinning"
    finally:
        os.sched_setscheduler(0, policy, os.sched_param(0))
        peer.stdin.close()
        assert peer.wait(timeout=30) == 0


def test_loan_discarded_on_exception_or_drop(stream, name):
    with shmlane.Reader(name, policy="all") as reader:
        with pytest.raises(ZeroDivisionError):
            with stream.loan() as frame:
                stamp(frame, 99)
                1 / 0
        loan = stream.loan()
        del loan  # dropped unpublished: discarded
        loan = stream.loan()
        loan.discard()
        assert loan.array is None
        with pytest.raises(ValueError, match="already discarded"):
            loan.publish()
        with pytest.raises(TimeoutError):
            reader.receive(timeout=0.05)
        assert stream.next_seq == 1
        publish(stream)
        assert reader.receive(timeout=5).seq == 1


def test_one_loan_at_a_time(stream):
    loan = stream.loan()
    with pytest.raises(RuntimeError, match="already outstanding"):
        stream.loan()
    assert loan.publish() == 1
    stream.loan().discard()


def test_publish_copies_with_numpy_rules(stream, name):
    with shmlane.Reader(name, policy="all") as reader:
        stream.publish(np.arange(3, dtype=np.uint8))  # broadcast over rows
        with reader.receive(timeout=5) as sample:
            assert (sample.array[2, 5] == [0, 1, 2]).all()
        with pytest.raises(TypeError):
            stream.publish(np.zeros(SHAPE, np.float64))  # no unsafe cast
        with pytest.raises(ValueError):
            stream.publish(np.zeros((2, 2), np.uint8))
        assert stream.next_seq == 2  # the failed copies were discarded
        stream.loan().publish()  # no loan was left outstanding


def test_copying_calls_for_small_messages(stream, name):
    frame = np.arange(np.prod(SHAPE), dtype=np.uint8).reshape(SHAPE)
    out = np.empty(SHAPE, np.uint8)
    with shmlane.Reader(name, policy="all") as reader:
        assert stream.publish(frame) == 1  # exact dtype and shape: the one-call copy
        assert stream.publish(np.asfortranarray(frame)) == 2  # not C-contiguous: np.copyto
        seq, timestamp_ns, lost = reader.receive_into(out, timeout=5)
        assert (seq, lost) == (1, 0) and (out == frame).all()
        assert 0 < timestamp_ns <= time.monotonic_ns()
        assert reader.receive_into(out.reshape(-1), timeout=5)[0] == 2  # any shape of the bytes
        assert (out == frame).all()
        with pytest.raises(TimeoutError):
            reader.receive_into(out, timeout=0)
        for bad, error in ((np.empty(SHAPE, np.uint16), ValueError),  # twice the bytes
                           (np.empty((2, 2), np.uint8), ValueError),
                           (out[:, ::2], ValueError),  # not contiguous
                           (bytes(out.nbytes), BufferError)):  # read-only
            with pytest.raises(error):
                reader.receive_into(bad, timeout=0)
        stream.publish(frame + 1)
        tid = threading.get_native_id()  # frame 4 comes once this thread waits for it
        publisher = threading.Thread(target=lambda: blocked_in_futex(tid) and stream.publish(frame + 2))
        publisher.start()
        try:
            assert reader.receive_into(out, timeout=30)[0] == 3 and (out == frame + 1).all()
            assert reader.receive_into(out, timeout=30)[0] == 4 and (out == frame + 2).all()
        finally:
            publisher.join()
    with pytest.raises(ValueError, match="closed"):
        reader.receive_into(out, timeout=0)
    with shmlane.Reader(name) as reader:
        for _ in range(8):  # twice round the ring: a slot left pinned would leave no free slot
            stream.publish(frame, timeout=1)
            reader.receive_into(out, timeout=5)


def test_latest_mode_skips_to_the_newest(stream, name):
    with shmlane.Reader(name) as reader:
        publish(stream)
        assert reader.receive(timeout=5).seq == 1
        publish(stream, 5)
        with reader.receive(timeout=5) as sample:
            assert (sample.seq, sample.lost) == (6, 4)
            assert stamped(sample.array, 6)


def test_all_mode_counts_what_the_writer_lapped(stream, name):
    # max_pinned=2: each sample lives until the next one is received.
    with shmlane.Reader(name, policy="all", max_pinned=2) as reader:
        publish(stream, 20)  # 4 slots: frames 17..20 are left
        got = [(s.seq, s.lost) for s in (reader.receive(timeout=5) for _ in range(4))]
        assert got == [(17, 16), (18, 0), (19, 0), (20, 0)]


def test_iteration_releases_each_sample_and_ends_when_the_writer_is_gone(name):
    writer = shmlane.Writer(name, shape=SHAPE, dtype="u1", slots=3)
    reader = shmlane.Reader(name, policy="all")
    seen = []
    publish(writer)
    for sample in reader:
        seen.append((sample.seq, stamped(sample.array, sample.seq)))
        # One slot is pinned by `sample`, one is the newest: the third is free.
        publish(writer) if sample.seq < 10 else writer.close()
    assert seen == [(seq, True) for seq in range(1, 11)]
    reader.close()


def test_sample_views_kept_past_release_stay_pinned(stream, name):
    def slots_used(frames: int) -> set:
        used = set()
        for _ in range(frames):
            publish(stream)
            with reader.receive(timeout=5) as sample:
                used.add(sample._raw.slot)
        return used

    with shmlane.Reader(name, policy="all", max_pinned=2) as reader:
        publish(stream)
        with reader.receive(timeout=5) as sample:
            slot = sample._raw.slot
            kept = sample.array[1:]  # a view of a view pins all the same
            copy = np.array(sample.array)
        with pytest.raises(ValueError, match="released"):
            sample.array
        used = slots_used(30)  # the three other slots go round and round
        assert slot not in used and len(used) == 3
        assert stamped(kept, 1) and stamped(copy, 1)
        del kept
        gc.collect()
        assert slot in slots_used(8)


def test_every_slot_pinned_makes_loan_time_out(name):
    with shmlane.Writer(name, shape=SHAPE, dtype="u1", slots=2) as writer:
        with shmlane.Reader(name, policy="all", max_pinned=2) as reader:
            publish(writer, 2)
            held = [reader.receive(timeout=5), reader.receive(timeout=5)]
            start = time.monotonic()
            with pytest.raises(TimeoutError, match=f"reader pids: {os.getpid()}"):
                writer.loan(timeout=0.2)
            assert 0.15 < time.monotonic() - start < 10
            held[0].release()
            writer.loan(timeout=5).publish()


def test_writer_close_ends_the_role_at_once(name):
    writer = shmlane.Writer(name, shape=SHAPE, dtype="u1")
    with writer.loan() as frame:  # `frame` stays bound, as after any loop
        stamp(frame, 1)
    reader = shmlane.Reader(name)
    assert reader.receive(timeout=5).seq == 1
    writer.close()
    assert writer.closed and stamped(frame, 1)  # the view outlives the writer
    start = time.monotonic()
    with pytest.raises(shmlane.WriterGone, match=name):
        reader.receive(timeout=10)
    assert time.monotonic() - start < 5
    # The same process may write again: the stream is taken over, numbering goes on.
    with shmlane.Writer(name, shape=SHAPE, dtype="u1") as again:
        assert again.next_seq == 2
        publish(again)
        assert reader.receive(timeout=5).seq == 2
    with pytest.raises(ValueError, match="closed"):
        writer.loan()
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.receive()


def test_close_from_another_thread_ends_a_loan_at_once(name):
    # A loan waiting for a slot is woken by the close itself; before, it
    # woke in slices of 50 ms to look for a close(), and returned at the
    # end of the one under way (about 45 ms each time).
    writer = shmlane.Writer(name, shape=SHAPE, dtype="u1", slots=2)
    with shmlane.Reader(name, policy="all", max_pinned=2) as reader:
        publish(writer, 2)
        held = [reader.receive(timeout=5), reader.receive(timeout=5)]  # every slot
        took = []
        for trial in range(3):
            if trial:
                writer = shmlane.Writer(name, shape=SHAPE, dtype="u1")  # takes it over
            thread, outcome = blocked_in_thread(writer.loan, timeout=60)
            t0 = time.monotonic()
            writer.close()
            thread.join(timeout=10)
            took.append(time.monotonic() - t0)
            assert not thread.is_alive()
            assert [type(x) for x in outcome] == [ValueError] and "closed" in str(outcome[0])
        del held
        assert sorted(took)[1] < 0.02, took


def test_close_discards_an_outstanding_loan(name):
    writer = shmlane.Writer(name, shape=SHAPE, dtype="u1")
    loan = writer.loan()
    writer.close()
    with pytest.raises(ValueError, match="discarded"):
        loan.publish()


def test_views_outlive_reader_and_writer_in_a_fresh_interpreter(name, run_py):
    # A use after unmap would crash the interpreter: run it apart.
    script = """
import gc, sys
import numpy as np
import shmlane
w = shmlane.Writer(sys.argv[1], shape=(64, 64), dtype="<f8")
r = shmlane.Reader(sys.argv[1], policy="all")
with w.loan() as frame:
    frame[...] = 1.5
s = r.receive(timeout=5)
view = s.array[::2]
s.release()
r.close(); w.close()
del r, w, s
gc.collect()
print(float(view.sum()), float(frame.sum()))
"""
    assert run_py(script, name).split() == ["3072.0", "6144.0"]


def test_structured_frames(name):
    pose = np.dtype([("t", "<u8"), ("xy", "<f4", (2,)), ("ok", "?")], align=True)
    with shmlane.Writer(name, shape=(3,), dtype=pose) as writer:
        with shmlane.Reader(name, policy="all") as reader:
            assert reader.dtype == pose and reader.shape == (3,)
            with writer.loan() as frame:
                frame["t"] = [7, 8, 9]
                frame["xy"] = 0.5
            with reader.receive(timeout=5) as sample:
                assert sample.array["t"].tolist() == [7, 8, 9]
                assert sample.array["xy"].tolist() == [[0.5, 0.5]] * 3


def expect_frame_from_a_late_writer(name: str, before: Callable[[], object] = lambda: None) -> None:
    """A reader opened now gets frame 1 from a writer that a thread creates
    once the reader polls for the stream, after calling before()."""
    tid = threading.get_native_id()

    def create_later() -> None:
        assert sleeping(tid)
        before()
        with shmlane.Writer(name, shape=SHAPE, dtype="u1") as writer:
            publish(writer)
            time.sleep(0.5)

    thread = threading.Thread(target=create_later)
    thread.start()
    try:
        with shmlane.Reader(name, timeout=30) as reader:
            assert reader.receive(timeout=30).seq == 1
    finally:
        thread.join()


def test_reader_waits_for_the_stream_to_appear(name):
    expect_frame_from_a_late_writer(name)
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match="no stream 'nothing-here' appeared within the "
                       "reader's timeout: a Writer creates it") as absent:
        shmlane.Reader("nothing-here", timeout=0.2)
    assert absent.value.errno == errno.ENOENT and absent.value.filename == "nothing-here"
    assert time.monotonic() - start < 10


def test_busy_and_mismatch_errors(name, new_name):
    with shmlane.Writer(name, shape=SHAPE, dtype="u1", slots=4, max_readers=1) as writer:
        with pytest.raises(shmlane.StreamBusy, match=rf"live writer \(pid {os.getpid()}\) holds") as busy:
            shmlane.Writer(name, shape=SHAPE, dtype="u1")
        assert busy.value.errno == errno.EBUSY and isinstance(busy.value, OSError)
        with shmlane.Reader(name):
            with pytest.raises(shmlane.StreamBusy, match="reader table is full") as full:
                shmlane.Reader(name)
            assert full.value.errno == errno.EUSERS
        writer.close()
        with pytest.raises(shmlane.LayoutMismatch, match=r"other frames: shape \(4, 8\) here, \(4, 8, 3\) in the stream"):
            shmlane.Writer(name, shape=(4, 8), dtype="u1")
        with pytest.raises(shmlane.LayoutMismatch, match=r"other frames: element type: `<u2` here, `\|u1` in the stream"):
            shmlane.Writer(name, shape=SHAPE, dtype="<u2")
        with pytest.raises(shmlane.LayoutMismatch, match="other slots: 5 here, 4 in the stream"):
            shmlane.Writer(name, shape=SHAPE, dtype="u1", slots=5)
    with pytest.raises(ValueError, match=r"shmlane\.Reader"):
        shmlane.open(name)
    array_name = new_name()
    with shmlane.create(array_name, shape=(2,), dtype="<f8"):
        with pytest.raises(shmlane.LayoutMismatch, match="not a stream"):
            shmlane.Reader(array_name)
        with pytest.raises(shmlane.LayoutMismatch, match="not a stream"):
            shmlane.Writer(array_name, shape=(2,), dtype="<f8")


def test_reader_waits_while_the_stream_is_being_created(name):
    # A zero-filled object is what a creator leaves until the header is ready;
    # it holds the creator role (an OFD lock on byte 2**50) all along.
    planted = SHM_DIR / f"shl.{name}"
    fd = os.open(planted, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, bytes(4096))
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 2**50, 1, 0))
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="being initialised"):
        shmlane.Reader(name, timeout=0.3)  # the whole time, not one 50 ms slice
    assert 0.25 < time.monotonic() - start < 10

    def creator_gone() -> None:
        planted.unlink()
        os.close(fd)

    expect_frame_from_a_late_writer(name, before=creator_gone)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"slots": 1}, "slots"),
        ({"slots": 65}, "slots"),
        ({"max_readers": 0}, "max_readers"),
        ({"dtype": object}, "object"),
    ],
)
def test_writer_arguments(name, kwargs, message):
    args = {"shape": SHAPE, "dtype": "u1", **kwargs}
    with pytest.raises(ValueError, match=message):
        shmlane.Writer(name, **args)


def test_reader_mode_is_checked(name):
    with pytest.raises(ValueError, match="'latest' or 'all'"):
        shmlane.Reader(name, policy="newest")


def test_list_shows_streams(stream, name):
    publish(stream, 3)
    with shmlane.Reader(name):
        (info,) = [i for i in shmlane.list() if i.name == name]
    assert (info.kind, info.dtype, info.shape) == ("stream", np.dtype("u1"), SHAPE)
    assert info.stream is not None
    assert (info.stream.slots, info.stream.readers, info.stream.last_seq) == (4, 1, 3)
    assert info.stream.writer_alive is True and not info.stream.block
    assert len(info.stream.reader_entries) == 1
    assert stream.info() == info.stream._replace(readers=0, reader_entries=())


def test_release_from_another_thread_while_receiving(name):
    # A consumer thread drops the arrays while the receiving thread blocks:
    # releases queue up, and the receiving thread is woken to make them, so
    # the writer, needing those slots, never stalls.
    frames = 60
    arrays: queue.Queue = queue.Queue(maxsize=1)
    sums = []

    def consume() -> None:
        for _ in range(frames):
            array = arrays.get(timeout=30)
            sums.append(int(array.reshape(-1).view("<u8")[0]))
            del array

    # block=True: the writer never laps the reader, so every frame arrives
    # however the threads are scheduled, and it must wait for the releases.
    with shmlane.Writer(name, shape=SHAPE, dtype="u1", slots=3, block=True) as writer:
        with shmlane.Reader(name, policy="all", max_pinned=2) as reader:

            def receive() -> None:
                for _ in range(frames):
                    with reader.receive(timeout=30) as sample:
                        arrays.put(sample.array, timeout=30)

            threads = [threading.Thread(target=consume), threading.Thread(target=receive)]
            for thread in threads:
                thread.start()
            try:
                for _ in range(frames):
                    publish(writer)  # loan(timeout=5): raises if slots stay pinned
                    time.sleep(0.002)
            finally:
                for thread in threads:
                    thread.join(timeout=60)
    assert sums == list(range(1, frames + 1))


def test_one_receive_at_a_time(stream, name):
    with shmlane.Reader(name) as reader:

        tid: list = []

        def wait() -> None:
            tid.append(threading.get_native_id())
            with reader.receive(timeout=30) as sample:
                assert sample.seq == 1

        thread = threading.Thread(target=wait)
        thread.start()
        try:
            while not tid:
                time.sleep(0.001)
            assert blocked_in_futex(tid[0])
            with pytest.raises(RuntimeError, match="another thread"):
                reader.receive(timeout=0)
        finally:
            publish(stream)
            thread.join()


def test_receive_async(stream, name):
    with shmlane.Reader(name, max_pinned=2) as reader:  # the first sample is kept meanwhile
        with check_async_wait(reader.receive_async, lambda: publish(stream)) as sample:
            assert sample.seq == 1 and stamped(sample.array, 1)


@pytest.mark.parametrize("then", ["receive_async", "receive", "receive_into"])
def test_a_cancelled_receive_async_loses_no_frame(stream, name, then):
    """A task cancelled while its receive_async() slice waits in an executor
    thread: the cancellation wakes that slice, which ends, unless it took a
    frame at that moment; the next receive of the reader, of any kind, waits
    for it to end (no RuntimeError) and delivers such a frame first: an
    "all" reader misses nothing."""

    async def main() -> list:
        seqs = []
        for _ in range(3):
            waiting = asyncio.ensure_future(reader.receive_async())
            await asyncio.sleep(0.02)  # its slice waits for a frame
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            publish(stream)  # within the slice still running
            if then == "receive_async":
                sample = await reader.receive_async(timeout=5)
            elif then == "receive":
                sample = reader.receive(timeout=5)
            else:
                seqs.append(reader.receive_into(np.zeros(SHAPE, "u1"), 5)[0])
                continue
            seqs.append(sample.seq)
            sample.release()
        return seqs

    with shmlane.Reader(name, policy="all") as reader:
        assert asyncio.run(main()) == [1, 2, 3]
        assert stream.info().reader_entries[0].pinned == 0


def kept_after_its_loop_closed(reader: shmlane.Reader, stream: shmlane.Writer) -> asyncio.Task:
    """Closes an event loop (not as asyncio.run does, cancelling its tasks)
    while a receive_async() of `reader` waits in it, then publishes frame 1:
    the task never runs again, so its slice keeps the frame for the reader's
    next receive. Returns the task, pending for good."""
    executor = concurrent.futures.ThreadPoolExecutor(1)
    loop = asyncio.new_event_loop()
    loop.set_default_executor(executor)
    task = loop.create_task(reader.receive_async())
    loop.run_until_complete(asyncio.sleep(0.02))  # its slice waits for a frame
    loop.close()
    publish(stream)
    executor.shutdown(wait=True)  # the slice took it, and ended
    return task


def test_a_frame_a_receive_async_kept_waits_for_a_buffer_that_fits(stream, name):
    """The frame a receive_async() kept is delivered by the next
    receive_into(): a buffer that cannot take it raises what receive_into()
    raises and keeps the frame (still pinned) for a buffer that can."""
    with shmlane.Reader(name, policy="all") as reader:
        kept_after_its_loop_closed(reader, stream)
        assert stream.info().reader_entries[0].pinned == 1  # kept
        wrong = [(np.zeros(3, "u1"), ValueError, "a frame is 96 bytes, not 3"),
                 (np.zeros(SHAPE, "u1")[::2], ValueError, "not C-contiguous"),
                 (bytes(96), BufferError, "not writable")]
        for buffer, error, says in wrong:  # as without a frame kept
            with pytest.raises(error, match=says):
                reader.receive_into(buffer, 0)
        assert stream.info().reader_entries[0].pinned == 1
        out = np.zeros(SHAPE, "u1")
        assert reader.receive_into(out, 0)[0] == 1 and stamped(out, 1)
        assert stream.info().reader_entries[0].pinned == 0


def test_a_forked_child_gets_no_frame_a_receive_async_kept(stream, name):
    """The frame kept from a receive_async() is pinned by the parent: a
    child forked meanwhile gets the fork error, not that frame."""
    with shmlane.Reader(name, policy="all") as reader:
        kept_after_its_loop_closed(reader, stream)
        fork_gets_fork_error(lambda: reader.receive(timeout=0))
        with reader.receive(timeout=5) as sample:
            assert sample.seq == 1


def test_a_frame_taken_after_the_event_loop_closed_goes_to_the_next_receive(stream, name):
    """Before, the pending task held the frame its slice took after its
    event loop was closed, pinned, until it was garbage-collected."""
    with shmlane.Reader(name, policy="all") as reader:
        task = kept_after_its_loop_closed(reader, stream)
        with reader.receive(timeout=0.5) as sample:
            assert sample.seq == 1
        assert not task.done()
        del task
        gc.collect()
        assert stream.info().reader_entries[0].pinned == 0


def test_an_idle_receive_async_sleeps_and_a_cancel_wakes_it(stream, name):
    """Before, receive_async() woke its executor thread every 50 ms (10
    slices in 0.5 s, 40 switches) so that a cancellation took effect within
    a slice; now the cancellation wakes it, and its slices last a second."""
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"{name}-rx")

    async def main() -> tuple:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(executor)
        waiting = asyncio.ensure_future(reader.receive_async())
        await asyncio.sleep(0.02)
        [thread] = [t for t in threading.enumerate() if t.name.startswith(f"{name}-rx")]
        assert blocked_in_futex(thread.native_id)
        before = sleeps(thread.native_id)
        await asyncio.sleep(0.5)  # half its first slice; the loop runs
        woke = sleeps(thread.native_id) - before
        cancelled = time.monotonic()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await loop.run_in_executor(None, lambda: None)  # its one thread is free again
        return woke, time.monotonic() - cancelled

    with shmlane.Reader(name, policy="all") as reader:
        woke, freed = asyncio.run(main())
        assert woke <= 2 and freed < 0.25, (woke, freed)  # not at the slice's end
        publish(stream)
        with reader.receive(timeout=5) as sample:  # the cancelled call took nothing
            assert sample.seq == 1


def mapped_ranges(name: str) -> list:
    """This process's mappings of stream `name`: (start, end, permissions)."""
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == str(SHM_DIR / f"shl.{name}"):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((start, end, fields[1]))
    return ranges


def test_sample_array_is_the_slot_itself(stream, name):
    # No copy: the array's data is the sample's exported buffer, which lies
    # in this reader's mapping of the stream, at the same address whenever
    # the slot comes round again, slot stride apart from the other slots.
    writer_maps = mapped_ranges(name)
    with shmlane.Reader(name, policy="all") as reader:
        # The frames, mapped read-only by the reader alone.
        reader_maps = [r for r in mapped_ranges(name) if r not in writer_maps and r[2][1] == "-"]
        assert len(reader_maps) == 1
        start, end, _ = reader_maps[0]
        at = {}
        for seq in range(1, 13):  # three times round the 4 slots
            publish(stream)
            with reader.receive(timeout=5) as sample:
                address = sample.array.__array_interface__["data"][0]
                exported = np.frombuffer(memoryview(sample._raw), np.uint8)
                assert address == exported.__array_interface__["data"][0]
                assert start <= address and address + sample.array.nbytes <= end
                assert at.setdefault(sample._raw.slot, address) == address
                assert stamped(sample.array, seq)
    assert sorted(at) == [0, 1, 2, 3]
    stride = at[1] - at[0]
    assert stride >= np.prod(SHAPE) and all(at[k] == at[0] + k * stride for k in at)


def test_idle_reader_makes_no_wake_up(stream, name):
    # No frame comes for 1.5 s from a live writer: the receiving thread
    # sleeps once (context switches, not time, are counted).
    if not futex_waitv_expected():
        pytest.skip("readers sleep in slices without futex_waitv (Linux 5.16)")
    with shmlane.Reader(name) as reader:
        before = sleeps()
        with pytest.raises(TimeoutError):
            reader.receive(timeout=1.5)
        woke = sleeps() - before
    assert woke <= 4, f"{woke} wake-ups in 1.5 s"


def test_close_from_another_thread_ends_a_receive(stream, name):
    # Without slices, the receiving thread is woken by the close itself.
    with shmlane.Reader(name) as reader:
        thread, outcome = blocked_in_thread(reader.receive, timeout=60)
        t0 = time.monotonic()
        reader.close()
        thread.join(timeout=10)
        assert not thread.is_alive() and time.monotonic() - t0 < 5
        assert [type(x) for x in outcome] == [ValueError] and "closed" in str(outcome[0])

"""The robust lock: recovery after a holder is killed, time-outs, Ctrl-C."""

from __future__ import annotations

import errno
import mmap
import os
import signal
import struct
import threading
import time

import pytest

import shmlane
from conftest import blocked_in_futex, blocked_in_thread, expect_line

HOLDER = """
import sys, time
import shmlane
seg = shmlane.open(sys.argv[1])
held = seg.lock(timeout=10)
print("locked", flush=True)
time.sleep(60)
"""


def test_lock_recovered_after_holder_is_killed(name, spawn_py):
    with shmlane.create(name, dtype="<u8") as seg:
        holder = spawn_py(HOLDER, name)
        expect_line(holder, "locked")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with pytest.warns(shmlane.LockRecovered, match=name):
            with seg.lock(timeout=10) as held:
                assert held.recovered
                seg.array[()] = 1  # the lock is usable and guards writes again
        with seg.lock(timeout=10) as held:
            assert not held.recovered


def test_lock_times_out_while_held_elsewhere(name, spawn_py):
    with shmlane.create(name, dtype="<u8") as seg:
        holder = spawn_py(HOLDER, name)
        expect_line(holder, "locked")
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=name):
            seg.lock(timeout=0.3)
        assert 0.25 <= time.monotonic() - start < 10
        with pytest.raises(TimeoutError):
            seg.lock(timeout=0)


def test_other_threads_run_while_lock_waits(name, spawn_py):
    with shmlane.create(name, dtype="<u8") as seg:
        holder = spawn_py(HOLDER, name)
        expect_line(holder, "locked")
        ticks = []
        ticker = threading.Thread(
            target=lambda: [ticks.append(time.sleep(0.01)) for _ in range(20)]
        )
        ticker.start()
        with pytest.raises(TimeoutError):
            seg.lock(timeout=0.5)
        ticker.join(timeout=10)
        assert len(ticks) == 20


def test_release_and_close_while_held(name):
    seg = shmlane.create(name, dtype="<u8")
    held = seg.lock()
    held.release()
    held.release()  # idempotent
    seg.lock()
    view = seg.array
    seg.close()  # releases the lock even though a view defers the unmapping
    with shmlane.open(name) as other, other.lock(timeout=5) as held:
        assert not held.recovered
    del view


def test_ctrl_c_interrupts_lock(name, spawn_py):
    waiter_code = """
import sys, time
import shmlane
seg = shmlane.open(sys.argv[1])
print("ready", flush=True)
start = time.monotonic()
try:
    seg.lock()  # no time limit
except KeyboardInterrupt:
    print(f"interrupted {time.monotonic() - start:.3f}", flush=True)
"""
    with shmlane.create(name, dtype="<u8"):
        holder = spawn_py(HOLDER, name)
        expect_line(holder, "locked")
        waiter = spawn_py(waiter_code, name)
        expect_line(waiter, "ready")
        assert blocked_in_futex(waiter.pid, waiter.pid)
        sent = time.monotonic()
        waiter.send_signal(signal.SIGINT)
        out, err = waiter.communicate(timeout=30)
        assert out.startswith("interrupted"), err
        assert time.monotonic() - sent < 5


def test_close_from_another_thread_during_lock(name):
    with shmlane.create(name, dtype="<u8") as seg, shmlane.open(name) as other:
        held = seg.lock()
        thread, outcome = blocked_in_thread(other.lock, timeout=30)
        other.close()
        held.release()  # the thread gets the lock, finds its segment closed, gives it back
        thread.join(timeout=30)
        assert [type(x) for x in outcome] == [ValueError]
        assert str(outcome[0]) == f"segment '{name}' is closed"
        with seg.lock(timeout=5) as again:
            assert not again.recovered


# Thread T1 holds A's lock; another thread closes A (or leaves its `with`);
# T1 then locks B. Before the fix, close unlocked from the wrong thread and
# unmapped A's mutex, still on T1's robust list: locking B crashed (SIGSEGV).
CLOSE_UNDER_HOLDER = """
import sys, threading
import shmlane
a_name, b_name = sys.argv[1], sys.argv[2]
b = shmlane.open(b_name)
for how in ("close", "with"):
    locked, closed = threading.Event(), threading.Event()
    results = []

    def hold(a):
        with a.lock(timeout=5):
            locked.set()
            closed.wait(10)
            with b.lock(timeout=5):
                results.append("locked b")

    if how == "close":
        a = shmlane.open(a_name)
        t = threading.Thread(target=hold, args=(a,))
        t.start()
        locked.wait(10)
        a.close()  # deferred until the holder releases
    else:
        with shmlane.open(a_name) as a:
            t = threading.Thread(target=hold, args=(a,))
            t.start()
            locked.wait(10)
    with shmlane.open(a_name) as other:
        try:
            other.lock(timeout=0)
        except TimeoutError:
            results.append("still held")
    closed.set()
    t.join(10)
    with shmlane.open(a_name) as other, other.lock(timeout=0) as held:
        results.append("recovered" if held.recovered else "free")
    print(how, *results, flush=True)
"""


def test_close_while_another_thread_holds_the_lock(new_name, run_py):
    a, b = new_name(), new_name()
    with shmlane.create(a, dtype="<u8"), shmlane.create(b, dtype="<u8"):
        out = run_py(CLOSE_UNDER_HOLDER, a, b).splitlines()
    assert out == ["close still held locked b free", "with still held locked b free"]


class Interrupted(Exception):
    """What the test's signal handler raises, as Ctrl-C raises KeyboardInterrupt."""


def test_ctrl_c_the_moment_the_lock_is_taken_leaves_it_free(name):
    """A signal handler that raises, run the moment lock() has taken the lock
    (the wait ends with the lock, and the interpreter runs the handler on
    the way out): the lock goes with the object that would have held it,
    instead of staying held by a thread that has no way to release it."""

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted()

    with shmlane.create(name, dtype="<u8") as seg, shmlane.open(name) as other:
        main = threading.get_native_id()
        ready = threading.Event()

        def hold_then_hand_over() -> None:
            held = other.lock(timeout=5)
            ready.set()
            blocked_in_futex(main)  # the main thread waits in lock()
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
            held.release()  # at once: its lock() returns with the lock

        before = signal.signal(signal.SIGUSR1, interrupt)
        try:
            thread = threading.Thread(target=hold_then_hand_over)
            thread.start()
            assert ready.wait(10)
            with pytest.raises(Interrupted):
                seg.lock(timeout=10)
            thread.join(10)
        finally:
            signal.signal(signal.SIGUSR1, before)
        taken: list = []
        probe = threading.Thread(target=lambda: taken.append(other.lock(timeout=0).release()))
        probe.start()
        probe.join(10)
        assert taken == [None]  # free: another thread takes it at once
        seg.lock(timeout=0).release()  # and this thread does not hold it


def test_only_the_holding_thread_releases(name):
    with shmlane.create(name, dtype="<u8") as seg:
        held = seg.lock()
        errors = []

        def release() -> None:
            try:
                held.release()
            except PermissionError as exc:
                errors.append(exc)

        thread = threading.Thread(target=release)
        thread.start()
        thread.join(10)
        assert len(errors) == 1 and name in str(errors[0])
        held.release()  # still this thread's to release
        with shmlane.open(name) as other, other.lock(timeout=0):
            pass


def test_close_after_the_holding_thread_ended_marks_the_lock_dead(name):
    # The thread keeps its Held (never released) and ends; close() from
    # another thread marks the lock its holder's death, as the C core's does.
    # Before, the lock stayed held until the process ended: lock() timed out.
    seg = shmlane.create(name, dtype="<u8")
    kept: list = []
    thread = threading.Thread(target=lambda: kept.append(seg.lock(timeout=5)))
    thread.start()
    thread.join(10)
    assert len(kept) == 1
    for _ in range(1000):  # join() returns before the kernel's thread is gone
        if not os.path.exists(f"/proc/self/task/{thread.native_id}"):
            break
        time.sleep(0.001)
    seg.close()
    with shmlane.open(name) as other:
        with pytest.warns(shmlane.LockRecovered, match=name):
            with other.lock(timeout=1) as held:
                assert held.recovered
    kept[0].release()  # a no-op once closed
    kept.clear()
    shmlane.unlink(name)

def test_lock_word_rewritten_while_held_leaves_nothing_held(name):
    # A peer with write access rewrites the lock word (offset 256) while it
    # is held: the release says so (ENOTRECOVERABLE), and the lock counts as
    # given up. Before, its pin stayed: close() never completed, and the
    # name of an unlink_on_close segment stayed.
    # So too for a Held dropped unreleased.
    path = "/dev/shm/shl." + name
    for dropped in (False, True):
        seg = shmlane.create(name, dtype="<u8", unlink_on_close=True)
        fd = os.open(path, os.O_RDWR)
        try:
            with mmap.mmap(fd, 4096) as peer:
                held = seg.lock(timeout=5)
                peer[256:260] = struct.pack("<I", 12345)
                if dropped:
                    del held
                else:
                    with pytest.raises(OSError, match=name) as info:
                        held.release()
                    assert info.value.errno == errno.ENOTRECOVERABLE
                    held.release()  # a no-op now
                peer[256:260] = bytes(4)
            with seg.lock(timeout=0):
                pass
            seg.close()
            assert not os.path.exists(path)
        finally:
            os.close(fd)
            if os.path.exists(path):
                shmlane.unlink(name)

# A process whose thread holds the lock of a segment another thread closed,
# and that exits: the mapping was kept, so the kernel marks the mutex
# OWNER_DIED and the next locker recovers it. Before the fix it was unmapped
# at close, and every later lock timed out.
EXIT_HOLDING = """
import os, sys, threading
import shmlane
seg = shmlane.open(sys.argv[1])
locked = threading.Event()

def hold():
    held = seg.lock(timeout=5)  # kept: a Held dropped unreleased releases the lock
    locked.set()
    threading.Event().wait()

threading.Thread(target=hold, daemon=True).start()
locked.wait(10)
seg.close()
print("closed", flush=True)
os._exit(0)
"""


def test_process_exit_with_a_thread_holding_a_closed_segment(name, run_py):
    with shmlane.create(name, dtype="<u8") as seg:
        assert run_py(EXIT_HOLDING, name).strip() == "closed"
        with pytest.warns(shmlane.LockRecovered, match=name):
            with seg.lock(timeout=5) as held:
                assert held.recovered

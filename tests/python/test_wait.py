"""wait/notify across processes and threads, time-outs, Ctrl-C, asyncio."""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

import shmlane
from conftest import (
    blocked_in_futex,
    blocked_in_thread,
    check_async_wait,
    expect_line,
    wait_in_thread,
    wakeups_in,
)

NOTIFIER = """
import sys, time
import shmlane
seg = shmlane.open(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
seg.array[()] = 7
seg.notify()
"""


def test_notify_from_another_process_wakes_wait(name, spawn_py):
    with shmlane.create(name, dtype="<i4") as seg:
        peer = spawn_py(NOTIFIER, name)
        expect_line(peer, "ready")
        thread, result = wait_in_thread(seg, timeout=30)
        sent = time.monotonic()
        peer.stdin.write("go\n")
        peer.stdin.flush()
        thread.join(30)
        # The wait's own timeout (30 s) would also return the new version.
        assert time.monotonic() - sent < 10
        assert result == [1]
        assert seg.array[()] == 7


def test_wait_times_out_on_time(name):
    with shmlane.create(name, dtype="<i4") as seg:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=name):
            seg.wait(timeout=0.3)
        assert 0.25 <= time.monotonic() - start < 10
        with pytest.raises(TimeoutError):
            seg.wait(timeout=0)


def test_wait_since(name):
    with shmlane.create(name, dtype="<i4") as seg, shmlane.open(name) as other:
        assert other.notify() == 1 and other.notify() == 2
        assert seg.wait(timeout=5) == 2  # changes since open are not missed
        assert seg.wait(timeout=5, since=0) == 2
        with pytest.raises(TimeoutError):
            seg.wait(timeout=0.05)  # since=None: the last version seen, 2



def test_wait_refuses_a_since_out_of_range(name):
    # Taken modulo 2**64 before: since=-1 returned at once with the count,
    # since=2**64 waited for a change from 0.
    with shmlane.create(name, dtype="<i4") as seg:
        for since in (-1, 2**64, -(2**64)):
            with pytest.raises(ValueError, match="since"):
                seg.wait(timeout=0, since=since)
        with pytest.raises(TypeError):
            seg.wait(timeout=0, since=1.0)
        with pytest.raises(TimeoutError):
            seg.wait(timeout=0, since=np.uint64(0))  # any integer in range
        assert seg.wait(timeout=0, since=2**64 - 1) == 0


def test_close_from_another_thread_ends_a_wait(name):
    # A wait without a time-out ends once another thread closes its segment,
    # as lock() does; before, it slept on until some notify came. It sleeps
    # in one piece meanwhile: before, it woke every 50 ms to look for a
    # close() (20 switches in the second).
    with shmlane.create(name, dtype="<i4") as seg:
        other = shmlane.open(name)
        thread, outcome = blocked_in_thread(other.wait, timeout=None)
        idle = wakeups_in(thread, 1.0)
        closed = time.monotonic()
        other.close()
        thread.join(10)
        if thread.is_alive():
            seg.notify()  # not to leave it behind
            thread.join(10)
            pytest.fail("the wait went on after close()")
        assert [type(x) for x in outcome] == [ValueError]
        assert str(outcome[0]) == f"segment '{name}' is closed"
        assert time.monotonic() - closed < 5
        assert seg.changes == 0  # nothing shared was touched
        assert idle <= 2

def test_wait_with_spin(name, spawn_py):
    with shmlane.create(name, dtype="<i4") as seg:
        for bad in (-0.001, 0.0011, float("nan")):
            with pytest.raises(ValueError, match="spin"):
                seg.wait(timeout=0, spin=bad)
        start = time.monotonic()
        with pytest.raises(TimeoutError):  # the spin counts against the timeout
            seg.wait(timeout=0.0005, spin=0.001)
        assert time.monotonic() - start < 5
        peer = spawn_py(NOTIFIER, name)
        expect_line(peer, "ready")
        thread, result = wait_in_thread(seg, timeout=30, spin=0.001)  # spun, now asleep
        sent = time.monotonic()
        peer.stdin.write("go\n")
        peer.stdin.flush()
        thread.join(30)
        assert time.monotonic() - sent < 10
        assert result == [1]
        assert seg.array[()] == 7


def test_other_threads_run_while_waiting_and_can_notify(name):
    with shmlane.create(name, dtype="<i4") as seg:
        ticks = []

        def work() -> None:
            for _ in range(20):
                ticks.append(time.sleep(0.01))
            seg.notify()

        thread = threading.Thread(target=work)
        thread.start()
        assert seg.wait(timeout=30) == 1
        thread.join(timeout=10)
        assert len(ticks) == 20


def test_ctrl_c_interrupts_wait(name, spawn_py):
    waiter_code = """
import sys, time
import shmlane
seg = shmlane.open(sys.argv[1])
print("ready", flush=True)
start = time.monotonic()
try:
    seg.wait()  # no time limit
except KeyboardInterrupt:
    print(f"interrupted {time.monotonic() - start:.3f}", flush=True)
"""
    with shmlane.create(name, dtype="<i4"):
        waiter = spawn_py(waiter_code, name)
        expect_line(waiter, "ready")
        assert blocked_in_futex(waiter.pid, waiter.pid)
        sent = time.monotonic()
        waiter.send_signal(signal.SIGINT)
        out, err = waiter.communicate(timeout=30)
        assert out.startswith("interrupted"), err
        assert time.monotonic() - sent < 5


def test_signal_handler_that_returns_does_not_end_wait(name, spawn_py):
    code = """
import signal, sys, time
import shmlane
seg = shmlane.open(sys.argv[1])
signal.signal(signal.SIGUSR1, lambda *a: print("handled", flush=True))
print("ready", flush=True)
start = time.monotonic()
try:
    seg.wait(timeout=1.5)
except TimeoutError:
    print(f"timed out after {time.monotonic() - start:.3f}", flush=True)
"""
    with shmlane.create(name, dtype="<i4"):
        waiter = spawn_py(code, name)
        expect_line(waiter, "ready")
        assert blocked_in_futex(waiter.pid, waiter.pid)  # the signal lands inside the wait
        waiter.send_signal(signal.SIGUSR1)
        out, _ = waiter.communicate(timeout=30)
        handled, timed_out = out.split("\n")[:2]
        assert handled == "handled"
        assert timed_out.startswith("timed out after ")
        assert float(timed_out.split()[-1]) >= 1.4  # the handler did not end the wait early


def test_wait_async_in_event_loop(name):
    with shmlane.create(name, dtype="<i4") as seg, shmlane.open(name) as other:
        assert check_async_wait(seg.wait_async, other.notify) == 1

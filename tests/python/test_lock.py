"""The robust lock: recovery after a holder is killed, time-outs, Ctrl-C."""

from __future__ import annotations

import signal
import threading
import time

import pytest

import shmlane
from conftest import blocked_in_futex, expect_line

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
        errors = []

        tid = []

        def take() -> None:
            tid.append(threading.get_native_id())
            try:
                other.lock(timeout=30)
            except ValueError as exc:
                errors.append(str(exc))

        thread = threading.Thread(target=take)
        thread.start()
        while not tid:
            time.sleep(0.001)
        assert blocked_in_futex(tid[0])
        other.close()
        held.release()  # the thread gets the lock, finds its segment closed, gives it back
        thread.join(timeout=30)
        assert errors == [f"segment '{name}' is closed"]
        with seg.lock(timeout=5) as again:
            assert not again.recovered

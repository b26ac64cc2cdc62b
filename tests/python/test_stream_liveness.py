"""Streams: who is alive comes from role locks the kernel holds for each
writer and reader, never from PIDs; a reader that keeps its samples meets
its limit instead of stalling everyone; a forked child's inherited handles
change nothing shared; WriterGone says whether the writer closed or died.

Peers run in fresh interpreters, some in another PID namespace
(`unshare -pf --mount-proc`, as in containers sharing /dev/shm)."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import textwrap
import time
from typing import Iterator, List

import numpy as np
import pytest

import shmlane
from conftest import blocked_in_futex, blocked_in_thread, built_cli, expect_line, read_line, spawner

SHAPE = (16,)


def publish(writer: shmlane.Writer, value: int, timeout: float = 5) -> int:
    with writer.loan(timeout=timeout) as frame:
        frame[...] = value
    return value


# ---------------------------------------------------------------- a greedy reader


def test_a_reader_that_keeps_its_arrays_meets_its_limit_not_the_writer(name):
    with shmlane.Writer(name, shape=SHAPE, dtype="u1") as writer:  # 8 slots
        greedy = shmlane.Reader(name, policy="latest")
        every = shmlane.Reader(name, policy="all")
        kept: List[np.ndarray] = []
        refused = []
        for value in range(1, 101):
            publish(writer, value, timeout=1)  # never held up by the greedy reader
            try:
                kept.append(greedy.receive(timeout=0).array)
            except shmlane.Error as exc:
                refused.append(str(exc))
            with every.receive(timeout=0) as sample:
                assert (sample.seq, sample.lost, int(sample.array[0])) == (value, 0, value)
        assert len(kept) == 3 and [int(a[0]) for a in kept] == [1, 2, 3]
        assert len(refused) == 97
        assert refused[0] == (
            f"reader of '{name}' holds 3 samples (its max_pinned): release them (del the "
            "arrays, sample.release(), or copy what you keep) before receiving more"
        )
        del kept[:2]
        gc.collect()
        assert int(greedy.receive(timeout=0).array[0]) == 100
        greedy.close()
        every.close()


def test_max_pinned_is_checked(name):
    with pytest.raises(ValueError, match="max_pinned"):
        shmlane.Reader(name, max_pinned=0, timeout=0)


HOLDER = """
import sys
import shmlane
r = shmlane.Reader(sys.argv[1], policy="all", max_pinned=int(sys.argv[2]))
print("ready", flush=True)
held = [r.receive(timeout=30) for _ in range(int(sys.argv[2]))]
print("held", " ".join(str(int(s.array[0])) for s in held), flush=True)
sys.stdin.readline()
print("still", " ".join(str(int(s.array[0])) for s in held), flush=True)
"""


def test_loan_gives_up_after_five_seconds_naming_the_pids_that_pin(name, spawn_py):
    with shmlane.Writer(name, shape=SHAPE, dtype="u1", slots=4) as writer:
        peer = spawn_py(HOLDER, name, "3")
        expect_line(peer, "ready")
        for value in (1, 2, 3):
            publish(writer, value)
        expect_line(peer, "held 1 2 3")
        publish(writer, 4)  # the newest; every other slot is pinned
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=f"reader pids: {peer.pid}\\b"):
            writer.loan()
        assert 4.5 < time.monotonic() - start < 30
        peer.stdin.write("\n")
        peer.stdin.flush()
        expect_line(peer, "still 1 2 3")
        assert peer.wait(timeout=30) == 0
        publish(writer, 5)  # its pins went with it


# ---------------------------------------------------------------- WriterGone.reason


def test_writer_gone_says_closed_or_died(name, spawn_py):
    writer = shmlane.Writer(name, shape=SHAPE, dtype="u1")
    with shmlane.Reader(name, policy="all") as reader:
        writer.close()
        with pytest.raises(shmlane.WriterGone, match="closed it") as info:
            reader.receive(timeout=5)
        assert info.value.reason == "closed"

        peer = spawn_py(
            """
            import sys, time
            import shmlane
            w = shmlane.Writer(sys.argv[1], shape=(16,), dtype="u1")
            print("ready", flush=True)
            time.sleep(60)
            """,
            name,
        )
        expect_line(peer, "ready")
        with pytest.raises(TimeoutError):
            reader.receive(timeout=0.3)
        peer.kill()
        peer.wait()
        with pytest.raises(shmlane.WriterGone, match="died") as info:
            reader.receive(timeout=5)
        assert info.value.reason == "died"


# ---------------------------------------------------------------- fork


def test_a_forked_child_changes_nothing_its_parent_holds(name):
    writer = shmlane.Writer(name, shape=SHAPE, dtype="u1", slots=4)
    reader = shmlane.Reader(name, policy="latest")
    other = shmlane.Reader(name, policy="all")
    publish(writer, 1)
    sample = reader.receive(timeout=5)
    array = sample.array
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: every use fails clearly; closing and exiting change nothing
        code = 0
        try:
            reader.receive(timeout=0)
            code = 2
        except shmlane.Error as exc:
            expected = (
                f"Reader of '{name}' was opened in process {parent} before fork(): "
                "open it again in this process"
            )
            code = 0 if str(exc) == expected else 3
        try:
            writer.loan(timeout=0)
            code = code or 4
        except shmlane.Error as exc:
            code = code or (0 if "Writer of" in str(exc) else 5)
        del array
        sample.release()
        reader.close()
        writer.close()
        gc.collect()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for value in range(2, 12):
        publish(writer, value, timeout=1)
    assert list(array[:2]) == [1, 1]  # the parent's pinned frame stays put
    info = writer.info()
    assert info.writer_alive is True and info.writer_pid == parent and info.readers == 2
    seen = []
    while True:
        try:
            with other.receive(timeout=0) as s:
                seen.append(s.seq)
        except TimeoutError:
            break
    with pytest.raises(TimeoutError):  # not WriterGone: the parent still writes
        other.receive(timeout=0.3)
    del array
    sample.release()
    for handle in (other, reader, writer):
        handle.close()


def test_a_child_forked_while_a_thread_receives_gets_the_fork_error(name):
    """fork() while another thread waits in receive() and a loan is
    outstanding: the child has neither, and each call there says the handle
    is the parent's (shmlane.Error), not that another thread receives or
    loans (RuntimeError). The parent's receive then gets its frame."""
    writer = shmlane.Writer(name, shape=SHAPE, dtype="u1", slots=4)
    reader = shmlane.Reader(name, policy="all")
    loan = writer.loan(timeout=5)
    thread, outcome = blocked_in_thread(reader.receive, timeout=60)
    pid = os.fork()
    if pid == 0:
        code = 0
        calls = (
            lambda: reader.receive(timeout=0),
            lambda: reader.receive_into(np.zeros(SHAPE, "u1"), 0),
            lambda: writer.loan(timeout=0),
        )
        for i, call in enumerate(calls):
            try:
                call()
                code = code or 10 + i
            except shmlane.Error as exc:
                code = code or (0 if "before fork()" in str(exc) else 20 + i)
            except BaseException:  # noqa: BLE001 - the exit code says which
                code = code or 30 + i
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    loan.array[...] = 1
    loan.publish()
    thread.join(10)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [s.seq for s in outcome] == [1]
    outcome.clear()
    for handle in (reader, writer):
        handle.close()


# ---------------------------------------------------------------- PID namespaces


def unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        probe = subprocess.run(["unshare", "-pf", "--mount-proc", "true"], timeout=30)
        return probe.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture
def spawn_ns() -> Iterator:
    """Python code in a fresh interpreter in a new PID namespace (it is pid 1
    there, and sees none of our processes in its /proc)."""
    if not unshare_works():
        pytest.skip("unshare -pf --mount-proc is not permitted here")
    yield from spawner(["unshare", "-pf", "--mount-proc", "--kill-child"])


def test_a_reader_in_another_pid_namespace_keeps_its_pins(name, spawn_ns):
    with shmlane.Writer(name, shape=(512,), dtype="<u8", slots=4) as writer:
        peer = spawn_ns(
            """
            import os, sys
            import numpy as np
            import shmlane
            r = shmlane.Reader(sys.argv[1], policy="all", max_pinned=3)
            print("ready", os.getpid(), flush=True)
            held = [r.receive(timeout=30) for _ in range(3)]
            arrays = [s.array for s in held]
            copies = [np.array(a) for a in arrays]
            print("held", flush=True)
            sys.stdin.readline()
            changed = sum(int((a != c).sum()) for a, c in zip(arrays, copies))
            print("changed", changed, flush=True)
            """,
            name,
        )
        assert read_line(peer) == "ready 1"  # pid 1 in its namespace
        for value in (1, 2, 3):
            publish(writer, value)
        expect_line(peer, "held")
        publish(writer, 4)
        with pytest.raises(TimeoutError, match="reader pids: 1\\b"):
            writer.loan(timeout=0.5)  # every slot it could reuse is pinned: no reaping
        assert writer.info().readers == 1
        peer.stdin.write("\n")
        peer.stdin.flush()
        expect_line(peer, "changed 0")
        assert peer.wait(timeout=30) == 0
        publish(writer, 5)


def test_a_writer_in_another_pid_namespace_stays_the_writer(name, spawn_ns, tmp_path):
    peer = spawn_ns(
        """
        import sys
        import shmlane
        w = shmlane.Writer(sys.argv[1], shape=(16,), dtype="u1")
        with w.loan() as frame:
            frame[...] = 7
        print("ready", flush=True)
        sys.stdin.readline()
        w.close()
        """,
        name,
    )
    expect_line(peer, "ready")
    cli = built_cli()
    with shmlane.Reader(name, policy="all") as reader:
        with reader.receive(timeout=5) as sample:
            assert int(sample.array[0]) == 7
        with pytest.raises(TimeoutError):  # not WriterGone
            reader.receive(timeout=0.3)
        with pytest.raises(shmlane.StreamBusy):  # no takeover of a live writer
            shmlane.Writer(name, shape=(16,), dtype="u1")
        info = reader.info()
        assert info.writer_alive is True and info.readers == 1
    gc_run = subprocess.run([str(cli), "gc", name], capture_output=True, text=True, timeout=60)
    assert gc_run.returncode == 0 and gc_run.stdout == "", gc_run.stderr
    assert os.path.exists(f"/dev/shm/shl.{name}")  # gc kept the live stream
    with shmlane.Reader(name, policy="all") as reader:
        peer.stdin.write("\n")
        peer.stdin.flush()
        assert peer.wait(timeout=30) == 0
        with pytest.raises(shmlane.WriterGone) as info:
            while True:
                reader.receive(timeout=5).release()
        assert info.value.reason == "closed"


# ---------------------------------------------------------------- another user's stream

SQUATTER = """
import os, sys
import shmlane  # before dropping privileges
os.setgroups([]); os.setgid(65534); os.setuid(65534)  # nobody
w = shmlane.Writer(sys.argv[1], shape=(16,), dtype="u1", mode=0o666)
with w.loan() as frame:
    frame[...] = 9
w.close()
print("squatted", flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another user")
def test_a_stream_another_user_created_first_is_not_adopted(name, run_py):
    assert run_py(SQUATTER, name).strip() == "squatted"
    with pytest.raises(PermissionError, match="uid 65534") as info:
        shmlane.Writer(name, shape=(16,), dtype="u1")
    assert info.value.filename == name
    with pytest.raises(PermissionError, match="uid 65534"):
        shmlane.Reader(name, timeout=0)
    for owner in ("nobody", 65534, "any"):  # reading it is an explicit choice
        # (its writer closed before this reader came: the frame is the last of a finished run)
        with shmlane.Reader(name, policy="all", timeout=0, owner=owner, keep_last=True) as reader:
            with reader.receive(timeout=5) as sample:
                assert int(sample.array[0]) == 9


# ---------------------------------------------------------------- every reader learns of a death

DEATH_WRITER = """
import os, sys, threading
import numpy as np
import shmlane
name, how = sys.argv[1:]
if how == "group":
    os.setpgid(0, 0)
w = shmlane.Writer(name, shape=(16,), dtype="u1", max_readers=16)
w.publish(np.ones(16, "u1"))
if how == "thread":  # a reader of the writer's own process, asleep in receive
    r = shmlane.Reader(name)
    r.receive(timeout=5).release()
    threading.Thread(target=lambda: r.receive(timeout=None), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

DEATH_READER = """
import os, sys, time
import shmlane
name, group = sys.argv[1], int(sys.argv[2])
if group:
    os.setpgid(0, group)
with shmlane.Reader(name) as r:
    r.receive(timeout=5).release()
    print("ready", flush=True)
    try:
        r.receive(timeout=60)
        print("frame")
    except shmlane.WriterGone as exc:
        print("gone", exc.reason, time.monotonic_ns(), flush=True)
"""


@pytest.mark.parametrize("how", ["plain", "group", "thread"])
def test_every_reader_learns_of_the_death_at_once(name, spawn_py, how):
    """The kernel wakes the one sleeper on each reader entry's liveness word:
    a reader killed with the writer's process group, or a reader thread of the
    writer's own process, takes no other reader's wake-up with it. (Figures:
    tests/c/test_stream_death.c prints them; `make bench` records them.)"""
    writer = spawn_py(DEATH_WRITER, name, how)
    expect_line(writer, "ready")
    grouped = 1 if how == "group" else 0
    readers = [spawn_py(DEATH_READER, name, str(writer.pid if i < grouped else 0)) for i in range(6)]
    for reader in readers:
        expect_line(reader, "ready")
        assert blocked_in_futex(reader.pid, reader.pid)
    killed = time.monotonic_ns()
    os.kill(-writer.pid if grouped else writer.pid, 9)
    took = []
    for reader in readers[grouped:]:
        line = read_line(reader, timeout=15).split()
        assert line[:2] == ["gone", "died"], line
        took.append((int(line[2]) - killed) / 1e6)
    assert max(took) < 2000, f"a reader learnt of the death after {max(took):.0f} ms: {took}"

"""Lifetime: views keep the mapping alive after close(); nothing is removed
unless asked, nor by a forked child; openers wait for a live creator and
know a dead one."""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import shmlane
from conftest import expect_line


class Pose(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("n", ctypes.c_int32)]


def test_views_outlive_close(name):
    seg = shmlane.create(name, shape=(4,), ctype=Pose)
    array, struct, raw = seg.array, seg.struct, memoryview(seg.array)
    seg.close()
    del seg
    gc.collect()
    array["x"] = 2.5  # still the shared memory, still mapped
    struct[1].n = 9
    assert raw.tobytes()[16 + 8 : 16 + 12] == (9).to_bytes(4, "little")
    with shmlane.open(name, ctype=Pose) as again:
        assert again.array["x"].tolist() == [2.5] * 4 and again.struct[1].n == 9


def test_views_outlive_close_in_a_fresh_interpreter(name, run_py):
    # A crash (use after unmap) would kill the interpreter: run it apart.
    script = """
import gc, sys
import shmlane
seg = shmlane.create(sys.argv[1], shape=(1000,), dtype="<f8")
views = [seg.array, seg.array[::2], seg.struct, memoryview(seg.array)]
seg.close()
del seg
gc.collect()
views[0][:] = 1.0
print(float(views[1].sum()), views[2][999], views[3].tobytes()[-8:].hex())
del views
gc.collect()
"""
    assert run_py(script, name).split() == ["500.0", "1.0", "000000000000f03f"]


def test_unlink_on_close(name):
    seg = shmlane.create(name, dtype="<f8", unlink_on_close=True)
    view = seg.array
    seg.close()
    shmlane.open(name).close()  # the name goes with the mapping, after the last view
    del view
    gc.collect()
    with pytest.raises(FileNotFoundError):
        shmlane.open(name)


def test_segment_unlink_keeps_open_mappings(name):
    with shmlane.create(name, dtype="<i8") as seg, shmlane.open(name, readonly=True) as other:
        seg.unlink()
        seg.array[()] = 3  # still shared: seen through the other mapping
        assert other.array[()] == 3
        with pytest.raises(FileNotFoundError):
            shmlane.open(name)


def test_properties(name):
    with shmlane.create(name, (2, 3), "<f4", mode=0o640) as seg:
        assert (seg.name, seg.shape, seg.nbytes, seg.changes, seg.readonly) == (
            name,
            (2, 3),
            24,
            0,
            False,
        )
        assert seg.array is seg.array
    assert seg.closed


# ------------------------------------------------------------------ fork


def test_forked_child_changes_nothing_shared(name):
    seg = shmlane.create(name, shape=2, dtype="<u8", unlink_on_close=True)
    seg.array[0] = 41
    held = seg.lock()
    pid = os.fork()
    if pid == 0:  # the child: views work; close unlocks and unlinks nothing
        code = 1
        try:
            ok = seg.array[0] == 41
            seg.array[1] = 42
            try:
                seg.lock(timeout=0)  # the parent holds it
                ok = False
            except TimeoutError:
                pass
            seg.close()
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert seg.array[1] == 42
    assert Path(f"/dev/shm/shl.{name}").exists()
    with shmlane.open(name) as other:
        with pytest.raises(TimeoutError):
            _lock_elsewhere(other)
        held.release()
        with other.lock(timeout=0):
            pass
    seg.close()  # the creator's own close does unlink
    assert not Path(f"/dev/shm/shl.{name}").exists()


def _lock_elsewhere(seg: shmlane.Segment) -> None:
    """seg.lock(timeout=0) from another thread, raising what it raised."""
    errors: list = []

    def take() -> None:
        try:
            seg.lock(timeout=0).release()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            errors.append(exc)

    thread = threading.Thread(target=take)
    thread.start()
    thread.join(10)
    if errors:
        raise errors[0]


def _child_closes(seg: shmlane.Segment, out: Any) -> None:
    out.put(int(seg.array[()]))
    seg.array[()] = 7
    seg.close()


def test_multiprocessing_fork_child_keeps_unlink_on_close(name):
    ctx = multiprocessing.get_context("fork")
    seg = shmlane.create(name, dtype="<u8", unlink_on_close=True)
    seg.array[()] = 5
    out = ctx.Queue()
    child = ctx.Process(target=_child_closes, args=(seg, out))
    child.start()
    assert out.get(timeout=30) == 5
    child.join(30)
    assert child.exitcode == 0
    assert seg.array[()] == 7
    with shmlane.open(name) as other:  # still there after the child's close and exit
        assert other.array[()] == 7
    seg.close()
    with pytest.raises(FileNotFoundError):
        shmlane.open(name, timeout=0)


# ------------------------------------------------------------------ creators

# Plays a creator caught half-way (as while it reserves a large payload): it
# holds the creator role (an OFD lock on byte 2**50), has sized the object and
# written its pid, and stops itself. Continued, it publishes a header copied
# from a segment it creates properly under another name.
FAKE_CREATOR = """
import fcntl, os, signal, struct, sys
import shmlane
name, model = sys.argv[1], sys.argv[2]
fd = os.open(f"/dev/shm/shl.{name}", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 2**50, 1, 0))
os.ftruncate(fd, 8192)
os.pwrite(fd, struct.pack("<i", os.getpid()), 72)
print("stopping", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
shmlane.create(model, shape=3, dtype="<f8").close()
with open(f"/dev/shm/shl.{model}", "rb") as f:
    image = bytearray(f.read())
shmlane.unlink(model)
image[16:20] = b"\\0\\0\\0\\0"  # state: not ready until the end
image[72:76] = struct.pack("<i", os.getpid())
os.ftruncate(fd, len(image))
os.pwrite(fd, bytes(image), 0)
os.pwrite(fd, struct.pack("<I", 1), 16)  # READY
"""


def _stopped_creator(spawn_py, name: str, model: str):
    creator = spawn_py(FAKE_CREATOR, name, model)
    expect_line(creator, "stopping")
    os.waitid(os.P_PID, creator.pid, os.WSTOPPED)
    return creator


def test_waits_for_a_slow_creator(new_name, spawn_py):
    name, model = new_name(), new_name()
    creator = _stopped_creator(spawn_py, name, model)
    want = f"'{name}' is still being initialised by its creator \\(pid {creator.pid}\\)"
    with pytest.raises(TimeoutError, match=want):
        shmlane.create(name, shape=3, dtype="<f8", exist_ok=True, timeout=0.2)
    got: list = []
    thread = threading.Thread(
        target=lambda: got.append(shmlane.create(name, shape=3, dtype="<f8", exist_ok=True))
    )
    thread.start()
    time.sleep(1.5)  # longer than the fixed 1 s wait there used to be
    creator.send_signal(signal.SIGCONT)
    thread.join(30)
    assert creator.wait(30) == 0
    assert len(got) == 1 and got[0].shape == (3,)
    got[0].close()


def test_creator_killed_mid_creation(new_name, spawn_py):
    name = new_name()
    creator = _stopped_creator(spawn_py, name, new_name())
    creator.kill()
    creator.wait(30)
    start = time.monotonic()
    want = (
        f"'{name}': its creator \\(pid {creator.pid}\\) died before the segment was ready; "
        f"remove it with `shmlane rm {name}`"
    )
    with pytest.raises(shmlane.CorruptSegment, match=want):
        shmlane.create(name, shape=3, dtype="<f8", exist_ok=True, timeout=20)
    with pytest.raises(shmlane.CorruptSegment, match=want):
        shmlane.open(name, timeout=20)
    assert time.monotonic() - start < 10  # at once, not after the timeouts

"""Public API corners: the reprs, Writer.unlink() and mode=, a loan entered
after it ended, Reader(timeout=None), and the values of SegmentInfo and
StreamInfo against what the test made."""

from __future__ import annotations

import gc
import inspect
import os
import platform
import shutil
import subprocess
import sys
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import shmlane
from shmlane._common import owner_text

from conftest import SHM_DIR


def file_mode(name: str) -> int:
    return stat.S_IMODE(os.stat(SHM_DIR / f"shl.{name}").st_mode)


def listed(name: str) -> shmlane.SegmentInfo:
    (info,) = [i for i in shmlane.list() if i.name == name]
    return info


def test_dir_shows_the_public_names_only():
    """dir(shmlane) listed what the package imports for itself (np,
    warnings, Optional, owner_arg, _stream, ...) beside its API."""
    names = dir(shmlane)
    assert set(shmlane.__all__) | {"OPEN_TIMEOUT", "__version__"} <= set(names)
    clutter = [n for n in names if n.startswith("_") and n != "__version__"]
    clutter += [n for n in ("np", "warnings", "builtins", "enum", "Optional", "owner_arg") if n in names]
    assert not clutter, clutter
    for name in names:  # every one is there
        getattr(shmlane, name)
    assert shmlane.np is np and shmlane._stream.Writer is shmlane.Writer  # still importable


# ---------------------------------------------------------------- reprs


def test_reprs(new_name):
    seg_name, stream_name = new_name(), new_name()
    seg = shmlane.create(seg_name, (2, 3), "<f4")
    assert repr(seg) == f"<shmlane.Segment '{seg_name}' float32 (2, 3)>"
    view = shmlane.open(seg_name, readonly=True)
    assert repr(view) == f"<shmlane.Segment '{seg_name}' float32 (2, 3) readonly>"
    view.close()
    assert repr(view) == f"<shmlane.Segment '{seg_name}' float32 (2, 3) readonly closed>"
    seg.close()
    assert repr(seg) == f"<shmlane.Segment '{seg_name}' float32 (2, 3) closed>"

    writer = shmlane.Writer(stream_name, shape=(3,), dtype="<u2", slots=4)
    reader = shmlane.Reader(stream_name, policy="all", timeout=0)
    assert repr(writer) == f"<shmlane.Writer '{stream_name}' uint16 (3,)>"
    assert repr(reader) == f"<shmlane.Reader '{stream_name}' all uint16 (3,)>"
    writer.publish(np.zeros(3, "<u2"))
    writer.publish(np.zeros(3, "<u2"))
    with reader.receive(timeout=5) as sample:
        assert repr(sample) == "<shmlane.Sample seq=1 lost=0>"
    info = writer.info()
    assert repr(info) == (
        f"StreamInfo(slots=4, max_readers=64, block=False, readers=1, "
        f"writer_pid={os.getpid()}, writer_alive=True, last_seq=2, "
        f"last_timestamp_ns={info.last_timestamp_ns}, meta_size=0, first_seq=1, replaced=False, "
        f"period_ns=0, reader_entries=(ReaderEntry(pid={os.getpid()}, alive=True, policy='all', "
        f"pinned=0, next_seq=2, lost=0),))"
    )
    reader.close()
    writer.close()
    assert repr(writer) == f"<shmlane.Writer '{stream_name}' uint16 (3,) closed>"
    assert repr(reader) == f"<shmlane.Reader '{stream_name}' all uint16 (3,) closed>"
    entry = listed(stream_name)
    assert repr(entry).startswith(f"SegmentInfo(name='{stream_name}', dtype=dtype('uint16'), ")
    assert f"stream={entry.stream!r}" in repr(entry)


# ---------------------------------------------------------------- Writer


def test_writer_unlink_removes_the_name_only(name):
    with shmlane.Writer(name, shape=(2,), dtype="u1") as writer:
        reader = shmlane.Reader(name, policy="all", timeout=0)
        writer.unlink()
        assert not (SHM_DIR / f"shl.{name}").exists()
        with pytest.raises(FileNotFoundError):
            shmlane.Reader(name, timeout=0)
        writer.publish(np.array([4, 5], "u1"))  # the stream itself lives on
        with reader.receive(timeout=5) as sample:
            assert sample.array.tolist() == [4, 5]
        reader.close()
        with pytest.raises(FileNotFoundError):
            writer.unlink()


@pytest.mark.parametrize("mode", [None, 0o660, 0o666])
def test_writer_mode(name, mode):
    kwargs = {} if mode is None else {"mode": mode}
    with shmlane.Writer(name, shape=(2,), dtype="u1", **kwargs):
        assert file_mode(name) == (0o600 if mode is None else mode)


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604])
def test_writer_mode_with_read_only_class_is_refused(name, mode):
    """A user who could only read a stream could hold its liveness locks and
    sleep on its words: streams never grant read without write."""
    with pytest.raises(ValueError, match="stream grants read only with write"):
        shmlane.Writer(name, shape=(2,), dtype="u1", mode=mode)
    assert not (SHM_DIR / f"shl.{name}").exists()


@pytest.mark.parametrize("mode", [0o066, 0o200, 0o002, 0o602, 0o620, 0o700, 0o4600])
def test_mode_the_owner_cannot_use_or_granting_write_alone_is_refused(name, mode):
    """The owner reads and writes; a class writes only if it reads; no
    execute or special bits: for segments and streams alike."""
    with pytest.raises(ValueError, match="owner must read and write"):
        shmlane.create(name, 2, "<f8", mode=mode)
    with pytest.raises(ValueError, match="owner must read and write"):
        shmlane.Writer(name, shape=(2,), dtype="u1", mode=mode)
    assert not (SHM_DIR / f"shl.{name}").exists()


# ---------------------------------------------------------------- Loan


@pytest.mark.parametrize("end", ["publish", "discard", "close"])
def test_a_loan_cannot_be_entered_once_ended(name, end):
    writer = shmlane.Writer(name, shape=(2,), dtype="u1")
    loan = writer.loan()
    array = loan.array
    {"publish": loan.publish, "discard": loan.discard, "close": writer.close}[end]()
    with pytest.raises(ValueError, match="already published or discarded"):
        with loan:
            pass
    # The slot is no longer this writer's to fill.
    assert loan.array is None and not array.flags.writeable
    assert listed(name).stream.last_seq == (1 if end == "publish" else 0)
    writer.close()


def test_a_loan_publishes_through_the_extension_alone(name):
    """loan.publish is the extension's call itself: a frame's publish reaches
    the core with no Python frame on its way (cold after a fill, one took a
    few tenths of a microsecond). The loan still ends as before: its array
    made read-only, at once also when the writer's close() discards it."""
    with shmlane.Writer(name, shape=(2,), dtype="u1") as writer:
        loan = writer.loan()
        assert type(loan.publish).__name__ == "builtin_function_or_method"
        array = loan.array
        array[:] = 7
        assert loan.publish() == 1 and loan.array is None and not array.flags.writeable
        gc.disable()  # no reference cycle may keep a dropped loan from its discard
        try:
            loan = writer.loan()
            del loan
            kept = writer.loan().array  # the one dropped was discarded at once
        finally:
            gc.enable()
        writer.close()
        assert not kept.flags.writeable


# ---------------------------------------------------------------- Reader(timeout=None)

_NANOSLEEP = {"x86_64": 230, "aarch64": 115, "riscv64": 115}


def sleeping(thread: threading.Thread, tid: int, timeout: float = 30) -> bool:
    """Waits until `thread` (native id `tid`) sleeps in clock_nanosleep."""
    nr = _NANOSLEEP.get(platform.machine())
    if nr is None:
        pytest.skip(f"clock_nanosleep's number unknown on {platform.machine()}")
    path = Path(f"/proc/self/task/{tid}/syscall")
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        try:
            if path.read_text().split(" ", 1)[0] == str(nr):
                return True
        except OSError:
            pass
        time.sleep(0.001)
    return False


def test_reader_without_timeout_waits_for_the_stream(name):
    got: list = []
    tid: list = []
    started = threading.Event()

    def read() -> None:
        tid.append(threading.get_native_id())
        started.set()
        try:
            with shmlane.Reader(name, policy="all", timeout=None) as reader:
                with reader.receive(timeout=30) as sample:
                    got.append(sample.array.tolist())
        except BaseException as exc:  # reported by the main thread
            got.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    assert started.wait(10)
    assert sleeping(thread, tid[0]), f"the reader never waited for the stream: {got}"
    # Still waiting once Reader's default time-out would have ended the wait.
    default = inspect.signature(shmlane.Reader).parameters["timeout"].default
    thread.join(default + 0.5)
    assert thread.is_alive() and not got, got
    with shmlane.Writer(name, shape=(2,), dtype="u1") as writer:
        # The reader joins some time after the stream appears: publish until it has.
        deadline = time.monotonic() + 30
        while writer.info().readers == 0 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.001)
        writer.publish(np.array([7, 8], "u1"))
        thread.join(30)
    assert got == [[7, 8]]


# ---------------------------------------------------------------- info values


def test_segment_info_values(new_name):
    array_name, struct_name = new_name(), new_name()
    me = os.getpid()
    before = time.time_ns()
    with shmlane.create(array_name, (2, 3), "<f4") as seg:
        seg.notify()
        seg.notify()
        info = listed(array_name)
        assert info == shmlane.SegmentInfo(
            name=array_name,
            dtype=np.dtype("<f4"),
            shape=(2, 3),
            nbytes=24,
            changes=2,
            creator_pid=me,
            alive=True,
            kind="array",
            uid=os.geteuid(),
            owner=owner_text(os.geteuid()),
        )
        assert info.owner.endswith(f"(uid {os.geteuid()})")
        raw = seg._raw.info()
        assert before <= raw["created_ns"] <= time.time_ns()
        assert (raw["mode"], raw["uid"]) == (0o600, os.geteuid())
    assert listed(array_name).alive is False

    point = np.dtype([("x", "<i4"), ("y", "<f8")])
    with shmlane.create(struct_name, (), point):
        info = listed(struct_name)
        assert (info.kind, info.dtype, info.shape, info.nbytes) == ("struct", point, (), 12)


# The owner of an array (argv[1]) and a stream (argv[2]) that cuts both
# to nothing and writes them back, in a loop, until killed: what any local
# user may do to the objects they own. It never touches its mappings again.
CUTTER = """
import os, sys
import shmlane
held = [shmlane.create(sys.argv[1], (4096,), "<u8"),
        shmlane.Writer(sys.argv[2], shape=(64,), dtype="u1", slots=2)]
objects = []
for name in sys.argv[1:]:
    fd = os.open("/dev/shm/shl." + name, os.O_RDWR)
    objects.append((fd, os.pread(fd, os.fstat(fd).st_size, 0)))
print("ready", flush=True)
while True:
    for fd, content in objects:
        os.ftruncate(fd, 0)
        os.pwrite(fd, content, 0)
"""

# list() over and over for argv[1] seconds; prints how many lists saw the objects.
LISTER = """
import sys, time
import shmlane
seen, until = 0, time.monotonic() + float(sys.argv[1])
while time.monotonic() < until:
    seen += any(info.dtype is not None for info in shmlane.list() if info.name in sys.argv[2:])
print(seen)
"""


def test_list_survives_objects_cut_short_while_read(new_name):
    """An owner may cut their object short (ftruncate) while another user's
    process lists it: list() mapped every object, and the SIGBUS killed the
    lister (within a second here). Now it reads them with pread: such an
    entry has an error, or whatever the object holds at that moment."""
    array_name, stream_name = new_name(), new_name()
    cutter = subprocess.Popen(
        [sys.executable, "-c", CUTTER, array_name, stream_name], stdout=subprocess.PIPE, text=True
    )
    try:
        assert cutter.stdout.readline() == "ready\n"
        lister = subprocess.run(
            [sys.executable, "-c", LISTER, "1", array_name, stream_name],
            capture_output=True, text=True, timeout=60,
        )
    finally:
        cutter.kill()
        cutter.wait()
        cutter.stdout.close()
    assert lister.returncode == 0, (lister.returncode, lister.stderr[-500:])
    assert int(lister.stdout) > 0  # it did read them between the cuts


def test_stream_info_values(name):
    me = os.getpid()
    writer = shmlane.Writer(name, shape=(3,), dtype="<u2", slots=4, max_readers=3, block=True)
    assert writer.info() == shmlane.StreamInfo(
        slots=4,
        max_readers=3,
        block=True,
        readers=0,
        writer_pid=me,
        writer_alive=True,
        last_seq=0,
        last_timestamp_ns=0,
    )
    reader = shmlane.Reader(name, policy="all", timeout=0)
    t0 = time.monotonic_ns()
    for value in (1, 2):
        writer.publish(np.full(3, value, "<u2"))
    t1 = time.monotonic_ns()
    info = writer.info()
    assert (info.readers, info.last_seq) == (1, 2)
    assert t0 <= info.last_timestamp_ns <= t1
    assert info.reader_entries == (shmlane.ReaderEntry(me, True, "all", 0, 1, 0),)
    reader.receive(timeout=5).release()
    with reader.receive(timeout=5) as sample:
        assert sample.seq == 2 and sample.timestamp_ns == info.last_timestamp_ns
        held = reader.info()
    assert held.reader_entries == (shmlane.ReaderEntry(me, True, "all", 1, 3, 0),)
    info = reader.info()
    assert info == held._replace(reader_entries=(shmlane.ReaderEntry(me, True, "all", 0, 3, 0),))
    # One frame is 6 bytes; a slot takes 64, the smallest slot stride.
    assert writer._raw.info()["slot_stride"] == 64
    entry = listed(name)
    frame = ("stream", np.dtype("<u2"), (3,), 4 * 64)
    assert (entry.kind, entry.dtype, entry.shape, entry.nbytes) == frame
    assert (entry.creator_pid, entry.alive, entry.stream) == (me, True, info)

    reader.close()
    writer.close()
    closed = listed(name).stream
    assert closed == info._replace(readers=0, writer_pid=0, writer_alive=False, reader_entries=())


def test_reader_entries_show_losses_and_pins(name):
    """StreamInfo.reader_entries: each reader's policy, pins and the frames it
    lost, as it counts them (here an `all` reader lapped by a writer that does
    not wait for it, and a `latest` reader holding a frame)."""
    me = os.getpid()
    with shmlane.Writer(name, shape=(2,), dtype="u1", slots=4) as writer, \
            shmlane.Reader(name, policy="all", timeout=0) as lapped, \
            shmlane.Reader(name, policy="latest", timeout=0) as newest:
        for value in range(10):
            writer.publish(np.full(2, value, "u1"))
        first = lapped.receive(timeout=5)
        assert first.lost > 0
        with newest.receive(timeout=5) as sample:
            assert sample.seq == 10
            entries = sorted(writer.info().reader_entries, key=lambda e: e.policy)
        first.release()
        assert entries[0] == shmlane.ReaderEntry(me, True, "all", 1, first.seq + 1, first.lost)
        # next_seq is an `all` reader's: a `latest` one's means nothing.
        assert entries[1]._replace(next_seq=0) == shmlane.ReaderEntry(me, True, "latest", 1, 0, 0)


def test_declared_frame_rate_is_stored_with_the_stream(name):
    """Writer(fps=) stores the period: readers and list() see it from the
    start; a takeover without fps keeps it, one with fps changes it, and so
    does replace(fps=)."""
    with shmlane.Writer(name, shape=(2,), dtype="u1", fps=30) as writer:
        assert writer.info().period_ns == 33_333_333 and writer.info().fps == 30.0
        with shmlane.Reader(name, timeout=0) as reader:
            assert reader.info().fps == 30.0
        assert listed(name).stream.fps == 30.0
    with shmlane.Writer(name, shape=(2,), dtype="u1") as writer:  # a takeover: kept
        assert writer.info().fps == 30.0
    with shmlane.Writer(name, shape=(2,), dtype="u1", fps=29.97) as writer:
        assert writer.info().fps == 29.97
        writer.replace((3,), "u1")
        assert writer.info().fps == 29.97  # the old stream's
        writer.replace((4,), "u1", fps=12.5)
        assert writer.info().fps == 12.5
    other = f"{name}-unknown"
    try:
        with shmlane.Writer(other, shape=(2,), dtype="u1") as writer:
            assert writer.info().period_ns == 0 and writer.info().fps == 0.0
    finally:
        shmlane.unlink(other)
    for bad in (0, -30, float("nan")):
        with pytest.raises(ValueError, match="fps must be more than 0"):
            shmlane.Writer(name, shape=(2,), dtype="u1", fps=bad)


def test_frame_rate_declared_again_while_writing(name):
    """Writer.fps = ...: a camera that changes its rate says so to readers
    without replacing the stream; None: unknown; a bad rate changes nothing."""
    with shmlane.Writer(name, shape=(2,), dtype="u1", fps=30) as writer:
        with shmlane.Reader(name, timeout=0) as reader:
            writer.publish(np.zeros(2, "u1"))
            writer.fps = 60
            assert writer.fps == 60.0 and reader.info().fps == 60.0
            writer.fps = None
            assert writer.fps == 0.0 and reader.info().period_ns == 0
            with pytest.raises(ValueError, match="fps must be more than 0"):
                writer.fps = -1
            assert reader.info().period_ns == 0 and not reader.info().replaced
            writer.publish(np.ones(2, "u1"))
            with reader.receive(timeout=1) as s:
                assert s.seq == 2 and not s.new_stream
    with pytest.raises(ValueError, match="closed"):
        writer.fps = 25


# ---------------------------------------------------------------- no write access

NOBODY_CALLS = """
import os, sys
import shmlane  # before dropping privileges: the interpreter may be in root's home
os.setgroups([]); os.setgid(65534); os.setuid(65534)  # nobody
seg = shmlane.open(sys.argv[1], readonly=True)
for call in (lambda: seg.lock(timeout=0), seg.lock, seg.notify):
    try:
        call()
        print("allowed")
    except PermissionError as exc:
        print("denied", sys.argv[1] in str(exc))
for stream in sys.argv[2:]:
    try:
        with shmlane.Reader(stream, timeout=0) as reader, reader.receive(timeout=5) as sample:
            print("read", sample.array.tolist())
    except PermissionError as exc:
        print("denied", stream in str(exc))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_no_write_access_as_nobody(new_name, run_py):
    """Root's segment of mode 0644: nobody may read but not lock or notify;
    root's stream of mode 0600 it may not open; of mode 0666 it may read."""
    seg_name, closed, shared = new_name(), new_name(), new_name()
    with shmlane.create(seg_name, 2, "<f8", mode=0o644) as seg, shmlane.Writer(
        closed, shape=(2,), dtype="u1"
    ) as w1, shmlane.Writer(shared, shape=(2,), dtype="u1", mode=0o666) as w2:
        w1.publish(np.array([1, 2], "u1"))
        w2.publish(np.array([1, 2], "u1"))
        lines = run_py(NOBODY_CALLS, seg_name, closed, shared).splitlines()
        assert lines == ["denied True"] * 4 + ["read [1, 2]"]
        assert seg.changes == 0  # no notify went through
        with seg.lock(timeout=0):  # and the lock was never taken
            pass


# ---------------------------------------------------------------- "cannot tell"

DIE_WRITING = """
import os, sys
import numpy as np, shmlane
writer = shmlane.Writer(sys.argv[1], shape=(2,), dtype="u1")
writer.publish(np.array([1, 2], "u1"))
os._exit(0)  # dies as the writer: no close
"""

LOOK = """
import sys, shmlane
seg_name, stream_name = sys.argv[1:]
found = {info.name: info for info in shmlane.list()}
print(found[seg_name].alive, found[stream_name].alive, found[stream_name].stream.writer_alive)
with shmlane.Reader(stream_name, policy="all", timeout=0, keep_last=True) as reader:
    with reader.receive(timeout=5) as sample:
        print(sample.array.tolist())
    try:
        reader.receive(timeout=0.3)
        print("another frame")
    except TimeoutError:
        print("waiting")
    except shmlane.WriterGone as exc:
        print("gone", exc.reason)
"""

ROOT = Path(__file__).resolve().parents[2]


def test_cannot_tell_is_none_and_never_gone(new_name, run_py, tmp_path):
    """With the role-lock query failing (tests/c/getlk_eio.c preloaded), whether
    a creator or writer lives is None, and a reader keeps waiting for frames
    from a writer that died instead of raising WriterGone."""
    if not shutil.which("cc"):
        pytest.skip("needs a C compiler")
    preload = tmp_path / "getlk_eio.so"
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-O1", "-o", str(preload), str(ROOT / "tests/c/getlk_eio.c")],
        check=True,
        timeout=120,
    )
    seg_name, stream_name = new_name(), new_name()
    run_py(DIE_WRITING, stream_name)
    with shmlane.create(seg_name, 2, "<f8"):
        told = run_py(LOOK, seg_name, stream_name).splitlines()
        assert told == ["True False False", "[1, 2]", "gone died"]
        was = os.environ.get("LD_PRELOAD")  # an ASan run preloads its runtime first
        env = dict(os.environ, SHL_TEST_GETLK_EIO="1")
        env["LD_PRELOAD"] = f"{was}:{preload}" if was else str(preload)
        untold = subprocess.run(
            [sys.executable, "-c", LOOK, seg_name, stream_name],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert untold.returncode == 0, untold.stderr
        assert untold.stdout.splitlines() == ["None None None", "[1, 2]", "waiting"]

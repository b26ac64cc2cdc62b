"""Streams across unrelated processes (fresh interpreters and the C examples):
no torn frames at full speed, exact loss accounting, kill storms with
takeover, C <-> Python, lossless backpressure, Ctrl-C.

Python writers here stamp every 8 bytes of a frame with its sequence number;
the C writer stamps every byte (examples/python/frame_stamp.py). Readers check
every byte of each frame."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
from typing import List, Tuple

import numpy as np
import pytest

import shmlane
from conftest import ROOT, blocked_in_futex, build_c, expect_line, read_line

sys.path.insert(0, str(ROOT / "examples" / "python"))
import frame_stamp  # noqa: E402  (the examples' stamp: every byte of a frame)
from frame_meta import FrameMeta, disagreement  # noqa: E402  (the examples' metadata record)

SHAPE = (480, 640, 3)  # rows of 1920 bytes, so whole-frame stamps also start every row

# A Python writer, configured by a JSON object in argv[2]:
#   frames   frames to publish per round (-1: until killed)
#   rounds   rounds; between two, waits for a line on stdin
#   go       wait for a line on stdin before the first frame
#   hang     then take a loan, write half of it with garbage, and sleep
#   shape, slots, block  as for shmlane.Writer
WRITER = """
import json, sys, time
import shmlane
name, cfg = sys.argv[1], json.loads(sys.argv[2])
w = shmlane.Writer(name, shape=cfg.get("shape", (480, 640, 3)), dtype="u1",
                   slots=cfg.get("slots"), block=cfg.get("block", False))
print("ready", w.next_seq, flush=True)
if cfg.get("go"):
    sys.stdin.readline()
for round in range(cfg.get("rounds", 1)):
    if round:
        print("round", flush=True)
        sys.stdin.readline()
    n = 0
    while n != cfg["frames"]:
        seq = w.next_seq
        with w.loan(timeout=30) as frame:
            frame.reshape(-1).view("<u8")[...] = seq
        n += 1
if cfg.get("hang"):
    loan = w.loan(timeout=30)
    words = loan.array.reshape(-1).view("<u8")
    words[: words.size // 2] = 2**64 - 1
    print("hanging", flush=True)
    time.sleep(600)
w.close()
print("done", flush=True)
"""

# A reader in mode argv[2] that pins one frame (argv[3] "hold") or reads
# nothing ("idle"), then sleeps until killed.
HOLDER = """
import sys, time
import shmlane
r = shmlane.Reader(sys.argv[1], policy=sys.argv[2], timeout=30)
held = r.receive(timeout=30) if sys.argv[3] == "hold" else None
print("holding", flush=True)
time.sleep(600)
"""


def config(**cfg: object) -> str:
    return json.dumps(cfg)


def go(proc: subprocess.Popen, line: str = "go") -> None:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def ready(proc: subprocess.Popen, after: int) -> int:
    """The writer's next sequence number, from its "ready N" line: one past
    the last frame a reader got from its predecessor, or two if that one was
    killed between stamping a slot and announcing it (the frame stays
    deliverable: readers look for it by number)."""
    line = read_line(proc).split()
    if line[:1] != ["ready"]:
        proc.kill()
        raise AssertionError(f"writer said {line}: {proc.communicate()[1]}")
    seq = int(line[1])
    assert after < seq <= after + 2
    return seq


def whole(array: np.ndarray, seq: int) -> bool:
    """True if every 8 bytes hold seq (the Python writer's stamp)."""
    return bool((array.reshape(-1).view("<u8") == seq).all())


def test_torn_checks_see_a_tear_in_the_middle_of_a_row():
    # Canaries: a frame of which only the middle of one row comes from the
    # next frame is torn for either check.
    frame, following = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    middle = (100, slice(900, 908))  # row 100 of 1920 bytes, one word
    for stamp, check in ((lambda f, seq: f.reshape(-1).view("<u8").fill(seq), whole),
                         (frame_stamp.stamp, frame_stamp.intact)):
        stamp(frame, 7)
        stamp(following, 8)
        assert check(frame, 7)
        frame.reshape(SHAPE[0], -1)[middle] = following.reshape(SHAPE[0], -1)[middle]
        assert not check(frame, 7)
    assert frame_stamp.check_works()


def drain(reader: shmlane.Reader, check=whole, meta=False) -> List[Tuple[int, int]]:
    """(seq, lost) of every frame until the writer is gone; each one checked,
    and with meta its FrameMeta record against it."""
    got = []
    while True:
        try:
            sample = reader.receive(timeout=30)
        except shmlane.WriterGone:
            return got
        with sample:
            assert check(sample.array, sample.seq), f"frame {sample.seq} is torn"
            assert not meta or disagreement(sample.meta, sample.array) is None
            got.append((sample.seq, sample.lost))


def assert_accounted(got: List[Tuple[int, int]], first: int, last: int) -> None:
    """Frames come in order, and each one's `lost` counts exactly the gap before it."""
    expected = first
    for seq, lost in got:
        assert seq == expected + lost, f"frame {seq} after {expected - 1} but lost={lost}"
        expected = seq + 1
    assert expected == last + 1


@pytest.mark.parametrize("mode", ["latest", "all"])
def test_no_torn_frames_at_full_speed(name, spawn_py, mode):
    frames = 3000
    writer = spawn_py(WRITER, name, config(frames=frames, slots=4, go=True))
    expect_line(writer, "ready 1")
    with shmlane.Reader(name, policy=mode) as reader:
        go(writer)
        with reader.receive(timeout=30) as first:
            assert whole(first.array, first.seq)
        # Fall behind: the writer laps us (4 slots) before we read on.
        deadline = time.monotonic() + 30
        while reader.info().last_seq < first.seq + 8 and writer.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        got = [(first.seq, first.lost)] + drain(reader)
    assert writer.wait(timeout=60) == 0
    if mode == "all":
        assert_accounted(got, 1, frames)
        assert sum(lost for _, lost in got) > 0
    else:
        seqs = [seq for seq, _ in got]
        assert seqs == sorted(set(seqs)) and seqs[-1] == frames


def test_all_mode_delivers_every_frame_when_the_reader_keeps_up(name, spawn_py):
    # Rounds of 63 frames in 64 slots: however the processes are scheduled,
    # the writer never needs a slot the reader has not read yet.
    rounds, per_round = 30, 63
    cfg = config(frames=per_round, rounds=rounds, slots=64, shape=(120, 160, 3), go=True)
    writer = spawn_py(WRITER, name, cfg)
    expect_line(writer, "ready 1")
    got = []
    with shmlane.Reader(name, policy="all") as reader:
        go(writer)
        for round in range(rounds):
            if round:
                expect_line(writer, "round")
                go(writer, "next")
            for _ in range(per_round):
                with reader.receive(timeout=30) as sample:
                    assert whole(sample.array, sample.seq)
                    got.append((sample.seq, sample.lost))
        with pytest.raises(shmlane.WriterGone):
            reader.receive(timeout=30)
    assert writer.wait(timeout=60) == 0
    assert got == [(seq, 0) for seq in range(1, rounds * per_round + 1)]


def test_kill_storm(name, spawn_py):
    """Writers killed mid-loan, again and again, each followed by a new one
    that takes the stream over; readers holding samples killed alongside.
    Live readers never see a torn frame, learn each time that the writer is
    gone, and carry on without reopening; dead readers' slots are reclaimed."""
    rounds = 6
    got = {"all": [], "latest": []}
    readers = {}
    for round in range(rounds):
        hang = round % 2 == 0  # else killed at a random point while publishing
        cfg = config(frames=300 if hang else -1, slots=4, hang=hang)
        writer = spawn_py(WRITER, name, cfg)
        ready(writer, got["all"][-1][0] if got["all"] else 0)  # numbering goes on
        if not readers:
            readers = {mode: shmlane.Reader(name, policy=mode) for mode in got}
        holders = [spawn_py(HOLDER, name, mode, "hold") for mode in ("all", "latest")]
        for holder in holders:
            expect_line(holder, "holding")
        if hang:
            expect_line(writer, "hanging")
        else:
            time.sleep(random.uniform(0.05, 0.2))
        for proc in [writer] + holders:
            proc.kill()
            proc.wait(timeout=30)
        killed = time.monotonic()
        for mode, reader in readers.items():
            got[mode] += drain(reader)
        assert time.monotonic() - killed < 10  # WriterGone within 100 ms of waiting, typically
        assert readers["all"].info().readers == 2  # the dead holders do not count
    # Registered after the first writer started: from the frame then newest on.
    assert_accounted(got["all"], got["all"][0][0] - got["all"][0][1], got["all"][-1][0])
    latest = [seq for seq, _ in got["latest"]]
    assert latest == sorted(set(latest))
    # Survivors still work: a last writer, whose loans need the slots that
    # the killed holders and the killed writers' loans had taken.
    writer = spawn_py(WRITER, name, config(frames=50, slots=4, go=True))
    first = ready(writer, got["all"][-1][0])
    go(writer)
    expect_line(writer, "done")
    assert drain(readers["all"])[-1][0] == first + 49
    for reader in readers.values():
        reader.close()


def test_block_never_laps_a_live_reader(name, spawn_py):
    frames = 300
    writer = spawn_py(WRITER, name, config(frames=frames, slots=4, block=True, go=True))
    expect_line(writer, "ready 1")
    with shmlane.Reader(name, policy="all") as reader:
        go(writer)
        got = []
        while True:
            try:
                sample = reader.receive(timeout=30)
            except shmlane.WriterGone:
                break
            with sample:
                assert whole(sample.array, sample.seq)
                got.append((sample.seq, sample.lost))
            if sample.seq % 50 == 0:
                time.sleep(0.05)  # a slow reader: the writer waits for it
    assert writer.wait(timeout=60) == 0
    assert got == [(seq, 0) for seq in range(1, frames + 1)]


def test_block_does_not_wait_for_a_dead_reader(name, spawn_py):
    writer = spawn_py(WRITER, name, config(frames=100, slots=4, block=True, go=True))
    expect_line(writer, "ready 1")
    stuck = spawn_py(HOLDER, name, "all", "idle")
    expect_line(stuck, "holding")  # registered in mode "all", and will never read
    stuck.kill()
    stuck.wait(timeout=30)
    go(writer)
    expect_line(writer, "done", timeout=60)  # its loans (timeout 30 s each) all succeeded


def test_block_with_a_live_reader_that_does_not_read_times_out(name):
    with shmlane.Writer(name, shape=(4,), dtype="u1", slots=2, block=True) as writer:
        with shmlane.Reader(name, policy="all"):
            writer.publish(np.arange(4, dtype=np.uint8))
            writer.publish(np.arange(4, dtype=np.uint8))
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                writer.loan(timeout=0.2)
            assert time.monotonic() - start < 10


def test_c_writer_to_python_reader(name, c_examples):
    # Created and left by Python, taken over by C: the reader is in place
    # before the first frame, so it can account for every one. The two agree
    # on the metadata's format too (FrameMeta, FRAME_META_FORMAT).
    shmlane.Writer(name, shape=SHAPE, dtype="u1", meta=FrameMeta).close()
    with shmlane.Reader(name, policy="all", meta=FrameMeta) as reader:
        proc = subprocess.Popen(
            [str(c_examples["writer"]), "--name", name, "--fps", "1000", "--frames", "500"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            expect_line(proc, f"writer: {name} 640x480 at 1000 fps, from frame 1")  # took over
            got = drain(reader, check=frame_stamp.intact, meta=True)
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert "published 500 frames" in out
    assert_accounted(got, 1, 500)


def test_python_writer_to_c_reader(name, c_examples):
    frames = 500
    proc = subprocess.Popen(
        [str(c_examples["reader"]), "--name", name, "--mode", "all", "--wait-open", "30"]
        + ["--seconds", "60", "--exit-on-gone"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with shmlane.Writer(name, shape=SHAPE, dtype="u1", meta=FrameMeta) as writer:
            deadline = time.monotonic() + 30
            while writer.info().readers == 0:  # the C reader waits for the stream, then joins
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.01)
            writer.meta.height, writer.meta.width = SHAPE[:2]
            for _ in range(frames):
                seq = writer.meta.frame = writer.next_seq
                with writer.loan() as frame:
                    frame_stamp.stamp(frame, seq)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err + out
    summary = re.search(r"frames=(\d+) lost=(\d+) torn=(\d+) meta ok=(\d+) bad=(\d+)", out)
    assert summary, out
    received, lost, torn, meta_ok, meta_bad = map(int, summary.groups())
    assert torn == 0 and received > 0 and received + lost == frames
    assert meta_ok == received and meta_bad == 0


# A C writer of Fortran-ordered frames: element [r][c] at byte 4 * (r + 2 * c).
# It publishes one at a line on stdin, and closes at its end.
FORTRAN_WRITER = r"""
#include <shmlane.h>
#include <stdint.h>
#include <stdio.h>
int main(int argc, char **argv) {
  shl_layout frame = {.format = "<i", .ndim = 2, .shape = {2, 3}, .strides = {4, 8}};
  shl_writer *w;
  void *slot;
  if (argc != 2 || shl_writer_open(&w, argv[1], &frame, NULL) < 0) return 1;
  if (getchar() == EOF || shl_writer_loan(w, &slot, -1) < 0) return 1;
  for (int32_t i = 0; i < 6; i++) ((int32_t *)slot)[i] = i;
  if (shl_writer_publish(w, NULL) < 0) return 1;
  while (getchar() != EOF) {}
  shl_writer_close(w);
  return 0;
}
"""


def test_frames_with_strides_of_their_own(name, tmp_path):
    """Also through VideoCapture, whose copies are C-contiguous as OpenCV's
    frames are: np.array() kept the Fortran order."""
    source = tmp_path / "fortran_writer.c"
    source.write_text(FORTRAN_WRITER)
    writer = subprocess.Popen([str(build_c(source, tmp_path)), name], stdin=subprocess.PIPE, text=True)
    try:
        with shmlane.VideoCapture(name, timeout=30) as cap:
            writer.communicate("\n", timeout=60)  # publishes, then closes
            ok, frame = cap.read()
            assert ok and frame.tolist() == [[0, 2, 4], [1, 3, 5]] and frame.flags.c_contiguous
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == 0
    with shmlane.Reader(name, keep_last=True) as reader:  # the writer has finished
        assert (reader.dtype, reader.shape) == (np.dtype("<i4"), (2, 3))
        with reader.receive(timeout=5) as sample:
            assert sample.array.tolist() == [[0, 2, 4], [1, 3, 5]]
            assert sample.array.flags.f_contiguous and not sample.array.flags.writeable


RECEIVER = """
import sys, time
import shmlane
r = shmlane.Reader(sys.argv[1])
print("ready", flush=True)
start = time.monotonic()
try:
    r.receive()  # no time limit, and nothing comes
except KeyboardInterrupt:
    print(f"interrupted {time.monotonic() - start:.3f}", flush=True)
"""

LOANER = """
import sys, time
import shmlane
w = shmlane.Writer(sys.argv[1], shape=(4,), dtype="u1", slots=2, block=True)
r = shmlane.Reader(sys.argv[1], policy="all")  # never reads: the writer must wait
w.publish(bytearray(4)); w.publish(bytearray(4))
print("ready", flush=True)
try:
    w.loan()  # no time limit
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def interrupt(proc: subprocess.Popen) -> None:
    """Ctrl-C to a peer blocked in a call: KeyboardInterrupt, promptly."""
    expect_line(proc, "ready")
    assert blocked_in_futex(proc.pid, proc.pid)  # its main thread, in the call
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert out.startswith("interrupted"), err
    assert time.monotonic() - sent < 5


def test_ctrl_c_interrupts_receive(name, spawn_py):
    with shmlane.Writer(name, shape=(4,), dtype="u1"):  # alive: the receive waits
        interrupt(spawn_py(RECEIVER, name))


def test_ctrl_c_interrupts_loan(name, spawn_py):
    interrupt(spawn_py(LOANER, name))

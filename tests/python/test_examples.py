"""The README's Python quick start and the stream demo (examples/python/) run as
documented (test_readme.py checks that the README shows the quick start files)."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from types import ModuleType
from typing import List

import numpy as np
import pytest

import shmlane
from conftest import ROOT

EXAMPLES = ROOT / "examples" / "python"
sys.path.insert(0, str(EXAMPLES))  # as when they run: frame_stamp.py sits beside them
from frame_meta import FrameMeta  # noqa: E402  (the examples' metadata record)
from frame_stamp import stamp  # noqa: E402


@pytest.fixture
def quickstart_names():
    names = ("pose", "calib")  # fixed by the scripts: leave a user's own segments alone
    if any(info.name in names for info in shmlane.list()):
        pytest.skip("segments named pose or calib already exist")
    yield
    for name in names:
        try:
            shmlane.unlink(name)
        except FileNotFoundError:
            pass


def test_quickstart_writer_and_reader(quickstart_names):
    reader = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "quickstart_reader.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(info.name == "calib" for info in shmlane.list()):  # reader is up
            assert time.monotonic() < deadline and reader.poll() is None, reader.stderr.read()
            time.sleep(0.02)
        subprocess.run(
            [sys.executable, str(EXAMPLES / "quickstart_writer.py")], check=True, timeout=60
        )
        out, err = reader.communicate(timeout=60)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    assert out.splitlines()[-1] == "frame 5: x=2.5 y=-5.0 trace=15.0"
    # What it waits for, and why it ends: run alone, it ended in silence.
    lines = err.splitlines()
    assert lines[0] == "waiting for the writer (quickstart_writer.py) to change pose", err
    assert re.fullmatch(r"no change for 2 s: the writer has stopped; [1-5] updates read", lines[-1]), err


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Writes:
    """A process's stdout as one end of a SOCK_SEQPACKET socket pair: each
    write() it makes arrives here as one message, so a test sees how its
    lines were written, whoever else writes to the same terminal."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.messages: List[bytes] = []
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self) -> None:
        while True:
            message = self.ours.recv(1 << 16)
            if not message:  # every writer end closed
                return
            self.messages.append(message)

    def started(self) -> None:
        """The child has its end: close ours, so its exit ends the messages."""
        self.theirs.close()

    def text(self) -> str:
        """Everything written, once the writer exited; each write a whole line."""
        self.thread.join(timeout=60)
        self.ours.close()
        torn = [m for m in self.messages if not m.endswith(b"\n")]
        assert not torn, f"writes that are not whole lines: {torn[:5]}"
        return b"".join(self.messages).decode()


def test_stream_demo_write_and_read(name, tmp_path):
    # Frames with metadata, and a change of size halfway that the reader follows.
    # Unbuffered, as a user may run them, and each line one write: the reader's
    # and the writer's lines, on one terminal, never run together.
    snapshot = tmp_path / "last.png"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    reader_out, writer_out = Writes(), Writes()
    reader = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "read.py"), "--name", name, "--headless"]
        + ["--wait-open", "30", "--seconds", "60", "--exit-on-gone", "--snapshot", str(snapshot)],
        stdout=reader_out.theirs,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    reader_out.started()
    try:
        writer = subprocess.run(
            [sys.executable, str(EXAMPLES / "write.py"), "--name", name, "--width", "320"]
            + ["--height", "240", "--fps", "60", "--seconds", "2"]  # reports come each second
            + ["--resize-every", "1", "160x120"],
            stdout=writer_out.theirs,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env=env,
        )
        writer_out.started()
        _, err = reader.communicate(timeout=60)
    finally:
        reader.kill()
    assert writer.returncode == 0, writer.stderr
    assert reader.returncode == 0, err
    out, writer_stdout = reader_out.text(), writer_out.text()
    assert f"{name} now 160x120" in writer_stdout
    published = int(re.search(r"published (\d+) frames", writer_stdout).group(1))
    summary = re.search(r"frames=(\d+) lost=(\d+) torn=(\d+) meta ok=(\d+) bad=(\d+)", out)
    assert summary, out
    frames, lost, torn, meta_ok, meta_bad = map(int, summary.groups())
    assert frames > 0 and torn == 0 and frames + lost <= published
    assert meta_ok == frames and meta_bad == 0
    assert "reader: new stream 160x120" in out  # at 1 s; time enough for a reader to see it
    assert "frames/s" in out and "writer gone" in out
    assert snapshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readers_report_metadata_that_disagrees(name, c_examples):
    # The C and the Python reader both count a frame whose record names another
    # frame, and one whose record gives another size, and exit 1.
    readers = [
        subprocess.Popen(
            command + ["--name", name, "--mode", "all", "--wait-open", "30", "--seconds", "60"]
            + ["--exit-on-gone"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in (
            [str(c_examples["reader"])],
            [sys.executable, str(EXAMPLES / "read.py"), "--headless"],
        )
    ]
    try:
        with shmlane.Writer(name, shape=(4, 16, 3), dtype="u1", meta=FrameMeta) as writer:
            deadline = time.monotonic() + 30
            while writer.info().readers < 2:  # both wait for the stream, then join
                assert time.monotonic() < deadline and all(r.poll() is None for r in readers)
                time.sleep(0.01)
            meta = writer.meta
            for n in range(5):
                seq = writer.next_seq
                meta.frame, meta.width, meta.height = seq + (n == 1), 16, 4 + (n == 3)
                with writer.loan() as frame:
                    stamp(frame, seq)
        outputs = [r.communicate(timeout=60) for r in readers]
    finally:
        for r in readers:
            r.kill()
    for r, (out, err) in zip(readers, outputs):
        assert r.returncode == 1, out + err
        assert "frames=5 lost=0 torn=0 meta ok=3 bad=2" in out, out + err


def test_demo_works_without_opencv(tmp_path, monkeypatch):
    write, read = load_example("write"), load_example("read")
    monkeypatch.setattr(write, "cv2", None)
    monkeypatch.setattr(read, "cv2", None)
    # The built-in glyphs: each lit cell of the 3x5 grid is scale x scale pixels.
    frame = np.zeros((40, 40, 3), np.uint8)
    write.draw_text(frame, "1", 0, 0, scale=2)
    assert (frame == 255).all(axis=2).sum() == write.GLYPHS["1"].count("1") * 2 * 2
    # The PNG writer: chunks with CRCs, RGB rows behind filter byte 0.
    frame = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tmp_path / "f.png"
    read.write_png(path, frame)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = {}, 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(
            kind + body
        )
        chunks[kind] = body
        pos += 12 + length
    assert struct.unpack(">IIBB", chunks[b"IHDR"][:10]) == (7, 5, 8, 2)
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(5, 1 + 7 * 3)
    assert (rows[:, 0] == 0).all()
    assert (rows[:, 1:].reshape(5, 7, 3) == frame[..., ::-1]).all()  # BGR frames, RGB file

"""A stream whose layout changes three times under one name, written by a C
or a Python process, read at once by a C and a Python reader that follow it:
every frame arrives, none is lost, each matches its metadata and its layout,
in both start orders (issue: readers that follow the name)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

import shmlane
from conftest import ROOT, build_c, fork_gets_fork_error
from follow_peer import LAYOUTS, read

FRAMES = 12  # per layout
TOTAL = FRAMES * len(LAYOUTS)
SHAPES = ";".join(f"{shape[0]}x{shape[1]}" for shape, _, _ in LAYOUTS)


@pytest.fixture(scope="module")
def c_follow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_c(ROOT / "tests/python/c_follow.c", tmp_path_factory.mktemp("c_follow"))


def c_counts(line: str) -> Dict[str, object]:
    """c_follow read's report as read()'s dict."""
    words = line.split()
    counts: Dict[str, object] = {k: int(v) for k, v in zip(words[0:10:2], words[1:10:2])}
    counts["shapes"] = words[11] if len(words) > 11 else ""
    return counts


@pytest.mark.parametrize(
    "how", ["reopen", "live"], ids=["writer-reopens", "writer-replaces-its-stream"]
)
@pytest.mark.parametrize("writer_first", [True, False], ids=["writer-first", "readers-first"])
@pytest.mark.parametrize("writer", ["c", "python"])
def test_readers_follow_three_layout_changes(
    writer: str, writer_first: bool, how: str, c_follow: Path, name: str
) -> None:
    mode = "write-live" if how == "live" else "write"
    write_cmd: List[str] = (
        [str(c_follow), mode, name, str(FRAMES), "2"]
        if writer == "c"
        else [sys.executable, str(ROOT / "tests/python/follow_peer.py"), mode, name,
              str(FRAMES), "2"]
    )
    procs: List[subprocess.Popen] = []
    python_counts: Dict[str, object] = {}

    def start_writer() -> None:
        procs.append(subprocess.Popen(write_cmd, stdout=subprocess.PIPE, text=True))

    def python_reader() -> None:
        python_counts.update(read(name, TOTAL))

    try:
        if writer_first:
            start_writer()
        c_reader = subprocess.Popen(
            [str(c_follow), "read", name, str(TOTAL)], stdout=subprocess.PIPE, text=True
        )
        procs.append(c_reader)
        thread = threading.Thread(target=python_reader)
        thread.start()
        if not writer_first:
            start_writer()
        out, _ = procs[0 if writer_first else 1].communicate(timeout=90)
        assert out.split() == ["done", str(TOTAL)]
        c_out, _ = c_reader.communicate(timeout=90)
        thread.join(timeout=90)
        assert not thread.is_alive()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    want = {"frames": TOTAL, "lost": 0, "bad": 0, "moves": len(LAYOUTS) - 1, "shapes": SHAPES}
    c_got = c_counts(c_out)
    # A writer that closes before its successor replaces the stream may be
    # seen gone meanwhile; one that replaces its own stream never is.
    for got in (c_got, python_counts):
        gone = got.pop("gone")
        assert got == want, c_out
        if how == "live":
            assert gone == 0
    # One stream is left under the name: the last layout, numbered on.
    info = shmlane.Reader(name, timeout=0).info()
    assert (info.last_seq, info.first_seq, info.replaced) == (TOTAL, TOTAL - FRAMES + 1, False)


def test_a_child_forked_as_a_replace_returns_gets_the_fork_error(name: str) -> None:
    """A child forked while another thread's replace() has swapped the new
    stream in (and the core has freed the old handle) but has not yet taken
    the GIL back: the Writer it inherits gives the fork error, never touching
    the freed handle. This thread keeps the GIL (a long switch interval) from
    the swap to the fork."""
    path = Path("/dev/shm") / f"shl.{name}"
    with shmlane.Writer(name, (4,), "u1") as writer:
        before = path.stat().st_ino
        interval = sys.getswitchinterval()
        sys.setswitchinterval(30)
        try:
            replacing = threading.Thread(target=writer.replace, args=((8,), "u1"))
            replacing.start()
            deadline = time.monotonic() + 5
            while path.stat().st_ino == before and time.monotonic() < deadline:
                pass  # holding the GIL: the replace cannot come back
            until = time.monotonic() + 0.05  # its close of the old handle
            while time.monotonic() < until:
                pass
            fork_gets_fork_error(lambda: writer.loan(timeout=0))
        finally:
            sys.setswitchinterval(interval)
        replacing.join()
        assert writer.publish(np.arange(8, dtype="u1")) == 1  # the new stream's writer

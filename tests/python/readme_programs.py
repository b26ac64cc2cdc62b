"""The README's programs: its C and Python code blocks, each marked by a line
`<!-- test: ID -->` just before its fence, which names the shared-memory
objects it uses, which ones work together, and what the last of each pair
prints. Stdlib only: tests/python/test_readme.py runs them against this tree,
tests/wheels/check_wheels.py against an installed wheel."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Dict

README = Path(__file__).resolve().parents[2] / "README.md"
MARKED = re.compile(r"^<!-- test: ([\w-]+) -->\n```(\w+)\n(.*?)^```$", re.M | re.S)
FENCE = re.compile(r"^```(c|python)$", re.M)
# id: the names it uses. The Python quick start blocks are also files in examples/python.
BLOCKS = {
    "py-quickstart-writer": ["pose", "calib"],
    "py-quickstart-reader": ["pose", "calib"],
    "py-stream-writer": ["cam0"],
    "py-stream-reader": ["cam0"],
    "c-calib-a": ["calib"],
    "c-calib-b": ["calib"],
    "c-stream-writer": ["cam0"],
    "c-stream-reader": ["cam0"],
}
# (first, second, ...) in the order they start; the last one's output is checked.
PAIRS = {
    "c-calib": ("c-calib-a", "c-calib-b"),
    "c-stream": ("c-stream-writer", "c-stream-reader"),
    "py-stream": ("py-stream-writer", "py-stream-reader"),
    "py-quickstart": ("py-quickstart-writer", "py-quickstart-reader"),
}


def blocks() -> Dict[str, str]:
    return {m.group(1): m.group(3) for m in MARKED.finditer(README.read_text())}


def source(block_id: str, names: Dict[str, str]) -> str:
    """A block with the names it uses replaced (names: old -> new)."""
    text = blocks()[block_id]
    for old, new in names.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    return text


def program_marker(block_id: str) -> str:
    """What the process's /proc/PID/maps holds once the program proper runs:
    the extension for Python, the program's own file (named after the block,
    c-calib-a: .../c_calib_a) for C."""
    return "_shmlane" if block_id.startswith("py-") else f"/{block_id.replace('-', '_')}"


def waiting(proc: subprocess.Popen, block_id: str) -> None:
    """Until proc sleeps inside the program proper (a C program's own binary,
    or Python with shmlane loaded, not the interpreter starting), or exits."""
    marker = program_marker(block_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
            state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if marker in maps and state == "S":
            return
        time.sleep(0.01)


def check_output(pair: str, out: str, runs: int) -> None:
    """The consumer's output after `runs` runs of the producer (1: the
    consumer started first and waited)."""
    lines = out.splitlines()
    if pair == "c-calib":
        assert lines == [f"changes {runs}: diagonal 1 1 1"], out
    elif pair == "c-stream":
        assert lines and lines[-1].startswith(f"frame {30 * runs}, "), out
        assert lines[-1].endswith("first byte 29, meta frame 29"), out
    elif pair == "py-stream":
        assert lines and lines[-1].split()[0] == str(300 * runs), out
        assert float(lines[-1].split()[2]) == 299 % 256, out
        assert lines[-1].split()[3] == "299", out  # the metadata came with its frame
    elif runs == 1:  # py-quickstart, reader waiting: it sees the last update
        assert lines and lines[-1] == "frame 5: x=2.5 y=-5.0 trace=15.0", out
    else:  # the reader came after the writer: nothing changes any more, it stops
        assert lines == [], out


# Frames each run of a stream writer publishes.
RUN_FRAMES = {"c-stream": 30, "py-stream": 300}
C_LINE = re.compile(r"frame (\d+), (\d+) lost, first byte (\d+), meta frame (-?\d+)")


def every_frame_counted(pair: str, out: str, run: int) -> None:
    """The stream reader's output, with the reader there before the run's
    first frame or at it: every frame of run `run`, in order, received (its
    pixels and its record those of that frame) or counted in the next
    received one's `lost`, up to the run's last frame; none of another run."""
    frames = RUN_FRAMES[pair]
    base = frames * (run - 1)  # the frames of the runs before
    seen = base
    for line in out.splitlines():
        if pair == "c-stream":
            m = C_LINE.fullmatch(line)
            assert m, f"not a frame line: {line!r}"
            seq, lost, pixel, meta = map(int, m.groups())
        else:
            words = line.split()
            seq, lost, pixel, meta = int(words[0]), int(words[1]), float(words[2]), int(words[3])
        assert seq == seen + lost + 1, f"after frame {seen}, {line!r}: frames unaccounted for"
        assert meta == seq - base - 1 and pixel == meta % 256, f"{line!r}: not frame {seq}'s data"
        seen = seq
    assert seen == base + frames, f"the run's last frame, {base + frames}, not received: {out[-200:]}"

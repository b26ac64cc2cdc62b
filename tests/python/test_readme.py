"""Every C and Python code block of README.md builds and runs, as extracted
from the README at test time: each block carries a marker line
`<!-- test: ID -->` just before its fence, and this file knows what to do
with each ID. The C blocks are complete programs, checking every return
code. Programs that work together run as unrelated processes, in every start
order, and twice where a second run meets what the first left. The names the
blocks use are replaced by fresh ones, so runs never meet each other."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Set

import pytest

from conftest import ROOT, SHM_DIR, build_c, core_build
from readme_programs import (BLOCKS, FENCE, MARKED, PAIRS, README, blocks, check_output,
                             every_frame_counted, source, waiting)


def test_every_code_block_is_marked_and_known():
    text = README.read_text()
    unmarked = len(FENCE.findall(text)) - len(MARKED.findall(text))
    assert unmarked == 0, f"{unmarked} C or Python blocks have no `<!-- test: ID -->` line"
    assert sorted(blocks()) == sorted(BLOCKS)


@pytest.mark.parametrize("script", ["quickstart_writer", "quickstart_reader"])
def test_python_quickstart_blocks_are_the_example_files(script):
    body = (ROOT / "examples/python" / f"{script}.py").read_text().split("\n", 1)[1].lstrip("\n")
    assert blocks()[f"py-{script.replace('_', '-')}"] == body, f"README and {script}.py differ"


# Built into a C writer (the README's, unchanged): it stops itself after its
# first frame, and goes on at SIGCONT.
PAUSE_C = r"""
#include <signal.h>
#include <shmlane.h>

int __real_shl_writer_loan(shl_writer *w, void **frame, int64_t timeout_ns);

int __wrap_shl_writer_loan(shl_writer *w, void **frame, int64_t timeout_ns) {
  static int loans;
  if (loans++ == 1) raise(SIGSTOP); /* the first frame is out */
  return __real_shl_writer_loan(w, frame, timeout_ns);
}
"""
# The same before a Python writer.
PAUSE_PY = """\
import os, signal
import shmlane
_loan, _loans = shmlane.Writer.loan, []
def _paused_loan(self, *args, **kwargs):
    if len(_loans) == 1:
        os.kill(os.getpid(), signal.SIGSTOP)  # the first frame is out
    _loans.append(1)
    return _loan(self, *args, **kwargs)
shmlane.Writer.loan = _paused_loan
"""


class Programs:
    """The README's programs, with fresh names, ready to run."""

    def __init__(self, tmp_path: Path, tag: str) -> None:
        self.dir = tmp_path
        self.names = {}
        for ids in BLOCKS.values():
            for name in ids:
                self.names[name] = f"rd{os.getpid()}{tag}{name}"
        self.cmd: Dict[str, List[str]] = {}

    def command(self, block_id: str, paused: bool = False) -> List[str]:
        """The block as a program; `paused`: a writer that stops itself
        (SIGSTOP) after its first frame."""
        key = block_id + (" paused" if paused else "")
        if key not in self.cmd:
            text = source(block_id, self.names)
            stem = block_id.replace("-", "_") + ("_paused" if paused else "")
            if block_id.startswith("c-"):
                path = self.dir / f"{stem}.c"
                path.write_text(text)
                more = []
                if paused:
                    more = [self.dir / "pause.c"]
                    more[0].write_text(PAUSE_C)
                link = ["-Wl,--wrap=shl_writer_loan"] if paused else []
                self.cmd[key] = [str(build_c(path, self.dir, *more, link=link))]
            else:
                path = self.dir / f"{stem}.py"
                path.write_text((PAUSE_PY if paused else "") + text)
                self.cmd[key] = [sys.executable, str(path)]
        return self.cmd[key]

    def start(self, block_id: str, paused: bool = False) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(block_id, paused), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, block_id: str) -> str:
        proc = self.start(block_id)
        return finish(proc)

    def cleanup(self) -> None:
        remove(self.names.values())


def remove(names) -> None:
    """Unlink the objects of these names that exist."""
    for name in names:
        try:
            os.unlink(SHM_DIR / f"shl.{name}")
        except FileNotFoundError:
            pass


def finish(proc: subprocess.Popen) -> str:
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, f"exit {proc.returncode}: {err}"
    return out


@pytest.fixture
def programs(tmp_path, request):
    made = Programs(tmp_path, str(abs(hash(request.node.name)) % 10000))
    yield made
    made.cleanup()


@pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs /dev/shm")
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_consumer_first(programs, pair):
    """The consumer (B, the reader) starts first and waits; the producer comes."""
    producer, consumer = PAIRS[pair]
    for block_id in (producer, consumer):
        programs.command(block_id)  # built before anything starts
    started = programs.start(consumer)
    waiting(started, consumer)
    programs.run(producer)
    out = finish(started)
    assert out, f"{consumer} printed nothing"
    check_output(pair, out, runs=1)


STREAM_PAIRS = {"c-stream", "py-stream"}


@pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs /dev/shm")
@pytest.mark.parametrize("pair", sorted(set(PAIRS) - STREAM_PAIRS))
def test_producer_first_and_twice(programs, pair):
    """The producer runs to its end (twice: the second run meets what the
    first left), then the consumer starts."""
    producer, consumer = PAIRS[pair]
    programs.run(producer)
    programs.run(producer)
    check_output(pair, programs.run(consumer), runs=2)


def stopped(proc: subprocess.Popen) -> None:
    """Until proc stopped itself (SIGSTOP); fails if it ends first."""
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        if Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
            return
        time.sleep(0.01)
    raise AssertionError(f"the paused writer did not stop (exit {proc.poll()})")


@pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs /dev/shm")
@pytest.mark.parametrize("order", ["reader-first", "writer-first"])
@pytest.mark.parametrize("pair", sorted(STREAM_PAIRS))
def test_stream_second_run_in_each_order(programs, pair, order):
    """A second run meets the first run's stream, its writer gone. Reader
    first: it delivers none of the old frames as new and waits for the
    second writer. Writer first: the second writer took the stream over and
    published its first frame (then stopped itself) before the reader
    opened. Either way the reader accounts for every frame of the second
    run, from its first to its last: received, or counted in `lost`."""
    producer, consumer = PAIRS[pair]
    programs.command(consumer)  # built before anything starts
    programs.command(producer, paused=True)
    programs.run(producer)
    if order == "reader-first":
        started = programs.start(consumer)
        waiting(started, consumer)
        programs.run(producer)
    else:
        second = programs.start(producer, paused=True)
        try:
            stopped(second)
            started = programs.start(consumer)
            waiting(started, consumer)
        finally:
            second.send_signal(signal.SIGCONT)
        finish(second)
    out = finish(started)
    check_output(pair, out, runs=2)
    every_frame_counted(pair, out, run=2)


@pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs /dev/shm")
@pytest.mark.parametrize("first", ["py", "c"])
def test_python_and_c_stream_writers_take_over_from_each_other(programs, first):
    """The C and the Python stream examples describe the same frames and the
    same metadata record, so either writer takes the stream over from the
    other, in either order, and frame numbers go on."""
    second = "c" if first == "py" else "py"
    programs.run(f"{first}-stream-writer")
    programs.run(f"{second}-stream-writer")
    import shmlane

    name = programs.names["cam0"]
    with shmlane.Reader(name, timeout=0) as reader:
        assert reader.info().last_seq == 330
        assert reader.meta_dtype.names == ("frame", "exposure") and reader.meta_dtype.itemsize == 16


def test_c_example_builds_with_pkg_config(programs, tmp_path):
    """As the README says: `pkg-config --cflags --libs shmlane`, here with the
    build tree's own file (build/meson-uninstalled), before any install."""
    build = core_build()
    pc_dir = build / "meson-uninstalled"
    if not (pc_dir / "shmlane-uninstalled.pc").is_file() or not shutil.which("pkg-config"):
        pytest.skip("needs pkg-config and a meson build of the shared library")
    env = dict(os.environ, PKG_CONFIG_PATH=str(pc_dir))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "shmlane"], env=env, check=True,
                           capture_output=True, text=True).stdout.split()  # fmt: skip
    (tmp_path / "writer.c").write_text(source("c-stream-writer", programs.names))
    exe = tmp_path / "writer"
    subprocess.run(["cc", "-o", str(exe), str(tmp_path / "writer.c"), *flags], check=True,
                   timeout=120)  # fmt: skip
    subprocess.run([str(exe)], env=dict(os.environ, LD_LIBRARY_PATH=str(build)), check=True,
                   timeout=60)  # fmt: skip


SH_FENCE = re.compile(r"^```sh\n(.*?)^```$", re.M | re.S)


def make_targets() -> Set[str]:
    """Every target a rule of the Makefile or mk/*.mk names."""
    targets: Set[str] = set()
    for path in [ROOT / "Makefile", *sorted((ROOT / "mk").glob("*.mk"))]:
        for names in re.findall(r"^([\w.$()/ -]+?)[ \t]*:(?!=)", path.read_text(), re.M):
            targets.update(names.split())
    return targets


def readme_commands() -> List[List[str]]:
    """The commands of the README's sh blocks, as words: comments dropped,
    command lists (`a & b; c`) split."""
    commands = []
    for block in SH_FENCE.findall(README.read_text()):
        for line in block.splitlines():
            for command in re.split(r"[;&|]+", line.split("#", 1)[0]):
                if command.strip():
                    commands.append(shlex.split(command))
    return commands


def test_shell_blocks_name_what_exists(tmp_path):
    """The README's sh blocks, extracted: `make` targets exist, `python`
    scripts are files of the tree, the wheel has the project's version, and
    the `shmlane` command lines run (with a fresh name, `top` once) against
    the meson build's tool. `pip install .` itself is what `make test`
    installs the package with; the quick start line is test_examples.py's."""
    version = re.search(r"^\s*version: '([^']+)'", (ROOT / "meson.build").read_text(), re.M)
    assert version
    targets = make_targets()
    tool = core_build() / "tools" / "shmlane"
    name = f"rd{os.getpid()}sh"
    runs = []
    for words in readme_commands():
        if words[0] == "make":
            assert set(words[1:]) <= targets, f"no make target {words[1:]}"
        elif words[:2] == ["pip", "install"]:
            assert words[2] == "." or words[2].startswith(f"shmlane-{version.group(1)}-"), words
        elif words[0] == "python":
            assert (ROOT / words[1]).is_file(), words
        elif words == ["wait"]:  # the shell's, for the job started with `&`
            pass
        elif words[0] == "shmlane":  # the command pip installs; this test runs the build's
            args = [name if word == "calib" else word for word in words[1:]]
            runs.append(args + ["--once"] if args == ["top"] else args)
        else:
            raise AssertionError(f"a command this test does not know: {words}")
    assert runs and tool.exists()
    try:
        for args in runs:
            subprocess.run([str(tool), *args], check=True, capture_output=True, timeout=30)
    finally:
        remove([name])

"""Every C and Python code block of README.md builds and runs, as extracted
from the README at test time: each block carries a marker line
`<!-- test: ID -->` just before its fence, and this file knows what to do
with each ID. The C blocks are complete programs, checking every return
code. Programs that work together run as unrelated processes, in every start
order, and twice where a second run meets what the first left. The names the
blocks use are replaced by fresh ones, so runs never meet each other."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import ROOT, SHM_DIR, build_c, core_build
from readme_programs import BLOCKS, FENCE, MARKED, PAIRS, README, blocks, check_output, source, waiting


def test_every_code_block_is_marked_and_known():
    text = README.read_text()
    unmarked = len(FENCE.findall(text)) - len(MARKED.findall(text))
    assert unmarked == 0, f"{unmarked} C or Python blocks have no `<!-- test: ID -->` line"
    assert sorted(blocks()) == sorted(BLOCKS)


@pytest.mark.parametrize("script", ["quickstart_writer", "quickstart_reader"])
def test_python_quickstart_blocks_are_the_example_files(script):
    body = (ROOT / "examples/python" / f"{script}.py").read_text().split("\n", 1)[1].lstrip("\n")
    assert blocks()[f"py-{script.replace('_', '-')}"] == body, f"README and {script}.py differ"


class Programs:
    """The README's programs, with fresh names, ready to run."""

    def __init__(self, tmp_path: Path, tag: str) -> None:
        self.dir = tmp_path
        self.names = {}
        for ids in BLOCKS.values():
            for name in ids:
                self.names[name] = f"rd{os.getpid()}{tag}{name}"
        self.cmd: Dict[str, List[str]] = {}

    def command(self, block_id: str) -> List[str]:
        if block_id not in self.cmd:
            text = source(block_id, self.names)
            if block_id.startswith("c-"):
                path = self.dir / f"{block_id.replace('-', '_')}.c"
                path.write_text(text)
                self.cmd[block_id] = [str(build_c(path, self.dir))]
            else:
                path = self.dir / f"{block_id}.py"
                path.write_text(text)
                self.cmd[block_id] = [sys.executable, str(path)]
        return self.cmd[block_id]

    def start(self, block_id: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(block_id), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
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


@pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs /dev/shm")
@pytest.mark.parametrize("pair", sorted(STREAM_PAIRS))
def test_stream_reader_after_finished_runs_waits_for_the_next(programs, pair):
    """Two writer runs end; a reader started then finds their stream with no
    writer: it delivers none of their frames as new, waits for the next run,
    and reads that run to its end."""
    producer, consumer = PAIRS[pair]
    programs.run(producer)
    programs.run(producer)
    started = programs.start(consumer)
    waiting(started, consumer)
    programs.run(producer)
    out = finish(started)
    check_output(pair, out, runs=3)
    first = int(out.split()[1 if pair == "c-stream" else 0].rstrip(","))
    assert first > (60 if pair == "c-stream" else 600), f"a finished run's frame: {out[:80]}"


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

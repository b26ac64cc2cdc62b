"""Every code block of docs/*.md runs, or is compiled, as extracted from the
page at test time, as test_readme.py does for the README. Each fenced block
says its language; those of code (python, c, sh, ini) carry a marker line
`<!-- test: ID -->` just before the fence, and this file knows what to do
with each ID (BLOCKS): run it (with a prelude that supplies what a fragment
takes as given: a camera becomes a video file, a window a counter), run it
with its partner in the order the page claims, check its command lines, or
compile it where it needs what a test cannot have (a camera, posix_ipc, an
endless loop). Blocks in `text` are output and pictures, not code; those of
cli.md that show the tool's output are held against its real output
(test_cli_transcripts_match_the_tool). The names the blocks use are replaced
by fresh ones, so runs never meet each other."""

from __future__ import annotations

import ast
import concurrent.futures
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import pytest

from conftest import ROOT, SHM_DIR, core_build
from test_readme import finish, remove

import shmlane

DOCS = ROOT / "docs"
PAGES = sorted(p.name for p in DOCS.glob("*.md"))
MARKED = re.compile(r"^<!-- test: ([\w-]+) -->\n```(\w+)\n(.*?)^```$", re.M | re.S)
FENCE = re.compile(r"^```(\w*)$", re.M)
CODE = {"python", "c", "sh", "ini"}
TEXT = {"text"}


def blocks() -> Dict[str, Tuple[str, str, str]]:
    """id: (page, language, body) of every marked block."""
    found: Dict[str, Tuple[str, str, str]] = {}
    for page in PAGES:
        for m in MARKED.finditer((DOCS / page).read_text()):
            assert m.group(1) not in found, f"{m.group(1)} marks two blocks"
            found[m.group(1)] = (page, m.group(2), m.group(3))
    return found


def body(block_id: str) -> str:
    return blocks()[block_id][2]


# ------------------------------------------------------------ running blocks


class Sandbox:
    """Fresh names for the names a block uses, a directory for its files,
    and the commands that run it. Removes every name it handed out."""

    def __init__(self, tmp: Path, tag: str) -> None:
        self.dir = tmp
        self.tag = tag
        self.names: Dict[str, str] = {}

    def name(self, old: str) -> str:
        return self.names.setdefault(old, f"dc{os.getpid()}{self.tag}{old}")

    def python(self, block_id: str, names: List[str], prelude: str = "", postlude: str = "",
               replace: Optional[Dict[str, str]] = None) -> List[str]:  # fmt: skip
        """The block as a Python script, its names ("cam0") made fresh."""
        source = body(block_id)
        for old in names:
            source = source.replace(f'"{old}"', repr(self.name(old)))
        for old, new in (replace or {}).items():
            assert old in source, f"{block_id} no longer says {old!r}"
            source = source.replace(old, new)
        path = self.dir / f"{block_id}.py"
        path.write_text(textwrap.dedent(prelude) + source + textwrap.dedent(postlude))
        return [sys.executable, str(path)]

    def shell(self, line: str, names: List[str]) -> str:
        """A command line of a page's `$ ...` transcript, its names made fresh."""
        for old in names:
            line = re.sub(rf"(?<![\w.-]){re.escape(old)}(?![\w.-])", self.name(old), line)
        return line

    def cleanup(self) -> None:
        remove(self.names.values())


def run(cmd: List[str], **kw) -> str:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    return finish(proc)


def start(cmd: List[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def transcript(block_id: str) -> List[Tuple[str, List[str]]]:
    """(command, the output lines shown after it) of each `$ ` line."""
    steps: List[Tuple[str, List[str]]] = []
    for line in body(block_id).splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif line and steps:
            steps[-1][1].append(line)
    assert steps, f"{block_id}: no `$ ` command"
    return steps


def cli_env() -> Dict[str, str]:
    """PATH with the built shmlane command first."""
    tools = core_build() / "tools"
    if not (tools / "shmlane").exists():
        pytest.skip("needs the shmlane command of a meson build")
    return dict(os.environ, PATH=f"{tools}{os.pathsep}{os.environ.get('PATH', '')}")


def stream_peer(name: str, readers: int = 2) -> subprocess.Popen:
    """tests/cli/stream_peer publishing `name` at 30 fps with (two) readers."""
    peer = core_build() / "tests" / "cli" / "stream_peer"
    if not peer.exists():
        pytest.skip("needs tests/cli/stream_peer of a meson build")
    proc = subprocess.Popen([str(peer), name, "0", "30", str(readers)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def stop(proc: subprocess.Popen) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)


def opencv_clip(tmp: Path, frames: int = 8, size: Tuple[int, int] = (160, 120)) -> str:
    """A short video file to stand for a camera; skips without OpenCV."""
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    path = tmp / "camera.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    assert writer.isOpened()
    for n in range(frames):
        writer.write(np.full((size[1], size[0], 3), n * 10 % 256, np.uint8))
    writer.release()
    return str(path)


# A window that counts what it is shown instead of opening.
NO_WINDOW = """
import cv2
shown = []
cv2.imshow = lambda title, frame: shown.append(frame.shape)
cv2.waitKey = lambda delay=0: -1
"""


# ------------------------------------------------------------ what each block is

Check = Callable[[Sandbox, Path], None]
BLOCKS: Dict[str, Tuple[str, Optional[Check]]] = {}


def block(block_id: str, how: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        BLOCKS[block_id] = (how, check)
        return check

    return register


def compiled(block_id: str, why: str) -> None:
    """A block that is only compiled, and why it cannot run here."""
    BLOCKS[block_id] = (f"compiled: {why}", None)


def elsewhere(block_id: str, where: str) -> None:
    """A block another test runs as it is, or that `make test` itself runs."""
    BLOCKS[block_id] = (f"run by {where}", None)


elsewhere("py-install", "make test (install-python: pip install of the tree)")
elsewhere("perf-make", "make test (bench-smoke); the full runs take minutes")
elsewhere("cv-viewer", "test_video.py (the viewer against the service's pattern)")
compiled("gst-opencv-read", "its cv2 line runs in test_gstreamer.py where an OpenCV with "
         "GStreamer is (Debian's python3-opencv, make gst-extras; PyPI's wheels have none), its "
         "Reader lines as test_sink_to_python_reader")  # fmt: skip
elsewhere("gst-day-one", "test_gstreamer.py (videotestsrc into shmlanesink, shmlanesrc out; the "
          "H.264 recording where x264enc is, make gst-extras); the rest needs a camera, a "
          "display or an RTSP server")  # fmt: skip
BLOCKS["gst-read-python-stream"] = ("run with gst-python-write", None)
elsewhere("bridge-two-hosts", "tests/bridge (send and recv with keys between network namespaces)")
elsewhere("install-wheel", "make test-dist (tests/wheels/check_wheels.py installs each wheel "
          "where no compiler is and uses it)")  # fmt: skip
elsewhere("install-c", "test_config.py (a program built with python -m shmlane.config's flags, "
          "and pkg-config's, which agree)")  # fmt: skip


SYSTEM_WIDE = """
set -e
mount -t tmpfs none "$TMP"  # overlays: this namespace writes there, the machine's stay as they are
for dir in /usr/local /etc; do  # the install, and ldconfig's cache
  mkdir -p "$TMP/upper$dir" "$TMP/work$dir"
  mount -t overlay overlay -o "lowerdir=$dir,upperdir=$TMP/upper$dir,workdir=$TMP/work$dir" "$dir"
done
{install}
cc -o "$PROG" "$PROG.c" $(pkg-config --cflags --libs shmlane)
"$PROG"
"""


@block("install-source", "its meson line installs the tree's build/ into a /usr/local (and /etc) of "
       "a mount namespace's own; a program built with pkg-config's flags then runs there")  # fmt: skip
def _(box: Sandbox, tmp: Path) -> None:
    build = core_build()
    bindir = Path(sys.executable).parent
    meson = shutil.which("meson", path=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    if meson is None:
        pytest.skip("needs meson")
    installed = json.loads(run([meson, "introspect", str(build), "--installed"]))
    if not any(p.startswith("/usr/local/") and p.endswith("/libshmlane.so.0") for p in installed.values()):
        pytest.skip("needs a build that installs libshmlane.so.0 into /usr/local (make build)")
    namespace = shutil.which("unshare") and subprocess.run(["unshare", "-m", "true"]).returncode == 0
    if not shutil.which("pkg-config") or not namespace:
        pytest.skip("needs pkg-config and a mount namespace (root)")
    line = next(x for x in body("install-source").splitlines() if "meson install" in x)
    install = line.split("#")[0].replace("meson setup build && ", "")
    install = install.replace("meson install -C build", f"{meson} install --quiet --no-rebuild -C {build}")
    prog = tmp / "version"
    prog.with_suffix(".c").write_text('#include <shmlane.h>\n#include <stdio.h>\n'
                                      'int main(void) { puts(shl_version_string()); return 0; }\n')
    (tmp / "mnt").mkdir()
    env = dict(os.environ, TMP=str(tmp / "mnt"), PROG=str(prog))
    out = run(["unshare", "-m", "sh", "-c", SYSTEM_WIDE.format(install=install)], env=env)
    assert out.split()[-1] == shmlane.__version__, out


@block("py-first", "run twice, after the README's quick start left calib")
def _(box: Sandbox, tmp: Path) -> None:
    shmlane.create(box.name("calib"), shape=(3, 3), dtype="<f8", exist_ok=True).close()
    for runs in (1, 2):
        changes, total = run(box.python("py-first", ["calib"])).split()
        assert (int(changes), total) == (runs, "9.0")


SEGMENT = """
import ctypes
import shmlane

class Pose(ctypes.Structure):
    _fields_ = [("frame", ctypes.c_uint64), ("x", ctypes.c_double)]

shmlane.create({name!r}, ctype=Pose, exist_ok=True).close()  # the block opens it itself
"""


@block("py-lock", "run on a segment with a `frame` field")
def _(box: Sandbox, tmp: Path) -> None:
    prelude = SEGMENT.format(name=box.name("pose"))
    run(box.python("py-lock", ["pose"], prelude, "\nassert seg.struct.frame == 1\n"))


@block("py-readonly", "run on a read-only segment")
def _(box: Sandbox, tmp: Path) -> None:
    prelude = SEGMENT.format(name=box.name("pose"))
    assert run(box.python("py-readonly", ["pose"], prelude)).split() == ["0", "0.0"]


@block("py-async", "run: the coroutine follows one notify")
def _(box: Sandbox, tmp: Path) -> None:
    prelude = f"""
    import asyncio
    import threading
    import shmlane
    seg = shmlane.create({box.name("calib")!r}, shape=(2,), dtype="<f8")
    """
    postlude = """
    async def main():
        task = asyncio.ensure_future(follow(seg))
        await asyncio.sleep(0.1)
        seg.array[:] = 7
        seg.notify()
        await asyncio.sleep(0.2)
        task.cancel()
    asyncio.run(main())
    """
    assert run(box.python("py-async", [], prelude, postlude)).strip() == "[7. 7.]"


@block("py-ctypes-format", "run: the format the text states is the one stored")
def _(box: Sandbox, tmp: Path) -> None:
    page = (DOCS / "python.md").read_text()
    stated = re.search(r"is stored as `(T\{[^`]*\})` \(48 bytes\)", page)
    assert stated, "python.md no longer states Pose's stored format"
    postlude = f"""
    import shmlane
    with shmlane.create({box.name("pose")!r}, ctype=Pose) as seg:
        print(seg._raw.layout()["format"], ctypes.sizeof(Pose))
    """
    out = run(box.python("py-ctypes-format", [], "import ctypes\n", postlude)).split()
    assert out == [stated.group(1), "48"]


# A camera that fills the frame it is given, as cv2.VideoCapture.read(frame) does.
CAMERA = """
    class Camera:
        def read(self, frame):
            frame[...] = 3
            return True, frame
    """


def stream_processes(box: Sandbox) -> Tuple[List[str], List[str]]:
    """python.md's py-stream as its two processes, A (the writer, with a fake
    camera; it closes once B joined) and B (the reader; it prints the last
    sample's seq and how many frames `for` showed)."""
    source = body("py-stream")
    split = source.index("# Process B")
    a_source, b_source = source[:split], source[split:]
    a_prelude = CAMERA + """
    import time
    import numpy as np
    cap, image = Camera(), np.full((480, 640, 3), 5, np.uint8)
    """
    a_postlude = """
    while not w.info().readers:  # B joined: A's part is done, the writer ends
        time.sleep(0.01)
    w.close()
    """
    b_prelude = "shown = []\nshow = shown.append\n"
    b_postlude = "\nprint(s.seq, len(shown))\n"
    commands = []
    for part, text, prelude, postlude in (("a", a_source, a_prelude, a_postlude),
                                          ("b", b_source, b_prelude, b_postlude)):  # fmt: skip
        path = box.dir / f"py-stream-{part}.py"
        text = text.replace('"cam0"', repr(box.name("cam0")))
        path.write_text("import shmlane\n" + textwrap.dedent(prelude) + text + textwrap.dedent(postlude))
        commands.append([sys.executable, str(path)])
    return commands[0], commands[1]


@block("py-stream", "run as its two processes, A first, then B first")
def _(box: Sandbox, tmp: Path) -> None:
    from readme_programs import waiting

    a, b = stream_processes(box)
    # A first: B takes the newest frame (the second), then `for` ends with the writer.
    writer = start(a)
    path = SHM_DIR / f"shl.{box.name('cam0')}"
    deadline = time.monotonic() + 30
    while not path.exists() and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run(b).split() == ["2", "0"]
    finish(writer)
    remove([box.name("cam0")])
    # B first: it waits for the stream; each of A's two frames is B's first
    # sample or shown by `for`, which ends with the writer.
    reader = start(b)
    waiting(reader, "py-b")
    run(a)
    seq, shown = finish(reader).split()
    assert seq == "2" and shown in ("0", "1"), (seq, shown)


@block("py-stream-meta", "run with a fake camera")
def _(box: Sandbox, tmp: Path) -> None:
    prelude = CAMERA + """
    import ctypes, time
    import shmlane

    cap, loan_count = Camera(), 41
    """
    postlude = "\nprint(s.meta.frame, s.meta.width, s.meta.height)\n"
    assert run(box.python("py-stream-meta", ["cam0"], prelude, postlude)).split() == ["41", "640", "480"]


# A camera delivers at its own rate: a video file read at 30 frames a second.
# Its frames wait for the test's reader to join the block's stream (`out`):
# however slowly the processes start, no frame goes out before a reader is there.
PACED_CAMERA = """
import time
import cv2

class Camera:
    def __init__(self, path):
        self.file = cv2.VideoCapture(path)

    def read(self):
        out = globals().get("out")  # the block's VideoWriter, once made
        while out is not None and not out.writer.info().readers:
            time.sleep(0.01)
        time.sleep(1 / 30)
        return self.file.read()
"""


def writer_then_reader(box: Sandbox, writer: List[str], reader: List[str]) -> str:
    """The writer first, the reader once the stream exists; the reader's output."""
    producing = start(writer)
    path = SHM_DIR / f"shl.{box.name('cam0')}"
    deadline = time.monotonic() + 30
    while not path.exists() and producing.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    consuming = start(reader)
    finish(producing)
    return finish(consuming)


@block("cv-writer", "run with cv-reader, a video file for the camera")
def _(box: Sandbox, tmp: Path) -> None:
    clip = opencv_clip(tmp)
    reader = box.python("cv-reader", ["cam0"], NO_WINDOW, "\nprint(len(shown))\n")
    writer = box.python("cv-writer", ["cam0"], PACED_CAMERA, replace={"cv2.VideoCapture(0)": f"Camera({clip!r})"})
    # frames shown until read() found the writer gone
    assert int(writer_then_reader(box, writer, reader)) > 0


BLOCKS["cv-reader"] = ("run with cv-writer", None)


# A writer process at 30 frames a second: 8 frames of 160x120 once a reader
# joined, then it ends.
PACED_WRITER = """
import sys, time
import numpy as np
import shmlane
with shmlane.VideoWriter(sys.argv[1], 30, (160, 120)) as out:
    while not out.writer.info().readers:
        time.sleep(0.01)
    for n in range(8):
        out.write(np.full((120, 160, 3), n * 10, np.uint8))
        time.sleep(1 / 30)
"""


@block("cv-record", "run: recording a stream written at 30 fps")
def _(box: Sandbox, tmp: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    video = tmp / "record.avi"
    recorder = box.python("cv-record", ["cam0"], replace={'"cam0.avi"': repr(str(video))})
    writer_then_reader(box, [sys.executable, "-c", PACED_WRITER, box.name("cam0")], recorder)
    recorded = cv2.VideoCapture(str(video))
    try:
        frames = int(recorded.get(cv2.CAP_PROP_FRAME_COUNT))
        size = (recorded.get(cv2.CAP_PROP_FRAME_WIDTH), recorded.get(cv2.CAP_PROP_FRAME_HEIGHT))
        assert recorded.get(cv2.CAP_PROP_FPS) == 30.0 and size == (160, 120) and frames > 0
    finally:
        recorded.release()


@block("py-writer-gone-loop", "run: frames of a writer, then of its successor after WriterGone")
def _(box: Sandbox, tmp: Path) -> None:
    prelude = f"""
    import threading, time
    import numpy as np
    import shmlane

    name = {box.name("cam0")!r}
    first = shmlane.Writer(name, shape=(2,), dtype="u1")
    reader = shmlane.Reader(name)
    got = []

    def show(array):  # what was shown, until the successor's frame
        got.append(int(array[0]))
        if len(got) == 2:
            print(*got)
            raise SystemExit(0)

    def writers():  # a frame, the writer gone once it was shown, then a successor's frame
        first.publish(np.full(2, 1, np.uint8))
        while not got:
            time.sleep(0.01)
        first.close()
        time.sleep(0.2)  # the loop meets WriterGone meanwhile
        with shmlane.Writer(name, shape=(2,), dtype="u1") as successor:
            successor.publish(np.full(2, 2, np.uint8))
            time.sleep(30)

    threading.Thread(target=writers, daemon=True).start()
    """
    assert run(box.python("py-writer-gone-loop", [], prelude)).split() == ["1", "2"]


@block("cv-classic-writer", "run with cv-classic-reader: a video file for the camera, no window")
def _(box: Sandbox, tmp: Path) -> None:
    posix_ipc = pytest.importorskip("posix_ipc")
    clip = opencv_clip(tmp, 8, (640, 480))  # the size the reader assumes
    shm, sem = "/" + box.name("cam0"), "/" + box.name("cam0") + "-sem"
    names = {'"/cam0"': repr(shm), '"/cam0-sem"': repr(sem)}
    camera = {"cv2.VideoCapture(0)": f"cv2.VideoCapture({clip!r})"}
    writer = box.python("cv-classic-writer", [], replace={**camera, **names})
    # The window counts what it shows; `q` is pressed after the fifth frame.
    window = NO_WINDOW + "cv2.waitKey = lambda delay=0: ord('q') if len(shown) == 5 else -1\n"
    postlude = "\nprint(len(shown), set(shown) == {(480, 640, 3)})\n"
    reader = box.python("cv-classic-reader", [], window, postlude, replace=names)
    try:
        run(writer)  # until the file ends; it leaves the memory and the semaphore
        assert run(reader).split() == ["5", "True"]
    finally:
        for unlink, name in ((posix_ipc.unlink_shared_memory, shm), (posix_ipc.unlink_semaphore, sem)):
            try:
                unlink(name)
            except posix_ipc.ExistentialError:
                pass


BLOCKS["cv-classic-reader"] = ("run with cv-classic-writer", None)


@block("cv-loan", "run with a video file for the capture")
def _(box: Sandbox, tmp: Path) -> None:
    clip = opencv_clip(tmp, 5, (640, 480))  # the size the block's writer gives its stream
    prelude = f"import cv2\nimport shmlane\ncap = cv2.VideoCapture({clip!r})\n"
    postlude = "\nprint(out.writer.next_seq - 1)\n"
    assert run(box.python("cv-loan", ["cam0"], prelude, postlude)).strip() == "5"


def camera_arguments(line: str) -> List[str]:
    """The arguments of a shmlane-camera command line, without the program."""
    words = shlex.split(line, comments=True)
    for program in (["shmlane-camera"], ["python", "-m", "shmlane.camera"],
                    ["/usr/local/bin/shmlane-camera"]):  # fmt: skip
        if words[: len(program)] == program:
            return words[len(program) :]
    raise AssertionError(f"not a shmlane-camera command: {line!r}")


@block("cv-camera-service", "each command line parsed by the service")
def _(box: Sandbox, tmp: Path) -> None:
    from shmlane.camera import parse

    lines = [line for line in body("cv-camera-service").splitlines() if line.strip()]
    for line in lines:
        parse(camera_arguments(line))


@block("cv-systemd", "its ExecStart parsed by the service")
def _(box: Sandbox, tmp: Path) -> None:
    from shmlane.camera import parse

    (command,) = re.findall(r"^ExecStart=(.*)$", body("cv-systemd"), re.M)
    parse(camera_arguments(command))


def gst_env() -> Dict[str, str]:
    """GStreamer's tools, pointed at the plugin of the meson build."""
    plugin = core_build() / "gst"
    if not shutil.which("gst-launch-1.0") or not (plugin / "libgstshmlane.so").is_file():
        pytest.skip("needs gst-launch-1.0 and the plugin of a meson build")
    return dict(os.environ, GST_PLUGIN_PATH=str(plugin))


@block("gst-plugin-path", "run from a tree whose build/ is the meson build")
def _(box: Sandbox, tmp: Path) -> None:
    env = gst_env()
    (tmp / "build").symlink_to(core_build())
    assert "shmlanesink" in run(["sh", "-c", body("gst-plugin-path")], env=env, cwd=tmp)


@block("gst-python-write", "run, then gst-read-python-stream reads its frame (into fakesink)")
def _(box: Sandbox, tmp: Path) -> None:
    env = gst_env()
    prelude = "import sys\nimport numpy as np\nimport shmlane\nframe = np.zeros((480, 640, 3), np.uint8)\n"
    postlude = "\nprint('published', flush=True)\nsys.stdin.read()  # the writer lives until told\n"
    writer = subprocess.Popen(box.python("gst-python-write", ["cam0"], prelude, postlude),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "published\n"
        (line,) = body("gst-read-python-stream").splitlines()
        line = box.shell(line, ["cam0"]).replace("shmlanesrc", "shmlanesrc num-buffers=1", 1)
        run(["sh", "-c", line.replace("autovideosink", "fakesink")], env=env)  # EOS after the frame
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
        writer.wait(timeout=10)


@block("bridge-ipc", "run: a stream bridged over ipc:// and read at the other end")
def _(box: Sandbox, tmp: Path) -> None:
    env = cli_env()
    if not (core_build() / "bridge" / "shmlane-bridge").exists():
        pytest.skip("needs shmlane-bridge (libzmq) in the meson build")
    peer = stream_peer(box.name("cam"))
    socket = str(tmp / "cam.sock")
    lines = [box.shell(command.replace("/run/user/1000/cam.sock", socket), ["cam", "cam2"])
             for command, _ in transcript("bridge-ipc")]  # fmt: skip
    # The reader's status is the script's; then the two bridges are ended.
    script = "\n".join(lines) + "\nstatus=$?\nkill $(jobs -p)\nwait\nexit $status\n"
    (tmp / "bin").mkdir()
    python = tmp / "bin" / "python"  # `python`: this one, with shmlane (a venv's, say)
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    env["PATH"] = f"{tmp / 'bin'}{os.pathsep}{env['PATH']}"
    try:
        out = run(["timeout", "60", "bash", "-c", script], env=env, cwd=tmp).split()
    finally:
        stop(peer)
    assert int(out[0]) >= 1 and out[1].startswith("("), out  # a frame, with its metadata record


@block("cli-create", "run: each command succeeds")
def _(box: Sandbox, tmp: Path) -> None:
    env = cli_env()
    for command, output in transcript("cli-create"):
        assert not output
        run(["sh", "-c", box.shell(command, ["calib", "frame", "pose"])], env=env)


@block("cli-info-json-pipe", "run against a stream with two readers")
def _(box: Sandbox, tmp: Path) -> None:
    env = cli_env()
    peer = stream_peer(box.name("cam"))
    try:
        ((command, shown),) = transcript("cli-info-json-pipe")
        out = run(["sh", "-c", box.shell(command, ["cam"])], env=env).split()
    finally:
        stop(peer)
    assert shown[0].split()[0] == out[0] == "2" and float(out[1]) > 0, out


@block("cli-ls-json-pipe", "run with a foreign file planted")
def _(box: Sandbox, tmp: Path) -> None:
    env = cli_env()
    junk = box.name("junk")
    (SHM_DIR / f"shl.{junk}").write_bytes(b"not a segment")
    ((command, shown),) = transcript("cli-ls-json-pipe")
    listed = ast.literal_eval(run(["sh", "-c", box.shell(command, ["junk"])], env=env))
    assert ast.literal_eval(shown[0]) == ["junk"] and junk in listed


@block("cli-top-json", "run against a stream being published")
def _(box: Sandbox, tmp: Path) -> None:
    env = cli_env()
    peer = stream_peer(box.name("cam"))
    try:
        out = run(["sh", "-c", body("cli-top-json")], env=env).split("\n")
    finally:
        stop(peer)
    assert len(out) == 2 and out[1] == "" and out[0], out  # the fastest stream


# ------------------------------------------------------------ the tests


def test_every_code_block_is_marked_and_known():
    for page in PAGES:
        text = (DOCS / page).read_text()
        languages = FENCE.findall(text)[::2]  # opening fences
        untagged = [lang for lang in languages if lang not in CODE | TEXT]
        assert not untagged, f"{page}: blocks without a known language: {untagged}"
        code = sum(lang in CODE for lang in languages)
        assert code == len(MARKED.findall(text)), f"{page}: code blocks without a marker"
    assert sorted(blocks()) == sorted(BLOCKS)


@pytest.mark.parametrize("block_id", sorted(i for i, (how, _) in BLOCKS.items() if how.startswith("compiled")))
def test_compiled_blocks_compile(block_id):
    page, language, source = blocks()[block_id]
    assert language == "python"
    compile(source, f"{page}:{block_id}", "exec")


@pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs /dev/shm")
def test_blocks_run(tmp_path):
    """Every block that runs, all at once: most of their time is spent
    waiting (for a writer, a timeout, a second look), so they wait together.
    A failure names its block; blocks whose needs are missing here (OpenCV,
    a meson build) are skipped and named."""
    runnable = sorted(i for i, (_, check) in BLOCKS.items() if check is not None)

    def one(block_id: str) -> Tuple[str, str]:
        check = BLOCKS[block_id][1]
        assert check is not None
        (tmp_path / block_id).mkdir()
        box = Sandbox(tmp_path / block_id, str(runnable.index(block_id)))
        try:
            check(box, tmp_path / block_id)
            return "ok", ""
        except pytest.skip.Exception as exc:
            return "skipped", str(exc)
        except BaseException:  # noqa: BLE001 - reported below, with its block
            return "failed", traceback.format_exc()
        finally:
            box.cleanup()

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:  # they mostly wait
        results = dict(zip(runnable, pool.map(one, runnable)))
    failed = {i: why for i, (state, why) in results.items() if state == "failed"}
    skipped = {i: why for i, (state, why) in results.items() if state == "skipped"}
    for block_id, why in skipped.items():
        print(f"{block_id}: skipped: {why}")
    assert not failed, "\n".join(f"--- {i} ({BLOCKS[i][0]}):\n{why}" for i, why in failed.items())


# ------------------------------------------------------------ cli.md's transcripts

TRANSCRIPT = re.compile(r"^```text\n(\$ shmlane .*?|shmlane top - .*?)^```$", re.M | re.S)


def cli_transcripts() -> Dict[str, List[str]]:
    """cli.md's `text` blocks of the tool's output: {command: lines shown}
    (`top`: the table that opens the block)."""
    shown: Dict[str, List[str]] = {}
    for m in TRANSCRIPT.finditer((DOCS / "cli.md").read_text()):
        command = "shmlane top --once"
        for line in m.group(1).splitlines():
            if line.startswith("$ "):
                command = line[2:]
                shown[command] = []
            else:
                shown.setdefault(command, []).append(line)
    return shown


def fields(lines: List[str]) -> List[Tuple[str, str]]:
    """`info` text as (key, value), in order; a page's `...` elision dropped."""
    return [(m.group(1), m.group(2)) for m in map(re.compile(r"^(\S[^:]*):\s+(.*)$").match, lines) if m]


def columns(lines: List[str], title: str) -> Tuple[List[str], Dict[str, Dict[str, str]]]:
    """The table whose header starts with `title`: its titles, and each row
    by its first cell as {title: cell} (titles and cells hold no blanks but
    `READER OF`'s)."""
    at = next(i for i, line in enumerate(lines) if line.startswith(title))
    titles = lines[at].replace("READER OF", "READER_OF").split()
    rows: Dict[str, Dict[str, str]] = {}
    for line in lines[at + 1 :]:
        if not line.strip():
            break
        rows.setdefault(line.split()[0], dict(zip(titles, line.split())))
    return titles, rows


READER_LINE = re.compile(r"pid \d+ \(alive: (yes|no|\?)\), (latest|all), pinned \d+(, next \d+)?, lost \d+")


def test_cli_transcripts_match_the_tool(tmp_path):
    """cli.md's transcripts against the tool's real output, for objects made
    as the page's are: the same lines, fields, columns and JSON keys in the
    same order, and the same values but for pids, owners, times, ages and
    what differs between the page's camera and the test's stream."""
    env = cli_env()
    box = Sandbox(tmp_path, "t")
    pages = cli_transcripts()
    names = ["calib", "pose", "cam", "junk", "tmp"]

    def tool(command: str, ok=(0,), rename: bool = True) -> List[str]:
        """The command's output lines, with the page's names for the fresh ones."""
        proc = subprocess.run(["sh", "-c", box.shell(command, names)], env=env, text=True,
                              capture_output=True, timeout=60)  # fmt: skip
        assert proc.returncode in ok, (command, proc.stderr)
        out = proc.stdout
        for name in names if rename else []:
            out = re.sub(rf"(?<![\w.-]){re.escape(box.name(name))}(?![\w.-])", name, out)
        return out.splitlines()

    try:
        tool("shmlane create calib --format f8 --shape 3,4")
        tool("shmlane create pose --format 'T{<i:x:<d:y:}'")
        (SHM_DIR / f"shl.{box.name('junk')}").write_bytes(b"not a segment")
        peer = stream_peer(box.name("cam"))
        try:
            # ls and top list every object of the machine: another's may be unreadable (exit 1).
            listed = tool("shmlane ls", ok=(0, 1), rename=False)
            top = tool("shmlane top --once", ok=(0, 1), rename=False)
            cam = tool("shmlane info cam")
        finally:
            stop(peer)

        # ls: the same columns; calib and junk as the page shows them, pose and cam alike.
        titles, rows = columns(pages["shmlane ls"], "NAME")
        real_titles, real_rows = columns(listed, "NAME")
        assert titles == real_titles
        for name, same in (("calib", ["KIND", "SHAPE", "BYTES", "CHANGES", "ALIVE", "STATUS",
                                      "STREAM", "FORMAT"]), ("junk", titles[1:]),
                           ("pose", ["KIND", "SHAPE", "BYTES", "STATUS", "STREAM", "FORMAT"]),
                           ("cam", ["KIND", "STATUS"])):  # fmt: skip
            real = real_rows[box.name(name)]
            assert {t: rows[name][t] for t in same} == {t: real[t] for t in same}, name
        assert re.fullmatch(r"slots=\d+,readers=2,seq=\d+,fps=\d+\.\d", real_rows[box.name("cam")]["STREAM"])

        # info calib: every line; values but the volatile ones.
        page, real = fields(pages["shmlane info calib"]), fields(tool("shmlane info calib"))
        volatile = {"creator pid", "created", "owner"}
        assert [k for k, _ in page] == [k for k, _ in real]
        assert [kv for kv in page if kv[0] not in volatile] == [kv for kv in real if kv[0] not in volatile]

        # info cam: the page's lines (its `...` elides the array's), in order, and the reader lines.
        page, real = fields(pages["shmlane info cam"]), fields(cam)
        keys = [k for k, _ in real]
        assert [k for k in keys if k in {k for k, _ in page}] == [k for k, _ in page]
        assert dict(page)["header format"] == dict(real)["header format"]
        readers = [v for k, v in page if k == "reader"], [v for k, v in real if k == "reader"]
        assert readers[0] and len(readers[1]) == 2  # the page's, and the peer's two readers
        assert all(READER_LINE.fullmatch(v) for v in readers[0] + readers[1]), readers

        # top: its first line and three tables, titled alike.
        shown = pages["shmlane top --once"]
        pattern = (r"shmlane top - \d\d:\d\d:\d\d - \d+ streams, \d+ other segments"
                   r"( \(\d+ unreadable\))? - Ctrl-C quits")
        assert re.fullmatch(pattern, shown[0]) and re.fullmatch(pattern, top[0])
        for title in ("STREAM", "READER OF", "SEGMENT"):
            assert columns(shown, title)[0] == columns(top, title)[0], title

        # info --json calib: the same keys in the same order, the same values but the volatile ones.
        (line,) = pages["shmlane info --json calib"]
        page_json, real_json = json.loads(line), json.loads(tool("shmlane info --json calib")[0])
        assert list(page_json) == list(real_json)
        volatile = {"creator_pid", "created_ns", "age_s", "uid", "owner"}
        assert {k: v for k, v in page_json.items() if k not in volatile} == {
            k: v for k, v in real_json.items() if k not in volatile}  # fmt: skip

        # gc, on the page's objects only (a gc without names judges the whole machine's):
        # a stream whose writer was killed, a file its creator never initialised, a dead creator's array.
        remove([box.name("cam")])
        killed = stream_peer(box.name("cam"), readers=0)
        killed.kill()
        killed.wait(timeout=10)
        tmp_file = SHM_DIR / f"shl.{box.name('tmp')}"
        tmp_file.write_bytes(b"")
        os.utime(tmp_file, (time.time() - 3600, time.time() - 3600))
        for command in ("shmlane gc --dry-run", "shmlane gc", "shmlane gc --all-dead calib"):
            named = command if command.endswith("calib") else command + " cam tmp"
            assert tool(named) == pages[command], command
    finally:
        box.cleanup()

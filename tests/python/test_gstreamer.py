"""shmlanesink and shmlanesrc across processes (docs/gstreamer.md): gst-launch-1.0
pipelines with each other and with Python Readers and Writers, every frame
compared byte for byte; a writer killed and restarted under a reader.
Needs gst-launch-1.0 and the plugin of $SHMLANE_BUILD (make test-python)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, List

import numpy as np
import pytest

import shmlane

BUILD = os.environ.get("SHMLANE_BUILD")
PLUGIN = Path(BUILD).resolve() / "gst" if BUILD else None
LAUNCH = shutil.which("gst-launch-1.0")

pytestmark = pytest.mark.skipif(
    not (LAUNCH and PLUGIN and (PLUGIN / "libgstshmlane.so").is_file()),
    reason="needs gst-launch-1.0 and the plugin in $SHMLANE_BUILD/gst (make deps build)",
)

W, H = 64, 48


def gst_env() -> dict:
    return {**os.environ, "GST_PLUGIN_PATH": str(PLUGIN)}


_running: List[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _stop_pipelines(new_name: Callable[[], str]) -> Iterator[None]:
    """The pipelines a test left running (it failed) are killed before its
    streams are removed (new_name's teardown runs after this one's)."""
    yield
    while _running:
        proc = _running.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def launch(pipeline: str) -> subprocess.Popen:
    _running.append(subprocess.Popen([LAUNCH, "-q", *pipeline.split()], env=gst_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return _running[-1]


def run(pipeline: str, timeout: float = 20.0) -> str:
    proc = launch(pipeline)
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{pipeline}:\n{out}"
    return out


def caps(fmt: str) -> str:
    return f"video/x-raw,format={fmt},width={W},height={H},framerate=30/1"


# videotestsrc's ball moves with the frame number: frames differ, and the
# same frame number gives the same bytes in any process.
TESTSRC = "videotestsrc pattern=ball"


def reference(tmp_path: Path, fmt: str, n: int, stream: str) -> List[bytes]:
    """The frames videotestsrc makes, written by GStreamer alone; the same
    gst-launch-1.0 run creates `stream` with one frame and closes its
    writer, so that readers join before the frames under test (a sink of the
    same caps takes it over). Readers that join a finished run's stream wait
    for the next writer: that frame is not delivered to them."""
    path = tmp_path / f"ref-{fmt}.raw"
    run(f"{TESTSRC} num-buffers={n} ! {caps(fmt)} ! filesink location={path} "
        f"{TESTSRC} num-buffers=1 ! {caps(fmt)} ! shmlanesink stream={stream} block=true")
    data = path.read_bytes()
    size = len(data) // n
    return [data[i * size:(i + 1) * size] for i in range(n)]


def wait_readers(name: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with shmlane.Reader(name, timeout=timeout, owner=None) as probe:
                if probe.info().readers >= count + 1:
                    return
        except (FileNotFoundError, shmlane.StreamBusy):
            pass
        assert time.monotonic() < deadline, f"stream '{name}': {count} readers never joined"
        time.sleep(0.02)


@pytest.mark.parametrize("fmt", ["I420", "BGR", "RGBA"])
def test_sink_to_src_every_frame(name: str, tmp_path: Path, fmt: str) -> None:
    n = 30
    ref = reference(tmp_path, fmt, n, name)
    out = tmp_path / "out.raw"
    reader = launch(f"shmlanesrc stream={name} policy=all num-buffers={n} ! "
                    f"filesink location={out}")
    wait_readers(name, 1)
    run(f"{TESTSRC} num-buffers={n} ! {caps(fmt)} ! "
        f"shmlanesink stream={name} block=true sync=false")
    text, _ = reader.communicate(timeout=20)
    assert reader.returncode == 0, text
    data = out.read_bytes()
    size = len(ref[0])
    frames = [data[i * size:(i + 1) * size] for i in range(len(data) // size)]
    assert len(frames) == n and len(data) == n * size
    for i in range(n):
        assert frames[i] == ref[i], f"frame {i} differs"


def test_sink_to_python_reader(name: str, tmp_path: Path) -> None:
    n = 20
    ref = reference(tmp_path, "BGR", n, name)
    with shmlane.Reader(name, policy="all", timeout=10) as r:
        # OpenCV's layout: a plain (height, width, 3) uint8 array, BGR.
        assert r.shape == (H, W, 3) and r.dtype == np.uint8
        assert r.meta_dtype.names[:4] == ("pts", "dts", "duration", "offset")
        writer = launch(f"{TESTSRC} num-buffers={n} ! {caps('BGR')} ! "
                        f"shmlanesink stream={name} block=true sync=false")
        for i in range(n):
            with r.receive(timeout=10) as s:
                assert s.array.tobytes() == ref[i], f"frame {i} differs"
                assert s.meta["offset"] == i and s.meta["fps_n"] == 30
                assert s.lost == 0
        assert writer.wait(timeout=20) == 0
        with pytest.raises(shmlane.WriterGone) as gone:
            r.receive(timeout=5)
        assert gone.value.reason == "closed"


def test_python_writer_to_src(name: str, tmp_path: Path) -> None:
    """A stream made in Python (no metadata) read by shmlanesrc: BGR caps,
    every frame as written."""
    n = 25
    out = tmp_path / "out.raw"
    frames = [np.full((H, W, 3), i, np.uint8) for i in range(n)]
    for i, f in enumerate(frames):
        f[i % H, :, i % 3] = 255 - i
    with shmlane.Writer(name, shape=(H, W, 3), dtype="u1", block=True) as w:
        reader = launch(f"shmlanesrc stream={name} policy=all eos-on-writer-gone=true ! "
                        f"video/x-raw,format=BGR,width={W},height={H} ! filesink location={out}")
        wait_readers(name, 1)
        for f in frames:
            w.publish(f)
    text, _ = reader.communicate(timeout=20)
    assert reader.returncode == 0, text
    assert out.read_bytes() == b"".join(f.tobytes() for f in frames)


def test_writer_killed_and_restarted(name: str, tmp_path: Path) -> None:
    """The source waits through a writer's death (SIGKILL) and goes on with
    the next writer's frames."""
    out = tmp_path / "out.raw"
    live = f"{TESTSRC} is-live=true ! {caps('GRAY8')} ! shmlanesink stream={name}"
    frame = W * H

    def grows(timeout: float = 10.0) -> int:
        start = out.stat().st_size if out.exists() else 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if out.exists() and out.stat().st_size >= start + 3 * frame:
                return out.stat().st_size
            time.sleep(0.02)
        pytest.fail("the source received no frames")

    writer = launch(live)
    reader = launch(f"shmlanesrc stream={name} ! filesink location={out}")
    try:
        grows()
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
        time.sleep(0.3)
        assert reader.poll() is None, reader.communicate()[0]
        writer = launch(live)
        grows()
        assert reader.poll() is None
    finally:
        for proc in (writer, reader):
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    assert out.stat().st_size % frame == 0


# docs/gstreamer.md's OpenCV line, run by an interpreter whose cv2 is built
# with GStreamer (Debian's python3-opencv: pip's wheels are not); exit 77
# where there is no such cv2. argv: the stream's name, the frame's height
# and width.
OPENCV_SCRIPT = """
import sys
try:
    import cv2
except ImportError:
    sys.exit(77)
if "GStreamer:                   YES" not in cv2.getBuildInformation():
    sys.exit(77)
name, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cap = cv2.VideoCapture(f"shmlanesrc name={name} ! videoconvert ! appsink", cv2.CAP_GSTREAMER)
ok, frame = cap.read()
cap.release()
assert ok and frame.shape == (h, w, 3), (ok, None if frame is None else frame.shape)
print(*frame[h // 2, w // 2])
"""

# A solid colour, R 0x20, G 0x80, B 0xc0: an RGB stream read as OpenCV's BGR
# shows whether the caps came through.
SOLID = "videotestsrc is-live=true pattern=solid-color foreground-color=0xff2080c0"


def opencv_pythons() -> List[str]:
    """Interpreters that may have a cv2 with GStreamer: this one, Debian's."""
    found = [sys.executable]
    debian = Path("/usr/bin/python3")
    if debian.is_file() and Path(sys.executable).resolve() != debian.resolve():
        found.append(str(debian))
    return found


def test_opencv_capture(name: str) -> None:
    """The documented cv2.VideoCapture(..., cv2.CAP_GSTREAMER) line reads a
    stream, caps and all (skipped where no OpenCV has GStreamer: make
    gst-extras installs Debian's)."""
    writer = launch(f"{SOLID} ! {caps('RGB')} ! shmlanesink stream={name}")
    env = {**gst_env(), "PYTHONPATH": ""}
    for python in opencv_pythons():
        proc = subprocess.run([python, "-c", OPENCV_SCRIPT, name, str(H), str(W)], env=env,
                              capture_output=True, text=True, timeout=60)
        if proc.returncode == 0:
            assert proc.stdout.split() == ["192", "128", "32"], proc.stdout
            break
        assert proc.returncode == 77, proc.stderr  # 77: no cv2 with GStreamer there
    else:
        pytest.skip("no OpenCV with GStreamer (pip's wheels have none; make gst-extras)")
    writer.send_signal(signal.SIGINT)
    assert writer.wait(timeout=10) == 0


def test_h264_file(name: str, tmp_path: Path) -> None:
    """docs/gstreamer.md's H.264 recording (x264enc, from gst-plugins-ugly:
    make gst-extras): ended with Ctrl-C, the file is a complete MP4 of the
    stream's size."""
    if subprocess.run([shutil.which("gst-inspect-1.0") or "gst-inspect-1.0", "x264enc"],
                      env=gst_env(), capture_output=True).returncode != 0:
        pytest.skip("no x264enc (gstreamer1.0-plugins-ugly; make gst-extras)")
    out = tmp_path / "cam.mp4"
    writer = launch(f"{SOLID} ! {caps('I420')} ! shmlanesink stream={name}")
    recorder = subprocess.Popen(
        [LAUNCH, "-q", "-e", *f"shmlanesrc name={name} ! videoconvert ! x264enc tune=zerolatency ! "
         f"h264parse ! mp4mux ! filesink location={out}".split()],
        env=gst_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _running.append(recorder)
    wait_readers(name, 1)
    with shmlane.Reader(name, owner=None) as probe:  # ten frames published since it joined
        start = probe.info().last_seq
        while probe.info().last_seq < start + 10:
            time.sleep(0.02)
    recorder.send_signal(signal.SIGINT)  # -e: EOS, so mp4mux writes its index
    text, _ = recorder.communicate(timeout=20)
    assert recorder.returncode == 0, text
    units = tmp_path / "units"
    units.mkdir()
    run(f"filesrc location={out} ! qtdemux ! h264parse ! "
        f"video/x-h264,width={W},height={H},alignment=au ! "
        f"multifilesink location={units}/%05d")
    assert len(list(units.iterdir())) >= 1  # frames, one access unit each
    writer.send_signal(signal.SIGINT)
    assert writer.wait(timeout=10) == 0


@pytest.mark.skipif(not os.environ.get("SHMLANE_GST_LONG"), reason="make test-gst-long")
def test_source_started_100_times(name: str) -> None:
    """A source pipeline run 100 times beside a running sink (every tenth
    killed with SIGKILL instead of ending), then the sink killed and
    restarted 10 times under a waiting source: frames every time, no
    reader left, nothing left in /dev/shm but the stream itself."""
    live = f"{TESTSRC} is-live=true ! {caps('NV12')} ! shmlanesink stream={name}"
    writer = launch(live)
    try:
        for i in range(100):
            src = launch(f"shmlanesrc stream={name} num-buffers=3 ! fakesink")
            if i % 10 == 9:
                time.sleep(0.05)
                src.kill()
                src.communicate(timeout=10)
            else:
                text, _ = src.communicate(timeout=20)
                assert src.returncode == 0, f"run {i}: {text}"
        for i in range(10):
            src = launch(f"shmlanesrc stream={name} num-buffers=6 ! fakesink")
            time.sleep(0.1)
            writer.kill()
            writer.communicate(timeout=10)
            writer = launch(live)
            text, _ = src.communicate(timeout=20)
            assert src.returncode == 0, f"restart {i}: {text}"
        with shmlane.Reader(name, timeout=5) as probe:
            assert probe.info().readers == 1  # the probe alone
    finally:
        writer.kill()
        writer.communicate(timeout=10)
    shmlane.unlink(name)
    # Other processes' objects come and go meanwhile: only this test's count.
    assert [f for f in os.listdir("/dev/shm") if name in f] == []

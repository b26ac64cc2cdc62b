"""OpenCV's surface over streams: shmlane.VideoCapture and VideoWriter in one
process (no OpenCV needed), then the camera service (python -m
shmlane.camera) on a video file it did not write and on its test pattern, read
by copying and zero-copy captures and by the example viewer, through an
unplugged and restored file and a SIGTERM. The service's tests need OpenCV
(opencv-python-headless, installed into .venv by make deps) and skip without."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

import shmlane
from conftest import ROOT, expect_line
from shmlane import camera
from shmlane.camera import FrameMeta, read_number, stamp_number, stream_name

WIDTH, HEIGHT = 256, 144  # squares of 8 pixels for the frame numbers: whole JPEG blocks


def numbered(n: int) -> np.ndarray:
    frame = np.full((HEIGHT, WIDTH, 3), 40 + n % 100, np.uint8)
    stamp_number(frame, n)
    return frame


def test_capture_reads_what_the_writer_writes(name: str) -> None:
    with shmlane.VideoWriter(name, 30, (WIDTH, HEIGHT), meta=FrameMeta) as out:
        assert out.isOpened() and out.get(shmlane.CAP_PROP_FRAME_WIDTH) == WIDTH
        cap = shmlane.VideoCapture(name, timeout=0.2, policy="all", meta=FrameMeta)
        # The rate the writer declared, before any frame; measured from frames later.
        assert cap.isOpened() and cap.get(shmlane.CAP_PROP_FPS) == 30.0
        assert not cap.read()[0]  # nothing published yet: after the timeout
        for n in range(1, 6):
            out.meta.frame = n
            out.write(numbered(n))
        with out.loan() as slot:  # the zero-copy way: a capture fills the slot
            slot[...] = numbered(6)
            out.meta.frame = 6

        ok, frame = cap.read()  # a copy of its own, to draw on
        assert ok and frame.flags.writeable and frame.base is None and read_number(frame) == 1
        frame[:] = 0
        assert cap.meta.frame == 1 and cap.get(shmlane.CAP_PROP_POS_FRAMES) == cap.seq == 1
        assert cap.get(shmlane.CAP_PROP_POS_MSEC) == cap.timestamp_ns / 1e6
        assert abs(cap.timestamp_ns - time.monotonic_ns()) < 10e9
        ok, view = cap.read(copy=False)  # the pinned, read-only view
        assert ok and not view.flags.writeable and read_number(view) == 2
        mine = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        ok, filled = cap.read(mine)  # into the caller's array
        assert ok and filled is mine and read_number(mine) == 3
        assert cap.grab() and cap.grab()
        ok, frame = cap.retrieve()
        assert ok and read_number(frame) == 5 == cap.meta.frame
        assert read_number(cap.read()[1]) == 6 == cap.meta.frame
        props = [shmlane.CAP_PROP_FRAME_WIDTH, shmlane.CAP_PROP_FRAME_HEIGHT,
                 shmlane.CAP_PROP_BUFFERSIZE, shmlane.CAP_PROP_FRAME_COUNT, 4242]  # fmt: skip
        assert [cap.get(p) for p in props] == [WIDTH, HEIGHT, 8, -1, 0]
        assert cap.get(shmlane.CAP_PROP_FPS) > 0 and not cap.set(shmlane.CAP_PROP_FPS, 5)

    # The writer gone: an unplugged camera. One that takes over plugs it in again.
    assert cap.read() == (False, None) and not cap.isOpened()
    with shmlane.VideoWriter(name, 30, (WIDTH, HEIGHT), meta=FrameMeta) as out:
        assert cap.isOpened()
        out.write(numbered(7))
        with cap:
            frames = iter(cap)
            assert read_number(next(frames)) == 7
    assert not cap.isOpened() and cap.read() == (False, None)
    with pytest.raises(ValueError):
        out.write(numbered(8))  # released


def test_capture_of_a_missing_stream_waits_then_opens(new_name) -> None:
    name = new_name()
    cap = shmlane.VideoCapture(name, timeout=0.05)
    assert not cap.isOpened() and cap.read() == (False, None)
    with shmlane.VideoWriter(name, 10, (64, 48), is_color=False) as out:
        out.write(np.full((48, 64), 7, np.uint8))
        ok, frame = cap.read()
        assert ok and frame.shape == (48, 64, 3) and (frame == 7).all()  # as BGR, as OpenCV
    cap.release()


def test_capture_opened_after_its_writer_left_waits_for_the_next(name: str) -> None:
    """A finished run's last frame is not new: a capture opened after its
    writer left reads nothing (False, None) until a writer comes, then that
    writer's frames; keep_last=True asks for the finished run's last frame."""
    with shmlane.VideoWriter(name, 30, (64, 48), is_color=False) as out:
        out.write(np.full((48, 64), 1, np.uint8))
    cap = shmlane.VideoCapture(name, timeout=0.2)
    assert cap.read() == (False, None)  # never the stale frame with ok=True
    with shmlane.Reader(name, timeout=0, keep_last=True) as last, last.receive(timeout=1) as s:
        assert int(s.array[0, 0]) == 1
    with shmlane.VideoWriter(name, 30, (64, 48), is_color=False) as out:
        out.write(np.full((48, 64), 2, np.uint8))
        ok, frame = cap.read()
        assert ok and (frame == 2).all()
    cap.release()


def test_release_on_another_thread_ends_a_read_with_false(name: str) -> None:
    """As cv2's read() after release(): a read() that another thread's
    release() ends returns (False, None), whether it waits for a frame or
    for a writer to take the stream over; it raised AttributeError or
    ValueError. get() and isOpened() then answer as after release()."""
    out = shmlane.VideoWriter(name, 30, (64, 48), is_color=False)
    for writer_gone in (False, True):
        cap = shmlane.VideoCapture(name, timeout=60)
        if writer_gone:
            out.write(np.zeros((48, 64), np.uint8))
            assert cap.read()[0]
            out.release()
        results: List[object] = []
        reading = threading.Thread(target=lambda: results.append(cap.read()))
        reading.start()
        if writer_gone:
            wait_for(lambda: cap._gone, "read() waiting for a writer to take over")
        cap.release()
        reading.join(timeout=30)
        assert not reading.is_alive() and results == [(False, None)], results
        assert not cap.isOpened() and cap.get(shmlane.CAP_PROP_BUFFERSIZE) == 0.0
        assert cap.get(shmlane.CAP_PROP_FRAME_WIDTH) == 0.0



def test_capture_answers_get_after_release_as_opencv(name: str) -> None:
    """After release(), get() answers 0.0 for every property, as for one the
    capture does not know (OpenCV 4's answer; OpenCV 5 says -1.0 for both):
    the position, its time and the rate of the frame read last stayed."""
    with shmlane.VideoWriter(name, 30, (64, 48)) as out:
        cap = shmlane.VideoCapture(name, timeout=2)
        out.write(np.zeros((48, 64, 3), np.uint8))
        assert cap.read()[0] and cap.get(shmlane.CAP_PROP_POS_FRAMES) == 1.0
        assert cap.retrieve() == (False, None)  # the frame of a grab() only: docs/opencv.md
        cap.release()
    props = [getattr(shmlane, p) for p in dir(shmlane) if p.startswith("CAP_PROP_")]
    assert [cap.get(p) for p in props] == [0.0] * len(props)
    assert not cap.set(shmlane.CAP_PROP_CONVERT_RGB, 0)


def test_capture_of_a_gray_stream_gives_bgr_as_opencv(name: str) -> None:
    """CAP_PROP_CONVERT_RGB, on by default as in OpenCV: a gray (2-D uint8)
    stream's frames come as 3-channel BGR, as cv2.VideoCapture gives those
    of a gray video, so that cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) works;
    set(CAP_PROP_CONVERT_RGB, 0), or params=, gives them as published (2-D,
    zero-copy with copy=False). They came 2-D, and set() said False."""
    with shmlane.VideoWriter(name, 30, (64, 48), is_color=False) as out:
        cap = shmlane.VideoCapture(name, timeout=2, policy="all")
        for value in (1, 2, 3, 4):
            out.write(np.full((48, 64), value, np.uint8))
        assert cap.get(shmlane.CAP_PROP_CONVERT_RGB) == 1.0
        ok, frame = cap.read()
        assert ok and frame.shape == (48, 64, 3) and frame.flags.c_contiguous and (frame == 1).all()
        ok, view = cap.read(copy=False)  # converted: a copy of its own all the same
        assert ok and view.shape == (48, 64, 3) and view.flags.writeable and (view == 2).all()
        assert cap.set(shmlane.CAP_PROP_CONVERT_RGB, 0) and cap.get(shmlane.CAP_PROP_CONVERT_RGB) == 0.0
        ok, view = cap.read(copy=False)
        assert ok and view.shape == (48, 64) and not view.flags.writeable and (view == 3).all()
        cap.release()
        raw = shmlane.VideoCapture(name, 0, [shmlane.CAP_PROP_CONVERT_RGB, 0], timeout=2)
        out.write(np.full((48, 64), 5, np.uint8))
        assert raw.read()[1].shape == (48, 64)
        raw.release()
    with shmlane.VideoWriter(name, 30, (64, 48), is_color=False, dtype=np.uint16) as out:
        cap = shmlane.VideoCapture(name, timeout=2)
        out.write(np.full((48, 64), 1000, np.uint16))
        ok, frame = cap.read()  # a depth map: as published, converting would lose it
        assert ok and frame.shape == (48, 64) and (frame == 1000).all()
        cap.release()


def test_capture_of_a_camera_index_reads_the_services_stream() -> None:
    """VideoCapture(0), as every OpenCV tutorial opens a camera, reads the
    stream cam0 that `shmlane-camera --device 0` publishes, and says so
    when there is none; it raised a bare TypeError. OpenCV's apiPreference
    is accepted and ignored; params that set what the writer decides, a
    negative index or another type are refused, saying what to pass."""
    index = 10**9 + os.getpid()  # a camera nobody has
    name = f"cam{index}"
    try:
        with pytest.warns(RuntimeWarning, match=f"no stream {name}.*shmlane-camera --device {index}"):
            cap = shmlane.VideoCapture(index, timeout=0)
        assert cap.name == name and not cap.isOpened()
        with shmlane.VideoWriter(name, 30, (64, 48)) as out:
            out.write(np.full((48, 64, 3), 9, np.uint8))
            cap.timeout = 2
            assert cap.isOpened() and (cap.read()[1] == 9).all()
            with shmlane.VideoCapture(np.int64(index), 200, timeout=2) as other:  # cv2.CAP_V4L2
                assert other.name == name and other.isOpened()
            empty = shmlane.VideoCapture()  # as cv2's: opened later
            assert not empty.isOpened() and empty.read() == (False, None)
            assert empty.open(index, 0) and empty.name == name
            empty.release()
        cap.release()
    finally:
        with contextlib.suppress(FileNotFoundError):
            shmlane.unlink(name)
    with pytest.raises(ValueError, match="camera index -1"):
        shmlane.VideoCapture(-1)
    for wrong in (1.5, b"cam0", True):
        with pytest.raises(TypeError, match="a stream's name"):
            shmlane.VideoCapture(wrong)
    with pytest.raises(TypeError, match="apiPreference"):
        shmlane.VideoCapture(name, False)  # copy= is a keyword
    with pytest.raises(ValueError, match="params"):
        shmlane.VideoCapture(name, 0, [shmlane.CAP_PROP_FPS, 5], timeout=0)
    with pytest.raises(ValueError, match="params"):
        shmlane.VideoCapture(name, 0, [shmlane.CAP_PROP_FPS], timeout=0)


# A writer that is another user (nobody), publishing a frame of each value read from stdin.
NOBODYS_WRITER = """
import os, sys
import numpy as np
import shmlane  # before dropping privileges: the interpreter may be in root's home
os.setgroups([]); os.setgid(65534); os.setuid(65534)
with shmlane.VideoWriter(sys.argv[1], 30, (64, 48), is_color=False, mode=0o666) as out:
    print("ready", flush=True)
    for line in sys.stdin:
        out.write(np.full((48, 64), int(line), np.uint8))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_capture_of_another_users_stream_names_its_owner(name: str, spawn_py) -> None:
    """As a Reader: owner= names whose stream to read. The PermissionError
    without it says to pass owner=, which VideoCapture refused (TypeError)."""
    writer = spawn_py(NOBODYS_WRITER, name)
    expect_line(writer, "ready")
    with pytest.raises(PermissionError, match="owner='nobody'"):
        shmlane.VideoCapture(name, timeout=0)
    cap = shmlane.VideoCapture(name, timeout=10, owner="nobody")
    writer.stdin.write("7\n")
    writer.stdin.flush()
    ok, frame = cap.read()
    assert ok and (frame == 7).all() and cap.isOpened()
    cap.release()


FOURCC = 0x47504A4D  # cv2.VideoWriter_fourcc(*"MJPG"): accepted, and ignored


@pytest.mark.parametrize(
    "args, kwargs, shape",
    [
        ((30, (64, 48)), {}, (48, 64, 3)),  # the short form
        ((30, (64, 48), False), {}, (48, 64)),
        ((FOURCC, 30.0, (64, 48)), {}, (48, 64, 3)),  # OpenCV's order
        ((FOURCC, 30.0, (64, 48), False), {}, (48, 64)),
        ((0, FOURCC, 30.0, (64, 48), True), {}, (48, 64, 3)),  # with apiPreference
        ((FOURCC, 30.0, (64, 48), [1, 0]), {}, (48, 64, 3)),  # with params
        ((), {"fourcc": FOURCC, "fps": 30.0, "frameSize": (64, 48), "isColor": False}, (48, 64)),
        ((FOURCC, 30.0), {"frameSize": [64, 48]}, (48, 64, 3)),
        ((30,), {"frame_size": (64, 48), "is_color": False}, (48, 64)),
    ],
)
def test_writer_takes_opencvs_arguments(name: str, args, kwargs, shape) -> None:
    with shmlane.VideoWriter(name, *args, **kwargs) as out:
        assert out.writer.shape == shape and out.fps == 30.0
        assert out.get(shmlane.CAP_PROP_FPS) == 30.0 == out.writer.info().fps


@pytest.mark.parametrize(
    "args, kwargs",
    [((30,), {}), ((FOURCC, 30.0, 7, (64, 48), True, 1), {}), ((30, (64, 48, 3)), {}),
     ((30, (64, 48)), {"fps": 25}), ((30, (64, 48)), {"codec": "x"}), ((), {"fps": 30})],
)  # fmt: skip
def test_writer_arguments_that_fit_no_form(name: str, args, kwargs) -> None:
    with pytest.raises(TypeError, match=r"VideoWriter\(name, fps, frame_size"):
        shmlane.VideoWriter(name, *args, **kwargs)


def test_writer_refuses_a_frame_of_another_shape_or_a_narrowing_dtype(name: str) -> None:
    """write() publishes frames of the stream's shape only, as its docs say:
    a row, a pixel, a scalar or a one-channel frame were broadcast over a
    whole frame, and a uint16 frame wrapped into uint8 (300 became 44), all
    published without a word."""
    with shmlane.VideoWriter(name, 30, (64, 48)) as out:
        cap = shmlane.VideoCapture(name, timeout=0, policy="all")
        wrong = [np.zeros((1, 64, 3), np.uint8), np.zeros(3, np.uint8), 7,
                 np.zeros((48, 64, 1), np.uint8), np.zeros((48, 64), np.uint8)]  # fmt: skip
        for frame in wrong:
            with pytest.raises(ValueError, match=r"frames of shape \(48, 64, 3\)"):
                out.write(frame)
        with pytest.raises(TypeError, match="uint16"):
            out.write(np.full((48, 64, 3), 300, np.uint16))
        out.write(np.ones((48, 64, 3), bool))  # a cast that loses nothing
        ok, frame = cap.read()
        assert ok and (frame == 1).all()
        assert cap.read() == (False, None)  # nothing else was published
        cap.release()


def test_writer_refuses_a_rate_that_is_none(name: str) -> None:
    """fps 0 is an unknown rate (0.0 for every capture); NaN or a negative
    rate is refused, as Writer(fps=) refuses it: VideoWriter took it and
    said nan or -1 to get(CAP_PROP_FPS) while its captures said 0.0."""
    for fps in (float("nan"), -1, float("inf")):
        with pytest.raises(ValueError, match="fps must be"):
            shmlane.VideoWriter(name, fps, (64, 48))
    with shmlane.VideoWriter(name, 0, (64, 48)) as out:
        assert out.get(shmlane.CAP_PROP_FPS) == 0.0 == out.writer.info().fps


def test_writer_after_release_answers_as_opencv(name: str) -> None:
    """After release(), get() answers 0.0 and set() False, as a capture's
    (OpenCV's writer answers -1.0, and 0.0 for an unknown property in 4);
    get() raised ValueError. write() still raises it: a frame written after
    release() is a bug OpenCV drops silently (docs/opencv.md)."""
    out = shmlane.VideoWriter(name, 30, (64, 48))
    assert out.get(shmlane.CAP_PROP_FPS) == 30.0
    out.release()
    assert not out.isOpened() and not out.set(shmlane.CAP_PROP_FPS, 5)
    assert [out.get(p) for p in (shmlane.CAP_PROP_FPS, shmlane.CAP_PROP_FRAME_WIDTH, 4242)] == [0.0] * 3
    with pytest.raises(ValueError, match="released"):
        out.write(np.zeros((48, 64, 3), np.uint8))


def test_a_writer_of_another_size_replaces_the_stream(name: str) -> None:
    """As OpenCV overwrites a file: a later run with another frame size (or
    other metadata) replaces the stream; readers follow it."""
    with shmlane.VideoWriter(name, 30, (64, 48)) as out:
        cap = shmlane.VideoCapture(name, timeout=2, policy="all")
        out.write(np.full((48, 64, 3), 1, np.uint8))
        assert cap.read()[1].shape == (48, 64, 3)
    with shmlane.VideoWriter(name, FOURCC, 30, (32, 24), meta=FrameMeta) as out:
        out.write(np.full((24, 32, 3), 2, np.uint8))
        ok, frame = cap.read()
        assert ok and frame.shape == (24, 32, 3) and (frame == 2).all()
        assert cap.get(shmlane.CAP_PROP_FRAME_WIDTH) == 32
    with pytest.raises(shmlane.LayoutMismatch):
        shmlane.VideoWriter(name, 30, (64, 48), replace=False)
    cap.release()


def test_capture_of_a_stream_replaced_without_its_metadata_says_so(name: str) -> None:
    """A capture made with meta= whose stream is replaced by one without
    that metadata raises LayoutChanged: read() polled until its timeout (for
    ever with timeout=None) and returned (False, None), isOpened() True."""
    with shmlane.VideoWriter(name, 30, (64, 48), meta=FrameMeta) as out:
        cap = shmlane.VideoCapture(name, timeout=2, meta=FrameMeta)
        out.write(np.zeros((48, 64, 3), np.uint8))
        assert cap.read()[0]
    with shmlane.VideoWriter(name, 30, (64, 48)) as out:  # without metadata: replaces the stream
        out.write(np.zeros((48, 64, 3), np.uint8))
        for _ in range(2):
            with pytest.raises(shmlane.LayoutChanged, match="metadata"):
                cap.read()
    cap.release()


def test_property_numbers_are_opencvs() -> None:
    cv2 = pytest.importorskip("cv2")
    for prop in [p for p in dir(shmlane) if p.startswith("CAP_PROP_")]:
        assert getattr(shmlane, prop) == getattr(cv2, prop), prop


def test_stream_names_of_devices() -> None:
    assert stream_name("0") == ("cam0", "0")
    assert stream_name("front=2") == ("front", "2")
    assert stream_name("pattern") == ("pattern", "pattern")
    assert stream_name("/v/My clip.avi") == ("My-clip", "/v/My clip.avi")
    assert stream_name("rtsp://h/x?a=b") == ("x-a-b", "rtsp://h/x?a=b")


@pytest.mark.parametrize(
    "option",
    [["--fps", "0"], ["--fps", "-5"], ["--fps", "nan"], ["--retry", "0"], ["--retry", "-1"],
     ["--seconds", "0"], ["--seconds", "inf"], ["--slots", "1"], ["--slots", "65"],
     ["--width", "-5"], ["--height", "0"], ["--width", "wide"]],
)  # fmt: skip
def test_camera_service_refuses_bad_option_values(option, capsys) -> None:
    """Before the first frame, as argparse's errors (status 2): --retry 0
    spun a core reopening a missing device, --seconds 0 ran for ever,
    --fps -5 paced at 5 fps, and bad --slots or --fps failed only once a
    device delivered, as a thread's error."""
    with pytest.raises(SystemExit) as stopped:
        camera.parse(["--device", "pattern", *option])
    assert stopped.value.code == 2 and f"argument {option[0]}:" in capsys.readouterr().err


def test_camera_pattern_of_any_size() -> None:
    """The pattern's number is painted in only where it fits: narrower than
    64 pixels, the pattern failed with a ValueError."""
    for width, height in [(1, 1), (10, 10), (47, 3), (641, 479)]:
        pattern = camera.Pattern(width, height, 30)
        out = np.zeros((height, width, 3), np.uint8)
        assert pattern.read(None)[1].shape == (height, width, 3) and pattern.read(out)[1] is out
    assert read_number(camera.Pattern(64, 48, 30).read(None)[1]) == 0


def test_camera_device_of_a_rate_that_is_none(monkeypatch, tmp_path: Path) -> None:
    """A rate OpenCV reports that is none (inf, from an interval of 0; NaN;
    -1) is unknown: a camera's stream declares none, and a file is paced at
    30 fps. inf made Writer(fps=) fail and stop the service, NaN failed the
    first loan, -1 paced a file at 1 fps."""
    cv2 = pytest.importorskip("cv2")
    video = tmp_path / "clip.avi"
    video.touch()
    for reported in (float("inf"), float("nan"), -1.0, 0.0):

        class Reporting:  # a cv2.VideoCapture whose device reports that rate
            def __init__(self, spec: object) -> None:
                pass

            def isOpened(self) -> bool:
                return True

            def get(self, prop: int) -> float:
                return reported

            def release(self) -> None:
                pass

        monkeypatch.setattr(cv2, "VideoCapture", Reporting)
        device = camera.Device("0", None, None, None)
        assert device.open() and device.rate() is None, reported
        device = camera.Device(str(video), None, None, None)
        assert device.open() and device.rate() == 30.0 == device.fps, reported


def read_frames(cap: shmlane.VideoCapture, seconds: float, seen: List[int], bad: List[str]) -> None:
    """Reads for `seconds`; every frame's painted number must be its record's."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ok, frame = cap.read()
        if not ok:
            bad.append(f"{cap.name}: no frame")
            return
        number, meta = read_number(frame), cap.meta
        if number != meta["frame"] or frame.flags.writeable != cap.copy:
            bad.append(f"{cap.name}: frame {number} with the record of {meta['frame']}")
        seen.append(number)


def wait_for(predicate, what: str, seconds: float = 10) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, what


def test_camera_service_on_a_file_and_the_pattern(new_name, tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 200, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for n in range(200):
        frame = numbered(n)
        cv2.putText(frame, str(n), (8, 100), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        writer.write(frame)
    writer.release()
    clip, pattern = new_name(), new_name()
    service = subprocess.Popen(
        [sys.executable, "-m", "shmlane.camera", "--device", f"{clip}={video}"]
        + ["--device", f"{pattern}=pattern", "--width", str(WIDTH), "--height", str(HEIGHT)]
        + ["--fps", "200", "--retry", "0.1", "--slots", "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        caps = [shmlane.VideoCapture(n, copy=c, timeout=10) for n in (clip, pattern) for c in (True, False)]
        viewer = subprocess.Popen(  # the example, with a window that counts what it is shown
            [sys.executable, "-c", VIEWER, str(ROOT / "examples" / "python" / "viewer.py"), pattern],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen: Dict[int, List[int]] = {i: [] for i in range(4)}
        bad: List[str] = []
        threads = [threading.Thread(target=read_frames, args=(c, 1.5, seen[i], bad))
                   for i, c in enumerate(caps)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not bad, bad[:5]
        assert all(len(s) > 20 for s in seen.values()), {i: len(s) for i, s in seen.items()}
        assert all(s == sorted(s) for s in (seen[2], seen[3]))  # the pattern counts on
        for cap in caps:
            assert cap.isOpened() and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == WIDTH
            assert cap.get(cv2.CAP_PROP_FRAME_HEIGHT) == HEIGHT
            assert 50 < cap.get(cv2.CAP_PROP_FPS) < 400, cap.get(cv2.CAP_PROP_FPS)
            assert cap.get(cv2.CAP_PROP_POS_FRAMES) == cap.seq > 0
            assert cap.meta["capture_ns"] <= cap.timestamp_ns
        assert cv2.putText(caps[0].read()[1], "ok", (8, 60), 0, 1, (0, 0, 255)) is not None
        out, err = viewer.communicate(timeout=30)
        assert viewer.returncode == 0 and out.split() == ["shown", "5"], err

        # Unplugged: the file goes; at its end the service cannot open it again.
        hidden = tmp_path / "hidden.avi"
        video.rename(hidden)
        clip_cap = caps[0]
        clip_cap.timeout = 0.3
        wait_for(lambda: clip_cap.read() == (False, None), "frames after the file went")
        assert not clip_cap.isOpened()
        assert caps[2].read()[0] and caps[2].isOpened()  # the pattern goes on
        hidden.rename(video)
        wait_for(lambda: clip_cap.read()[0], "no frames once the file is back")
        assert clip_cap.isOpened() and read_number(clip_cap.read()[1]) == clip_cap.meta["frame"]
        for cap in caps:
            cap.release()

        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=20)
    finally:
        service.kill()
    assert service.returncode == 0, err
    assert f"{clip} ({video}): streaming" in out and f"{pattern} (pattern): streaming" in out
    assert re.search(f"camera: {clip} stopped after [0-9]+ frames, gone 1 times", out), out
    assert re.search(f"camera: {pattern} stopped after [0-9]+ frames, gone 0 times", out), out


def test_camera_service_killed_and_started_again(name: str) -> None:
    """The pattern needs no OpenCV. A service killed outright is a camera
    unplugged; the next one takes the stream over, numbers going on."""
    command = [sys.executable, "-m", "shmlane.camera", "--device", f"{name}=pattern"]
    command += ["--width", "64", "--height", "48", "--fps", "100"]
    service = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        cap = shmlane.VideoCapture(name, timeout=10, meta=FrameMeta)
        ok, frame = cap.read()
        assert ok and frame.shape == (48, 64, 3) and cap.isOpened()
        assert read_number(frame) == cap.meta.frame and cap.meta.device == -1
        assert cap.meta.source == b"pattern"
        service.kill()
        service.wait(timeout=10)
        cap.timeout = 0.3
        wait_for(lambda: cap.read() == (False, None), "frames from a killed service")
        assert not cap.isOpened()
        last = cap.get(shmlane.CAP_PROP_POS_FRAMES)
        service = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: cap.read()[0], "no frames from the service started again")
        assert cap.isOpened() and cap.get(shmlane.CAP_PROP_POS_FRAMES) > last
        cap.release()
    finally:
        service.kill()
        service.wait(timeout=10)


def test_camera_service_stops_at_once_between_slow_frames(name: str) -> None:
    """SIGTERM ends a service paced at a frame in 100 s at once: it slept
    through the signal until the next frame was due, and the main thread
    gave up on it after 10 s. A second service on the stream says that the
    stream is busy, once on stderr; it said it was waiting for its device."""
    command = [sys.executable, "-m", "shmlane.camera", "--device", f"{name}=pattern"]
    command += ["--width", "64", "--height", "48", "--fps", "0.01"]
    service = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        cap = shmlane.VideoCapture(name, timeout=10)
        assert cap.read()[0]  # the first frame: the service waits 100 s for the next
        cap.release()
        second = subprocess.run(command + ["--seconds", "1"], capture_output=True, text=True, timeout=30)
        assert f"{name} (pattern): stream busy: a live writer (pid {service.pid})" in second.stdout, second
        # Said on stderr too, once: only the statistics said it.
        said = f"shmlane-camera: {name}: stream busy: a live writer (pid {service.pid}) holds the stream"
        assert second.stderr.count(said) == 1, second.stderr
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=5)
    finally:
        service.kill()
        service.wait(timeout=10)
    assert service.returncode == 0 and f"camera: {name} stopped after 1 frames" in out, err


def test_camera_service_outlives_a_reader_of_its_output(name: str) -> None:
    """`shmlane-camera ... | head -1`, or a log reader that dies: the lines
    go nowhere from then on, the cameras go on, and a signal still stops
    the service cleanly. It died at its next line with BrokenPipeError, and
    at its start when its output was closed already."""
    command = [sys.executable, "-m", "shmlane.camera", "--device", f"{name}=pattern"]
    command += ["--width", "64", "--height", "48", "--fps", "100"]
    closed = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *command, "--seconds", "0.2"],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert closed.returncode == 0 and "Error" not in closed.stderr, closed.stderr
    service = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert service.stdout is not None and service.stderr is not None
        assert service.stdout.readline().startswith(f"camera: {name} from pattern")
        service.stdout.close()
        cap = shmlane.VideoCapture(name, timeout=10)
        assert cap.read()[0] and service.poll() is None
        cap.release()
        service.send_signal(signal.SIGTERM)
        err = service.stderr.read()
        service.wait(timeout=10)
    finally:
        service.kill()
        service.wait(timeout=10)
    assert service.returncode == 0 and "Error" not in err, err


def write_clip(cv2, path: Path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 200, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for n in range(frames):
        writer.write(numbered(n))
    writer.release()


def test_camera_service_plays_a_file_once(name: str, tmp_path: Path) -> None:
    """--once: the file's frames, then its stream ends (read() gives (False,
    None), as for a file read with cv2.VideoCapture) and the service exits."""
    cv2 = pytest.importorskip("cv2")
    video = tmp_path / "clip.avi"
    write_clip(cv2, video, 30)
    caps: List[shmlane.VideoCapture] = []  # waiting for the stream before the service starts
    opening = threading.Thread(
        target=lambda: caps.append(shmlane.VideoCapture(name, timeout=30, policy="all"))
    )
    opening.start()
    service = subprocess.Popen(
        [sys.executable, "-m", "shmlane.camera", "--device", f"{name}={video}", "--once"]
        + ["--fps", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        opening.join(timeout=60)
        cap = caps[0]
        assert cap.get(cv2.CAP_PROP_FPS) == 100.0  # the service's --fps, declared
        seen = []
        cap.timeout = 0.5
        for frame in cap:  # until read() fails: the loop of a tutorial reading a file
            seen.append(read_number(frame))
        assert seen and seen[-1] == 29 and seen == sorted(seen), seen
        out, err = service.communicate(timeout=30)
        assert service.returncode == 0, err
        assert f"camera: {name} stopped after 30 frames, gone 0 times" in out
    finally:
        service.kill()
        for cap in caps:
            cap.release()


def test_viewer_says_what_to_install_for_windows(name: str) -> None:
    cv2 = pytest.importorskip("cv2")
    try:
        cv2.imshow("probe", np.zeros((2, 2, 3), np.uint8))
        cv2.destroyAllWindows()
        pytest.skip("this OpenCV has windows")
    except cv2.error:
        pass
    with shmlane.VideoWriter(name, 30, (64, 48)) as out:
        viewer = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "python" / "viewer.py"), name],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            end = time.monotonic() + 30
            while viewer.poll() is None and time.monotonic() < end:
                out.write(np.zeros((48, 64, 3), np.uint8))
                time.sleep(0.02)
            _, err = viewer.communicate(timeout=5)
        finally:
            viewer.kill()
    assert viewer.returncode == 1 and "pip install opencv-python" in err, err
    assert "Traceback" not in err


# The viewer example with a window that counts: imshow() and waitKey() stubs; q after 5 frames.
VIEWER = """
import runpy, sys
import cv2
shown = []
cv2.imshow = lambda title, frame: shown.append(frame.shape)
cv2.waitKey = lambda delay: ord("q") if len(shown) == 5 else -1
cv2.destroyAllWindows = lambda: None
path, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(path, run_name="__main__")
print("shown", len(shown))
"""


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "shmlane-camera"
    if not script.exists():
        pytest.skip("shmlane-camera is not installed beside this Python")
    help_text = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert help_text.returncode == 0 and "--device" in help_text.stdout
    assert os.access(script, os.X_OK)



class Resizing:
    """A camera stand-in (the service's source surface): frames of 48x64,
    then of 24x32 from frame `switch` on, each its number in every pixel,
    then a failure. The second frame waits for `ready`."""

    paced, ended, fps = False, False, 30.0

    def __init__(self, switch: int, frames: int) -> None:
        self.switch, self.frames, self.number = switch, frames, -1
        self.ready = threading.Event()

    def open(self) -> bool:
        return True

    def rate(self) -> float:
        return self.fps

    def read(self, out):
        self.number += 1
        if self.number == 1:
            assert self.ready.wait(30)
        if self.number >= self.frames:
            return False, None
        shape = (48, 64, 3) if self.number < self.switch else (24, 32, 3)
        if out is None or out.shape != shape:
            out = np.empty(shape, np.uint8)  # as cv2: an array of its own when `out` does not fit
        out[...] = self.number
        return True, out

    def close(self) -> None:
        pass


def test_camera_service_follows_a_new_frame_size_without_a_gap(name: str, monkeypatch) -> None:
    """A device whose frame size changes: the service replaces the stream
    under its writer (Writer.replace), and a reader follows to the new size
    with no moment without a writer, the frame's record as before. The
    service closed its writer and opened another: a Reader got WriterGone
    at the change (a VideoCapture saw isOpened() False meanwhile), when it
    looked before the new writer was there (here: one slow to open)."""
    opened: List[str] = []

    class SlowToOpen(shmlane.Writer):  # a busy machine: the second opening takes 0.2 s
        def __init__(self, *args, **kwargs) -> None:
            opened.append(args[0])
            time.sleep(0.2 if len(opened) > 1 else 0)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(camera, "Writer", SlowToOpen)
    stop = threading.Event()
    service = camera.Camera(name, "0", camera.parse(["--device", "0", "--retry", "60"]), stop)
    source = service.source = Resizing(switch=3, frames=6)
    service.start()
    got: List[object] = []
    try:
        with shmlane.Reader(name, "all", timeout=10, meta=FrameMeta) as reader:
            source.ready.set()
            try:
                while True:
                    with reader.receive(timeout=10) as s:
                        got.append((int(s.array.flat[0]), s.array.shape, s.meta.device, s.meta.frame))
            except shmlane.WriterGone:
                got.append("gone")
    finally:
        stop.set()
        service.join(timeout=10)
    assert got[-3:] == [(4, (24, 32, 3), 0, 4), (5, (24, 32, 3), 0, 5), "gone"], got
    assert (2, (48, 64, 3), 0, 2) in got and (3, (24, 32, 3), 0, 3) in got, got
    assert opened == [name]  # once: the change of size replaced the stream under the writer


def test_camera_service_refuses_a_device_that_does_not_exist(name: str, tmp_path: Path, capsys) -> None:
    """A device that is no camera index, URL, /dev path or existing file (a
    typo, a stream's name) is refused at start, with status 2 and what a
    device is; the service waited for it for ever, saying only `waiting
    for the device` once a second."""
    pytest.importorskip("cv2")  # without it, a device other than the pattern is refused anyway
    missing = tmp_path / "cam0"
    assert camera.main(["--device", f"{name}=pattern", "--device", str(missing), "--seconds", "1"]) == 2
    err = capsys.readouterr().err
    assert f"no device {missing}: not a camera index" in err and "pattern" in err, err


@pytest.mark.parametrize(
    "spec, said",
    [("=pattern", "bad stream name '' in --device =pattern: 1 to 26 characters"),
     ("a b=pattern", "bad stream name 'a b' in"), (f"{'x' * 27}=pattern", f"bad stream name '{'x' * 27}'"),
     ("cam=", "--device cam=: no DEVICE after '='"),
     ("e\033[2J=pattern", "bad stream name 'e\\x1b[2J' in --device e\\x1b[2J=pattern")],
)  # fmt: skip
def test_camera_service_refuses_a_bad_stream_name(spec: str, said: str, capsys) -> None:
    """NAME=DEVICE with a NAME that is no stream name, or no DEVICE: the
    service said "no device a b=pattern: not a camera index ...", taking it
    all for a file, and let an escape sequence in it reach the terminal."""
    assert camera.main(["--device", spec, "--seconds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"shmlane-camera: {said}") and "\033" not in err and err.count("\n") == 1, err


def test_camera_service_says_once_that_it_cannot_open_a_device(name: str, capsys) -> None:
    """A device that exists but does not open (a camera in use, unplugged;
    a URL down) is tried again every --retry seconds, as before, and the
    service says so on stderr at the first failure, once: it said nothing
    but its statistics' `waiting for the device`."""

    class Closed:  # a device that never opens
        paced = ended = False
        attempts = 0

        def open(self) -> bool:
            self.attempts += 1
            return False

        def close(self) -> None:
            pass

    stop = threading.Event()
    service = camera.Camera(name, "7", camera.parse(["--device", "7", "--retry", "0.01"]), stop)
    source = service.source = Closed()
    service.start()
    wait_for(lambda: source.attempts >= 3, "no attempts to open again")
    stop.set()
    service.join(timeout=10)
    err = capsys.readouterr().err
    assert err.count(f"shmlane-camera: {name}: cannot open 7, trying again every 0.01 s") == 1, err
    assert service.state == "waiting for the device"

"""The camera service: one process opens the cameras and publishes each as a
stream; any process reads them (shmlane.VideoCapture, shmlane.Reader).

    python -m shmlane.camera --device 0 --device 2      # streams cam0 and cam2
    shmlane-camera --device front=0 --device clip.avi --device pattern

A device is a camera index, anything else cv2.VideoCapture opens (a video
file, a /dev/video path, a URL), or `pattern`, a moving test pattern that
needs no camera (nor OpenCV). Its stream is named camN for camera N, after a
file's name, `pattern` for the pattern; NAME=DEVICE names it. Frames are
captured straight into the stream's loaned slots at the device's own rate
(files and the pattern are paced at their frame rate, or --fps), each with
a FrameMeta record: the frame's number from the device (from 0 at each
opening; a file's frame index), its capture time (time.monotonic_ns()) and
the camera's index. A device that fails is released and its writer closed (readers
get WriterGone), and it is opened again every --retry seconds until it
delivers; a file at its end starts over, or with --once ends its stream (the
service exits once every device has ended). SIGINT and SIGTERM stop the
service cleanly; it prints each stream's statistics once a second.

See docs/opencv.md.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

from ._shmlane import NAME_MAX, STREAM_MAX_SLOTS, StreamBusy
from ._stream import Writer

try:
    import cv2
except ImportError:  # the test pattern does without it
    cv2 = None

__all__ = ["FrameMeta", "main", "read_number", "stamp_number"]


class FrameMeta(ctypes.Structure):
    """The metadata record of each frame the service publishes."""

    _fields_ = [
        ("frame", ctypes.c_uint64),  # from 0 at each opening of the device; a file's frame index
        ("capture_ns", ctypes.c_uint64),  # time.monotonic_ns() when the frame was captured
        ("device", ctypes.c_int32),  # the camera's index; -1 for a file, a URL or the pattern
        ("source", ctypes.c_char * 64),  # the device as given (its end, if longer): "0", a path
    ]


# ------------------------------------------------------------ frame numbers

CODE_BITS = 24


def _cell(width: int) -> int:
    return max(2, width // 32)


def stamp_number(frame: np.ndarray, number: int) -> None:
    """Paints `number` (its low 24 bits) in the top left corner of a frame
    at least 64 pixels wide: a row of 24 black or white squares of width/32
    pixels, bit 0 first. Survives lossy codecs (MJPG) at any usual size."""
    cell = _cell(frame.shape[1])
    bits = (number >> np.arange(CODE_BITS)) & 1
    row = np.repeat((bits * 255).astype(frame.dtype), cell)
    region = frame[:cell, : CODE_BITS * cell]
    region[...] = row[:, None] if frame.ndim == 3 else row


def read_number(frame: np.ndarray) -> int:
    """The number stamp_number() painted into the frame."""
    cell = _cell(frame.shape[1])
    region = np.asarray(frame[:cell, : CODE_BITS * cell], dtype=np.float32)
    if region.ndim == 3:
        region = region.mean(axis=2)
    edge = cell // 4  # the middle of each square: codecs smear the edges
    cells = region.reshape(cell, CODE_BITS, cell)[edge : cell - edge, :, edge : cell - edge]
    bits = cells.mean(axis=(0, 2)) > 127
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


# ------------------------------------------------------------ sources


class Pattern:
    """Colour gradients scrolling with the frame number, a white bar sweeping
    across and the number (stamp_number in frames at least 64 pixels wide,
    and as text with OpenCV), computed into the frame with NumPy."""

    paced = True
    ended = False  # never: --once is for files

    def __init__(self, width: int, height: int, fps: float) -> None:
        self.shape = (height, width, 3)
        self.fps = fps
        self.number = -1  # of the frame read last
        self.x = np.arange(width, dtype=np.uint8)[None, :]  # uint8 arithmetic wraps at 256
        self.y = np.arange(height, dtype=np.uint8)[:, None]

    def open(self) -> bool:
        return True

    def rate(self) -> float:
        return self.fps

    def read(self, out: Optional[np.ndarray]) -> Tuple[bool, np.ndarray]:
        frame = np.empty(self.shape, np.uint8) if out is None else out
        self.number += 1
        phase = np.uint8(self.number * 4 % 256)
        np.add(self.x, phase, out=frame[..., 0])
        np.add(self.y, np.uint8(phase // 2), out=frame[..., 1])
        frame[..., 2] = 128
        bar = self.number * 8 % self.shape[1]
        frame[:, bar : bar + max(1, self.shape[1] // 16)] = 255
        if cv2 is not None:
            text_y = min(self.shape[0] - 4, _cell(self.shape[1]) + 40)
            cv2.putText(frame, f"#{self.number}", (8, text_y), cv2.FONT_HERSHEY_SIMPLEX, 1.0,
                        (255, 255, 255), 2)  # fmt: skip
        if self.shape[1] >= 64:
            stamp_number(frame, self.number)
        return True, frame

    def close(self) -> None:
        pass


def _rate(reported: float) -> Optional[float]:
    """A rate OpenCV reports, None for one that is none: 0, -1, NaN, or inf
    (a rate computed from an interval of 0)."""
    return reported if 0 < reported <= 1e9 else None


class Device:
    """A camera or anything else cv2.VideoCapture opens. A file is paced at
    its own frame rate (or --fps) and starts over at its end, unless `once`:
    then `ended` is set there."""

    ended = False

    def __init__(self, spec: str, width: Optional[int], height: Optional[int],
                 fps: Optional[float], once: bool = False) -> None:  # fmt: skip
        self.spec = spec
        self.index = int(spec) if spec.isdigit() else None
        self.is_file = self.index is None and "://" not in spec and not spec.startswith("/dev/")
        self.paced = self.is_file
        self.width, self.height, self.fps = width, height, fps
        self.cap: Any = None
        self.number = -1  # of the frame read last: from 0 at each opening
        self.failed = False  # the last opening failed
        self.once = once

    def open(self) -> bool:
        self.close()
        if self.is_file and not os.path.exists(self.spec):
            return False  # cv2 would print its own warnings about it
        logging = getattr(cv2.utils, "logging", None)
        level = logging.getLogLevel() if logging and self.failed else None
        if level is not None:  # OpenCV's warnings about a missing device: once, not every retry
            logging.setLogLevel(min(level, logging.LOG_LEVEL_ERROR))
        try:
            cap = cv2.VideoCapture(self.index if self.index is not None else self.spec)
        finally:
            if level is not None:
                logging.setLogLevel(level)
        self.failed = not cap.isOpened()
        if self.failed:
            cap.release()
            return False
        if not self.is_file:
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, self.width),
                                (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
                                (cv2.CAP_PROP_FPS, self.fps)):  # fmt: skip
                if value:
                    cap.set(prop, value)
        elif not self.fps:
            self.fps = _rate(cap.get(cv2.CAP_PROP_FPS)) or 30.0
        self.cap = cap
        self.number = -1
        return True

    def read(self, out: Optional[np.ndarray]) -> Tuple[bool, Optional[np.ndarray]]:
        """The next frame, into `out` when it fits (cv2 fills it in place)."""
        ok, image = self.cap.read(out) if out is not None else self.cap.read()
        if not ok and self.is_file and self.once:
            self.ended = True
        elif not ok and self.is_file and self.open():  # its end: from the start again
            ok, image = self.cap.read(out) if out is not None else self.cap.read()
        self.number += 1
        return ok, image

    def rate(self) -> Optional[float]:
        """The frame rate to declare: a file's pace, or what the camera says."""
        if self.is_file or self.cap is None:
            return self.fps
        return _rate(self.cap.get(cv2.CAP_PROP_FPS)) or self.fps

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


# ------------------------------------------------------------ one stream

# How long a device thread may take to see a stop, at most, while it waits
# for a slot; and how long the service waits for all of them to end (a
# device hung in its driver: the process's exit releases it).
STOP_LATENCY = 0.5
STOP_GRACE = 2.0

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,25}")


def stream_name(spec: str) -> Tuple[str, str]:
    """(name, device) of a --device argument: NAME=DEVICE, or a default name."""
    head, sep, tail = spec.partition("=")
    if sep and _NAME.fullmatch(head):
        return head, tail
    if spec.isdigit():
        return f"cam{spec}", spec
    if spec == "pattern":
        return "pattern", spec
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", Path(spec).stem).lstrip("._-")[:NAME_MAX]
    return stem or "video", spec


def misnamed(spec: str) -> Optional[str]:
    """Why a --device of the form NAME=DEVICE is none, or None: a NAME that
    is no stream name, or nothing after the '='. Where the part before the
    '=' holds a '/' or a ':' (a path, a URL), or the whole is a file, the
    argument is a device as given."""
    head, sep, tail = spec.partition("=")
    if not sep or "/" in head or ":" in head or os.path.exists(spec):
        return None
    if not _NAME.fullmatch(head):
        return (f"bad stream name '{head}' in --device {spec}: 1 to {NAME_MAX} characters from"
                " A-Z a-z 0-9 . _ -, starting with a letter or digit")  # fmt: skip
    return None if tail else f"--device {spec}: no DEVICE after '='"


class Camera(threading.Thread):
    """Publishes one device on one stream until `stop` is set."""

    def __init__(self, name: str, spec: str, args: argparse.Namespace, stop: threading.Event):
        super().__init__(name=f"camera {name}", daemon=True)
        self.stream, self.spec, self.args, self.stop = name, spec, args, stop
        if spec == "pattern":
            self.source: Any = Pattern(args.width or 640, args.height or 480, args.fps or 30.0)
        else:
            self.source = Device(spec, args.width, args.height, args.fps, args.once)
        self.writer: Optional[Writer] = None
        self.state = "starting"
        self.published = self.skipped = self.gone = 0
        self.period_frames = 0
        self.error: Optional[str] = None

    def run(self) -> None:
        failing = False  # the last opening failed: said once, not at every attempt
        try:
            while not self.stop.is_set():
                if self.source.open():
                    failing = False
                    self._stream()  # its state says why it ended: a device or a stream busy
                else:
                    if not failing:
                        _say(f"shmlane-camera: {self.stream}: cannot open {self.spec}, trying again"
                             f" every {self.args.retry:g} s", file=sys.stderr)  # fmt: skip
                    failing = True
                    self.state = "waiting for the device"
                if self.source.ended:  # --once: a file played to its end
                    self.state = "ended"
                    break
                self.stop.wait(self.args.retry)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = f"{type(exc).__name__}: {exc}"
            self.stop.set()
        finally:
            self._close_writer()
            self.source.close()

    def _close_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()  # readers get WriterGone; a writer that comes later takes over
            self.writer = None

    def _open_writer(self, first: np.ndarray) -> bool:
        """The stream for frames like `first`: taken over (or replaced, if
        of another layout) from a writer that is gone; or, with a writer
        already (the device's frames changed size), replaced under it, so
        that readers follow without a moment without writer."""
        rate = self.source.rate()
        fps = rate if rate and rate > 0 else None
        try:
            if self.writer is not None:
                self.writer.replace(first.shape, first.dtype, fps=fps)
            else:
                self.writer = Writer(self.stream, first.shape, first.dtype, meta=FrameMeta,
                                     replace=True, slots=self.args.slots, fps=fps)  # fmt: skip
        except StreamBusy as exc:
            if not self.state.startswith("stream busy"):  # said once, not at every attempt
                _say(f"shmlane-camera: {self.stream}: stream busy: {exc.strerror} (another service?),"
                     f" trying again every {self.args.retry:g} s", file=sys.stderr)  # fmt: skip
            self.state = f"stream busy: {exc.strerror}"
            return False
        self.writer.meta.device = int(self.spec) if self.spec.isdigit() else -1
        self.writer.meta.source = self.spec.encode()[-63:]
        return True

    def _stream(self) -> None:
        """Publishes the device's frames until it fails or the service stops."""
        ok, first = self.source.read(None)
        if not ok or first is None:
            self.state = "waiting for the device"
            self.source.close()
            return
        if not self._open_writer(first):  # its state says: the stream is busy
            self.source.close()
            return
        assert self.writer is not None
        self._publish_copy(first)
        self.state = "streaming"
        period = 1.0 / self.source.fps if self.source.paced else 0.0
        next_tick = time.monotonic() + period
        while not self.stop.is_set():
            if period:
                if self.stop.wait(max(0.0, next_tick - time.monotonic())):
                    break  # a slow pace must not delay a stop
                next_tick = max(next_tick + period, time.monotonic() - period)  # no bursts
            try:
                loan = self.writer.loan(timeout=min(max(period, 0.1), STOP_LATENCY))
            except TimeoutError:  # readers pin every slot: this frame is skipped
                self.skipped += 1
                if not self.source.read(None)[0]:
                    break
                continue
            ok, image = self.source.read(loan.array)
            if not ok or image is None:
                loan.discard()
                break
            if image is not loan.array:  # OpenCV made an array of its own after all
                if image.shape != loan.array.shape or image.dtype != loan.array.dtype:
                    loan.discard()  # the device's frames changed: a stream of their layout
                    if not self._open_writer(image):
                        break
                    self._publish_copy(image)
                    continue
                loan.array[...] = image
            self._stamp()
            loan.publish()
            self._count()
        if self.writer is not None and not self.stop.is_set() and not self.source.ended:
            self.gone += 1  # not for a stream busy at a change of layout: the state says so
            self.state = "waiting for the device"
        self._close_writer()  # readers get WriterGone, or (False, None) from VideoCapture.read()
        self.source.close()

    def _stamp(self) -> None:
        """The record of the frame the source read last (Writer.meta)."""
        assert self.writer is not None
        self.writer.meta.frame, self.writer.meta.capture_ns = self.source.number, time.monotonic_ns()

    def _publish_copy(self, image: np.ndarray) -> None:
        assert self.writer is not None
        self._stamp()
        self.writer.publish(image)
        self._count()

    def _count(self) -> None:
        self.published += 1
        self.period_frames += 1

    def report(self, seconds: float) -> str:
        rate = self.period_frames / seconds if seconds > 0 else 0.0
        self.period_frames = 0
        return (
            f"{self.stream} ({self.spec}): {self.state}, {rate:.1f} fps, {self.published} frames,"
            f" {self.skipped} skipped, gone {self.gone} times"
        )


# ------------------------------------------------------------ the service


def _number(kind: Callable[[str], Any], low: float, high: float = math.inf) -> Callable[[str], Any]:
    """argparse's type for an option's value: a finite number of `kind`
    more than `low`, at most `high`."""

    def convert(text: str) -> Any:
        value = kind(text)  # ValueError: argparse says "invalid value"
        if not (low < value <= high and math.isfinite(value)):  # also refuses NaN
            bounds = f"more than {low:g}" + (f" and at most {high:g}" if high < math.inf else "")
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {text}")
        return value

    convert.__name__ = getattr(kind, "__name__", "number")  # argparse's "invalid int value"
    return convert


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="shmlane-camera", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--device", action="append", metavar="[NAME=]DEVICE",
                        help="a camera index, a video file or URL, or `pattern`; repeatable")  # fmt: skip
    parser.add_argument("--width", type=_number(int, 0), help="frame width asked of cameras (pattern: 640)")
    parser.add_argument("--height", type=_number(int, 0), help="frame height asked of cameras (pattern: 480)")
    parser.add_argument("--fps", type=_number(float, 0, 1e9),
                        help="rate asked of cameras; files and pattern are paced at it")  # fmt: skip
    parser.add_argument("--slots", type=_number(int, 1, STREAM_MAX_SLOTS),
                        help=f"ring size of a new stream, 2 to {STREAM_MAX_SLOTS} (default 8)")  # fmt: skip
    parser.add_argument("--retry", type=_number(float, 0), default=1.0, help="seconds between reopenings (1)")
    parser.add_argument("--seconds", type=_number(float, 0), help="stop after this long (default: a signal)")
    parser.add_argument("--once", action="store_true",
                        help="play video files once, then end their streams (default: loop)")  # fmt: skip
    args = parser.parse_args(argv)
    if not args.device:
        parser.error("give at least one --device (0 for the first camera, or pattern)")
    return args


def _say(text: str, file: Any = None) -> None:
    """print() for the service's lines: a reader of them that went away (a
    closed pipe) silences them, and stops no camera. Each is one line of
    text: what it quotes (a device as given, an error's words) shows a
    control character as its escape, never as a terminal's command."""
    stream = sys.stdout if file is None else file
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    try:
        print(text, file=stream)
    except BrokenPipeError:  # /dev/null from now on: the flush at exit fails no more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    for stream in (sys.stdout, sys.stderr):  # one write per line, also with PYTHONUNBUFFERED=1
        if stream is not None:  # None: started with the descriptor closed
            stream.reconfigure(line_buffering=True, write_through=False)  # type: ignore[union-attr]
    stop = threading.Event()
    cameras: List[Camera] = []
    for spec in args.device:
        why = misnamed(spec)
        if why:
            _say(f"shmlane-camera: {why}", file=sys.stderr)
            return 2
        name, device = stream_name(spec)
        if device != "pattern" and cv2 is None:
            _say(f"shmlane-camera: device {device} needs OpenCV: pip install opencv-python",
                  file=sys.stderr)  # fmt: skip
            return 2
        if any(c.stream == name for c in cameras):
            _say(f"shmlane-camera: two devices for stream {name}: name one NAME=DEVICE",
                  file=sys.stderr)  # fmt: skip
            return 2
        cameras.append(Camera(name, device, args, stop))
        source = cameras[-1].source
        if isinstance(source, Device) and source.is_file and not os.path.exists(device):
            _say(f"shmlane-camera: no device {device}: not a camera index (0), an existing file,"
                 " a /dev path, a URL or pattern", file=sys.stderr)  # fmt: skip
            return 2
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    for camera in cameras:
        camera.start()
        _say(f"camera: {camera.stream} from {camera.spec}")
    start = last = time.monotonic()
    end = start + args.seconds if args.seconds else None
    # Statistics once a second; the service ends at --seconds, at a signal, or
    # when every device has ended (--once), looked at every 0.1 s.
    while not stop.wait(0.1 if end is None else max(0.0, min(0.1, end - time.monotonic()))):
        now = time.monotonic()
        if now - last >= 1.0:
            for camera in cameras:
                _say(camera.report(now - last))
            last = now
        if (end is not None and now >= end) or not any(c.is_alive() for c in cameras):
            stop.set()
    deadline = time.monotonic() + STOP_GRACE  # one for all: a hung device holds up none
    for camera in cameras:
        camera.join(timeout=max(0.0, deadline - time.monotonic()))
    status = 0
    for camera in cameras:
        if camera.is_alive():  # in the device's driver: the process's exit releases both
            camera.error = f"its device did not answer within {STOP_GRACE:g} s of the stop"
        if camera.error:
            _say(f"shmlane-camera: {camera.stream}: {camera.error}", file=sys.stderr)
            status = 1
        _say(f"camera: {camera.stream} stopped after {camera.published} frames, gone {camera.gone} times")
    return status


if __name__ == "__main__":
    sys.exit(main())

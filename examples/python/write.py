"""Publish camera frames, or a synthetic moving test pattern, on a stream.

    python examples/python/write.py [--name cam0] [--camera N] [--width 640] [--height 480]
                                    [--fps 30] [--seconds S] [--slots 8] [--replace]
                                    [--resize-every SECONDS W1xH1,W2xH2,...]

Each frame is written straight into a slot loaned from the stream: OpenCV's
cap.read(frame) fills it in place, and the test pattern is computed into it
with NumPy. Nothing is copied. Frames are (height, width, 3) uint8, in
OpenCV's BGR order. As in examples/c/writer.c, every byte carries the
frame's sequence number (frame_stamp.py), so that readers can check that no
frame was torn. Without OpenCV (or without --camera) the pattern's text is drawn
by a small built-in renderer.

Each frame carries a metadata record (FrameMeta, frame_meta.py): its frame
number (the one stamped into it), when it was captured (CLOCK_MONOTONIC and
CLOCK_REALTIME ns), the exposure (the camera's, as OpenCV reports it; for the
test pattern, or a camera without one, the frames captured so far) and its
size. It is set on writer.meta and published atomically with the frame.

The stream outlives the writer: run it again with the same name and size and
it takes over; running readers carry on. A stream of another size is
replaced only with --replace. --resize-every switches between sizes (the
first is --width x --height, then each of the list in turn) by replacing
the stream: readers follow it. shmlane.unlink(NAME) removes the stream.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from itertools import cycle
from typing import List, Tuple, Union

import numpy as np

import shmlane
from frame_meta import FrameMeta
from frame_stamp import stamp

try:
    import cv2
except ImportError:  # the pattern does not need it
    cv2 = None

# 3x5 glyphs for the pattern's text when OpenCV is absent: rows top to bottom.
GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001010010010", "8": "111101111101111",
    "9": "111101111001111", ":": "000010000010000", ".": "000000000000010",
    "#": "101111101111101", " ": "000000000000000",
}  # fmt: skip


def draw_text(frame: np.ndarray, text: str, x: int, y: int, scale: int = 4) -> None:
    """Writes text in white at (x, y), with cv2.putText or the glyphs above."""
    if cv2 is not None:
        origin, size, white = (x, y + 8 * scale), scale / 4, (255, 255, 255)
        cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, size, white, scale // 2)
        return
    bits = [GLYPHS.get(c, GLYPHS[" "]) for c in text]
    glyphs = [np.array([b == "1" for b in g]).reshape(5, 3) for g in bits]
    gap = np.zeros((5, 1), dtype=bool)
    mask = np.hstack([part for g in glyphs for part in (g, gap)]).repeat(scale, 0).repeat(scale, 1)
    region = frame[y : y + mask.shape[0], x : x + mask.shape[1]]
    region[mask[: region.shape[0], : region.shape[1]]] = 255


class Pattern:
    """Colour gradients that scroll with the frame number and a white bar
    sweeping across, computed into the frame with NumPy."""

    def __init__(self, height: int, width: int) -> None:
        self.x = np.arange(width, dtype=np.uint8)[None, :]  # uint8 arithmetic wraps at 256
        self.y = np.arange(height, dtype=np.uint8)[:, None]
        self.xy = ((np.arange(width)[None, :] + np.arange(height)[:, None]) // 2).astype(np.uint8)
        self.bar = max(1, width // 16)

    def draw(self, frame: np.ndarray, seq: int, realtime_ns: int) -> None:
        phase = np.uint8(seq * 4 % 256)
        np.add(self.x, phase, out=frame[..., 0])
        np.add(self.y, np.uint8(phase // 2), out=frame[..., 1])
        np.subtract(self.xy, phase, out=frame[..., 2])
        x = seq * 8 % frame.shape[1]
        frame[:, x : x + self.bar] = 255
        draw_text(frame, f"#{seq}", 16, 16)
        seconds, ns = divmod(realtime_ns, 10**9)
        clock = time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{ns // 10**6:03d}"
        draw_text(frame, clock, 16, 64)


class TestPattern:
    """The frame source without a camera: a Pattern of any size."""

    name = "test pattern"

    def __init__(self) -> None:
        self.captured = 0

    def resize(self, width: int, height: int) -> Tuple[int, int]:
        self.pattern = Pattern(height, width)
        return width, height

    def capture(self, frame: np.ndarray, seq: int, meta: FrameMeta) -> None:
        meta.capture_ns, meta.realtime_ns = time.monotonic_ns(), time.time_ns()
        self.pattern.draw(frame, seq, meta.realtime_ns)
        self.captured += 1
        meta.exposure = self.captured

    def release(self) -> None:
        pass


class Camera:
    """An OpenCV camera, which reads each frame straight into the slot."""

    def __init__(self, index: int) -> None:
        if cv2 is None:
            sys.exit("write.py: --camera needs OpenCV: pip install opencv-python")
        self.name, self.captured = f"camera {index}", 0
        self.cap = cv2.VideoCapture(index)
        if not self.cap.isOpened():
            sys.exit(f"write.py: cannot open camera {index}")

    def resize(self, width: int, height: int) -> Tuple[int, int]:
        """Asks for a size; returns the one the camera really delivers."""
        self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        ok, first = self.cap.read()
        if not ok:
            sys.exit(f"write.py: {self.name} gives no frames")
        return first.shape[1], first.shape[0]

    def capture(self, frame: np.ndarray, seq: int, meta: FrameMeta) -> None:
        ok, image = self.cap.read(frame)  # fills `frame` in place: same size and type
        meta.capture_ns, meta.realtime_ns = time.monotonic_ns(), time.time_ns()
        if not ok:
            raise RuntimeError("the camera stopped delivering frames")
        if image is not frame:
            frame[...] = image  # OpenCV made a new array after all
        self.captured += 1
        exposure = self.cap.get(cv2.CAP_PROP_EXPOSURE)  # 0: the backend does not say
        meta.exposure = exposure if exposure else self.captured

    def release(self) -> None:
        self.cap.release()


def parse_sizes(text: str) -> List[Tuple[int, int]]:
    """"320x240,640x480" as [(320, 240), (640, 480)]."""
    try:
        sizes = [tuple(int(n) for n in size.lower().split("x")) for size in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(len(size) != 2 or min(size) < 3 for size in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be WxH,WxH,... (at least 3x3), not {text!r}")
    return sizes  # type: ignore[return-value]


def open_writer(args: argparse.Namespace, width: int, height: int) -> shmlane.Writer:
    """The stream's writer for frames of this size, with FrameMeta records."""
    shape, replace = (height, width, 3), args.replace or args.resize_every is not None
    try:
        return shmlane.Writer(
            args.name, shape=shape, dtype="u1", slots=args.slots, meta=FrameMeta, replace=replace
        )
    except shmlane.LayoutMismatch as exc:
        sys.exit(f"writer: {exc}\nwriter: --replace replaces it, or choose another --name")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="cam0", help="stream name (default cam0)")
    parser.add_argument("--camera", type=int, help="OpenCV camera index; default: a test pattern")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    parser.add_argument("--slots", type=int, help="ring size of a new stream (default 8)")
    parser.add_argument(
        "--replace", action="store_true", help="replace a stream of another layout on the name"
    )
    parser.add_argument(
        "--resize-every",
        nargs=2,
        metavar=("SECONDS", "W1xH1,..."),
        help="switch to the next size of the list every SECONDS, replacing the stream",
    )
    args = parser.parse_args()
    every: float = float("inf")  # no resizing
    sizes: List[Tuple[int, int]] = []
    if args.resize_every is not None:
        try:
            every, sizes = float(args.resize_every[0]), parse_sizes(args.resize_every[1])
        except (ValueError, argparse.ArgumentTypeError) as exc:
            parser.error(f"--resize-every: {exc}")
        if not every > 0:
            parser.error("--resize-every: SECONDS must be more than 0")
    for stream in (sys.stdout, sys.stderr):  # one write per line, into a pipe or with
        stream.reconfigure(line_buffering=True, write_through=False)  # PYTHONUNBUFFERED=1 too:
    # the demo's reader and writer share a terminal, and their lines must not run together.
    # SIGTERM ends the run like Ctrl-C: the stream is left to a successor in good order.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    source: Union[Camera, TestPattern]
    source = Camera(args.camera) if args.camera is not None else TestPattern()
    width, height = source.resize(args.width, args.height)  # what the camera really delivers
    next_size = cycle(sizes + [(args.width, args.height)])  # the list, then the first again

    writer = open_writer(args, width, height)
    first_seq = writer.next_seq  # 1, or where the previous writer stopped
    print(
        f"writer: {args.name} {width}x{height} at {args.fps:g} fps from {source.name}, "
        f"from frame {first_seq}"
    )

    period = 1.0 / args.fps
    start = next_tick = time.monotonic()
    end = start + args.seconds if args.seconds else float("inf")
    next_resize = start + every
    published = timeouts = status = 0
    interrupted = False
    try:
        while time.monotonic() < end:
            if time.monotonic() >= next_resize:
                # A new stream under the name: readers follow it once they
                # have every frame of this one, never finding the writer gone.
                width, height = source.resize(*next(next_size))
                writer.replace((height, width, 3), "u1")
                print(f"writer: {args.name} now {width}x{height}, from frame {writer.next_seq}")
                next_resize += every
            seq = writer.next_seq
            meta = writer.meta  # a FrameMeta: published with each frame, as it is then
            meta.frame, meta.width, meta.height = seq, width, height
            try:
                # Waits only while readers pin every free slot; then this frame
                # is skipped: a camera does not wait either.
                with writer.loan(timeout=period) as frame:
                    source.capture(frame, seq, meta)
                    stamp(frame, seq)
                published += 1
            except TimeoutError:
                timeouts += 1
            next_tick += period
            now = time.monotonic()
            if now - next_tick > period:  # more than a frame late: skip, do not burst
                next_tick = now
            time.sleep(max(0.0, min(next_tick, end) - now))
    except KeyboardInterrupt:
        interrupted = True
    except RuntimeError as exc:  # the loan was discarded
        print(f"writer: {exc}", file=sys.stderr)
        status = 1
    finally:
        writer.close()  # readers learn that the writer is gone; the stream stays
        source.release()
    elapsed = time.monotonic() - start
    rate = published / elapsed if elapsed > 0 else 0.0
    note = ", interrupted" if interrupted else ""
    print(
        f"writer: published {published} frames in {elapsed:.2f} s ({rate:.1f} fps), "
        f"{timeouts} loan time-outs{note}"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())

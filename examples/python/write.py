"""Publish camera frames, or a synthetic moving test pattern, on a stream.

    python examples/python/write.py [--name cam0] [--camera N] [--width 640] [--height 480]
                                    [--fps 30] [--seconds S] [--slots 8]

Each frame is written straight into a slot loaned from the stream: OpenCV's
cap.read(frame) fills it in place, and the test pattern is computed into it
with NumPy. Nothing is copied. Frames are (height, width, 3) uint8, in
OpenCV's BGR order. As in examples/c/writer.c, every byte carries the
frame's sequence number (frame_stamp.py), so that readers can check that no
frame was torn. Without OpenCV (or without --camera) the pattern's text is drawn
by a small built-in renderer.

The stream outlives the writer: run it again with the same name and size and
it takes over; running readers carry on. shmlane.unlink(NAME) removes it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any, Optional

import numpy as np

import shmlane
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

    def draw(self, frame: np.ndarray, seq: int) -> None:
        phase = np.uint8(seq * 4 % 256)
        np.add(self.x, phase, out=frame[..., 0])
        np.add(self.y, np.uint8(phase // 2), out=frame[..., 1])
        np.subtract(self.xy, phase, out=frame[..., 2])
        x = seq * 8 % frame.shape[1]
        frame[:, x : x + self.bar] = 255
        draw_text(frame, f"#{seq}", 16, 16)
        now = time.time()
        clock = time.strftime("%H:%M:%S", time.localtime(now)) + f"{now % 1:.3f}"[1:]
        draw_text(frame, clock, 16, 64)


def open_camera(index: int, width: int, height: int) -> Any:
    if cv2 is None:
        sys.exit("write.py: --camera needs OpenCV: pip install opencv-python")
    cap = cv2.VideoCapture(index)
    cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    if not cap.isOpened():
        sys.exit(f"write.py: cannot open camera {index}")
    return cap


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="cam0", help="stream name (default cam0)")
    parser.add_argument("--camera", type=int, help="OpenCV camera index; default: a test pattern")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    parser.add_argument("--slots", type=int, help="ring size of a new stream (default 8)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # one line at a time, even into a pipe
    # SIGTERM ends the run like Ctrl-C: the stream is left to a successor in good order.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    cap: Optional[Any] = None
    width, height = args.width, args.height
    if args.camera is not None:
        cap = open_camera(args.camera, width, height)
        ok, first = cap.read()
        if not ok:
            sys.exit(f"write.py: camera {args.camera} gives no frames")
        height, width = first.shape[:2]  # what the camera really delivers
    pattern = Pattern(height, width)

    writer = shmlane.Writer(args.name, shape=(height, width, 3), dtype="u1", slots=args.slots)
    source = f"camera {args.camera}" if cap is not None else "test pattern"
    first_seq = writer.next_seq  # 1, or where the previous writer stopped
    print(
        f"writer: {args.name} {width}x{height} at {args.fps:g} fps from {source}, "
        f"from frame {first_seq}"
    )

    period = 1.0 / args.fps
    start = next_tick = time.monotonic()
    end = start + args.seconds if args.seconds else float("inf")
    published = timeouts = status = 0
    interrupted = False
    try:
        while time.monotonic() < end:
            seq = writer.next_seq
            try:
                # Waits only while readers pin every free slot; then this frame
                # is skipped: a camera does not wait either.
                with writer.loan(timeout=period) as frame:
                    if cap is None:
                        pattern.draw(frame, seq)
                    else:
                        ok, image = cap.read(frame)  # fills `frame` in place: same size and type
                        if not ok:
                            raise RuntimeError("the camera stopped delivering frames")
                        if image is not frame:
                            frame[...] = image  # OpenCV made a new array after all
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
        if cap is not None:
            cap.release()
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

"""Show the frames of a stream with their rate and latency, or print them.

    python examples/python/read.py [--name cam0] [--mode latest|all] [--headless]
                                   [--seconds S] [--snapshot out.png] [--wait-open S]
                                   [--exit-on-gone]

Opens a window (cv2.imshow) with each frame's metadata drawn on it (frame
number, size, exposure, age since capture), and frames/s and latency, when a
display and an OpenCV with GUI support are there; otherwise, or with
--headless, prints once a second: frames/s, latency from publish to receive
(p50, p99), frames lost, frames torn, frames whose metadata agrees with them
or not, and their size. Frames of (height, width, 3) uint8 are checked for
tearing: write.py and examples/c/writer.c put the frame's sequence number in
every byte (frame_stamp.py). Before anything, the check proves on a frame
torn in the middle of a row that it can see one (exit status 3 if not). The
metadata record (FrameMeta, frame_meta.py) must carry the frame number
stamped into its frame and the frame's size.

When the writer stops, the reader says so and keeps waiting for another one
to take the stream over (--exit-on-gone stops once it has been gone for half
a second). When the stream is replaced by one of another size (write.py
--resize-every or --replace), the reader follows it and says so. --snapshot
saves the last frame as PNG. Exit status 0 only if frames arrived, none was
torn and the metadata of each agreed with it.
"""

from __future__ import annotations

import argparse
import os
import signal
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import List, Optional

import numpy as np

import shmlane
from frame_meta import FrameMeta, disagreement
from frame_stamp import check_works, intact

try:
    import cv2
except ImportError:  # printing and PNG snapshots do not need it
    cv2 = None

WINDOW = "shmlane"


def open_window() -> bool:
    """True if frames can be shown: a display and a GUI-capable OpenCV."""
    if cv2 is None or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
    except cv2.error:  # opencv-python-headless
        return False
    return True


def write_png(path: Path, frame: np.ndarray) -> None:
    """Saves a BGR (or grey) uint8 frame: with OpenCV, else a minimal PNG writer."""
    if cv2 is not None:
        if not cv2.imwrite(str(path), frame):
            raise OSError(f"cannot write {path}")
        return
    rgb = frame[..., ::-1] if frame.ndim == 3 else frame[..., None]
    height, width, channels = rgb.shape
    rows = np.hstack([np.zeros((height, 1), np.uint8), rgb.reshape(height, -1)])  # filter 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    colour = {1: 0, 3: 2}[channels]
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes()))
        + chunk(b"IEND", b"")
    )


def stamped(reader: shmlane.Reader) -> bool:
    """Frames laid out as write.py's carry the stamp that shows tearing."""
    shape = reader.shape
    return reader.dtype == np.uint8 and len(shape) == 3 and shape[1] * shape[2] >= 8


class Stats:
    """Counts for the whole run and for the current one-second period."""

    def __init__(self) -> None:
        self.start = self.period_start = time.monotonic()
        self.frames = self.lost = self.torn = self.meta_bad = self.new_streams = 0
        self.max_latency_ns = 0
        self.latencies: List[int] = []
        self.period_frames = self.period_lost = self.period_torn = self.period_meta_bad = 0
        self.size = "-"  # of the latest frame, as its metadata says

    def add(self, latency_ns: int, lost: int, torn: bool, meta_bad: bool) -> None:
        self.frames, self.period_frames = self.frames + 1, self.period_frames + 1
        self.lost, self.period_lost = self.lost + lost, self.period_lost + lost
        self.torn, self.period_torn = self.torn + torn, self.period_torn + torn
        self.meta_bad += meta_bad
        self.period_meta_bad += meta_bad
        self.latencies.append(latency_ns)
        self.max_latency_ns = max(self.max_latency_ns, latency_ns)

    def rate(self) -> float:
        span = time.monotonic() - self.period_start
        return self.period_frames / span if span > 0 else 0.0

    def percentile(self, p: int) -> Optional[int]:
        """Nearest-rank percentile of this period's latencies, in microseconds."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[max(0, -(-len(ordered) * p // 100) - 1)] // 1000

    def report(self) -> str:
        p50, p99 = self.percentile(50), self.percentile(99)
        latency = "-" if p50 is None else f"{p50} us  p99 {p99}"
        line = (
            f"[{time.monotonic() - self.start:6.1f} s] {self.rate():5.1f} frames/s"
            f"  latency p50 {latency} us  lost {self.period_lost}  torn {self.period_torn}"
            f"  meta ok {self.period_frames - self.period_meta_bad} bad {self.period_meta_bad}"
            f"  {self.size}"
        )
        self.period_start = time.monotonic()
        self.latencies = []
        self.period_frames = self.period_lost = self.period_torn = self.period_meta_bad = 0
        return line

    def summary(self, interrupted: bool) -> str:
        elapsed = time.monotonic() - self.start
        return (
            f"reader: frames={self.frames} lost={self.lost} torn={self.torn}"
            f" meta ok={self.frames - self.meta_bad} bad={self.meta_bad} in {elapsed:.2f} s,"
            f" latency max {self.max_latency_ns // 1000} us, last {self.size},"
            f" {self.new_streams} new stream(s){', interrupted' if interrupted else ''}"
        )


def show(frame: np.ndarray, meta: FrameMeta, stats: Stats, latency_ns: int) -> bool:
    """Shows a copy of the frame (samples are read-only) with its metadata and
    the numbers on it; False once the window is closed or q or Esc pressed."""
    image = np.array(frame)
    age_ms = (time.monotonic_ns() - meta.capture_ns) / 1e6  # the writer's clock is ours
    lines = (
        f"frame {meta.frame}  {meta.width}x{meta.height}  exposure {meta.exposure:g}",
        f"{stats.rate():.1f} fps  latency {latency_ns / 1e6:.2f} ms  age {age_ms:.2f} ms",
    )
    for i, text in enumerate(lines):
        origin = (10, image.shape[0] - 12 - 26 * (len(lines) - 1 - i))
        for colour, thickness in (((0, 0, 0), 4), ((0, 255, 255), 2)):  # yellow, outlined
            cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, thickness)
    cv2.imshow(WINDOW, image)
    key = cv2.waitKey(1) & 0xFF
    return key not in (ord("q"), 27) and cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) >= 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="cam0", help="stream name (default cam0)")
    parser.add_argument("--mode", choices=("latest", "all"), default="latest")
    parser.add_argument("--headless", action="store_true", help="print, never open a window")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    parser.add_argument("--snapshot", type=Path, help="save the last frame there as PNG")
    parser.add_argument("--wait-open", type=float, default=5.0, help="wait for the stream (5 s)")
    parser.add_argument("--exit-on-gone", action="store_true", help="stop when the writer stops")
    args = parser.parse_args()
    for stream in (sys.stdout, sys.stderr):  # one write per line, into a pipe or with
        stream.reconfigure(line_buffering=True, write_through=False)  # PYTHONUNBUFFERED=1 too:
    # the demo's reader and writer share a terminal, and their lines must not run together.
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
    if not check_works():
        print("reader: the torn check misses a frame torn in the middle of a row", file=sys.stderr)
        return 3

    try:
        # meta=: the stream's metadata must be FrameMeta's (LayoutMismatch
        # otherwise), and each sample's meta is a FrameMeta.
        reader = shmlane.Reader(args.name, policy=args.mode, timeout=args.wait_open, meta=FrameMeta)
    except FileNotFoundError:
        print(
            f"reader: no stream {args.name} appeared within {args.wait_open:g} s", file=sys.stderr
        )
        return 1
    except shmlane.LayoutMismatch as exc:
        print(f"reader: not a stream of write.py's: {exc}", file=sys.stderr)
        return 1
    window = not args.headless and open_window()
    output = "window" if window else "headless"
    print(f"reader: {args.name} {reader.dtype} {reader.shape}, mode {args.mode}, {output}")
    check = stamped(reader)

    stats = Stats()
    end = stats.start + args.seconds if args.seconds else float("inf")
    next_report = stats.start + 1.0
    last: Optional[shmlane.Sample] = None  # kept pinned for --snapshot: no copy per frame
    said_gone = interrupted = failed = False
    try:
        while True:
            now = time.monotonic()
            if now >= next_report:
                if not window:
                    print(stats.report())
                next_report = max(next_report + 1.0, now + 0.5)  # no catch-up after a stall
            if now >= end:
                break
            try:
                sample = reader.receive(timeout=min(next_report, end) - now)
            except TimeoutError:
                continue
            except shmlane.WriterGone:  # every frame is in; returned about every 50 ms
                if not said_gone:
                    print("writer gone")
                    said_gone = True
                if args.exit_on_gone:
                    break
                continue
            except shmlane.LayoutChanged as exc:  # replaced by a stream without FrameMeta
                print(f"reader: {exc}", file=sys.stderr)
                failed = True
                break
            # Both clocks are CLOCK_MONOTONIC, which every process shares.
            latency_ns = time.monotonic_ns() - sample.timestamp_ns
            if sample.new_stream:  # the reader's shape is the new stream's now
                height, width = reader.shape[:2]
                print(f"reader: new stream {width}x{height} from frame {sample.seq}")
                stats.new_streams += 1
                check = stamped(reader)
            elif said_gone:
                print(f"writer back at frame {sample.seq}")
            said_gone = False
            frame, meta = sample.array, sample.meta
            torn = check and not intact(frame, sample.seq)
            if torn:
                print(f"reader: frame {sample.seq} is torn", file=sys.stderr)
            wrong = disagreement(meta, frame) if check else None
            if wrong:
                print(f"reader: frame {sample.seq}: {wrong}", file=sys.stderr)
            stats.size = f"{meta.width}x{meta.height}"
            stats.add(latency_ns, sample.lost, torn, wrong is not None)
            shown = not window or show(frame, meta, stats, latency_ns)
            del frame
            if args.snapshot:
                last, previous = sample, last
                if previous is not None:
                    previous.release()
            else:
                sample.release()  # at once: a pinned slot is one the writer cannot reuse
            if not shown:
                break
    except KeyboardInterrupt:
        interrupted = True
    if args.snapshot and last is not None:
        write_png(args.snapshot, last.array)
        print(f"reader: frame {last.seq} saved to {args.snapshot}")
        last.release()
    reader.close()
    print(stats.summary(interrupted))
    ok = stats.frames > 0 and stats.torn == 0 and stats.meta_bad == 0 and not failed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

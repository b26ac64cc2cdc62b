"""Per-frame cost of the Python stream API: loan + publish, and receive +
array + release, for a few frame sizes, in one process (so the numbers are the
library's own overhead, without a process wake-up). Nothing is copied, so the
cost does not grow with the frame's size.

    python bench/stream_python.py [--frames 20000]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable

import shmlane

SHAPES = [(480, 640, 3), (1080, 1920, 3)]


def best_of(runs: int, frames: int, step: Callable[[], None]) -> float:
    """Microseconds per call, the best of several runs."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(frames):
            step()
        best = min(best, (time.perf_counter() - start) / frames * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20000)
    args = parser.parse_args()
    name = f"bench.{os.getpid()}"
    print("frame              loan+publish   receive+array+release")
    for shape in SHAPES:
        with shmlane.Writer(name, shape=shape, dtype="u1") as writer:
            with shmlane.Reader(name) as reader:

                def loan_publish() -> None:
                    with writer.loan():
                        pass

                def publish_receive() -> None:
                    writer.loan().publish()
                    with reader.receive(timeout=1) as sample:
                        sample.array

                def publish_only() -> None:
                    writer.loan().publish()  # subtracted from the line above

                lp = best_of(5, args.frames, loan_publish)
                rr = best_of(5, args.frames, publish_receive) - best_of(
                    5, args.frames, publish_only
                )
            writer.unlink()
        label = "x".join(map(str, shape))
        print(f"{label:<18} {lp:8.2f} us     {rr:8.2f} us")


if __name__ == "__main__":
    main()

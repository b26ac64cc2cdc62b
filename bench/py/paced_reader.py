"""The paced table's Python reader with the predictive wait, behind
bench/c/stream's writer (bench/run.py, method "shmlane-auto-cw"): a camera in
C, so that the latency from the publish call holds no Python writer's own
call. It speaks stream.c's control block (bench/c/common.h, struct ctl),
takes each frame as pair.py's reader does (its latency_phase, with its
Shmlane method: receive, the array, the clock), and writes what stream.c's
reader writes: OUT.lat.PID, OUT.latp.PID and one JSON line.

    paced_reader.py NAME FRAME ITERS OUT
"""

from __future__ import annotations

import json
import os
import sys

import shmlane
from pair import WARMUP, Shmlane, dump, latency_phase, parse_frame

# struct ctl's words, in 8-byte units (each has a cache line of its own).
# This process is the writer's only reader: no other process stores to them.
ACKS, READY = 128 // 8, 192 // 8


def main(name: str, frame: str, iters: int, out: str) -> None:
    seg = shmlane.open(name + ".c", timeout=5.0)
    c = seg.array.view("<u8")
    m = Shmlane("reader", name, parse_frame(frame))
    c[READY] += 1
    lat, latp, lat_cpu = latency_phase(m, iters, c, ACKS)
    m.close()
    dump(f"{out}.lat.{os.getpid()}", lat)
    dump(f"{out}.latp.{os.getpid()}", latp)
    print(json.dumps({"lat_cpu_ns": lat_cpu, "lat_cpu_frames": iters - min(WARMUP, iters - 1)}),
          flush=True)
    c[READY] -= 1
    del c
    seg.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])

"""The paced table's Python reader with the predictive wait, behind
bench/c/stream's writer (bench/run.py, method "shmlane-auto-cw"): a camera in
C, so that the latency from the publish call holds no Python writer's own
call. It speaks stream.c's control block (bench/c/common.h, struct ctl),
takes each frame as pair.py's reader does (its Shmlane method: receive, the
array, the clock), and writes what stream.c's reader writes: OUT.lat.PID,
OUT.latp.PID and one JSON line.

    paced_reader.py NAME FRAME ITERS OUT
"""

from __future__ import annotations

import json
import os
import sys
import time

import shmlane
from method import stamp_of
from pair import RECV_TIMEOUT, WARMUP, Shmlane, dump, parse_frame

# struct ctl's words, in 8-byte units (each has a cache line of its own).
# This process is the writer's only reader: no other process stores to them.
ACKS, READY = 128 // 8, 192 // 8


def main(name: str, frame: str, iters: int, out: str) -> None:
    seg = shmlane.open(name + ".c", timeout=5.0)
    c = seg.array.view("<u8")
    m = Shmlane("reader", name, parse_frame(frame))
    c[READY] += 1
    warm = min(WARMUP, iters - 1) if WARMUP > 0 else 0
    lat, latp, cpu0 = [], [], time.process_time_ns()
    for i in range(iters):
        if i == warm:
            cpu0 = time.process_time_ns()  # as the writer's
        got = None
        while got is None:
            got = m.recv(RECV_TIMEOUT)
        arr, release, _ = got
        lat.append(m.held_ns - stamp_of(arr))
        latp.append(m.held_ns - m.published_ns)
        del arr
        release()
        c[ACKS] += 1
    lat_cpu = time.process_time_ns() - cpu0
    m.close()
    dump(f"{out}.lat.{os.getpid()}", lat)
    dump(f"{out}.latp.{os.getpid()}", latp)
    print(json.dumps({"lat_cpu_ns": lat_cpu, "lat_cpu_frames": iters - warm}), flush=True)
    c[READY] -= 1
    del c
    seg.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])

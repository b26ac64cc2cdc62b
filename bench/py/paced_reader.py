"""The paced table's Python reader with the predictive wait, behind
bench/c/stream's writer (bench/run.py, method "shmlane-auto-cw"): a camera in
C, so that the latency from the publish call holds no Python writer's own
call. It speaks stream.c's control block (bench/c/common.h, struct ctl),
takes each frame as pair.py's reader does (its latency_phase, with its
Shmlane method: receive, the array, the clock), and writes what stream.c's
reader writes: OUT.lat.PID, OUT.latp.PID and one JSON line. PHASE a: the
pace changes instead (stream.c's phase a), OUT.adapt.PID as its reader.

    paced_reader.py NAME FRAME ITERS OUT [PHASE]
"""

from __future__ import annotations

import json
import os
import sys
import time

import shmlane
from pair import RECV_TIMEOUT, WARMUP, Shmlane, dump, latency_phase, parse_frame

# struct ctl's words, in 8-byte units (each has a cache line of its own).
# This process is the writer's only reader: no other process stores to them.
ACKS, READY = 128 // 8, 192 // 8
QUIET_S = 1.0  # phase a: as stream.c's ADAPT_QUIET_NS


def adapt_phase(r: shmlane.Reader, iters: int) -> list:
    """Phase a: this thread's CPU time after each of the 3*iters frames, by
    their number (-1: not seen), and after QUIET_S more without a frame."""
    n, last = 3 * iters, -1
    cpu = [-1] * (n + 1)
    while last != n - 1:
        try:
            s = r.receive(timeout=RECV_TIMEOUT)
        except TimeoutError:
            continue
        number = int(s.array.reshape(-1)[8:16].view("<u8")[0])
        s.release()
        if number < n:
            last = number
            cpu[last] = time.thread_time_ns()
    try:
        r.receive(timeout=QUIET_S)
        raise RuntimeError("a frame after the last one")
    except TimeoutError:
        cpu[n] = time.thread_time_ns()
    return cpu


def main(name: str, frame: str, iters: int, out: str, phase: str) -> None:
    seg = shmlane.open(name + ".c", timeout=5.0)
    c = seg.array.view("<u8")
    m = Shmlane("reader", name, parse_frame(frame), "all" if phase == "a" else "latest")
    c[READY] += 1
    if phase == "a":
        dump(f"{out}.adapt.{os.getpid()}", adapt_phase(m.r, iters))
    else:
        lat, latp, lat_cpu = latency_phase(m, iters, c, ACKS)
        dump(f"{out}.lat.{os.getpid()}", lat)
        dump(f"{out}.latp.{os.getpid()}", latp)
        print(json.dumps({"lat_cpu_ns": lat_cpu, "lat_cpu_frames": iters - min(WARMUP, iters - 1)}),
              flush=True)
    m.close()
    c[READY] -= 1
    del c
    seg.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], (sys.argv[5:] or ["l"])[0])

"""Wake-up latency in Python, one way, the counterpart of bench/c/wake.c:

    python wake.py reader METHOD NAME ITERS OUT   creates NAME, prints "ready",
                                                 writes latencies (ns) to OUT
    python wake.py writer METHOD NAME ITERS GAP_NS OUT   writes notify() times

METHOD: shl (Segment.notify -> Segment.wait) or shlspin (the wait spins up to
1 ms first). The writer waits for the reader's acknowledgement, sleeps
GAP_NS (0.5x to 1.5x), stamps time.monotonic_ns() into the segment and
notifies; the reader's latency is its clock on return minus the stamp."""

import random
import sys
import time

import shmlane

STAMP, ACKS = 0, 1


def dump(path, values):
    with open(path, "w") as f:
        f.write("\n".join(str(v) for v in values) + "\n")


def reader(method: str, name: str, iters: int, out: str) -> None:
    spin = 0.001 if method == "shlspin" else 0.0
    seg = shmlane.create(name, shape=2, dtype="<u8", replace=True)
    c, now, lat = seg.array, time.monotonic_ns, []
    print("ready", flush=True)
    for i in range(iters):
        seg.wait(spin=spin)
        lat.append(now() - int(c[STAMP]))
        c[ACKS] = i + 1
    dump(out, lat)
    seg.close()
    seg.unlink()


def writer(name: str, iters: int, gap_ns: int, out: str) -> None:
    seg = shmlane.open(name)
    c, now, cost = seg.array, time.monotonic_ns, []
    rng = random.Random(1)
    for i in range(iters):
        while c[ACKS] != i:
            pass
        time.sleep(gap_ns * rng.uniform(0.5, 1.5) / 1e9)
        t0 = now()
        c[STAMP] = t0
        seg.notify()
        cost.append(now() - t0)
    while c[ACKS] != iters:
        pass
    dump(out, cost)
    seg.close()


if __name__ == "__main__":
    role, method, name, iters = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if role == "reader":
        reader(method, name, iters, sys.argv[5])
    else:
        writer(name, iters, int(sys.argv[5]), sys.argv[6])

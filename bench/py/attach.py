"""Open/attach cost in Python, the counterpart of bench/c/attach.c:

    python attach.py NAME ITERS   -> one JSON line of nanosecond lists

create: shmlane.create(480x640x3 uint8) + .array + close; open:
shmlane.open(name) + .array (the typed view) + close; sw: Writer (new
stream) + close; sr: Reader + close."""

import json
import sys
import time

import shmlane

ns = time.perf_counter_ns


def main(name: str, n: int) -> None:
    out = {k: [] for k in ("create", "open", "unlink", "sw", "sr")}
    try:
        shmlane.unlink(name)
    except FileNotFoundError:
        pass
    for _ in range(n):
        t0 = ns()
        seg = shmlane.create(name, shape=(480, 640, 3), dtype="u1")
        seg.array
        seg.close()
        t1 = ns()
        seg = shmlane.open(name, readonly=True)
        seg.array
        seg.close()
        t2 = ns()
        shmlane.unlink(name)
        t3 = ns()
        w = shmlane.Writer(name, shape=(480, 640, 3), dtype="u1")
        w.close()
        t4 = ns()
        r = shmlane.Reader(name, timeout=0)
        r.close()
        t5 = ns()
        shmlane.unlink(name)
        for k, v in zip(out, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            out[k].append(v)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

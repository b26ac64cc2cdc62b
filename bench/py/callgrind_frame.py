"""Instructions per frame in one process, for callgrind (not part of
`make bench`; see docs/performance-log.md):

    for n in 1000 3000; do OPENBLAS_NUM_THREADS=1 valgrind --tool=callgrind \\
        --callgrind-out-file=cg.$n python bench/py/callgrind_frame.py $n [METHOD [FRAME]]; done

The difference of the two totals, divided by 2000, is the cost of one frame.
Without METHOD: one round of the stream calls, loan, .array, publish,
receive, .array, release, of a 480x640x3 frame. With METHOD (a method of
pair.py: shmlane, shmlane-copy, mpshm, sharedarray, ...) and FRAME (as
pair.py's, default 64): one send and one receive of that method as the
benchmark makes them, writer and reader in this one process (no wake-up:
the reader finds each frame there). callgrind_annotate on both files shows
where it goes."""

import os
import sys

import numpy as np

import shmlane

n = int(sys.argv[1])
name = f"cgbench{os.getpid()}"
if len(sys.argv) > 2:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import pair

    shape = pair.parse_frame(sys.argv[3] if len(sys.argv) > 3 else "64")
    w = pair.make(sys.argv[2], "writer", name, shape, "latest")
    r = pair.make(sys.argv[2], "reader", name, shape, "latest")
    w.fill = False  # as in the throughput phase
    src = np.zeros(shape, np.uint8)
    for _ in range(n):
        w.send(src)
        arr, release, key = r.recv(5.0)  # a queue (pyzmq) delivers on its I/O thread
        if release:
            release()
    r.close()
    w.close()
    sys.exit(0)
try:
    shmlane.unlink(name)
except FileNotFoundError:
    pass
w = shmlane.Writer(name, shape=(480, 640, 3), dtype="u1")
r = shmlane.Reader(name)
for _ in range(n):
    loan = w.loan()
    loan.array
    loan.publish()
    s = r.receive(timeout=0)
    s.array
    s.release()
w.close()
w.unlink()

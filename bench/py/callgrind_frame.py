"""Instructions per frame of the Python stream API, in one process, for
callgrind (not part of `make bench`; see docs/performance-log.md):

    for n in 1000 3000; do OPENBLAS_NUM_THREADS=1 valgrind --tool=callgrind \\
        --callgrind-out-file=cg.$n python bench/py/callgrind_frame.py $n; done

The difference of the two totals, divided by 2000, is the cost of one round
of loan, .array, publish, receive, .array, release; callgrind_annotate on
both files shows where it goes."""

import sys

import shmlane

n = int(sys.argv[1])
name = "cgbench"
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

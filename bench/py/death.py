"""The Python reader of the death-detection figure (bench/c/death.c has the
writer and the C reader, and the protocol):

    python death.py NAME   receives frame 1, prints "ready", then "gone T"
                           (time.monotonic_ns() when WriterGone was raised),
                           then waits for the end of its input (an
                           interpreter's exit takes tens of milliseconds of
                           CPU that readers yet to notice would wait for)"""

import sys
import time

import shmlane

with shmlane.Reader(sys.argv[1], timeout=5) as reader:
    reader.receive(timeout=5).release()
    print("ready", flush=True)
    try:
        reader.receive(timeout=60).release()
        print("error a frame came", flush=True)
    except shmlane.WriterGone:
        print("gone", time.monotonic_ns(), flush=True)
    sys.stdin.read()

"""Reader: waits for each update and prints a consistent copy of it."""

import ctypes
import sys

import shmlane


class Pose(ctypes.Structure):
    _fields_ = [("frame", ctypes.c_uint64), ("x", ctypes.c_double), ("y", ctypes.c_double)]


# Same layout as the writer's, so either may start first (LayoutMismatch otherwise).
pose = shmlane.create("pose", ctype=Pose, exist_ok=True)
calib = shmlane.create("calib", shape=(3, 3), dtype="<f8", exist_ok=True)

print("waiting for the writer (quickstart_writer.py) to change pose", file=sys.stderr)
updates = 0
while True:
    try:
        pose.wait(timeout=2.0)  # sleeps without polling; Ctrl-C works
    except TimeoutError:
        why = "the writer has stopped" if updates else "no writer came (start it within 2 s)"
        print(f"no change for 2 s: {why}; {updates} updates read", file=sys.stderr)
        break
    with pose.lock():  # copy under the lock, print outside it
        p = Pose.from_buffer_copy(pose.struct)
        m = calib.array.copy()
    updates += 1
    print(f"frame {p.frame}: x={p.x} y={p.y} trace={m.trace()}")

"""Writer: updates a shared Structure and an array, then wakes the readers."""

import ctypes
import time

import numpy as np
import shmlane


class Pose(ctypes.Structure):
    _fields_ = [("frame", ctypes.c_uint64), ("x", ctypes.c_double), ("y", ctypes.c_double)]


# Whichever process starts first creates the segments; the other opens them.
pose = shmlane.create("pose", ctype=Pose, exist_ok=True)
calib = shmlane.create("calib", shape=(3, 3), dtype="<f8", exist_ok=True)

for frame in range(1, 6):
    with pose.lock():  # one lock guards both: readers never see half an update
        pose.struct.frame = frame
        pose.struct.x, pose.struct.y = 0.5 * frame, -1.0 * frame
        calib.array[...] = np.eye(3) * frame
    pose.notify()  # wake every waiting reader, in every process
    time.sleep(0.2)

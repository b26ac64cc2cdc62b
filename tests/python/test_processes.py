"""Unrelated processes: a segment outlives its creator and carries its own
layout, between Python interpreters and between C and Python."""

from __future__ import annotations

import ctypes
import json
import time

import numpy as np

import shmlane
from conftest import wait_in_thread

WRITER = """
import ctypes, sys
import numpy as np
import shmlane

class Pose(ctypes.Structure):
    _fields_ = [("frame", ctypes.c_uint64), ("xy", ctypes.c_double * 2), ("flag", ctypes.c_uint8)]

pose = shmlane.create(sys.argv[1], ctype=Pose)
grid = shmlane.create(sys.argv[2], shape=(2, 3), dtype="<f4")
with pose.lock():
    pose.struct.frame = 42
    pose.struct.xy[:] = (1.5, -2.0)
    pose.struct.flag = 1
    grid.array[...] = np.arange(6).reshape(2, 3)
pose.notify()
"""  # exits without closing or unlinking: the segments must survive it

READER = """
import ctypes, json, sys
import shmlane

class Pose(ctypes.Structure):
    _fields_ = [("frame", ctypes.c_uint64), ("xy", ctypes.c_double * 2), ("flag", ctypes.c_uint8)]

pose = shmlane.open(sys.argv[1], ctype=Pose, readonly=True)
grid = shmlane.open(sys.argv[2])
p = pose.struct
print(json.dumps({"frame": p.frame, "xy": list(p.xy), "flag": p.flag, "changes": pose.changes,
                  "grid": grid.array.tolist(), "dtype": grid.array.dtype.str,
                  "pose_fields": list(pose.dtype.names)}))
"""


def test_segments_outlive_their_creator(new_name, run_py):
    pose_name, grid_name = new_name(), new_name()
    run_py(WRITER, pose_name, grid_name)
    got = json.loads(run_py(READER, pose_name, grid_name))
    assert got == {
        "frame": 42,
        "xy": [1.5, -2.0],
        "flag": 1,
        "changes": 1,
        "grid": [[0, 1, 2], [3, 4, 5]],
        "dtype": "<f4",
        "pose_fields": ["frame", "xy", "flag"],
    }
    listed = {info.name: info for info in shmlane.list()}
    assert listed[grid_name].shape == (2, 3)
    assert listed[grid_name].dtype == np.dtype("<f4")
    assert listed[grid_name].nbytes == 24
    assert listed[pose_name].changes == 1
    assert listed[pose_name].alive is False  # the writer has exited


class Pair(ctypes.Structure):  # struct pair in c_peer.c
    _fields_ = [("x", ctypes.c_int32), ("y", ctypes.c_double), ("z", ctypes.c_int16 * 3)]


def test_array_created_in_c_opens_in_python(name, c_peer):
    c_peer("create-array", name)
    with shmlane.open(name, dtype="<f8", shape=(2, 3)) as seg:
        assert seg.array.tolist() == [[0, 1.5, 3], [4.5, 6, 7.5]]


def test_struct_created_in_c_opens_in_python(name, c_peer):
    c_peer("create-struct", name)
    with shmlane.open(name, ctype=Pair) as seg:
        assert (seg.struct.x, seg.struct.y, list(seg.struct.z)) == (-7, 2.5, [1, 2, 3])
    with shmlane.open(name) as seg:  # layout from the header alone
        assert seg.dtype == np.dtype(Pair)
        assert seg.array["z"].tolist() == [1, 2, 3]


def test_python_segments_read_in_c(new_name, c_peer):
    pair_name, grid_name = new_name(), new_name()
    with (
        shmlane.create(pair_name, ctype=Pair) as pair,
        shmlane.create(grid_name, (2, 2), "<f8") as grid,
    ):
        pair.struct.x, pair.struct.y, pair.struct.z[:] = 5, -0.25, (7, 8, 9)
        grid.array[...] = [[1, 2], [3, 4.5]]
    assert c_peer("read-struct", pair_name).split("\n")[:2] == [
        "T{<i:x:4x<d:y:(3)<h:z:2x}",
        "5 -0.25 7 8 9",
    ]
    assert c_peer("read-array", grid_name).split() == ["<d", "2,2", "1", "2", "3", "4.5"]


def test_notify_from_c_wakes_python(name, c_peer):
    with shmlane.create(name, dtype="<u4") as seg:
        thread, result = wait_in_thread(seg, timeout=30)  # asleep before the peer starts
        started = time.monotonic()
        c_peer("notify", name)
        thread.join(30)
        assert result == [1]
        # The wait's own timeout (30 s) would also return the new version.
        assert time.monotonic() - started < 10

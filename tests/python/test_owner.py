"""Whose segments are opened: /dev/shm is shared by every local user, who may
take any name first. open() accepts by default only this user's or root's
segments; create(exist_ok=True) never adopts another user's. Runs as root,
with `nobody` (uid 65534) as the other user."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import shmlane

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")

NOBODY = 65534

# Creates argv[1] as nobody (mode argv[2], octal) and marks it.
SQUAT = """
import os, sys
import shmlane  # before dropping privileges: the interpreter may be in root's home
os.setgroups([]); os.setgid(65534); os.setuid(65534)
seg = shmlane.create(sys.argv[1], shape=4, dtype="<u4", mode=int(sys.argv[2], 8))
seg.array[0] = 0xC0FFEE
"""


def test_squatted_name_is_never_adopted(name, run_py):
    run_py(SQUAT, name, "666")
    with pytest.raises(PermissionError) as exc:
        shmlane.create(name, shape=4, dtype="<u4", exist_ok=True)
    text = str(exc.value)
    assert f"segment '{name}'" in text and "nobody (uid 65534)" in text
    assert "never adopts" in text
    with pytest.raises(FileExistsError):
        shmlane.create(name, shape=4, dtype="<u4")


def test_open_refuses_another_users_segment_unless_named(name, run_py):
    run_py(SQUAT, name, "644")
    with pytest.raises(PermissionError) as exc:
        shmlane.open(name)
    assert str(exc.value) == (
        f"[Errno 13] segment '{name}' is owned by nobody (uid 65534), not by you or root; "
        f"pass owner='nobody' or owner='any' to open it anyway: '{name}'"
    )
    assert exc.value.filename == name
    with pytest.raises(PermissionError):
        shmlane.open(name, owner=1234)
    for owner in ("nobody", NOBODY, "any"):
        with shmlane.open(name, owner=owner, readonly=True) as seg:
            assert seg.array[0] == 0xC0FFEE
    listed = {info.name: info for info in shmlane.list()}
    assert listed[name].uid == NOBODY and listed[name].owner == "nobody (uid 65534)"
    assert listed[name].error is None


def test_roots_segment_is_foreign_to_another_creator(name, run_py):
    with shmlane.create(name, shape=4, dtype="<u4", mode=0o666):
        script = """
import os, sys
import shmlane
os.setgroups([]); os.setgid(65534); os.setuid(65534)
shmlane.open(sys.argv[1]).close()  # root's: accepted by an opener
try:
    shmlane.create(sys.argv[1], shape=4, dtype="<u4", exist_ok=True)
except PermissionError as exc:
    print("refused", "root (uid 0)" in str(exc))
"""
        assert run_py(script, name).strip() == "refused True"


def test_group_sharing_with_the_owner_named(name, run_py):
    run_py(SQUAT, name, "660")  # group nobody (65534), rw
    script = """
import os, sys
import shmlane
os.setgroups([65534]); os.setgid(65533); os.setuid(65533)  # in nobody's group
try:
    shmlane.open(sys.argv[1])
except PermissionError:
    print("default refused")
with shmlane.open(sys.argv[1], owner="nobody") as seg, seg.lock(timeout=5):
    print("shared", hex(seg.array[0]))
"""
    assert run_py(script, name).split() == ["default", "refused", "shared", "0xc0ffee"]


def test_owner_argument_is_checked(name):
    with pytest.raises(ValueError, match="no such user"):
        shmlane.open(name, owner="no-such-user-here")
    with pytest.raises(TypeError):
        shmlane.open(name, owner=1.5)


def test_directory_at_the_name_is_named(name):
    path = Path(f"/dev/shm/shl.{name}")
    path.mkdir()
    try:
        want = f"'{path}' is a directory, not a shmlane segment"
        with pytest.raises(shmlane.CorruptSegment, match=want):
            shmlane.open(name)
        with pytest.raises(FileExistsError, match=want):
            shmlane.create(name, dtype="<u4")
        with pytest.raises(shmlane.CorruptSegment, match=want):
            shmlane.create(name, dtype="<u4", exist_ok=True)
        stream = f"'{path}' is a directory, not a shmlane stream"
        with pytest.raises(shmlane.CorruptSegment, match=stream):
            shmlane.Writer(name, shape=2, dtype="<u4")
        with pytest.raises(shmlane.CorruptSegment, match=stream):
            shmlane.Reader(name, timeout=0)
        listed = {info.name: info for info in shmlane.list()}
        assert "is a directory" in (listed[name].error or "")
    finally:
        path.rmdir()


# A stream at argv[1] made by nobody (open to all), with one frame.
SQUAT_STREAM = """
import os, sys
import numpy as np
import shmlane
os.setgroups([]); os.setgid(65534); os.setuid(65534)
with shmlane.Writer(sys.argv[1], shape=(3,), dtype="u1", slots=2, mode=0o666) as w:
    w.publish(np.full(3, 66, "u1"))
"""


def test_readers_follow_a_name_only_to_an_owner_they_accept(name, run_py):
    # Our writer goes and the name is removed; another user takes it. A reader
    # follows the name only where it would open it: not by default, yes when
    # it named that user.
    np = pytest.importorskip("numpy")
    w = shmlane.Writer(name, shape=(3,), dtype="u1", slots=2)
    mine = shmlane.Reader(name, policy="all", timeout=0)
    trusting = shmlane.Reader(name, policy="all", timeout=0, owner="nobody")
    w.publish(np.full(3, 1, "u1"))
    w.close()
    shmlane.unlink(name)
    run_py(SQUAT_STREAM, name)
    for reader in (mine, trusting):
        with reader.receive(timeout=5) as s:  # our own last frame first
            assert (s.seq, s.new_stream) == (1, False)
    with pytest.raises(PermissionError, match="nobody"):
        mine.receive(timeout=5)
    with trusting.receive(timeout=5) as s:
        assert s.new_stream and int(s.array[0]) == 66
    mine.close()
    trusting.close()

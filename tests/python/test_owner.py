"""Whose segments are opened: /dev/shm is shared by every local user, who may
take any name first. open() accepts by default only this user's or root's
segments; create(exist_ok=True) never adopts another user's. Runs as root,
with `nobody` (uid 65534) as the other user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


# Run in a user namespace (as the uid argv[2] there): what refusing argv[1] says.
REFUSALS = """
import sys
import shmlane
for attempt in (lambda: shmlane.open(sys.argv[1]), lambda: shmlane.open(sys.argv[1], owner=65534),
                lambda: shmlane.create(sys.argv[1], shape=4, dtype="<u4", exist_ok=True)):
    try:
        attempt().close()
        print("accepted")
    except PermissionError as exc:
        print(exc)
with shmlane.open(sys.argv[1], owner="any") as seg:
    print(hex(seg.array[0]))
"""


@pytest.mark.parametrize("uid", [65534, 0])
def test_an_owner_the_user_namespace_does_not_map_is_named_so(name, run_py, uid):
    # nobody's object, seen from a user namespace that maps root alone (to
    # 65534, where it shows as the caller's own uid, or to 0): "owned by
    # nobody" would name an owner no one can tell, and owner=65534 would
    # accept every user outside the namespace (or, as the caller's own, none).
    if not shutil.which("unshare"):
        pytest.skip("needs unshare (util-linux)")
    run_py(SQUAT, name, "666")
    proc = subprocess.run(
        ["unshare", "--user", f"--map-user={uid}", f"--map-group={uid}", sys.executable, "-c",
         REFUSALS, name],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if proc.returncode != 0 and proc.stderr.startswith("unshare:"):
        pytest.skip(f"no user namespace here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    who = "a user this user namespace does not map (shown as uid 65534)"
    refused = (f"[Errno 13] segment '{name}' is owned by {who}; "
               f"pass owner='any' to open it anyway: '{name}'")  # fmt: skip
    adopt = f"segment '{name}' exists and is owned by {who}, not by you: creating never adopts"
    lines = proc.stdout.splitlines()
    assert lines[0] == refused
    assert lines[1] == (refused if uid == 65534 else "accepted")
    assert lines[2].startswith(f"[Errno 13] {adopt}")
    assert lines[3] == "0xc0ffee"

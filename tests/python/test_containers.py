"""Streams between containers (docs/containers.md), emulated with namespaces:
each "container" is a fresh interpreter in mount and PID namespaces of its
own (unshare --mount --pid --mount-proc; it is pid 1 there), as a user of its
own (setpriv), with a /dev/shm that is either one tmpfs shared by all of them
(as `-v shm:/dev/shm` or `--ipc=container:...`), the host's (`--ipc=host`),
read-only, or one of its own (the default of a container). The writer runs
as uid 2001 in group 2500, the readers as uid 2002 in that group, streams are
made mode 0660.

Needs root, unshare, setpriv and mount; the shared tmpfs is unmounted at the
end, pass or fail, which also removes everything made in it, and killing a
container's unshare (--kill-child) ends everything in it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator, Tuple

import numpy as np
import pytest

import shmlane
from conftest import built_cli, expect_line, read_line, spawner

WRITER = (2001, 2500, (2500,))  # uid, gid, supplementary groups
READER = (2002, 2002, (2500,))
STRANGER = (2003, 2003, ())  # not in the group
WRITER_UID = str(WRITER[0])

# A writer of stream argv[1], of frames of argv[2] (64 by default) words,
# and of a segment argv[1]-calib others may only read. Each line on stdin is
# one publish, waiting up to that many seconds for a slot: "published SEQ",
# or "pinned MESSAGE" when none came free.
WRITE = """
import sys
import shmlane
words = int(sys.argv[2]) if len(sys.argv) > 2 else 64
try:
    w = shmlane.Writer(sys.argv[1], shape=(words,), dtype="<u8", slots=3, mode=0o660)
    calib = shmlane.create(sys.argv[1] + "-calib", shape=(3,), dtype="<f8", mode=0o640,
                           exist_ok=True)
    calib.array[...] = [1.0, 2.0, 3.0]
except (OSError, shmlane.Error) as e:
    print("refused", type(e).__name__, e, flush=True)
    sys.exit(1)
print("writer", w.next_seq, flush=True)
for line in sys.stdin:
    try:
        loan = w.loan(timeout=float(line))
    except TimeoutError as e:
        print("pinned", e, flush=True)
        continue
    with loan as frame:
        frame[...] = w.next_seq
    print("published", w.next_seq - 1, flush=True)
"""

# A reader of argv[1] accepting owner argv[2] ("-": the default), waiting
# argv[4] s for the stream; it keeps every sample when argv[3] is "hoard".
READ = """
import sys, time
import shmlane
name, owner, how, wait = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
try:
    r = shmlane.Reader(name, policy="all", timeout=wait, max_pinned=3,
                       owner=None if owner == "-" else int(owner))
except (OSError, shmlane.Error) as e:
    print("refused", type(e).__name__, e, flush=True)
    sys.exit(1)
print("reader", flush=True)
held, gone = [], False
while True:
    try:
        s = r.receive(timeout=30)
    except shmlane.WriterGone as e:  # raised again and again until a writer comes
        if not gone:
            print("gone", e.reason, flush=True)
        gone = True
        time.sleep(0.02)
        continue
    gone = False
    print("got", s.seq, "ok" if (s.array == s.seq).all() else "torn", flush=True)
    if how == "release":
        s.release()
        continue
    held.append(s)
    if len(held) == 3:  # its max_pinned: it holds them until it is killed
        sys.stdin.read()
"""

# Without /dev/shm: what a writer of argv[1], and the command argv[2], say.
NO_SHM = """
import subprocess, sys
import shmlane
try:
    shmlane.Writer(sys.argv[1], shape=(4,), dtype="u1")
except FileNotFoundError as e:
    print("writer", e, flush=True)
cli = subprocess.run([sys.argv[2], "create", sys.argv[1], "--format", "f8"], capture_output=True,
                     text=True)  # fmt: skip
print("cli", cli.stderr.strip(), flush=True)
"""

# Opens segment argv[1] of owner argv[2] read-only and prints it.
READ_SEGMENT = """
import sys
import shmlane
try:
    with shmlane.open(sys.argv[1], readonly=True, owner=int(sys.argv[2])) as seg:
        print("read", seg.array.tolist(), flush=True)
except (OSError, shmlane.Error) as e:
    print("refused", type(e).__name__, e, flush=True)
"""


def namespaces_work() -> bool:
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("unshare", "setpriv", "mount")):
        return False
    try:
        probe = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--mount-proc", "true"],
                               timeout=30)  # fmt: skip
        return probe.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


pytestmark = pytest.mark.skipif(not namespaces_work(),
                                reason="needs root, unshare (mount and PID namespaces), setpriv")


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs the containers mount as their /dev/shm: the shared volume."""
    shm = tmp_path / "shm"
    shm.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=1777", "tmpfs", str(shm)],
                   check=True)  # fmt: skip
    try:
        yield shm
    finally:
        subprocess.run(["umount", "--lazy", str(shm)], check=True)


Start = Callable[..., subprocess.Popen]


@pytest.fixture
def container(volume: Path) -> Iterator[Start]:
    """container(code, *args, user=READER, shm="shared"): Python code in a
    container; shm is "shared" (the volume), "ro" (the volume, read-only),
    "host" (this host's /dev/shm, as --ipc=host), "own" (a tmpfs of its own,
    1 MiB) or "none" (no /dev/shm at all, as --ipc=none: an empty /dev)."""
    mounts = {
        "shared": f"mount --bind {volume} /dev/shm",
        "ro": f"mount --bind -o ro {volume} /dev/shm",
        "host": "true",
        "own": "mount -t tmpfs -o size=1m,mode=1777 tmpfs /dev/shm",
        "none": "mount -t tmpfs -o size=64k tmpfs /dev",
    }
    spawns = spawner(["unshare", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--"])
    spawn = next(spawns)

    started = []

    def start(code: str, *args: str, user: Tuple = READER, shm: str = "shared") -> subprocess.Popen:
        uid, gid, groups = user
        who = f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"
        # A change of user clears the parent-death signal that --kill-child
        # set: setpriv sets it again, so that pid 1 dies with unshare.
        script = (f"{mounts[shm]} && exec setpriv --reuid={uid} --regid={gid} {who} "
                  '--pdeathsig=KILL -- "$@"')  # fmt: skip
        started.append(spawn(code, *args, wrap=("sh", "-c", script, "sh")))
        return started[-1]

    yield start
    for proc in started:
        killed(proc)
    next(spawns, None)


def say(proc: subprocess.Popen, line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def killed(proc: subprocess.Popen) -> None:
    """SIGKILL to the container: to pid 1 of its namespace, which takes every
    process in it along; unshare reaps it and exits. (Were unshare killed
    first, pid 1 would follow by its parent-death signal.)"""
    try:
        inits = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:  # unshare has exited already
        inits = []
    for pid in inits:
        os.kill(int(pid), signal.SIGKILL)
    if not inits:
        proc.kill()
    proc.wait(timeout=30)


def test_a_stream_between_containers_outlives_a_reader_and_a_writer_killed(container):
    writer = container(WRITE, "cam", user=WRITER)
    expect_line(writer, "writer 1")
    hoarder = container(READ, "cam", WRITER_UID, "hoard", "10")
    reader = container(READ, "cam", WRITER_UID, "release", "10")
    expect_line(hoarder, "reader")
    expect_line(reader, "reader")
    for seq in (1, 2, 3):
        say(writer, "5")
        expect_line(writer, f"published {seq}")
        expect_line(hoarder, f"got {seq} ok")
        expect_line(reader, f"got {seq} ok")
    # The hoarder pins every slot: the writer names it by its pid, which is
    # the pid it has in its own namespace (1), meaningless here.
    say(writer, "0.3")
    line = read_line(writer)
    assert line.startswith("pinned") and "reader pids: 1" in line, line
    killed(hoarder)  # its pins go with it, though no pid of it means anything here
    say(writer, "5")
    expect_line(writer, "published 4")
    expect_line(reader, "got 4 ok")

    killed(writer)
    expect_line(reader, "gone died", timeout=10)
    # Another user, even of the group, never takes the stream over.
    stranger = container(WRITE, "cam", user=READER)
    line = read_line(stranger)
    assert line.startswith("refused PermissionError") and "uid 2001" in line, line
    # The writer's user, in a container of its own, does: the numbers go on.
    successor = container(WRITE, "cam", user=WRITER)
    expect_line(successor, "writer 5")
    for seq in (5, 6):
        say(successor, "5")
        expect_line(successor, f"published {seq}")
        expect_line(reader, f"got {seq} ok")


def test_the_errors_when_a_piece_is_missing(container):
    writer = container(WRITE, "cam", user=WRITER)
    expect_line(writer, "writer 1")
    say(writer, "5")
    expect_line(writer, "published 1")

    def refusal(user: Tuple, shm: str, owner: str) -> str:
        proc = container(READ, "cam", owner, "release", "0.5", user=user, shm=shm)
        line = read_line(proc)
        assert proc.wait(timeout=30) == 1, line
        return line

    # No shared /dev/shm: the name is not there.
    assert refusal(READER, "own", WRITER_UID).startswith("refused FileNotFoundError")
    # The writer's uid not accepted: another user's stream is refused by default.
    line = refusal(READER, "shared", "-")
    assert line.startswith("refused PermissionError") and "uid 2001" in line, line
    # Not in the stream's group: mode 0660 lets it neither read nor write.
    line = refusal(STRANGER, "shared", WRITER_UID)
    assert line.startswith("refused PermissionError") and "Permission denied" in line, line
    # A read-only /dev/shm: a stream reader writes its pins, so it cannot join...
    line = refusal(READER, "ro", WRITER_UID)
    assert line.startswith("refused OSError") and "Read-only file system" in line, line
    # ... but a segment opened read-only is read.
    segment = container(READ_SEGMENT, "cam-calib", WRITER_UID, shm="ro")
    expect_line(segment, "read [1.0, 2.0, 3.0]")
    # A /dev/shm too small for the stream (Docker's is 64 MiB): creation fails.
    big = container(WRITE, "big", str(1 << 20), user=WRITER, shm="own")  # 3 slots of 8 MiB
    line = read_line(big)
    assert line.startswith("refused OSError") and "No space left on device" in line, line
    # No /dev/shm at all (--ipc=none): the place of every name is missing, not the name.
    bare = container(NO_SHM, "cam", str(built_cli()), user=WRITER, shm="none")
    missing = "there is no /dev/shm here: POSIX shared memory needs a tmpfs mounted there"
    expect_line(bare, f"writer [Errno 2] {missing}: 'cam'")
    expect_line(bare, f"cli shmlane: cannot create 'cam': No such file or directory ({missing})")


def test_the_host_reads_a_container_with_ipc_host(container, name):
    writer = container(WRITE, name, user=WRITER, shm="host")
    expect_line(writer, "writer 1")
    try:
        with shmlane.Reader(name, policy="all", owner=int(WRITER_UID), timeout=10) as reader:
            say(writer, "5")
            expect_line(writer, "published 1")
            with reader.receive(timeout=10) as sample:
                assert sample.seq == 1 and np.all(sample.array == 1)
            assert reader.info().writer_alive is True
    finally:
        killed(writer)
        shmlane.unlink(name + "-calib")

#!/usr/bin/env python3
"""Shared-memory objects left behind: every test removes the objects it made,
pass or fail, and `make test` checks it (tests/phases.py). This module lists
the shl.* names in /dev/shm, and tells for a name that appeared who likely
made it: the tests name their objects after a tag and their pid.

    python3 tests/shm_leaks.py snapshot FILE   # record the names present now
    python3 tests/shm_leaks.py check FILE      # exit 1 if a name appeared since

Other processes on the machine (another developer's tests, a demo) may make
objects meanwhile. A Watch (inotify on /dev/shm) looks at each name as it is
made, while its maker still runs: a name whose pid is then a process that
does not descend from us is another's, listed apart and not counted. Without
a watch (`check`) that can only be told of makers still running at the end.
On CI nothing else runs. Python 3 stdlib only.
"""

import ctypes
import glob
import os
import re
import struct
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHM_DIR = "/dev/shm"
PREFIX = "shl."

# Who names objects how (the pid is group 1). The C tests' names are
# t<tag>-<pid> (t_name in tests/c/testutil.h); their tag finds the file.
MAKERS = [
    (r"t[a-z0-9]+-(\d+)$", None),
    (r"py(\d+)-\d+$", "a Python test (tests/python/conftest.py, new_name)"),
    (r"rd(\d+)", "tests/python/test_readme.py"),
    (r"dc(\d+)", "tests/python/test_docs.py"),
    (r"gstt(\d+)\.", "tests/gst/test_elements.c"),
    (r"cli(\d+)-", "tests/cli/test_cli.py"),
    (r"br(\d+)", "tests/bridge/test_bridge.py"),
    (r"storm(\d+)$", "tests/stress/kill_storm.py"),
    (r"soak(\d+)$", "tests/stress/soak.py"),
    (r"fzh(\d+)$", "fuzz/fuzz_header.c"),
    (r"fzs(\d+)$", "fuzz/fuzz_stream.c"),
    (r"gen(\d+)$", "fuzz/gen_corpus.c"),
    (r"b[a-z](\d+)(?:\.|$)", "bench/run.py"),
    (r"bench\.(\d+)$", "bench/stream_python.py"),
]


def names():
    """The shl.* names in /dev/shm now (without the prefix)."""
    try:
        return {n[len(PREFIX):] for n in os.listdir(SHM_DIR) if n.startswith(PREFIX)}
    except FileNotFoundError:
        return set()


def _c_test_of(tag):
    """The C test file that makes names with this tag, if one does."""
    # The tag itself, or its stem in a format ("slap%u" for slap64).
    lit = re.compile(r'"%s"|"%s%%' % (re.escape(tag), re.escape(tag.rstrip("0123456789"))))
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "c", "*.c"))):
        with open(path, errors="replace") as f:
            if lit.search(f.read()):
                return os.path.relpath(path, ROOT)
    return "a C test (tag %r)" % tag


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None


def _ancestors(pid):
    """The pids above pid, up to init."""
    seen = []
    while pid > 1 and len(seen) < 64:
        try:
            with open("/proc/%d/stat" % pid) as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
        seen.append(pid)
    return seen


def _live_prefix(digits):
    """The longest leading part of digits that is the pid of a running user
    process (not init, not a kernel thread: no command line), else all."""
    return int(next((digits[:k] for k in range(len(digits), 0, -1)
                     if int(digits[:k]) > 1 and _cmdline(int(digits[:k]))), digits))


def maker(name, who=True):
    """(who likely made name, or None unless who; its pid or None). A name of
    no known form is taken to carry its maker's pid in its first digits, as
    most do. Without `who` it is quick enough to run while the maker lives."""
    for pattern, made_by in MAKERS:
        m = re.match(pattern, name)
        if m:
            if made_by is None and who:
                made_by = _c_test_of(name[1:name.rindex("-")])
            # test_readme.py's and test_docs.py's pid is followed by more digits (a tag).
            return made_by, _live_prefix(m.group(1)) if name[:2] in ("rd", "dc") else int(m.group(1))
    m = re.search(r"\d+", name)
    pid = _live_prefix(m.group(0)) if m else None
    return "unknown", pid if pid and pid > 1 else None


def _is_ours(pid, me):
    """True if pid runs below me, False if it runs elsewhere, None if gone."""
    cmd = _cmdline(pid)
    if cmd is None:
        return None
    return pid == me or me in _ancestors(pid)


IN_CREATE, IN_MOVED_TO = 0x100, 0x80


class Watch:
    """Judges each shl.* name as it appears in /dev/shm, while its maker
    (the pid in the name) most likely still runs: ours, another's, or None
    (no pid, or gone before it was seen). Raises OSError without inotify."""

    def __init__(self, me=None):
        self.me = os.getpid() if me is None else me
        self.judged = {}
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, SHM_DIR.encode(), IN_CREATE | IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), "inotify on " + SHM_DIR)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            buf = os.read(self.fd, 65536)
            at = 0
            while at + 16 <= len(buf):
                length = struct.unpack_from("iIII", buf, at)[3]
                name = buf[at + 16:at + 16 + length].split(b"\0", 1)[0].decode(errors="replace")
                at += 16 + length
                # A fuzz target makes its one name again at every input: judged once.
                if name.startswith(PREFIX) and self.judged.get(name[len(PREFIX):]) is None:
                    name = name[len(PREFIX):]
                    pid = maker(name, who=False)[1]
                    self.judged[name] = _is_ours(pid, self.me) if pid else None


def appeared(before, me=None, watch=None):
    """Names present now and not in `before`: (ours, others'), each a list of
    (name, description). A name is another's if the watch saw its maker run
    elsewhere, or (unseen) if its maker still runs and not below `me`
    (default this process); otherwise ours: a test process of ours still
    running is a leak as well."""
    me = os.getpid() if me is None else me
    ours, others = [], []
    for name in sorted(names() - set(before)):
        who, pid = maker(name)
        what = "made by %s" % who
        cmd = _cmdline(pid) if pid else None
        if cmd is not None:
            what += ", pid %d still running: %s" % (pid, cmd[:120])
        elif pid:
            what += ", pid %d" % pid
        seen = watch.judged.get(name) if watch else None
        if seen is None and cmd is not None:
            seen = _is_ours(pid, me)
        elif seen is None and watch and pid and name in watch.judged:
            what += " (it had ended when the name appeared: ours or another's, on a busy machine)"
        (others if seen is False else ours).append((name, what))
    return ours, others


def report(ours, others, out=sys.stdout):
    """Prints what appeared; True when none of it is ours."""
    for name, what in others:
        print("shm: not counted: %s%s (%s; another process's)" % (PREFIX, name, what), file=out)
    for name, what in ours:
        print("shm: LEFT BEHIND: %s/%s%s (%s)" % (SHM_DIR, PREFIX, name, what), file=out)
    return not ours


def main(argv):
    if len(argv) != 3 or argv[1] not in ("snapshot", "check"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    if argv[1] == "snapshot":
        with open(argv[2], "w") as f:
            f.write("".join(n + "\n" for n in sorted(names())))
        return 0
    with open(argv[2]) as f:
        before = f.read().split()
    # Run as a command, the caller (make) is the one whose processes count.
    return 0 if report(*appeared(before, me=os.getppid())) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""mk/apt-install.sh, which `make deps` (so `make test` and `make demo`) uses
to install Debian packages, against a stand-in apt-get on PATH: it waits
for a lock another package manager holds instead of giving up (the bridge
would be left out), within its bound, and does not retry other failures.

    python3 test_apt_install.py SCRIPT
"""

import os
import subprocess
import sys
import tempfile
import time

SCRIPT = os.path.abspath(sys.argv[1])

# Fails with apt's lock message while the file `locked` holds a number above
# 0, counting it down; logs every call.
FAKE = """#!/bin/sh
echo "$*" >> "$DIR/calls"
n=$(cat "$DIR/locked")
if [ "$n" -gt 0 ]; then
  echo $((n - 1)) > "$DIR/locked"
  echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)" >&2
  exit 100
fi
case "$*" in *install*) [ -e "$DIR/broken" ] && { echo "E: Unable to locate package nosuch" >&2; exit 100; } ;; esac
exit 0
"""


def run(tmp, locked, wait, broken=False):
    with open(os.path.join(tmp, "locked"), "w") as f:
        f.write(str(locked))
    if broken:
        open(os.path.join(tmp, "broken"), "w").close()
    calls = os.path.join(tmp, "calls")
    if os.path.exists(calls):
        os.unlink(calls)
    env = dict(os.environ, PATH=tmp + os.pathsep + os.environ["PATH"], DIR=tmp,
               APT_LOCK_WAIT=str(wait))
    start = time.monotonic()
    p = subprocess.run([SCRIPT, "pkg-config", "libzmq3-dev"], env=env, capture_output=True,
                       text=True, timeout=60)
    with open(calls) as f:
        lines = [line.split() for line in f]
    return p, lines, time.monotonic() - start


def main():
    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)

    with tempfile.TemporaryDirectory() as tmp:
        fake = os.path.join(tmp, "apt-get")
        with open(fake, "w") as f:
            f.write(FAKE)
        os.chmod(fake, 0o755)

        # The lock is released after two tries: waited for, then installed.
        p, calls, _ = run(tmp, locked=2, wait=30)
        check(p.returncode == 0, "lock released: exit %d: %s" % (p.returncode, p.stderr))
        check([c[-1] for c in calls] == ["update"] * 3 + ["libzmq3-dev"],
              "lock released: calls %r" % calls)
        check(all(c[0] == "-o" and c[1].startswith("DPkg::Lock::Timeout=") for c in calls),
              "apt-get not told to wait for dpkg's lock: %r" % calls)
        check(calls[-1][2:] == ["install", "-y", "pkg-config", "libzmq3-dev"],
              "install call: %r" % calls[-1])
        check(p.stderr.count("waiting for it") == 1, "no single notice: %r" % p.stderr)

        # Held for good: gives up once the bound is spent, with apt's status.
        p, calls, took = run(tmp, locked=1000, wait=2)
        check(p.returncode == 100, "lock held: exit %d" % p.returncode)
        check(took < 30 and len(calls) >= 2, "lock held: %d calls in %.1f s" % (len(calls), took))

        # Any other failure is not retried.
        p, calls, _ = run(tmp, locked=0, wait=30, broken=True)
        check(p.returncode == 100 and len(calls) == 2 and calls[-1][2] == "install", "other failure: exit %d, calls %r"
              % (p.returncode, calls))
    for failure in failures:
        print("FAIL:", failure)
    print("%d passed, %d failed" % (1 if not failures else 0, 1 if failures else 0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

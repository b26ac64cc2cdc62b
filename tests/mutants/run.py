#!/usr/bin/env python3
"""Mutation check: proves that the tests can fail.

Each mutant is a small deliberate breakage of one key mechanism (mutants.py).
For each, in one of two scratch copies of the tree (two mutants at a time:
their tests mostly wait): apply it, rebuild what the tests that must catch it
run, run them, and expect at least one to fail. A mutant
that survives (every test passes), or that no longer applies (its text is not
found exactly once: the code moved on, update the mutant), fails the run.

A mutant may crash a test before it removes its shared-memory objects: where
it can (root, or user namespaces), the tests run with a private /dev/shm,
gone when they end.

Usage: run.py [--meson PATH] [--only NAME ...] [--list]
Python 3 stdlib only; needs the build tools that `make deps` installs.
"""
import argparse
import concurrent.futures
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from mutants import MUTANTS  # noqa: E402


def tree_files():
    """Tracked and new files of the work tree (what a commit would hold)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                         check=True, capture_output=True).stdout
    return [f for f in out.decode().split("\0") if f and os.path.isfile(os.path.join(ROOT, f))]


def copy_tree(dst):
    for f in tree_files():
        os.makedirs(os.path.join(dst, os.path.dirname(f)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, f), os.path.join(dst, f))


def run(cmd, cwd, timeout):
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        return 124, "timed out"


# Runs a command with a tmpfs of its own on /dev/shm (a new mount namespace).
PRIVATE_SHM = ["sh", "-c", 'mount -t tmpfs -o mode=1777 shm /dev/shm && exec "$@"', "sh"]


def private_shm_prefix():
    """The command prefix that gives what follows a private /dev/shm, or []
    where no mount namespace can be had."""
    for unshare in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
        try:
            if subprocess.run(unshare + PRIVATE_SHM + ["true"], capture_output=True,
                              timeout=30).returncode == 0:
                return unshare + PRIVATE_SHM
        except (OSError, subprocess.TimeoutExpired):
            pass
    return []


def meson_test(meson, build, tests, prefix, timeout=600):
    return run(prefix + [meson, "test", "-C", build, "--no-rebuild", "--print-errorlogs", *tests],
               build, timeout)


def test_outputs(meson, build):
    """For each meson test, what ninja must build to run it: its program and
    the targets it depends on (outputs relative to build)."""
    def introspect(what):
        return json.loads(subprocess.run([meson, "introspect", build, what], check=True,
                                         capture_output=True, text=True).stdout)
    files = {t["id"]: t["filename"] for t in introspect("--targets")}
    built = set(f for names in files.values() for f in names)
    outputs = {}
    for t in introspect("--tests"):
        out = {f for d in t["depends"] for f in files.get(d, [])}
        out.update(f for f in t["cmd"][:1] if f in built)
        outputs[t["name"]] = {os.path.relpath(f, build) for f in out}
    return outputs


# Mutants run at once, each in a scratch tree of its own.
WORKERS = 2
print_lock = threading.Lock()


def say(line):
    with print_lock:
        print(line, flush=True)


def prepare(meson, scratch, needed):
    """A scratch copy of the tree with what the tests need built: its build
    dir, the ninja command and each test's outputs; None if it does not build."""
    copy_tree(scratch)
    build = os.path.join(scratch, "build")
    # Only what the mutants' tests run: no benchmarks, no bridge.
    rc, out = run([meson, "setup", build, "-Dpython=false", "-Dbench=false",
                   "-Dbridge=disabled"], scratch, 600)
    tree = None
    if rc == 0:
        outputs = test_outputs(meson, build)
        ninja = [shutil.which("ninja", path=os.path.dirname(meson) + os.pathsep +
                              os.environ.get("PATH", "")) or "ninja", "-C", build]
        tree = {"scratch": scratch, "build": build, "ninja": ninja, "outputs": outputs}
        rc, out = run(ninja + sorted(set().union(*(outputs[t] for t in needed))), scratch, 900)
    if rc != 0:
        say(out[-3000:] + "\nmutants: the unmutated tree does not build")
        return None
    return tree


def drain(meson, tree, todo, shm):
    """Try mutants from `todo` in `tree` until none is left; the names of
    those that were not killed."""
    failures = []
    while True:
        try:
            m = todo.get_nowait()
        except queue.Empty:
            return failures
        if not try_mutant(meson, tree, m, shm):
            failures.append(m["name"])


def try_mutant(meson, tree, m, shm):
    """Apply m, rebuild, run its tests, restore: whether a test killed it."""
    path = os.path.join(tree["scratch"], m["file"])
    with open(path) as f:
        original = f.read()
    found = original.count(m["find"])
    if found != 1:
        say("STALE    %-28s its text occurs %d times in %s" % (m["name"], found, m["file"]))
        return False
    t0 = time.monotonic()
    with open(path, "w") as f:
        f.write(original.replace(m["find"], m["replace"]))
    try:
        rc, out = run(tree["ninja"] + sorted(set().union(*(tree["outputs"][t] for t in m["tests"]))),
                      tree["scratch"], 900)
        if rc != 0:
            say("NOBUILD  %-28s %s" % (m["name"], out.strip().splitlines()[-1:]))
            return False
        rc, out = meson_test(meson, tree["build"], m["tests"], shm)
    finally:
        with open(path, "w") as f:
            f.write(original)
    took = time.monotonic() - t0
    if rc == 0:
        say("SURVIVED %-28s (%s all passed, %.0f s): %s"
            % (m["name"], " ".join(m["tests"]), took, m["why"]))
        return False
    say("killed   %-28s by %s (%.0f s)" % (m["name"], " ".join(m["tests"]), took))
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meson", default=os.path.join(ROOT, ".venv", "bin", "meson"))
    ap.add_argument("--only", nargs="*", help="run only these mutants")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    a = ap.parse_args()
    a.meson = os.path.abspath(a.meson)  # commands run in the scratch tree
    mutants = [m for m in MUTANTS if not a.only or m["name"] in a.only]
    if a.list or not mutants:
        for m in MUTANTS:
            print("%-28s %s: %s" % (m["name"], m["file"], m["why"]))
        return 0 if mutants or a.list else 2

    # Two scratch trees, one mutant at a time in each: most of a mutant's
    # time is its tests waiting (time-outs, sleeps), not CPU.
    scratches = [tempfile.mkdtemp(prefix="shmlane-mutants.") for _ in range(min(WORKERS, len(mutants)))]
    needed = sorted({t for m in mutants for t in m["tests"]})
    try:
        with concurrent.futures.ThreadPoolExecutor(len(scratches)) as pool:
            trees = list(pool.map(lambda d: prepare(a.meson, d, needed), scratches))
        if any(t is None for t in trees):
            return 1
        shm = private_shm_prefix()
        if not shm:
            print("mutants: no private /dev/shm here (unshare): a crashed test may leave objects")
        # The tests must pass as they are, or a "kill" would mean nothing.
        rc, out = meson_test(a.meson, trees[0]["build"], needed, shm)
        if rc != 0:
            print(out[-3000:])
            print("mutants: the tests fail on the unmutated tree: %s" % " ".join(needed))
            return 1
        todo = queue.Queue()
        for m in mutants:
            todo.put(m)
        with concurrent.futures.ThreadPoolExecutor(len(trees)) as pool:
            verdicts = pool.map(lambda t: drain(a.meson, t, todo, shm), trees)
            failures = [name for names in verdicts for name in names]
    finally:
        for d in scratches:
            shutil.rmtree(d, ignore_errors=True)
    print("mutants: %d killed, %d not" % (len(mutants) - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""What `make test` runs: its phases one after another, each as `make PHASE`,
with the wall-clock and CPU time each took, then one summary line for CI
logs. CI has 10 minutes in all: the summary says where they go.

A phase written PHASE+PREP,PREP... has `make PREP...` run beside it at the
lowest priority (nice 19): builds and installs that later phases need, or checks
that mostly wait, done on the CPU time a phase of waiting tests leaves idle
(the tests keep their priority, so their timing does not change); once
PHASE is done, PREP goes on at our own priority (where we may raise it
back). PREP targets must write nothing that PHASE uses; a PREP that fails
fails the run, as a phase does. The next phase starts when both are done;
--serial runs each PREP before its phase instead.

After each phase, /dev/shm is checked (tests/shm_leaks.py): an shl.* object
that appeared during the phase and is still there is a leak, named with the
phase and who likely made it, and fails the run once every phase has run.
Objects that other processes of the machine made meanwhile are listed apart.

    python3 tests/phases.py [--make MAKE] [--keep-going] [--serial] PHASE[+PREP,...]...

Stops at the first phase that fails, unless --keep-going (or make -k).
Python 3 stdlib only.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shm_leaks  # noqa: E402

def cpu_of_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def renice_tree(pid, value):
    """Sets the nice value of pid and of every process below it (their new
    children inherit it)."""
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            os.setpriority(os.PRIO_PROCESS, p, value)
            with open("/proc/%d/task/%d/children" % (p, p)) as f:
                todo += [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            pass


def run_beside(make, prep, fg):
    """`make PREP...` at nice 19 while the foreground command fg runs, its
    output kept apart. Returns (fg's status, prep's status, prep's CPU s)."""
    with tempfile.TemporaryFile("w+") as out:
        bg = subprocess.Popen(["nice", "-n", "19", make, "--no-print-directory", *prep],
                              stdout=out, stderr=subprocess.STDOUT)
        try:
            rc = subprocess.call(fg)
            renice_tree(bg.pid, os.getpriority(os.PRIO_PROCESS, 0))
        except BaseException:
            bg.kill()
            raise
        finally:
            c0 = cpu_of_children()
            brc = bg.wait()
        bcpu = cpu_of_children() - c0
        if brc != 0:
            out.seek(0)
            print("".join(out.readlines()[-40:]), end="")
    return rc, brc, bcpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--make", default="make")
    ap.add_argument("--keep-going", action="store_true")
    ap.add_argument("--serial", action="store_true", help="run each PREP before its phase")
    ap.add_argument("phases", nargs="+")
    a = ap.parse_args()
    flags = os.environ.get("MAKEFLAGS", "").split(" ")[0]
    keep_going = a.keep_going or ("k" in flags and not flags.startswith("-"))
    try:
        watch = shm_leaks.Watch()
    except OSError as e:
        watch = None
        print("phases: %s: objects of other processes may count as leaks" % e)

    load0 = os.getloadavg()[0]
    start = time.monotonic()
    done, failed, leaks = [], [], []
    for spec in a.phases:
        phase, _, prep = spec.partition("+")
        prep = prep.split(",") if prep else []
        fg = [a.make, "--no-print-directory", phase]
        if a.serial and prep:
            fg[2:] = prep + [phase]
        print("==== %s%s" % (phase, " (beside it, niced: %s)" % " ".join(prep)
                             if prep and not a.serial else ""), flush=True)
        before = shm_leaks.names()
        t0, c0 = time.monotonic(), cpu_of_children()
        if prep and not a.serial:
            rc, brc, bcpu = run_beside(a.make, prep, fg)
            print("==== %s: %s, %.1f s (CPU %.1f s)" % (
                " ".join(prep), "ok" if brc == 0 else "FAILED", time.monotonic() - t0, bcpu),
                flush=True)
            if brc != 0:  # a check beside (check-dist, stress-smoke) fails the run as any phase
                failed.append("+".join(prep))
        else:
            rc, bcpu = subprocess.call(fg), 0.0
        wall, cpu = time.monotonic() - t0, cpu_of_children() - c0 - bcpu
        ours, others = shm_leaks.appeared(before, watch=watch)
        shm_leaks.report(ours, others)
        leaks += [(phase, name, what) for name, what in ours]
        done.append((phase, wall, cpu))
        print("==== %s: %s, %.1f s (CPU %.1f s)" % (phase, "ok" if rc == 0 else "FAILED", wall, cpu),
              flush=True)
        if rc != 0:
            failed.append(phase)
            if not keep_going:
                break

    total = time.monotonic() - start
    parts = ", ".join("%s %.0f" % (p, w) for p, w, _ in done)
    print("make test: %s in %.0f s (CPU %.0f s, load %.1f -> %.1f): %s s%s" % (
        "FAILED" if failed or leaks else "ok", total, sum(c for _, _, c in done), load0,
        os.getloadavg()[0], parts, "; failed: " + " ".join(failed) if failed else ""))
    if leaks:
        print("make test: %d shared-memory object(s) left behind:" % len(leaks))
        for phase, name, what in leaks:
            print("  %s: %s%s (%s)" % (phase, shm_leaks.PREFIX, name, what))
    return 1 if failed or leaks else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

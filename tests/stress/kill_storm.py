#!/usr/bin/env python3
"""Kill storm: SIGKILL a stream's writer and readers at random, restart them,
and check that nothing tears, hangs or leaks. Python 3 stdlib only.

Usage: kill_storm.py --build BUILD_DIR [--seconds 20] [--readers 4] [--seed N]

Drives the C examples (BUILD_DIR/examples/c/writer and reader) and the CLI
(BUILD_DIR/tools/shmlane) on one stream named storm<pid>:

- one writer (64x48 RGB frames, 500 fps, 4 slots, a reader table of 8
  entries: every run must reuse each entry several times) and READERS readers, half
  in `latest` mode, half in `all` mode; each reader runs a random 1..4 s and
  exits by itself (it then prints its totals), unless it is killed first;
- every 50..400 ms one of them, chosen at random, is SIGKILLed and restarted
  (the writer takes over the stream; readers carry on through "writer gone");
- every few seconds a checkpoint: the storm pauses, `shmlane info --json`
  must count exactly the live readers (entries of killed readers are not
  counted and get reclaimed) and last_seq must advance (the writer found free
  slots, so killed readers' pins were reclaimed);
- at the end everything is SIGKILLed; `shmlane gc NAME` must then remove the
  stream (dead writer, no live reader) and `shmlane ls` must not list it.

Checked: no torn frame (a reader prints "frame N is torn" at once, so killed
readers count too), no hang (a reader not gone 8 s past its run time, a
writer not stopping on SIGTERM), readers registered at least RECYCLED times
as often as the table has entries, without running out (entries of killed
readers are reclaimed), no leak.
Prints kills survived, frames checked (by readers that finished: killed ones
cannot report their totals), torn frames and hangs. Exit 0 if all checks pass.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HANG_SLACK = 8.0      # s past a reader's own deadline before it counts as hung
MAX_READERS = 8       # the stream's reader table (writer --max-readers)
RECYCLED = 3          # reader starts per table entry, at least, in every run


class Proc:
    def __init__(self, kind, args, deadline, logdir, serial):
        self.kind, self.deadline = kind, deadline
        self.out = open(os.path.join(logdir, "%s%d.out" % (kind, serial)), "w+")
        self.err = open(os.path.join(logdir, "%s%d.err" % (kind, serial)), "w+")
        self.p = subprocess.Popen(args, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL)
        self.killed = False

    def alive(self):
        return self.p.poll() is None

    def read(self):
        self.out.seek(0)
        self.err.seek(0)
        return self.out.read(), self.err.read()


class Storm:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed)
        self.name = "storm%d" % os.getpid()
        self.writer_bin = os.path.join(args.build, "examples", "c", "writer")
        self.reader_bin = os.path.join(args.build, "examples", "c", "reader")
        self.cli = os.path.join(args.build, "tools", "shmlane")
        self.logdir = tempfile.mkdtemp(prefix="kill_storm.")
        self.serial = 0
        self.kills = self.frames = self.torn = self.hangs = 0
        self.reader_starts = self.readers_done = 0
        self.failures = []
        self.skipped = 0
        self.writer = None
        self.readers = []

    def fail(self, what):
        self.failures.append(what)
        print("FAIL: " + what, file=sys.stderr)

    def start_writer(self):
        self.serial += 1
        self.writer = Proc("writer", [self.writer_bin, "--name", self.name, "--width", "64",
                                      "--height", "48", "--fps", "500", "--slots", "4",
                                      "--max-readers", str(MAX_READERS)],
                           None, self.logdir, self.serial)

    def start_reader(self, slot):
        self.serial += 1
        mode = "all" if slot % 2 else "latest"
        secs = self.rng.uniform(1.0, 4.0)
        r = Proc("reader", [self.reader_bin, "--name", self.name, "--mode", mode,
                            "--seconds", "%.2f" % secs, "--wait-open", "2"],
                 time.monotonic() + secs + 2.0, self.logdir, self.serial)
        self.reader_starts += 1
        self.readers[slot] = r

    def collect(self, r):
        """Account for a reader that has exited (or been killed)."""
        out, err = r.read()
        self.torn += len(re.findall(r"frame \d+ is torn", err))
        m = re.search(r"reader: frames=(\d+) lost=\d+ torn=(\d+)", out)
        if m:
            self.frames += int(m.group(1))
            self.readers_done += 1
        rc = r.p.returncode
        if r.killed or rc == 0:
            return
        if "torn" in err:
            return  # counted above
        # A writer is restarted at once after each kill, so a reader that ran
        # its full time without a single frame is a failure too (exit 1).
        self.fail("reader exited %d (%s frames): %s"
                  % (rc, m.group(1) if m else "no", (out + err).strip()[-300:]))

    def reap(self):
        now = time.monotonic()
        for i, r in enumerate(self.readers):
            if r.alive():
                if now > r.deadline + HANG_SLACK:
                    self.hangs += 1
                    self.fail("reader %d hung past its run time" % r.p.pid)
                    r.p.kill()
                    r.p.wait()
                    r.killed = True
                    self.collect(r)
                    self.start_reader(i)
                continue
            self.collect(r)
            self.start_reader(i)
        if not self.writer.alive():
            out, err = self.writer.read()
            if not self.writer.killed:
                self.fail("writer exited %d: %s" % (self.writer.p.returncode, err.strip()[-300:]))
            self.start_writer()

    def kill_one(self):
        victim = self.rng.randrange(len(self.readers) + 1)
        p = self.writer if victim == len(self.readers) else self.readers[victim]
        if not p.alive():
            return
        p.p.kill()
        p.p.wait()
        p.killed = True
        self.kills += 1

    def info(self):
        p = subprocess.run([self.cli, "info", "--json", "--no-rate", self.name],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            return None
        return json.loads(p.stdout).get("stream")

    def checkpoint(self):
        """With the storm paused: the stream counts exactly the live readers,
        and frames still flow. Readers also end by themselves (after 1..4 s),
        so a sample counts only if no reader came or went while it was taken;
        None if no such sample came in 20 tries (not a failure)."""
        time.sleep(0.3)  # let restarted readers register
        for _ in range(20):
            self.reap()
            time.sleep(0.2)
            before = [r.p.pid for r in self.readers if r.alive()]
            s1 = self.info()
            time.sleep(0.3)
            s2 = self.info()
            after = [r.p.pid for r in self.readers if r.alive()]
            if s1 is None or s2 is None or before != after:
                continue
            if s1["readers_alive"] == len(before) == s2["readers_alive"] and \
                    s2["last_seq"] > s1["last_seq"]:
                return True
            self.fail("checkpoint: readers_alive %d then %d for %d live readers, last_seq %d -> %d"
                      % (s1["readers_alive"], s2["readers_alive"], len(before), s1["last_seq"],
                         s2["last_seq"]))
            return False
        self.skipped += 1
        return None

    def finish(self):
        for r in self.readers:
            if r.alive():
                r.p.kill()
                r.p.wait()
                r.killed = True
            self.collect(r)
        # A writer stops on SIGTERM (shl_writer_close); one that does not has hung.
        self.writer.p.send_signal(signal.SIGTERM)
        try:
            self.writer.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.hangs += 1
            self.fail("writer did not stop on SIGTERM")
            self.writer.p.kill()
            self.writer.p.wait()
        # Kill a last writer, so gc meets a stream held by a dead process.
        self.serial += 1
        self.start_writer()
        time.sleep(0.3)
        self.writer.p.kill()
        self.writer.p.wait()
        self.writer.killed = True
        self.kills += 1
        s = self.info()
        if not s or s["readers_alive"] != 0 or s["writer_alive"] is not False:
            self.fail("after the storm: stream %r, want no live reader or writer" % s)
        p = subprocess.run([self.cli, "gc", self.name], capture_output=True, text=True,
                           timeout=30)
        if p.returncode != 0 or not p.stdout.startswith("removed " + self.name):
            self.fail("gc did not remove the dead stream: %r %r" % (p.stdout, p.stderr))
        p = subprocess.run([self.cli, "ls", "--json", "--no-rate"], capture_output=True,
                           text=True, timeout=30)
        if any(e["name"] == self.name for e in json.loads(p.stdout or "[]")):
            self.fail("segment leaked: %s still listed" % self.name)

    def run(self):
        self.start_writer()
        self.readers = [None] * self.a.readers
        for i in range(self.a.readers):
            self.start_reader(i)
        start = time.monotonic()
        end = start + self.a.seconds
        next_check = start + 3.0
        checkpoints = 0
        while time.monotonic() < end:
            time.sleep(self.rng.uniform(0.05, 0.4))
            self.kill_one()
            self.reap()
            if time.monotonic() >= next_check:
                checkpoints += self.checkpoint() is True
                next_check = time.monotonic() + self.rng.uniform(2.0, 5.0)
        self.finish()
        if self.reader_starts < RECYCLED * MAX_READERS:
            self.fail("only %d reader starts: the table of %d entries was not recycled %d times"
                      % (self.reader_starts, MAX_READERS, RECYCLED))
        elapsed = time.monotonic() - start
        print("kill storm: %.0f s, %d readers (%d latest, %d all) + 1 writer"
              % (elapsed, self.a.readers, (self.a.readers + 1) // 2, self.a.readers // 2))
        print("  kills survived:  %d" % self.kills)
        print("  reader starts:   %d (table of %d entries)" % (self.reader_starts, MAX_READERS))
        print("  frames checked:  %d (by %d readers that finished)" % (self.frames,
                                                                       self.readers_done))
        print("  torn frames:     %d" % self.torn)
        print("  hangs:           %d" % self.hangs)
        print("  checkpoints:     %d passed, %d without a stable sample" % (checkpoints,
                                                                          self.skipped))
        if self.torn:
            self.fail("%d torn frame(s)" % self.torn)
        if checkpoints == 0:
            self.fail("no checkpoint found a stable sample: reader accounting was never checked")
        return 1 if self.failures else 0

    def cleanup(self):
        for p in [self.writer] + self.readers:
            if p and p.alive():
                p.p.kill()
                p.p.wait()
        try:
            os.unlink("/dev/shm/shl." + self.name)
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    print("kill storm: seed %d" % args.seed)
    storm = Storm(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        rc = storm.run()
    finally:
        storm.cleanup()
    if rc:
        print("%d failure(s); logs kept in %s" % (len(storm.failures), storm.logdir))
    else:
        shutil.rmtree(storm.logdir, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())

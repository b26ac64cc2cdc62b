#!/usr/bin/env python3
"""Soak: stream for a long time with readers joining and leaving, and watch
the memory and file descriptors of every long-lived process. Stdlib only.

Usage: soak.py --build BUILD_DIR [--python PYTHON] [--seconds 3600]

One C writer (640x480 RGB, 30 fps) and two long-lived readers (a C reader in
`all` mode, and the Python demo reader in `latest` mode when --python names
an interpreter with shmlane installed) run for the whole time; every few
seconds a short-lived C reader joins for 1..5 s and leaves. Every 10 s the
resident memory (VmRSS) and open descriptors of the long-lived processes are
sampled. At the end: no torn frame, every short reader exited 0, the reader
table did not fill up, and each long-lived process ended within 1 MiB and 0
descriptors of what it had after warm-up (first minute). Prints the figures;
exit 0 if all hold.
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

SAMPLE_PERIOD = 10.0
WARMUP = 60.0
RSS_SLACK_KB = 1024


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--python", default=None)
    ap.add_argument("--seconds", type=float, default=3600)
    args = ap.parse_args()
    ex = os.path.join(args.build, "examples", "c")
    cli = os.path.join(args.build, "tools", "shmlane")
    name = f"soak{os.getpid()}"
    logs = tempfile.mkdtemp(prefix="shmlane-soak-")
    total = args.seconds + 5

    def spawn(tag, argv):
        out = open(os.path.join(logs, tag + ".out"), "w+")
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL), out

    long_lived = {
        "writer": spawn("writer", [os.path.join(ex, "writer"), "--name", name,
                                   "--seconds", str(args.seconds)]),
        "reader-c": spawn("reader-c", [os.path.join(ex, "reader"), "--name", name, "--mode", "all",
                                       "--seconds", str(total), "--exit-on-gone"]),
    }
    if args.python:
        long_lived["reader-py"] = spawn("reader-py", [
            args.python, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python",
                                      "read.py"),
            "--name", name, "--headless", "--seconds", str(total)])
    time.sleep(1.0)

    samples = {k: [] for k in long_lived}
    short_runs = short_failures = 0
    short = []
    start = time.monotonic()
    next_sample = start
    while time.monotonic() - start < args.seconds:
        now = time.monotonic()
        if now >= next_sample:
            for k, (p, _) in long_lived.items():
                if p.poll() is None:
                    samples[k].append((now - start, rss_kb(p.pid), fds(p.pid)))
            next_sample += SAMPLE_PERIOD
        still = []
        for p, out in short:
            if p.poll() is None:
                still.append((p, out))
            else:
                short_runs += 1
                short_failures += p.returncode != 0
                out.close()
        short = still
        if len(short) < 3:
            mode = random.choice(["latest", "all"])
            short.append(spawn(f"short{short_runs + len(short)}", [
                os.path.join(ex, "reader"), "--name", name, "--mode", mode,
                "--seconds", str(random.uniform(1, 5))]))
        time.sleep(random.uniform(0.5, 2.0))

    for p, out in short:
        short_failures += p.wait(timeout=30) != 0
        short_runs += 1
    ok = short_failures == 0
    print(f"soak: {args.seconds:.0f} s, stream {name}, logs in {logs}")
    print(f"  short-lived readers: {short_runs} joined and left, {short_failures} failed")
    for k, (p, out) in long_lived.items():
        try:
            rc = p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = "hung"
        out.seek(0)
        text = out.read()
        base = [s for s in samples[k] if s[0] >= WARMUP] or samples[k]
        if not base:
            print(f"  {k}: no samples, exit {rc}")
            ok = False
            continue
        first, last = base[0], base[-1]
        peak = max(s[1] for s in base)
        drift_kb, drift_fd = last[1] - first[1], last[2] - first[2]
        # The readers exit non-zero on any torn frame.
        good = rc == 0 and abs(drift_kb) <= RSS_SLACK_KB and drift_fd == 0
        ok &= good
        print(f"  {k}: exit {rc}; RSS {first[1]} KiB at {first[0]:.0f} s -> {last[1]} KiB at "
              f"{last[0]:.0f} s (drift {drift_kb:+d} KiB, peak {peak} KiB); "
              f"fds {first[2]} -> {last[2]}")
        if text.strip():
            print(f"    {text.strip().splitlines()[-1]}")
    subprocess.run([cli, "rm", name], stderr=subprocess.DEVNULL)
    print("soak: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

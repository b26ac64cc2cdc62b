"""Where a frame's time goes between the two processes of bench/gst.py's
pipelines (docs/gstreamer.md, Figures): perf's scheduler and system-call
events of both processes while the source receives a few hundred frames.

For each pair: the latency gst_peer measured (p50, p90); the system calls a
frame of each process, by name; the wake-ups of the source's threads by the
sink's process, a frame, how long each took to run (wake-up to running) and
how many were placed on the waker's CPU. With --cpu instead: where the sink
process's CPU time goes (perf's cpu-clock samples, user and kernel): the
producer's copy of its frame into the buffer (videotestsrc keeps a frame of
its pattern and copies it into each buffer a row at a time), the kernel, the
sink's plugin, GStreamer and GLib. With --copy: that copy timed (the thread's
CPU time, bench/gst_copytime.c in the sink's process) against the rest of the
sink process's CPU per frame, bench/gst.py's runs in alternating rounds. With
--probes (shmlanesink and shmlanesrc only; uprobes, so each adds about a
microsecond and a half), a frame's steps: the sink's render to publish, the
publish, its wake-up of the source, the source's receive returning and its
create returning.

Needs root and perf (not --copy); runs at normal priority, on whatever else
the machine runs (say how loaded it was with the figures).

    python bench/gst_profile.py --plugin build/gst [--frames 600] [--size 1920x1080]
        [--fps N] [--methods shmlane shm] [--probes --lib build | --cpu | --copy [--rounds N]]
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from gst import BASE, METHODS, SHM_FRAMES, pipelines, run_once, stop
from run import per_round, spread_text

EVENTS = "sched:sched_switch,sched:sched_wakeup,raw_syscalls:sys_enter"
# uprobes (--probes): (event name, binary under --plugin or --lib, location)
PROBES = [("sink_render", "plugin", "sink_render"),
          ("src_create_ret", "plugin", "src_create%return"),
          ("publish", "lib", "shl_writer_publish"),
          ("publish_ret", "lib", "shl_writer_publish%return"),
          ("receive_ret", "lib", "shl_reader_receive%return")]
LINE = re.compile(r"\s*(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)")


def syscall_names() -> dict:
    text = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h").read_text()
    names = {int(m[2]): m[1] for m in re.finditer(r"#define __NR_(\w+) (\d+)", text)}
    return {335: "uretprobe", **names}  # 335: Linux 6.11's return from a uretprobe


def pct(values: list, p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))] if v else float("nan")


def add_probes(plugin: Path, lib: Path) -> str:
    where = {"plugin": plugin / "libgstshmlane.so", "lib": lib / "libshmlane.so.0"}
    for name, binary, location in PROBES:
        subprocess.run(["perf", "probe", "-q", "-d", f"shlprof:{name}*"], capture_output=True)
        subprocess.run(["perf", "probe", "-q", "-x", str(where[binary]), "--add",
                        f"shlprof:{name}={location}"], check=True, capture_output=True)
    return ",".join(f"shlprof:{name}*" for name, _, _ in PROBES)


def record(peer: Path, env: dict, method: str, size: tuple, fps: int, frames: int,
           events: str, data: str) -> tuple:
    """Runs one pair under perf record: (sink pid, source pid, the source's
    report). events "cpu-clock": samples of the sink process only."""
    tag = f"gprof{os.getpid()}{method}"
    send_p, recv_p = pipelines(method, size[0], size[1], fps > 0, tag)
    if fps > 0:
        send_p = send_p.replace("framerate=30/1", f"framerate={fps}/1")
        recv_p = recv_p.replace("framerate=30/1", f"framerate={fps}/1")
    sender = subprocess.Popen([str(peer), "send", send_p], env=env, stdout=subprocess.PIPE,
                              text=True)
    perf = None
    try:
        time.sleep(0.5)  # as bench/gst.py: shmsrc needs the socket
        who = ["-F", "10000", "-p", str(sender.pid)] if events == "cpu-clock" else ["-a"]
        perf = subprocess.Popen(["perf", "record", "-q", *who, "-o", data, "-e", events],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        recv = subprocess.Popen([str(peer), "recv", recv_p, str(frames)], env=env,
                                stdout=subprocess.PIPE, text=True)
        out, _ = recv.communicate(timeout=60 + frames / 10)
    finally:
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait()
        stop(sender)
        for leftover in (f"/dev/shm/shl.{tag}", f"{tempfile.gettempdir()}/{tag}"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return sender.pid, recv.pid, json.loads(out)


def events_of(data: str) -> list:
    text = subprocess.run(["perf", "script", "-i", data, "--ns", "-F",
                           "pid,tid,cpu,time,event,trace"], capture_output=True, text=True).stdout
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            out.append((int(m[1]), int(m[2]), int(m[3]), float(m[4]) * 1e6, m[5].rstrip(":"),
                        m[6]))
    return out


def report(method: str, spid: int, rpid: int, r: dict, events: list, names: dict) -> None:
    lat = [x / 1e3 for x in r["latency_ns"]]
    frames = r["total"]
    print(f"{METHODS[method]}: {frames} frames, latency p50 {pct(lat, .5):.1f} µs, "
          f"p90 {pct(lat, .9):.1f} µs")
    calls: dict = {}
    source = {tid for pid, tid, *_ in events if pid == rpid}  # its threads
    woken: dict = {}  # a source thread -> (time, target cpu, waker's cpu)
    wake, same = [], 0
    for pid, tid, cpu, t, name, trace in events:
        if name == "raw_syscalls:sys_enter" and pid in (spid, rpid):
            key = ("sink" if pid == spid else "source",
                   names.get(int(re.search(r"NR (\d+)", trace)[1]), "?"))
            calls[key] = calls.get(key, 0) + 1
        elif name == "sched:sched_wakeup" and pid == spid:
            target = int(re.search(r" pid=(\d+)", trace)[1])
            if target in source:
                woken[target] = (t, int(re.search(r"target_cpu=(\d+)", trace)[1]), cpu)
        elif name == "sched:sched_switch":
            nxt = int(re.search(r"next_pid=(\d+)", trace)[1])
            if nxt in woken:
                at, target, waker = woken.pop(nxt)
                wake.append(t - at)
                same += target == waker
    for who in ("sink", "source"):
        per = sorted(((n / frames, k[1]) for k, n in calls.items() if k[0] == who), reverse=True)
        print(f"  {who} process: system calls a frame " +
              ", ".join(f"{name} {n:.2f}" for n, name in per if n >= 0.05))
    if wake:
        print(f"  the source woken by the sink's process {len(wake) / frames:.2f} times a frame: "
              f"to running p50 {pct(wake, .5):.1f} µs, p90 {pct(wake, .9):.1f} µs; "
              f"on the waker's CPU {same / len(wake):.0%}")


# --cpu: the sink process's samples, by what they are (first match wins).
CPU_PARTS = (("the producer's frame copy (memcpy, gst_video_frame_copy_plane)",
              lambda dso, sym: "memmove" in sym or "memcpy" in sym or sym == "gst_video_frame_copy_plane"),
             ("kernel", lambda dso, sym: dso == "[kernel.kallsyms]"),
             ("the sink's plugin", lambda dso, sym: dso in ("libgstshmlane.so", "libgstshm.so")),
             ("GStreamer and GLib", lambda dso, sym: dso.startswith(("libgst", "libglib", "libgobject"))),
             ("other", lambda dso, sym: True))


def cpu_report(data: str) -> None:
    text = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym",
                           "--stdio", "-q", "-g", "none"], capture_output=True, text=True).stdout
    share = {name: 0.0 for name, _ in CPU_PARTS}
    for line in text.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(\S+)", line)
        if m:
            part = next(name for name, hit in CPU_PARTS if hit(m[2], m[3]))
            share[part] += float(m[1])
    print("  sink process, CPU samples: " + ", ".join(f"{k} {v:.1f}%" for k, v in share.items()))


def copy_rounds(plugin: Path, env: dict, size: tuple, paced: bool, frames: int, rounds: int,
                methods: list) -> dict:
    """--copy: per method and round, the sink process's CPU a frame in the
    source's window (bench/gst.py's figure), the producer's copy a frame in
    the same window (bench/gst_copytime.c; I420) and the rest. The methods
    take turns, as in bench/gst.py."""
    width, height = size
    got: dict = {m: [] for m in methods}
    with tempfile.TemporaryDirectory() as out:
        env = {**env, "LD_PRELOAD": str(plugin / "gst_copytime.so"),
               "SHL_COPYTIME_ROW": str(width), "SHL_COPYTIME_ROWS": str(2 * height),
               "SHL_COPYTIME_OUT": out}
        for _ in range(rounds):
            for m in methods:
                r = run_once(plugin / "gst_peer", env, m, (m, width, height, paced, frames),
                             f"gcopy{os.getpid()}", SHM_FRAMES)
                reports = [Path(out, f) for f in os.listdir(out)]
                copy = [json.loads(f.read_text())["frames"] for f in reports]
                for f in reports:
                    f.unlink()
                if r["stalled"]:
                    continue
                if len(copy) != 1:  # only the sink's process copies rows
                    raise RuntimeError(f"{m}: {len(copy)} reports of the copy")
                start, end = r["window_ns"]
                window = [ns for at, ns in copy[0] if start < at <= end]
                if not window:
                    raise RuntimeError(f"{m}: no copy in the sink's window")
                sink, cp = r["send_cpu_us"], statistics.fmean(window) / 1e3
                got[m].append({"sink": sink, "copy": cp, "rest": sink - cp})
                print(f"  {METHODS[m]}: sink process {sink:.1f} µs a frame, the copy {cp:.1f}, "
                      f"the rest {sink - cp:.1f}", flush=True)
    return got


def copy_report(got: dict) -> None:
    parts = ("sink", "copy", "rest")
    for m, rs in got.items():
        print(f"{METHODS[m]}, {len(rs)} runs, medians: " + ", ".join(
            f"{k} {statistics.median(r[k] for r in rs):.1f} µs" for k in parts))
    for m in got:
        if m != BASE and BASE in got:
            print(f"{METHODS[m]} against {METHODS[BASE]}, per round: " + ", ".join(
                f"{k} {spread_text(per_round([r[k] for r in got[m]], [r[k] for r in got[BASE]]))}"
                for k in parts))


def steps(spid: int, rpid: int, events: list) -> None:
    """--probes: each frame the source received, matched to the publish
    before it and that frame's render."""
    at: dict = {}
    for pid, tid, cpu, t, name, trace in events:
        if name.startswith("shlprof:"):
            at.setdefault(name.split(":")[1].split("__")[0], []).append((t, pid))

    def times(name: str, pid: int) -> list:
        return sorted(t for t, p in at.get(name, []) if p == pid)
    render, pub, pub_ret = (times(n, spid) for n in ("sink_render", "publish", "publish_ret"))
    recv, create = times("receive_ret", rpid), times("src_create_ret", rpid)
    rows = []
    for t in recv:
        i = bisect.bisect_right(pub, t) - 1
        j = bisect.bisect_right(render, pub[i]) - 1 if i >= 0 else -1
        k, c = bisect.bisect_left(pub_ret, pub[i]) if i >= 0 else 0, bisect.bisect_left(create, t)
        if i < 0 or j < 0 or k >= len(pub_ret) or c >= len(create):
            continue
        rows.append({"render to publish": pub[i] - render[j], "publish": pub_ret[k] - pub[i],
                     "publish to receive returns": t - pub[i],
                     "receive to create returns": create[c] - t,
                     "render to create returns": create[c] - render[j]})
    print(f"  steps of {len(rows)} frames (uprobes included):")
    for key in rows[0] if rows else ():
        v = [row[key] for row in rows]
        print(f"    {key:28} p50 {pct(v, .5):6.1f} µs, p10 {pct(v, .1):6.1f}, "
              f"p90 {pct(v, .9):6.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plugin", required=True, help="directory of libgstshmlane.so and gst_peer")
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--fps", type=int, default=0, help="paced at this rate (default: flat out)")
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    ap.add_argument("--probes", action="store_true", help="uprobes in shmlanesink/shmlanesrc")
    ap.add_argument("--lib", help="directory of libshmlane.so.0 (--probes)")
    ap.add_argument("--cpu", action="store_true", help="where the sink process's CPU goes")
    ap.add_argument("--copy", action="store_true",
                    help="the producer's copy against the rest of the sink process's CPU")
    ap.add_argument("--rounds", type=int, default=8, help="--copy: rounds of every method")
    a = ap.parse_args()
    plugin = Path(a.plugin).resolve()
    env = {**os.environ, "GST_PLUGIN_PATH": str(plugin)}
    size = tuple(int(x) for x in a.size.split("x"))
    if a.copy:
        if a.fps not in (0, 30):
            ap.error("--copy runs bench/gst.py's pipelines: --fps 30 or flat out")
        copy_report(copy_rounds(plugin, env, size, a.fps == 30, a.frames, a.rounds, a.methods))
        return
    names = syscall_names()
    for method in a.methods:
        events = "cpu-clock" if a.cpu else EVENTS
        if a.probes and method == "shmlane":
            events += "," + add_probes(plugin, Path(a.lib or plugin.parent).resolve())
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "perf.data")
            spid, rpid, r = record(plugin / "gst_peer", env, method, size, a.fps, a.frames,
                                   events, data)
            if a.cpu:
                lat = [x / 1e3 for x in r["latency_ns"]]
                print(f"{METHODS[method]}: {r['total']} frames, latency p50 {pct(lat, .5):.1f} µs")
                cpu_report(data)
                continue
            evs = events_of(data)
        report(method, spid, rpid, r, evs, names)
        if a.probes and method == "shmlane":
            steps(spid, rpid, evs)
    if a.probes:
        subprocess.run(["perf", "probe", "-q", "-d", "shlprof:*"], capture_output=True)


if __name__ == "__main__":
    main()

"""shmlanesink/shmlanesrc against shmsink/shmsrc (docs/gstreamer.md, Figures).

The same pipelines for both: videotestsrc (pattern=black, I420) into the
sink (sync=false) in one process, the source into fakesink in another,
both run by bench/gst_peer. Per scenario, the methods run alternately
(A B A B ...): latency from the sink's chain to the source's push (p50,
p99), CPU per frame of each process (getrusage, start-up excluded; the
sink's per frame it took in while the source received, from the source's
first counted frame to its last, the source's per frame it pushed), minor
page faults per frame of the sink process in that window, copies per frame
in the sink (a buffer that is not the sink's own memory is copied into
shared memory).
Medians over the runs, with their spread (lowest and highest run); and
each comparison to shmsink/shmsrc as the median of per-round ratios (a
round runs every method once, one after the other), with their spread.

A run whose source has not pushed its frames in time is stopped and
reported as stalled (with the frames it got), not counted in the medians.

    python bench/gst.py --plugin build/gst [--quick] [--runs N] [--only 1080p]
        [--shm-frames N] [--slots N] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from run import per_round, spread_text

# Flat out, a run takes a second or two: fewer frames left its CPU per frame
# to the noise of a few hundred milliseconds (spread 0.92-1.08x at 300).
SCENARIOS = [  # name, width, height, paced (live at 30 fps) or flat out, frames
    ("1080p30 paced", 1920, 1080, True, 150),
    ("1080p flat out", 1920, 1080, False, 1500),
    ("640x480 paced", 640, 480, True, 150),
    ("640x480 flat out", 640, 480, False, 3000),
]
METHODS = {"shmlane": "shmlanesink/shmlanesrc", "shm": "shmsink/shmsrc"}
# shmsink's area, in frames (--shm-frames): with 32, shmsrc stalled now and
# then at 640x480 flat out here (it stops receiving while the sink goes on).
SHM_FRAMES = 64
RUNS = 5  # rounds of every method (--runs), alternating
STALL_SLACK_S = 15.0  # a run's time beyond its frames' (below)
MEASURES = ("p50_us", "p99_us", "send_cpu_us", "recv_cpu_us", "send_faults", "copies")
RATIOS = ("p50_us", "p99_us", "send_cpu_us", "recv_cpu_us")  # to shmsink/shmsrc, per round
BASE = "shm"


def pipelines(method: str, width: int, height: int, paced: bool, tag: str,
              shm_frames: int = SHM_FRAMES) -> tuple[str, str]:
    caps = f"video/x-raw,format=I420,width={width},height={height},framerate=30/1"
    src = f"videotestsrc is-live={'true' if paced else 'false'} pattern=black ! {caps}"
    if method.startswith("shmlane"):  # "shmlane", or "shmlane-slotsN"
        slots = f" slots={method.split('slots')[1]}" if "slots" in method else ""
        return (f"{src} ! shmlanesink name=sink stream={tag} sync=false{slots}",
                f"shmlanesrc name=src stream={tag} ! fakesink sync=false")
    path = f"{tempfile.gettempdir()}/{tag}"
    size = width * height * 3 // 2 * shm_frames
    return (f"{src} ! shmsink name=sink socket-path={path} shm-size={size} "
            f"wait-for-connection=false sync=false",
            f"shmsrc name=src socket-path={path} is-live=true ! {caps} ! fakesink sync=false")


def stop(proc: subprocess.Popen, timeout: float = 20) -> tuple[Optional[dict], bool]:
    """Ends a gst_peer with SIGINT (it then prints what it measured): its
    report, and whether it ended by itself in time (else it is killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=timeout)
        ended = True
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        ended = False
    try:
        return json.loads(out), ended
    except (json.JSONDecodeError, TypeError):
        return None, ended


def run_once(peer: Path, env: dict, method: str, scenario: tuple, tag: str,
             shm_frames: int) -> dict:
    _, width, height, paced, frames = scenario
    send_p, recv_p = pipelines(method, width, height, paced, tag, shm_frames)
    sender = subprocess.Popen([str(peer), "send", send_p], env=env, stdout=subprocess.PIPE,
                              text=True)
    time.sleep(0.5)  # shmsrc needs the socket: the sender starts first for both
    recv = subprocess.Popen([str(peer), "recv", recv_p, str(frames), str(sender.pid)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Paced at 30 fps, or flat out at no less than 60: a run that takes much
    # longer has stalled.
    limit = frames / (30 if paced else 60) + STALL_SLACK_S
    try:
        recv_out, recv_err = recv.communicate(timeout=limit)
        r, stalled = json.loads(recv_out) if recv_out.strip() else None, False
    except subprocess.TimeoutExpired:
        r, _ = stop(recv)
        recv_err, stalled = "", True
    if paced:  # the sink closes its window at its next frame (gst_peer.c)
        time.sleep(2 / 30)
    s, _ = stop(sender)
    for leftover in (f"/dev/shm/shl.{tag}", f"{tempfile.gettempdir()}/{tag}"):
        if os.path.exists(leftover):
            os.unlink(leftover)
    if not stalled and (recv.returncode != 0 or r is None or s is None):
        raise RuntimeError(f"{method}: {recv_err}")
    if not stalled and "window_frames" not in s:
        raise RuntimeError(f"{method}: the sink saw no window of the source's")
    if stalled:
        got = r["total"] if r else 0
        print(f"  {method}: stalled after {got} of {frames} frames ({limit:.0f} s)", flush=True)
        return {"stalled": True, "frames": got}
    lat = sorted(r["latency_ns"])
    return {
        "stalled": False,
        "p50_us": lat[len(lat) // 2] / 1e3,
        "p99_us": lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e3,
        # The sink's window is the source's (gst_peer.c): a flat-out sink runs
        # before its reader comes and after it leaves.
        "send_cpu_us": s["window_cpu_ns"] / max(1, s["window_frames"]) / 1e3,
        "recv_cpu_us": r["cpu_ns"] / max(1, r["frames"]) / 1e3,
        "send_faults": s["window_minflt"] / max(1, s["window_frames"]),
        "copies": 1 - s["in_place"] / max(1, s["frames"] + 10),
        "sent": s["frames"],
        "missed": r["missed"],
        "window_ns": s["window_ns"],  # when (bench/gst_profile.py --copy)
    }


def summary(scenario: str, method: str, rs: list) -> dict:
    done = [r for r in rs if not r["stalled"]]
    row = {"scenario": scenario, "method": method, "runs": len(rs),
           "stalled": len(rs) - len(done)}
    for k in MEASURES if done else ():
        values = [r[k] for r in done]
        row[k] = statistics.median(values)
        row[k + "_spread"] = (min(values), max(values))
    return row


def compare(scenario: str, method: str, rs: list, base: list) -> dict:
    """The method against BASE: per measure, the median of the ratios of
    the rounds in which neither stalled, and their spread."""
    nan = float("nan")

    def values(runs: list, k: str) -> list:
        return [nan if r["stalled"] else r[k] for r in runs]

    return {"scenario": scenario, "method": method,
            **{k: per_round(values(rs, k), values(base, k)) for k in RATIOS}}


def ratio_table(rows: list) -> list:
    lines = [f"| scenario | elements, against {METHODS[BASE]} | rounds | latency p50 | p99 | "
             "CPU/frame, sink process | CPU/frame, source process |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        cells = " | ".join(spread_text(r[k]) for k in RATIOS)
        rounds = r["p50_us"]["n"]
        lines.append(f"| {r['scenario']} | {elements(r['method'])} | {rounds} | {cells} |")
    return lines


def cell(row: dict, k: str, fmt: str = "{:.0f}", unit: str = " µs") -> str:
    if k not in row:
        return "stalled"
    lo, hi = row[k + "_spread"]
    spread = f" ({fmt.format(lo)}–{fmt.format(hi)})" if row["runs"] - row["stalled"] > 1 else ""
    return f"{fmt.format(row[k])}{unit}{spread}"


def elements(method: str) -> str:
    if "slots" in method:
        return f"shmlanesink slots={method.split('slots')[1]}/shmlanesrc"
    return METHODS[method]


def table(rows: list) -> list:
    lines = ["| scenario | elements | runs | latency p50 | p99 | CPU/frame, sink process | "
             "CPU/frame, source process | page faults/frame, sink process | copies/frame |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        runs = f"{r['runs']}" + (f" ({r['stalled']} stalled)" if r["stalled"] else "")
        lines.append(f"| {r['scenario']} | {elements(r['method'])} | {runs} | {cell(r, 'p50_us')} | "
                     f"{cell(r, 'p99_us')} | {cell(r, 'send_cpu_us')} | {cell(r, 'recv_cpu_us')} | "
                     f"{cell(r, 'send_faults', '{:.1f}', '')} | "
                     f"{cell(r, 'copies', '{:.0f}', '')} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plugin", required=True, help="directory of libgstshmlane.so and gst_peer")
    ap.add_argument("--quick", action="store_true", help="one run per method, fewer frames")
    ap.add_argument("--runs", type=int, help=f"runs per method (default {RUNS}, 1 with --quick)")
    ap.add_argument("--only", help="only the scenarios whose name contains this")
    ap.add_argument("--shm-frames", type=int, default=SHM_FRAMES,
                    help=f"frames shmsink's area holds (default {SHM_FRAMES})")
    ap.add_argument("--slots", type=int,
                    help="also shmlanesink with this many slots (a third method in the rotation)")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    plugin = Path(args.plugin).resolve()
    env = {**os.environ, "GST_PLUGIN_PATH": str(plugin)}
    reps = args.runs or (1 if args.quick else RUNS)
    rows, ratios = [], []
    for scenario in SCENARIOS:
        if args.only and args.only not in scenario[0]:
            continue
        if args.quick:
            scenario = (*scenario[:4], scenario[4] // 3)
        methods = [*METHODS, *([f"shmlane-slots{args.slots}"] if args.slots else [])]
        runs: dict = {m: [] for m in methods}
        for rep in range(reps):
            for method in methods[:: 1 if rep % 2 == 0 else -1]:
                tag = f"bgst{os.getpid()}{rep}{method}"
                runs[method].append(run_once(plugin / "gst_peer", env, method, scenario, tag,
                                             args.shm_frames))
        for method, rs in runs.items():
            row = summary(scenario[0], method, rs)
            rows.append(row)
            print(f"{scenario[0]:18} {method:8} p50 {cell(row, 'p50_us')}, p99 "
                  f"{cell(row, 'p99_us')}, CPU/frame sink {cell(row, 'send_cpu_us')}, source "
                  f"{cell(row, 'recv_cpu_us')}", flush=True)
        for method in methods:
            if method != BASE:
                ratios.append(compare(scenario[0], method, runs[method], runs[BASE]))
                print(f"{scenario[0]:18} {method:8} / {BASE}: " + ", ".join(
                    f"{k} {spread_text(ratios[-1][k])}" for k in RATIOS), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gst.json").write_text(json.dumps({"runs": rows, "ratios": ratios}, indent=1))
    (out / "gst.md").write_text("\n".join(table(rows) + [""] + ratio_table(ratios)) + "\n")
    print(f"wrote {out / 'gst.md'}")


if __name__ == "__main__":
    main()

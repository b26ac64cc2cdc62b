"""shmlanesink/shmlanesrc against shmsink/shmsrc (docs/gstreamer.md, Figures).

The same pipelines for both: videotestsrc (pattern=black, I420) into the
sink (sync=false) in one process, the source into fakesink in another,
both run by bench/gst_peer. Per scenario and method, alternating runs:
latency from the sink's chain to the source's push (p50, p99), CPU per
frame of each process (getrusage, start-up excluded), copies per frame in
the sink (a buffer that is not the sink's own memory is copied into shared
memory). Medians over the runs, with their spread (min-max of the p50s).

    python bench/gst.py --plugin build/gst [--quick] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

SCENARIOS = [  # name, width, height, paced (live at 30 fps) or flat out, frames
    ("1080p30 paced", 1920, 1080, True, 150),
    ("1080p flat out", 1920, 1080, False, 300),
    ("640x480 paced", 640, 480, True, 150),
    ("640x480 flat out", 640, 480, False, 600),
]


def pipelines(method: str, width: int, height: int, paced: bool, tag: str) -> tuple[str, str]:
    caps = f"video/x-raw,format=I420,width={width},height={height},framerate=30/1"
    src = f"videotestsrc is-live={'true' if paced else 'false'} pattern=black ! {caps}"
    if method == "shmlane":
        return (f"{src} ! shmlanesink name=sink stream={tag} sync=false",
                f"shmlanesrc name=src stream={tag} ! fakesink sync=false")
    path = f"{tempfile.gettempdir()}/{tag}"
    size = width * height * 3 // 2 * 32  # smaller areas stall shmsink here
    return (f"{src} ! shmsink name=sink socket-path={path} shm-size={size} "
            f"wait-for-connection=false sync=false",
            f"shmsrc name=src socket-path={path} is-live=true ! {caps} ! fakesink sync=false")


def run_once(peer: Path, env: dict, method: str, scenario: tuple, tag: str) -> dict:
    _, width, height, paced, frames = scenario
    send_p, recv_p = pipelines(method, width, height, paced, tag)
    sender = subprocess.Popen([str(peer), "send", send_p], env=env, stdout=subprocess.PIPE,
                              text=True)
    time.sleep(0.5)  # shmsrc needs the socket: the sender starts first for both
    recv = subprocess.run([str(peer), "recv", recv_p, str(frames)], env=env,
                          capture_output=True, text=True, timeout=frames / 10 + 20)
    sender.send_signal(2)
    send_out, _ = sender.communicate(timeout=30)
    if method == "shmlane":
        subprocess.run(["rm", "-f", f"/dev/shm/shl.{tag}"], check=False)
    if recv.returncode != 0 or not recv.stdout.strip():
        raise RuntimeError(f"{method}: {recv.stderr}")
    r, s = json.loads(recv.stdout), json.loads(send_out)
    lat = sorted(r["latency_ns"])
    return {
        "p50_us": lat[len(lat) // 2] / 1e3,
        "p99_us": lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e3,
        "send_cpu_us": s["cpu_ns"] / max(1, s["frames"]) / 1e3,
        "recv_cpu_us": r["cpu_ns"] / max(1, r["frames"]) / 1e3,
        "copies": 1 - s["in_place"] / max(1, s["frames"] + 10),
        "missed": r["missed"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plugin", required=True, help="directory of libgstshmlane.so and gst_peer")
    ap.add_argument("--quick", action="store_true", help="one run per method, fewer frames")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    plugin = Path(args.plugin).resolve()
    env = {**os.environ, "GST_PLUGIN_PATH": str(plugin)}
    reps = 1 if args.quick else 3
    rows = []
    for scenario in SCENARIOS:
        if args.quick:
            scenario = (*scenario[:4], scenario[4] // 3)
        runs: dict = {"shmlane": [], "shm": []}
        for rep in range(reps):
            for method in ("shmlane", "shm") if rep % 2 == 0 else ("shm", "shmlane"):
                tag = f"bgst{os.getpid()}{rep}{method}"
                runs[method].append(run_once(plugin / "gst_peer", env, method, scenario, tag))
        for method, rs in runs.items():
            med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            med["p50_spread"] = (min(r["p50_us"] for r in rs), max(r["p50_us"] for r in rs))
            rows.append({"scenario": scenario[0], "method": method, "runs": len(rs), **med})
            print(f"{scenario[0]:18} {method:8} p50 {med['p50_us']:8.1f} us  p99 "
                  f"{med['p99_us']:8.1f} us  CPU/frame sink {med['send_cpu_us']:7.1f} us  "
                  f"src {med['recv_cpu_us']:6.1f} us  copies {med['copies']:.2f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gst.json").write_text(json.dumps(rows, indent=1))
    lines = ["| scenario | elements | latency p50 (spread) | p99 | CPU/frame sink process | "
             "CPU/frame source process | copies/frame |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        name = "shmlanesink/shmlanesrc" if r["method"] == "shmlane" else "shmsink/shmsrc"
        lo, hi = r["p50_spread"]
        lines.append(f"| {r['scenario']} | {name} | {r['p50_us']:.0f} µs ({lo:.0f}–{hi:.0f}) | "
                     f"{r['p99_us']:.0f} µs | {r['send_cpu_us']:.0f} µs | {r['recv_cpu_us']:.0f} µs | "
                     f"{r['copies']:.0f} |")
    (out / "gst.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'gst.md'}")


if __name__ == "__main__":
    main()

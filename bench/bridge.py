"""The bridge's benchmark (docs/bridge.md, Figures): frames/s and latency of
shmlane-bridge against raw ZeroMQ PUB/SUB moving the same bytes, in the same
run, at 640x480x3 and 1920x1080x3, over loopback and over a veth pair
between two network namespaces (skipped where `ip netns` is not permitted),
with and without zstd.

    python bench/bridge.py --bin BUILD/bridge [--quick] [--out bench/results]

Each case runs twice: flat out (the writer publishes as fast as it can; the
throughput is what arrives) and paced at 30 frames/s (the latency, from the
publish on host A to the frame in the reader's hands on host B: one host,
one CLOCK_MONOTONIC). Writes bridge.json and bridge.md to --out."""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "bridge"))
import netns  # noqa: E402

SIZES = [("640x480x3", "480,640,3", 640 * 480 * 3), ("1920x1080x3", "1080,1920,3", 1920 * 1080 * 3)]
TAG = "bb%d" % (os.getpid() % 100000)


def run(cmds, seconds):
    """Start every (args, ns), 0.3 s apart: the reader's (last but one) JSON
    line, with the sender's zstd figures (its last statistics line) if any."""
    procs, errs = [], []
    try:
        for args, ns in cmds:
            full = (["ip", "netns", "exec", ns] if ns else []) + args
            procs.append(subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
            time.sleep(0.3)
        out, _ = procs[-2].communicate(timeout=seconds + 20)  # the reader
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            try:
                errs.append(p.communicate(timeout=5)[1] or "")
            except (subprocess.TimeoutExpired, ValueError):
                p.kill()
                p.wait()
        for n in os.listdir("/dev/shm"):
            if n.startswith("shl." + TAG):
                os.unlink("/dev/shm/" + n)
    zstd = re.findall(r"zstd ([0-9.]+):1 ([0-9.]+) ms/frame", errs[0] if errs else "")
    if zstd:
        result["zstd_ratio"], result["zstd_ms"] = float(zstd[-1][0]), float(zstd[-1][1])
    return result


def case(bin_dir, method, shape, nbytes, fps, seconds, host, ns, port):
    bridge, peer = os.path.join(bin_dir, "shmlane-bridge"), os.path.join(bin_dir, "bridge_peer")
    bind = "tcp://%s:%d" % (host, port)
    a, b = TAG + "a", TAG + "b"
    ins = ["--insecure"] if host != "127.0.0.1" else []
    if method == "raw zmq":
        return run([([peer, "raw-sub", bind, str(nbytes), str(seconds + 0.5)], ns[1]),
                    ([peer, "raw-pub", bind, str(nbytes), str(fps), str(seconds)], ns[0])],
                   seconds)
    zstd = ["--zstd=1"] if method == "bridge zstd" else []
    quiet = [] if zstd else ["--quiet"]
    return run([([bridge, "send", a, bind, *quiet, *ins, *zstd], ns[0]),
                ([bridge, "recv", bind, b, "--quiet", *ins], ns[1]),
                ([peer, "bench-read", b, str(seconds + 1.5)], ns[1]),
                ([peer, "bench-write", a, shape, str(fps), str(seconds)], None)], seconds)


def markdown(res):
    lines = ["# Bridge benchmark", "", "%s, %s, libzmq over TCP; %s" % (
        res["machine"], res["date"], res["note"]), "",
        "| link | frame | method | flat out frames/s | MB/s | vs raw | p50 latency at 30 fps (ms) "
        "| p99 (ms) | vs raw | zstd ratio, ms/frame |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in res["rows"]:
        lines.append("| %s | %s | %s | %.1f | %.0f | %s | %.2f | %.2f | %s | %s |" % (
            r["link"], r["frame"], r["method"], r["fps"], r["fps"] * r["bytes"] / 1e6,
            "%.2f" % r["fps_ratio"] if r.get("fps_ratio") else "", r["p50_ms"], r["p99_ms"],
            "%.2f" % r["p50_ratio"] if r.get("p50_ratio") else "",
            "%.2f:1, %.1f" % (r["zstd_ratio"], r["zstd_ms"]) if r.get("zstd_ratio") else ""))
    lines += ["", "vs raw: raw ZeroMQ's frames/s over the bridge's (above 1: the bridge is slower), "
              "and the bridge's p50 latency over raw ZeroMQ's; the goal is 1.2 at most."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the build's bridge/ directory")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    o = ap.parse_args()
    seconds = 1.0 if o.quick else 2.5
    links = [("loopback", "127.0.0.1", (None, None))]
    pair = netns.setup(TAG[-5:])
    note = "veth between two network namespaces"
    if isinstance(pair, str):
        note = "veth skipped: " + pair
    else:
        links.append(("veth", netns.ADDR_A, (pair.a, pair.b)))
    rows, port = [], 21000 + os.getpid() % 20000
    try:
        for link, host, ns in links:
            for frame, shape, nbytes in SIZES:
                base = None
                for method in ("raw zmq", "bridge", "bridge zstd"):
                    port += 2
                    thr = case(o.bin, method, shape, nbytes, 0, seconds, host, ns, port)
                    lat = case(o.bin, method, shape, nbytes, 30, seconds, host, ns, port + 1)
                    r = {"link": link, "frame": frame, "method": method, "bytes": nbytes,
                         "fps": thr["fps"], "p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"],
                         "lost_at_30fps": lat["lost"], "zstd_ratio": lat.get("zstd_ratio"),
                         "zstd_ms": lat.get("zstd_ms")}
                    if base is None:
                        base = r
                    else:
                        r["fps_ratio"] = base["fps"] / r["fps"] if r["fps"] else None
                        r["p50_ratio"] = r["p50_ms"] / base["p50_ms"] if base["p50_ms"] else None
                    rows.append(r)
                    print("%-8s %-11s %-11s %8.1f frames/s  p50 %6.2f ms  p99 %6.2f ms" % (
                        link, frame, method, r["fps"], r["p50_ms"], r["p99_ms"]), flush=True)
    finally:
        if not isinstance(pair, str):
            netns.cleanup(pair)
    res = {"machine": "%s, %d CPUs" % (platform.machine(), os.cpu_count()),
           "date": time.strftime("%Y-%m-%d"), "note": note, "quick": o.quick, "rows": rows}
    os.makedirs(o.out, exist_ok=True)
    with open(os.path.join(o.out, "bridge.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(o.out, "bridge.md"), "w") as f:
        f.write(markdown(res))
    print("wrote %s/bridge.json and bridge.md" % o.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

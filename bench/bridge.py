"""The bridge's benchmark (docs/bridge.md, Figures): shmlane-bridge against
raw ZeroMQ PUB/SUB moving the same bytes, in the same run, at 640x480x3 and
1920x1080x3, over loopback TCP and over a veth pair between two network
namespaces (skipped where `ip netns` is not permitted); then the bridge with
zstd and with JPEG over the veth pair shaped with tc (tbf) to 1 Gbit/s and
100 Mbit/s, with what each codec costs: its ratio, the time a frame spends
in the coder on each side, the CPU time of both sides, and for JPEG the
error (PSNR of the frames that arrive against those written).

    python bench/bridge.py --bin BUILD/bridge [--quick] [--out bench/results]

Each unshaped case runs twice: flat out (the writer publishes as fast as it
can; the throughput is what arrives) and paced at 30 frames/s (the latency,
from the publish on host A to the frame in the reader's hands on host B:
one host, one CLOCK_MONOTONIC). Both report the CPU time per frame of the
two processes that move the frames (the bridge's send and recv; raw
ZeroMQ's publisher and subscriber), from getrusage (os.wait4), which a
shared machine disturbs far less than rates. Raw ZeroMQ and the bridge
alternate, ROUNDS times; the tables show medians, and the spread. Writes
bridge.json and bridge.md to --out."""
import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "bridge"))
import netns  # noqa: E402

SIZES = [("640x480x3", "480,640,3", 640 * 480 * 3), ("1920x1080x3", "1080,1920,3", 1920 * 1080 * 3)]
# Shaped links: (rate for tc, frame, the bridge's options).
SHAPED = [("1gbit", "1920x1080x3", ["--zstd"]), ("1gbit", "1920x1080x3", ["--zstd", "--latest"]),
          ("1gbit", "1920x1080x3", ["--jpeg"]), ("100mbit", "640x480x3", ["--zstd"]),
          ("100mbit", "640x480x3", ["--jpeg"])]
# A side's statistics line: its codec, ratio and time a frame took in it.
CODED = re.compile(r"(zstd\S*|jpeg) ([0-9.]+):1 ([0-9.]+) ms/frame")
TAG = "bb%d" % (os.getpid() % 100000)


def finish(p, timeout):
    """Waits for p to end (SIGTERM after `timeout` s): (stdout, stderr, CPU
    seconds of it and the children it waited for, from wait4). The outputs
    are a few lines: the pipes never fill."""
    deadline, cpu = time.time() + timeout, 0.0
    while p.returncode is None:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            cpu = ru.ru_utime + ru.ru_stime
            break
        if time.time() > deadline:
            p.terminate()
            deadline = time.time() + 5
        time.sleep(0.01)
    return p.stdout.read(), p.stderr.read(), cpu


def run(cmds, seconds, movers):
    """Starts every (args, ns), 0.3 s apart; the reader is the one before
    last. Its JSON line, with the CPU seconds of the processes at the
    indices `movers` and, if frames were coded, the codec's figures from the
    sender's statistics (0: ratio, ms a frame to code) and the receiver's (1:
    ms a frame to decode), medians of their lines (one a second)."""
    procs = []
    try:
        for args, ns in cmds:
            full = (["ip", "netns", "exec", ns] if ns else []) + args
            procs.append(subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
            time.sleep(0.3)
        outs = {len(procs) - 2: finish(procs[-2], seconds + 20)}  # the reader
        outs[len(procs) - 1] = finish(procs[-1], seconds + 20)  # the writer
        for i in range(len(procs) - 2):
            procs[i].terminate()
            outs[i] = finish(procs[i], 10)
        result = json.loads(outs[len(procs) - 2][0].strip().splitlines()[-1])
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                p.wait()
        for n in os.listdir("/dev/shm"):
            if n.startswith("shl." + TAG):
                os.unlink("/dev/shm/" + n)
    result["cpu_s"] = sum(outs[i][2] for i in movers)
    result["cpu_ms_per_frame"] = 1e3 * result["cpu_s"] / result["frames"] if result["frames"] else None
    sent, got = CODED.findall(outs[0][1]), CODED.findall(outs[1][1])
    if sent:
        result["codec"] = sent[-1][0]
        result["ratio"] = statistics.median(float(x[1]) for x in sent)
        result["code_ms"] = statistics.median(float(x[2]) for x in sent)
    if got:
        result["decode_ms"] = statistics.median(float(x[2]) for x in got)
    mse = result.get("mse", -1)
    result["psnr_db"] = None if mse < 0 else 99.0 if mse == 0 else 10 * math.log10(255 ** 2 / mse)
    return result


def case(bin_dir, method, shape, nbytes, fps, seconds, host, ns, port, extra=()):
    bridge, peer = os.path.join(bin_dir, "shmlane-bridge"), os.path.join(bin_dir, "bridge_peer")
    bind = "tcp://%s:%d" % (host, port)
    a, b = TAG + "a", TAG + "b"
    if method == "raw zmq":
        return run([([peer, "raw-sub", bind, str(nbytes), str(seconds + 0.5)], ns[1]),
                    ([peer, "raw-pub", bind, str(nbytes), str(fps), str(seconds)], ns[0])],
                   seconds, movers=(0, 1))
    zstd = ["--zstd"] if method == "bridge zstd" else []
    coded = zstd or "--zstd" in extra or "--jpeg" in extra
    quiet = [] if coded else ["--quiet"]  # the statistics carry the codec's figures
    mse = ["mse"] if "--jpeg" in extra else []  # the reader measures the error
    return run([([bridge, "send", a, bind, "--insecure", *quiet, *zstd, *extra], ns[0]),
                ([bridge, "recv", bind, b, "--insecure", *quiet], ns[1]),
                ([peer, "bench-read", b, str(seconds + 1.5), *mse], ns[1]),
                ([peer, "bench-write", a, shape, str(fps), str(seconds)], None)], seconds,
               movers=(0, 1))


def median(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def spread(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return (max(vals) - min(vals)) if len(vals) > 1 else 0.0


def fmt(v, f="%.2f"):
    return f % v if v is not None else ""


def markdown(res):
    lines = ["# Bridge benchmark", "", "%s, %s, libzmq over TCP; %s; medians of %d alternating "
             "rounds (± spread)" % (res["machine"], res["date"], res["note"], res["rounds"]), "",
             "| link | frame | method | flat out frames/s | CPU ms/frame | vs raw | p50 latency at "
             "30 fps (ms) | p99 (ms) | CPU ms/frame at 30 fps | vs raw | zstd ratio, ms/frame |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in res["rows"]:
        lines.append("| %s | %s | %s | %.1f | %s ± %s | %s | %.2f | %.2f | %s ± %s | %s | %s |" % (
            r["link"], r["frame"], r["method"], r["fps"], fmt(r["cpu"]), fmt(r["cpu_spread"]),
            fmt(r.get("cpu_ratio")), r["p50_ms"], r["p99_ms"], fmt(r["cpu30"]),
            fmt(r["cpu30_spread"]), fmt(r.get("cpu30_ratio")),
            "%.2f:1, %.1f" % (r["zstd_ratio"], r["zstd_ms"]) if r.get("zstd_ratio") else ""))
    lines += ["", "CPU ms/frame: user + system time of the two processes that move the frames "
              "(the bridge's send and recv; raw ZeroMQ's publisher and subscriber) over the "
              "frames that arrived. vs raw: the bridge's over raw ZeroMQ's (goal: 1.2 at most)."]
    if res["shaped"]:
        lines += ["", "## Shaped links (veth, tc tbf on host A's side), 30 frames/s", "",
                  "| rate | frame | options | frames/s arriving | lost | p50 latency (ms) | p99 (ms) "
                  "| ratio | code ms/frame | decode ms/frame | CPU ms/frame | PSNR (dB) |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["shaped"]:
            lines.append("| %s | %s | %s | %.1f | %d | %.2f | %.2f | %s | %s | %s | %s | %s |" % (
                r["rate"], r["frame"], " ".join(r["options"]), r["fps"], r["lost"], r["p50_ms"],
                r["p99_ms"], fmt(r.get("ratio"), "%.1f:1"), fmt(r.get("code_ms")),
                fmt(r.get("decode_ms")), fmt(r.get("cpu_ms_per_frame")),
                fmt(r.get("psnr_db"), "%.1f") if "--jpeg" in r["options"] else "exact"))
        lines += ["", "code, decode: the time a frame spends in the codec on the sending and the "
                  "receiving side (wall clock; zstd codes with 2 worker threads); CPU: user + system "
                  "time of both sides over the frames that arrived; PSNR: of the frames that "
                  "arrived (every 8th) against those written."]
    return "\n".join(lines) + "\n"


def shape_link(pair, rate):
    """tbf on A's end of the veth pair: RATE, a queue of 50 ms."""
    subprocess.run(["ip", "netns", "exec", pair.a, "tc", "qdisc", "replace", "dev", pair.dev_a,
                    "root", "tbf", "rate", rate, "burst", "1mb", "latency", "50ms"], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the build's bridge/ directory")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    o = ap.parse_args()
    seconds, rounds = (1.5, 1) if o.quick else (3.0, 3)
    links = [("loopback", "127.0.0.1", (None, None))]
    pair = netns.setup(TAG[-5:])
    note = "veth between two network namespaces"
    if isinstance(pair, str):
        note = "veth skipped: " + pair
    else:
        links.append(("veth", netns.ADDR_A, (pair.a, pair.b)))
    rows, shaped, port = [], [], 21000 + os.getpid() % 20000
    methods = ("raw zmq", "bridge", "bridge zstd")
    try:
        for link, host, ns in links:
            for frame, shape, nbytes in SIZES:
                runs = {m: [] for m in methods}
                for _ in range(rounds):  # alternating: raw, bridge, zstd, raw, ...
                    for method in methods:
                        port += 2
                        thr = case(o.bin, method, shape, nbytes, 0, seconds, host, ns, port)
                        lat = case(o.bin, method, shape, nbytes, 30, seconds, host, ns, port + 1)
                        runs[method].append({"fps": thr["fps"], "cpu": thr["cpu_ms_per_frame"],
                                             "p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"],
                                             "cpu30": lat["cpu_ms_per_frame"], "lost": lat["lost"],
                                             "zstd_ratio": lat.get("ratio"),
                                             "zstd_ms": lat.get("code_ms")})
                base = None
                for method in methods:
                    rs = runs[method]
                    r = {"link": link, "frame": frame, "method": method, "bytes": nbytes,
                         "runs": rs}
                    for k in ("fps", "cpu", "p50_ms", "p99_ms", "cpu30", "zstd_ratio", "zstd_ms"):
                        r[k] = median(rs, k)
                    r["cpu_spread"], r["cpu30_spread"] = spread(rs, "cpu"), spread(rs, "cpu30")
                    if base is None:
                        base = r
                    else:
                        for k in ("cpu", "cpu30"):
                            r[k + "_ratio"] = r[k] / base[k] if r[k] and base[k] else None
                    rows.append(r)
                    print("%-8s %-11s %-11s %7.1f frames/s %6s ms CPU/frame | 30 fps: p50 %7.2f ms "
                          "p99 %7.2f ms %6s ms CPU/frame" % (
                              link, frame, method, r["fps"], fmt(r["cpu"]), r["p50_ms"],
                              r["p99_ms"], fmt(r["cpu30"])), flush=True)
        if not isinstance(pair, str):
            sizes = {f: (sh, n) for f, sh, n in SIZES}
            for rate, frame, options in SHAPED:
                shape_link(pair, rate)
                port += 2
                shape, nbytes = sizes[frame]
                r = case(o.bin, "bridge", shape, nbytes, 30, max(seconds, 3.0), netns.ADDR_A,
                         (pair.a, pair.b), port, extra=options)
                r.update({"rate": rate, "frame": frame, "options": options})
                shaped.append(r)
                print("shaped %-7s %-11s %s: %.1f frames/s arriving, lost %d, p50 %.2f ms, "
                      "p99 %.2f ms, %s:1, code %s ms, decode %s ms, CPU %s ms/frame, PSNR %s dB" % (
                          rate, frame, " ".join(options), r["fps"], r["lost"], r["p50_ms"],
                          r["p99_ms"], fmt(r.get("ratio"), "%.1f"), fmt(r.get("code_ms")),
                          fmt(r.get("decode_ms")), fmt(r.get("cpu_ms_per_frame")),
                          fmt(r.get("psnr_db"), "%.1f")), flush=True)
    finally:
        if not isinstance(pair, str):
            netns.cleanup(pair)
    res = {"machine": "%s, %d CPUs" % (platform.machine(), os.cpu_count()),
           "date": time.strftime("%Y-%m-%d"), "note": note, "quick": o.quick, "rounds": rounds,
           "rows": rows, "shaped": shaped}
    os.makedirs(o.out, exist_ok=True)
    with open(os.path.join(o.out, "bridge.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(o.out, "bridge.md"), "w") as f:
        f.write(markdown(res))
    print("wrote %s/bridge.json and bridge.md" % o.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

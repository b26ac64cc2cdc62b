"""The bridge's benchmark (docs/bridge.md, Figures): shmlane-bridge against
raw ZeroMQ PUB/SUB moving the same bytes, in the same run, at 640x480x3 and
1920x1080x3, over a veth pair between two network namespaces (loopback TCP
where `ip netns` is not permitted, or with --loopback too); then the bridge
with zstd and with JPEG over the veth pair shaped with tc (tbf) to 1 Gbit/s
and 100 Mbit/s, with what each codec costs: its ratio, the time a frame
spends in the coder on each side, the CPU time of both sides, and for JPEG
the error (PSNR of the frames that arrive against those written).

    python bench/bridge.py --bin BUILD/bridge [--quick] [--loopback] [--out bench/results]

Each unshaped case runs twice: flat out (the writer publishes as fast as it
can; the throughput is what arrives) and paced at 30 frames/s (the latency,
from the publish on host A to the frame in the reader's hands on host B:
one host, one CLOCK_MONOTONIC). Both report the CPU time per frame of the
two processes that move the frames (the bridge's send and recv; raw
ZeroMQ's publisher and subscriber), from getrusage (os.wait4), which a
shared machine disturbs far less than rates. Raw ZeroMQ and the bridge
alternate, ROUNDS times; the bridge's CPU time against raw ZeroMQ's is the
median of the rounds' ratios, with their range. The shaped cases alternate
too, ROUNDS rounds of 8 s at 1080p (4 s at 640x480) each: medians, and
the range. Writes bridge.json and bridge.md to --out."""
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
from run import per_round, spread  # noqa: E402

SIZES = [("640x480x3", "480,640,3", 640 * 480 * 3), ("1920x1080x3", "1080,1920,3", 1920 * 1080 * 3)]
# Shaped links: (rate for tc, frame, the bridge's options, the frames: camera-like, or
# noisy as a real sensor's).
SHAPED = [("1gbit", "1920x1080x3", ["--zstd"], "camera"),
          ("1gbit", "1920x1080x3", ["--zstd"], "noisy"),
          ("1gbit", "1920x1080x3", ["--jpeg"], "camera"),
          ("100mbit", "640x480x3", ["--zstd"], "camera"),
          ("100mbit", "640x480x3", ["--jpeg"], "camera")]
# zstd's settings tried on 1080p frames (bridge_peer codec-cost): (level, worker threads).
ZSTD_SETTINGS = [(1, 2), (1, 0), (-1, 2), (-3, 2), (-7, 2)]
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


def case(bin_dir, method, shape, nbytes, fps, seconds, host, ns, port, extra=(), frames="camera"):
    bridge, peer = os.path.join(bin_dir, "shmlane-bridge"), os.path.join(bin_dir, "bridge_peer")
    bind = "tcp://%s:%d" % (host, port)
    a, b = TAG + "a", TAG + "b"
    if method == "raw zmq":
        return run([([peer, "raw-sub", bind, str(nbytes), str(seconds + 0.5)], ns[1]),
                    ([peer, "raw-pub", bind, str(nbytes), str(fps), str(seconds)], ns[0])],
                   seconds, movers=(0, 1))
    coded = any(x.startswith(("--zstd", "--jpeg")) for x in extra)
    quiet = [] if coded else ["--quiet"]  # the statistics carry the codec's figures
    mse = ["mse"] if "--jpeg" in extra else []  # the reader measures the error
    return run([([bridge, "send", a, bind, "--insecure", *quiet, *extra], ns[0]),
                ([bridge, "recv", bind, b, "--insecure", *quiet], ns[1]),
                ([peer, "bench-read", b, str(seconds + 1.5), *mse], ns[1]),
                ([peer, "bench-write", a, shape, str(fps), str(seconds), frames], None)], seconds,
               movers=(0, 1))


def as_list(st):
    """run.py's spread as [median, min, max], or None without values."""
    return [st["median"], st["min"], st["max"]] if st["n"] else None


def summarise(rounds, keys):
    """{key: [median, min, max]} over the rounds' results that are there."""
    return {k: as_list(spread([r[k] for r in rounds if r.get(k) is not None])) for k in keys}


def ratios(rounds, base, key):
    """The rounds' ratios of key to base's same round: [median, min, max]."""
    nan = float("nan")
    return as_list(per_round([r.get(key) or nan for r in rounds], [b.get(key) or nan for b in base]))


def fmt(v, f="%.2f"):
    """A value, or [median, min, max] as 'median (min-max)'."""
    if isinstance(v, list):
        return (f + " (" + f + "–" + f + ")") % tuple(v) if v[1] != v[2] else f % v[0]
    return f % v if v is not None else ""


def markdown(res):
    lines = ["# Bridge benchmark", "", "%s, %s, libzmq over TCP; %s; medians of %d alternating "
             "rounds (min–max)" % (res["machine"], res["date"], res["note"], res["rounds"]), "",
             "| link | frame | method | flat out frames/s | CPU ms/frame | vs raw | p50 latency at "
             "30 fps (ms) | p99 (ms) | CPU ms/frame at 30 fps | vs raw |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["link"], r["frame"], r["method"], fmt(r["fps"], "%.1f"), fmt(r["cpu"]),
            fmt(r.get("cpu_ratio")), fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(r["cpu30"]),
            fmt(r.get("cpu30_ratio"))))
    lines += ["", "CPU ms/frame: user + system time of the two processes that move the frames "
              "(the bridge's send and recv; raw ZeroMQ's publisher and subscriber) over the "
              "frames that arrived. vs raw: the median of the rounds' ratios of the bridge's to "
              "raw ZeroMQ's (goal: 1.2 at most), and their range."]
    if res["shaped"]:
        lines += ["", "## Shaped links (veth, tc tbf on host A's side), 30 frames/s", "",
                  "| rate | frame | frames | options | seconds × rounds | frames/s arriving "
                  "| lost | p50 latency (ms) | p99 (ms) | ratio | code ms/frame | decode ms/frame "
                  "| CPU ms/frame | PSNR (dB) |",
                  "|---|---|---|---|" + "---:|" * 10]
        for r in res["shaped"]:
            lines.append("| %s | %s | %s | %s | %g × %d |" % (
                r["rate"], r["frame"], r["frames"], " ".join(r["options"]), r["seconds"],
                len(r["runs"])) + " %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                fmt(r["fps"], "%.1f"), fmt(r["lost"], "%d"), fmt(r["p50_ms"]), fmt(r["p99_ms"]),
                fmt(r["ratio"], "%.1f"), fmt(r["code_ms"]), fmt(r["decode_ms"]),
                fmt(r["cpu_ms_per_frame"]),
                fmt(r["psnr_db"], "%.1f") if "--jpeg" in r["options"] else "exact"))
        lines += ["", "code, decode: the time a frame spends in the codec on the sending and the "
                  "receiving side (wall clock; zstd codes with 2 worker threads); CPU: user + "
                  "system time of both sides over the frames that arrived; PSNR: of the frames "
                  "that arrived (every 8th) against those written; ratio: frame size to coded "
                  "size (:1)."]
    lines += ["", "## zstd's settings, 1920x1080x3 frames coded and decoded in one process", "",
              "| frames | level | worker threads | ratio | code ms/frame | decode ms/frame | CPU "
              "ms/frame, both |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["zstd"]:
        lines.append("| %s | %d | %d | %.2f:1 | %.2f | %.2f | %.2f |" % (
            r["frames"], r["level"], r["threads"], r["ratio"], r["code_ms"], r["decode_ms"],
            r["cpu_ms"]))
    lines += ["", "camera: a gradient with one bit of noise (what the links above carry); noisy: "
              "smooth shapes under noise of about 2 levels (sd), as a real sensor gives. Row "
              "deltas on; medians of 12 frames."]
    return "\n".join(lines) + "\n"


def shape_link(pair, rate):
    """tbf on A's end of the veth pair: RATE, a queue of 50 ms."""
    subprocess.run(["ip", "netns", "exec", pair.a, "tc", "qdisc", "replace", "dev", pair.dev_a,
                    "root", "tbf", "rate", rate, "burst", "1mb", "latency", "50ms"], check=True)


SHAPED_KEYS = ("fps", "lost", "p50_ms", "p99_ms", "ratio", "code_ms", "decode_ms",
               "cpu_ms_per_frame", "psnr_db")


def unshaped(o, links, seconds, rounds, port):
    """Raw ZeroMQ and the bridge, alternating, on each link and frame size."""
    rows, methods = [], ("raw zmq", "bridge")
    for link, host, ns in links:
        for frame, shape, nbytes in SIZES:
            runs = {m: [] for m in methods}
            for _ in range(rounds):  # alternating: raw, bridge, raw, ...
                for method in methods:
                    port += 2
                    thr = case(o.bin, method, shape, nbytes, 0, seconds, host, ns, port)
                    lat = case(o.bin, method, shape, nbytes, 30, seconds, host, ns, port + 1)
                    runs[method].append({"fps": thr["fps"], "cpu": thr["cpu_ms_per_frame"],
                                         "p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"],
                                         "cpu30": lat["cpu_ms_per_frame"], "lost": lat["lost"]})
            for method in methods:
                rs = runs[method]
                r = {"link": link, "frame": frame, "method": method, "bytes": nbytes, "runs": rs}
                r.update(summarise(rs, ("fps", "cpu", "p50_ms", "p99_ms", "cpu30")))
                if method != "raw zmq":
                    for k in ("cpu", "cpu30"):
                        r[k + "_ratio"] = ratios(rs, runs["raw zmq"], k)
                rows.append(r)
                vs = {k: " (vs raw %s)" % fmt(r[k]) if r.get(k) else ""
                      for k in ("cpu_ratio", "cpu30_ratio")}
                print("%-8s %-11s %-7s %s frames/s, %s ms CPU/frame%s | 30 fps: p50 %s ms, p99 %s "
                      "ms, %s ms CPU/frame%s" % (
                          link, frame, method, fmt(r["fps"], "%.1f"), fmt(r["cpu"]),
                          vs["cpu_ratio"], fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(r["cpu30"]),
                          vs["cpu30_ratio"]), flush=True)
    return rows, port


def shaped_links(o, pair, rounds, quick, port):
    """The codecs over the shaped veth pair: every case once a round, the
    rounds alternating; medians and ranges."""
    sizes = {f: (sh, n) for f, sh, n in SIZES}
    runs = [[] for _ in SHAPED]
    for _ in range(rounds):
        for i, (rate, frame, options, frames) in enumerate(SHAPED):
            shape_link(pair, rate)
            port += 2
            shape, nbytes = sizes[frame]
            runs[i].append(case(o.bin, "bridge", shape, nbytes, 30, shaped_seconds(frame, quick),
                                netns.ADDR_A, (pair.a, pair.b), port, options, frames))
    shaped = []
    for (rate, frame, options, frames), rs in zip(SHAPED, runs):
        r = {"rate": rate, "frame": frame, "options": options, "frames": frames, "seconds":
             shaped_seconds(frame, quick), "runs": rs}
        r.update(summarise(rs, SHAPED_KEYS))
        shaped.append(r)
        print("shaped %-7s %-11s %-6s %-7s %s frames/s arriving, lost %s, p50 %s ms, p99 %s ms, "
              "%s:1, code %s ms, decode %s ms, CPU %s ms/frame, PSNR %s dB" % (
                  rate, frame, frames, " ".join(options), fmt(r["fps"], "%.1f"),
                  fmt(r["lost"], "%d"),
                  fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(r["ratio"], "%.1f"),
                  fmt(r["code_ms"]), fmt(r["decode_ms"]), fmt(r["cpu_ms_per_frame"]),
                  fmt(r["psnr_db"], "%.1f")), flush=True)
    return shaped


def zstd_costs(o, quick):
    """What each zstd setting costs on camera-like and noisy 1080p frames,
    coded and decoded by the bridge's own codec in one process: no link,
    no queue (the shaped links show those)."""
    peer, rows = os.path.join(o.bin, "bridge_peer"), []
    for kind in ("camera", "noisy"):
        for level, threads in [ZSTD_SETTINGS[0], ZSTD_SETTINGS[-1]] if quick else ZSTD_SETTINGS:
            p = subprocess.run([peer, "codec-cost", "1080,1920", kind, str(level), str(threads)],
                               capture_output=True, text=True, timeout=300, check=True)
            r = json.loads(p.stdout)
            r.update({"frames": kind, "level": level, "threads": threads})
            rows.append(r)
            print("zstd %-6s level %3d, %d threads: %.2f:1, code %.2f ms, decode %.2f ms, CPU %.2f "
                  "ms/frame" % (kind, level, threads, r["ratio"], r["code_ms"], r["decode_ms"],
                                r["cpu_ms"]), flush=True)
    return rows


def shaped_seconds(frame, quick):
    """Long enough to show a rate sustained: 8 s at 1080p (240 frames), 4 s
    at 640x480 (the CPU is not the limit there)."""
    return 3.0 if quick else 8.0 if frame == "1920x1080x3" else 4.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the build's bridge/ directory")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--loopback", action="store_true",
                    help="loopback TCP too, where the veth pair can be made")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    o = ap.parse_args()
    seconds, rounds = (1.5, 2) if o.quick else (1.5, 3)
    loopback = [("loopback", "127.0.0.1", (None, None))]
    pair = netns.setup(TAG[-5:])
    if isinstance(pair, str):
        note, links = "veth skipped: " + pair, loopback
    else:
        note = "veth between two network namespaces"
        links = (loopback if o.loopback else []) + [("veth", netns.ADDR_A, (pair.a, pair.b))]
    port, shaped = 21000 + os.getpid() % 20000, []
    zstd = zstd_costs(o, o.quick)
    try:
        rows, port = unshaped(o, links, seconds, rounds, port)
        if not isinstance(pair, str):
            shaped = shaped_links(o, pair, rounds, o.quick, port)
    finally:
        if not isinstance(pair, str):
            netns.cleanup(pair)
    res = {"machine": "%s, %d CPUs" % (platform.machine(), os.cpu_count()),
           "date": time.strftime("%Y-%m-%d"), "note": note, "quick": o.quick, "rounds": rounds,
           "rows": rows, "shaped": shaped, "zstd": zstd}
    os.makedirs(o.out, exist_ok=True)
    with open(os.path.join(o.out, "bridge.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(o.out, "bridge.md"), "w") as f:
        f.write(markdown(res))
    print("wrote %s/bridge.json and bridge.md" % o.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

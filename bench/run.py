"""Run the shmlane benchmarks and write results/latest.json, latest.md and
the plots (how to run: docs/performance.md; methods and analysis:
docs/performance-log.md).

    python bench/run.py [--quick] [--tiny] [--bin build-bench/c/bench] [--out bench/results]

--quick: fewer iterations (under a minute). --tiny: a handful of iterations,
for the smoke test (numbers meaningless). Every process of a pair is its
own exec'd program; the C programs come from --bin (mk/bench.mk builds them).
Comparison packages missing from this interpreter are pip-installed here;
one that cannot be installed or imported is reported as skipped.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PAIR = os.path.join(HERE, "py", "pair.py")
PACED_READER = os.path.join(HERE, "py", "paced_reader.py")
ATTACH_PY = os.path.join(HERE, "py", "attach.py")
WAKE_PY = os.path.join(HERE, "py", "wake.py")
DEATH_PY = os.path.join(HERE, "py", "death.py")
FRAMES = [("640x480x3", "480x640x3"), ("1920x1080x3", "1080x1920x3"), ("64 B", "64")]
ALTERNATIVES = {  # method: (PyPI name, module)
    "seed": ("posix-ipc", "posix_ipc"),
    "mpshm": ("posix-ipc", "posix_ipc"),
    "sharedarray": ("SharedArray", "SharedArray"),
    "iceoryx2": ("iceoryx2", "iceoryx2"),
    "zmq": ("pyzmq", "zmq"),
    "pipe": (None, "multiprocessing.connection"),
}
DESCRIBE = {
    "shmlane": "shmlane Python Writer/Reader (zero-copy)",
    "shmlane-copy": "shmlane Writer.publish(array) / Reader.receive_into(out), copy in/out",
    "seed": "seed recipe: posix_ipc semaphore + mmap, tobytes() copy in, copy out, 1 ms polling",
    "mpshm": "multiprocessing.shared_memory + posix_ipc semaphores, copy in/out",
    "sharedarray": "SharedArray + posix_ipc semaphores, copy in/out",
    "iceoryx2": "iceoryx2 publish-subscribe with slices",
    "zmq": "pyzmq PUSH/PULL over ipc://, send copies (a zero-copy send would race the next frame), recv(copy=False)",
    "pipe": "multiprocessing Connection over a named pipe",
}


class Config:
    def __init__(self, quick: bool, tiny: bool):
        self.quick, self.tiny = quick, tiny
        if tiny:
            self.wake_iters, self.wake_gap_ns, self.py_wake_iters = 20, 50_000, 10
            self.stream_iters, self.stream_gap_ns, self.thr_s = 10, 100_000, 0.05
            self.py_iters, self.py_thr_s, self.alt_iters = 5, 0.05, 5
            self.fanout = [1, 2]
            self.attach_iters = 5
            self.frames = FRAMES[:1] + FRAMES[2:]
            self.paced_s, self.idle_s, self.idle_settle_s = 0.1, 0.3, 0.3
            self.adapt_frames = 6
            self.paced_settle_s = 0.0
            self.rounds, self.death, self.death_rounds = 1, [1], 1
        elif quick:
            self.wake_iters, self.wake_gap_ns, self.py_wake_iters = 1500, 150_000, 500
            self.stream_iters, self.stream_gap_ns, self.thr_s = 300, 300_000, 0.3
            self.py_iters, self.py_thr_s, self.alt_iters = 150, 0.3, 40
            self.fanout = [1, 4]
            self.attach_iters = 50
            self.frames = FRAMES
            self.paced_s, self.idle_s, self.idle_settle_s = 1.5, 2.0, 1.0
            self.adapt_frames = 20
            self.paced_settle_s = PACED_SETTLE_S
            self.rounds, self.death, self.death_rounds = 3, [1, 10, 50], 2
        else:
            self.wake_iters, self.wake_gap_ns, self.py_wake_iters = 10000, 200_000, 3000
            self.stream_iters, self.stream_gap_ns, self.thr_s = 2000, 500_000, 1.0
            self.py_iters, self.py_thr_s, self.alt_iters = 1000, 1.0, 250
            self.fanout = [1, 2, 4, 8]
            self.attach_iters = 300
            self.frames = FRAMES
            self.paced_s, self.idle_s, self.idle_settle_s = 3.5, 3.0, 1.0
            self.adapt_frames = 30
            self.paced_settle_s = PACED_SETTLE_S
            self.rounds, self.death, self.death_rounds = 4, [1, 10, 50], 5


# ---------------------------------------------------------------- helpers


def load(path: str) -> list:
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def pct(values: list, p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    rank = max(1, -(-len(v) * p // 100))  # nearest rank
    return float(v[int(min(rank, len(v))) - 1])


def spread(values: list) -> dict:
    """The median of per-round values (ratios of A to B, each from one
    round in which A and B ran one after the other) and their spread."""
    v = sorted(x for x in values if x == x)
    if not v:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "n": len(v)}


def per_round(a: list, b: list) -> dict:
    """spread() of a[i] / b[i]: rounds in which both ran."""
    return spread([x / y for x, y in zip(a, b) if y and x == x and y == y])


def summary(values: list) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p99": pct(values, 99),
        "p99.9": pct(values, 99.9),
        "mean": sum(values) / len(values),
        "max": float(max(values)),
    }


def run_group(writer_cmd: list, reader_cmds: list, timeout: float = 300, env=None) -> tuple:
    """Start the writer, wait for its "ready", start the readers; return the
    JSON line each printed last."""
    w = subprocess.Popen(writer_cmd, stdout=subprocess.PIPE, text=True, env=env)
    line = w.stdout.readline()
    if line.strip() != "ready":
        w.kill()
        raise RuntimeError(f"{writer_cmd[:3]}: no ready line ({line!r})")
    readers = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True, env=env) for c in reader_cmds]
    outs = []
    deadline = time.monotonic() + timeout
    for p in readers + [w]:
        try:
            out, _ = p.communicate(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            out = None
        if out is None or p.returncode != 0:
            for q in readers + [w]:  # a writer left waiting for a dead reader's acks would spin on
                q.kill()
                q.wait()
            raise RuntimeError(f"timed out: {writer_cmd}" if out is None else
                               f"{p.args[:3]} exited {p.returncode}")
        last = [x for x in out.splitlines() if x.startswith("{")]
        outs.append(json.loads(last[-1]) if last else {})
    return outs[-1], outs[:-1]


def ensure_module(method: str, install: bool = True) -> str | None:
    """None if usable, else why it is skipped."""
    pypi, module = ALTERNATIVES[method]
    try:
        importlib.import_module(module)
        return None
    except Exception:
        pass
    if not install:
        return f"{module} not installed (--no-install)"
    if pypi is None:
        return f"cannot import {module}"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", pypi],
                       capture_output=True, text=True)
    importlib.invalidate_caches()
    try:
        importlib.import_module(module)
        return None
    except Exception as exc:
        tail = (r.stderr or "").strip().splitlines()[-1:] or [""]
        return f"pip install {pypi} failed or import failed: {exc} {tail[0]}".strip()


# ---------------------------------------------------------------- scenarios


ROUNDS = 4  # methods and fan-out set-ups take turns: drift in the machine hits them alike


def wake_pair(program, method, tmp, iters, gap_ns, key, fill=0):
    """One wake-up run: the reader (started first) creates the segment.
    Returns the latencies and the writer's signal times."""
    name = f"bw{os.getpid()}"
    f, fw = os.path.join(tmp, f"wake.{key}"), os.path.join(tmp, f"wake.{key}.w")
    r = subprocess.Popen(program + ["reader", method, name, str(iters), f], stdout=subprocess.PIPE,
                         text=True)
    assert r.stdout.readline().strip() == "ready"
    subprocess.run(program + ["writer", method, name, str(iters), str(gap_ns), fw]
                   + ([str(fill)] if fill else []), check=True, timeout=300)
    r.wait(timeout=60)
    return load(f), load(fw)


def bench_wake(cfg, bin_dir, tmp, res, raw):
    """Every method, C and Python, takes a turn in each of ROUNDS rounds:
    the latencies of all rounds, and each round's p50, for ratios between
    methods that ran one after the other."""
    runs = [("c", [os.path.join(bin_dir, "wake")], m, cfg.wake_iters)
            for m in ("shl", "futex", "shlspin", "spin")]
    runs += [("py", [sys.executable, WAKE_PY], m, cfg.py_wake_iters) for m in ("shl", "shlspin")]
    lat, sig, p50 = {}, {}, {}
    for _ in range(ROUNDS):
        for prefix, program, m, iters in runs:
            a, b = wake_pair(program, m, tmp, max(1, iters // ROUNDS), cfg.wake_gap_ns, f"{prefix}.{m}")
            lat.setdefault((prefix, m), []).extend(a)
            sig.setdefault((prefix, m), []).extend(b)
            p50.setdefault((prefix, m), []).append(pct(a, 50))
    out, py = {}, {}
    for (prefix, m), v in lat.items():
        raw[f"wake.{prefix}.{m}"] = v
        (out if prefix == "c" else py)[m] = {"latency_ns": summary(v), "signal_ns": summary(sig[prefix, m]),
                                             "p50_rounds": p50[prefix, m]}
    # Against the peer of each: the raw futex, the cache line, shmlane's C call.
    for v, peer in ((out["shl"], out["futex"]), (out["shlspin"], out["spin"]), (py["shl"], out["shl"]),
                    (py["shlspin"], out["shlspin"])):
        v["p50_vs_peer"] = per_round(v["p50_rounds"], peer["p50_rounds"])
    res["wake_c"], res["wake_py"] = out, py


def bench_stream_c(cfg, bin_dir, tmp, res, raw):
    rows = []
    for label, frame in cfg.frames:
        for mode in ("latest", "all"):
            name = f"bs{os.getpid()}"
            o = os.path.join(tmp, f"sc.{frame}.{mode}")
            exe = os.path.join(bin_dir, "stream")
            wr, rd = run_group(
                [exe, "writer", name, frame, mode, "1", str(cfg.stream_iters),
                 str(cfg.stream_gap_ns), str(cfg.thr_s), "lct", o],
                [[exe, "reader", name, mode, str(cfg.stream_iters), "lct", o]])
            rpid = [p for p in os.listdir(tmp) if p.startswith(os.path.basename(o) + ".lat.")]
            lat = load(os.path.join(tmp, rpid[0])) if rpid else []
            recv = load(os.path.join(tmp, rpid[0].replace(".lat.", ".recv."))) if rpid else []
            lp, lpp, cp = load(o + ".loanpub"), load(o + ".loanpub_poll"), load(o + ".memcpy")
            raw[f"stream.c.{label}.{mode}.lat"] = lat
            row = {
                "frame": label, "mode": mode,
                "loan_publish_ns": summary(lp),  # readers asleep: includes waking them
                "loan_publish_cpu_ns": summary(load(o + ".loanpub_cpu")),  # minus time preempted
                "loan_publish_polled_ns": summary(lpp),  # readers polling: no wake-up syscall
                "receive_release_ns": summary(recv),
                "memcpy_ns": summary(cp),
                "latency_ns": summary(lat),
                "published_per_s": wr.get("published", 0) / max(wr.get("seconds", 1), 1e-9),
                "delivered_per_s": rd[0].get("frames", 0) / max(rd[0].get("seconds", 1), 1e-9),
                "lost": rd[0].get("lost", 0),
            }
            ipc = row["loan_publish_ns"]["p50"] + row["receive_release_ns"]["p50"]
            row["ipc_ns_p50"] = ipc
            row["ipc_polled_ns_p50"] = row["loan_publish_polled_ns"]["p50"] + row["receive_release_ns"]["p50"]
            row["ipc_vs_memcpy"] = ipc / row["memcpy_ns"]["p50"]
            row["ipc_cpu_vs_memcpy"] = (row["loan_publish_cpu_ns"]["p50"] + row["receive_release_ns"]["p50"]
                                        ) / row["memcpy_ns"]["p50"]
            row["ipc_polled_vs_memcpy"] = row["ipc_polled_ns_p50"] / row["memcpy_ns"]["p50"]
            rows.append(row)
    res["stream_c"] = rows


def pair_run(m, name, frame, iters, gap_s, seconds, phases, o, env):
    """One run of pair.py for method m: (writer's JSON, reader's JSON)."""
    wr, rd = run_group(
        [sys.executable, PAIR, "writer", m, name, frame, str(iters), str(gap_s), str(seconds), phases, o],
        [[sys.executable, PAIR, "reader", m, name, frame, str(iters), phases, o]], env=env)
    return wr, rd[0]


def pair_round(wr: dict, rd: dict, o: str) -> dict:
    """What one round of a method gave: its samples, and its figures."""
    send, recv, lat, fill, sendp = (load(o + x) for x in (".send", ".recv", ".lat", ".fill",
                                                           ".send_polled"))
    distinct, dup = rd.get("frames", 0), rd.get("duplicates", 0)
    return {
        "send": send, "recv": recv, "lat": lat, "fill": fill, "send_polled": sendp,
        "cost": pct(send, 50) + pct(recv, 50),
        "polled": pct(sendp, 50) + pct(recv, 50),
        "latency": pct(lat, 50),
        "rate": distinct / rd["seconds"] if distinct and rd.get("seconds") else float("nan"),
        "cpu": cpu_per_frame(wr, rd),
        "distinct": distinct, "duplicates": dup,
    }


# Each Python figure compared with shmlane's, as other / shmlane, except the
# rate (shmlane / other): above 1, shmlane is ahead.
PY_RATIOS = (("cost", "cost_vs_shmlane", False), ("polled", "polled_cost_vs_shmlane", False),
             ("latency", "latency_vs_shmlane", False), ("rate", "rate_vs_shmlane", True),
             ("cpu", "cpu_vs_shmlane", False))


def bench_python(cfg, tmp, res, raw, skipped, install=True):
    """Every method in its own pair of processes, the methods taking turns
    in cfg.rounds rounds per frame size (shmlane, then each alternative, and
    again): each ratio to shmlane is the median of the rounds' ratios, with
    their spread."""
    methods = ["shmlane", "shmlane-copy"] + list(ALTERNATIVES)
    usable = []
    for m in methods:
        why = None if m.startswith("shmlane") else ensure_module(m, install)
        if why:
            skipped[m] = why
        else:
            usable.append(m)
    env = dict(os.environ, BENCH_POLICY="latest")
    gap_s = cfg.stream_gap_ns / 1e9
    rows = []
    for label, frame in cfg.frames:
        rounds = {m: [] for m in usable}
        failed = set()
        for _ in range(cfg.rounds):
            for m in usable:
                if m in failed:
                    continue
                iters = max(2, (cfg.py_iters if m == "shmlane" else cfg.alt_iters) // cfg.rounds)
                name, o = f"bp{os.getpid()}", os.path.join(tmp, f"py.{m}.{frame}")
                try:
                    wr, rd = pair_run(m, name, frame, iters, gap_s, cfg.py_thr_s / cfg.rounds, "lct", o,
                                      env)
                except RuntimeError as exc:
                    if m.startswith("shmlane"):
                        raise  # our own methods are measured, never skipped
                    skipped[f"{m} {label}"] = str(exc)
                    failed.add(m)
                    continue
                rounds[m].append(pair_round(wr, rd, o))
        for m in usable:
            rs = rounds[m]
            if m in failed or not rs:
                continue
            pooled = {k: [x for r in rs for x in r[k]] for k in ("send", "recv", "lat", "fill", "send_polled")}
            raw[f"py.{m}.{label}.lat"] = pooled["lat"]
            distinct, dup = sum(r["distinct"] for r in rs), sum(r["duplicates"] for r in rs)
            row = {
                "method": m, "frame": label, "rounds": len(rs),
                "send_ns": summary(pooled["send"]), "recv_ns": summary(pooled["recv"]),
                "send_polled_ns": summary(pooled["send_polled"]),  # phase c: nobody to wake
                "latency_ns": summary(pooled["lat"]),
                "fill_ns": summary(pooled["fill"]) if any(pooled["fill"]) else {"n": 0},
                "distinct_per_s": spread([r["rate"] for r in rs])["median"],
                "duplicates": dup, "duplicate_share": dup / (dup + distinct) if dup + distinct else 0.0,
                "cpu_per_frame_ns": spread([r["cpu"] for r in rs])["median"],
                "round_figures": {k: [r[k] for r in rs] for k, _, _ in PY_RATIOS},
            }
            row["cost_ns_p50"] = row["send_ns"]["p50"] + row["recv_ns"]["p50"]
            rows.append(row)
        base = next((r for r in rows if r["method"] == "shmlane" and r["frame"] == label), None)
        for row in rows:
            if row["frame"] != label or not base:
                continue
            for k, key, inverse in PY_RATIOS:
                mine, theirs = base["round_figures"][k], row["round_figures"][k]
                row[key] = per_round(mine, theirs) if inverse else per_round(theirs, mine)
        if "shmlane" in usable:
            shmlane_variants(cfg, tmp, frame, gap_s, env, base)
    res["python"] = rows


def shmlane_variants(cfg, tmp, frame, gap_s, env, row):
    """shmlane's paced sends again, the writer waiting out the gap on the CPU
    instead of sleeping (how much of `send` is the writer's own wake-up, cold
    caches, rather than the library), and with the reader spinning 1 ms
    before it sleeps (Reader(spin=)), longer than the gap: what a reader of a
    fast stream can choose."""
    name = f"bp{os.getpid()}"
    for key, extra, phases in (("busy", {"BENCH_BUSY_GAP": "1"}, "l"),
                               ("spin", {"BENCH_READER_SPIN": "0.001"}, "lt")):
        ob = os.path.join(tmp, f"py.variant.{frame}.{key}")
        wx, rx = pair_run("shmlane", name, frame, cfg.py_iters // cfg.rounds, gap_s, cfg.py_thr_s / cfg.rounds,
                          phases, ob, dict(env, **extra))
        row[f"send_{key}_ns"] = summary(load(ob + ".send"))
        row[f"latency_{key}_ns"] = summary(load(ob + ".lat"))
    row["delivered_spin_per_s"] = rx.get("frames", 0) / rx["seconds"] if rx.get("seconds") else float("nan")
    row["cpu_per_frame_spin_ns"] = cpu_per_frame(wx, rx)


def cpu_per_frame(writer: dict, reader: dict) -> float:
    """Throughput phase: CPU time (all threads) per frame the writer sent, plus
    the reader's per distinct frame it received (its duplicates are its cost)."""
    pub, got = writer.get("published", 0), reader.get("frames", 0)
    return (writer.get("cpu_ns", 0) / pub if pub else float("nan")) + (
        reader.get("cpu_ns", 0) / got if got else float("nan"))


def bench_attach(cfg, bin_dir, tmp, res):
    o = os.path.join(tmp, "attach")
    subprocess.run([os.path.join(bin_dir, "attach"), f"ba{os.getpid()}", str(cfg.attach_iters), o],
                   check=True, timeout=300)
    c = {k: summary(load(f"{o}.{k}")) for k in ("create", "open", "unlink", "sw", "sr")}
    p = subprocess.run([sys.executable, ATTACH_PY, f"bq{os.getpid()}", str(cfg.attach_iters)],
                       check=True, capture_output=True, text=True, timeout=300)
    py = json.loads(p.stdout.splitlines()[-1])
    res["attach"] = {"c": c, "python": {k: summary(v) for k, v in py.items()}}


def bench_fanout(cfg, bin_dir, tmp, res):
    exe = os.path.join(bin_dir, "stream")
    configs = [(mode, n) for mode in ("latest", "all") for n in cfg.fanout]
    lp = {c: [] for c in configs}
    cpu = {c: [] for c in configs}
    rows = {}
    # The configurations take turns, so drift in the machine's state hits
    # them alike; the last round also measures throughput.
    for last in [False] * (ROUNDS - 1) + [True]:
        for mode, n in configs:
            name = f"bf{os.getpid()}"
            o = os.path.join(tmp, f"fan.{mode}.{n}")
            phases = "lt" if last else "l"
            iters = str(max(1, cfg.stream_iters // 2 // ROUNDS))
            wr, rd = run_group(
                [exe, "writer", name, "480x640x3", mode, str(n), iters, str(cfg.stream_gap_ns),
                 str(cfg.thr_s), phases, o],
                [[exe, "reader", name, mode, iters, phases, o]] * n)
            lp[mode, n] += load(o + ".loanpub")
            cpu[mode, n] += load(o + ".loanpub_cpu")
            if last:
                rates = [r.get("frames", 0) / max(r.get("seconds", 1), 1e-9) for r in rd]
                rows[mode, n] = {
                    "mode": mode, "readers": n,
                    "loan_publish_ns": summary(lp[mode, n]),
                    "loan_publish_cpu_ns": summary(cpu[mode, n]),
                    "published_per_s": wr.get("published", 0) / max(wr.get("seconds", 1), 1e-9),
                    "delivered_per_s_min": min(rates), "delivered_per_s_mean": sum(rates) / len(rates),
                }
    rows = [rows[c] for c in configs]
    for r in rows:
        one = next(x for x in rows if x["mode"] == r["mode"] and x["readers"] == cfg.fanout[0])
        r["publish_vs_1_reader"] = r["loan_publish_ns"]["p50"] / one["loan_publish_ns"]["p50"]
        r["publish_cpu_vs_1_reader"] = (r["loan_publish_cpu_ns"]["p50"]
                                        / one["loan_publish_cpu_ns"]["p50"])
    res["fanout"] = rows


PACED = [(30, "640x480x3", "480x640x3"), (30, "1920x1080x3", "1080x1920x3"),
         (240, "640x480x3", "480x640x3"), (240, "1920x1080x3", "1080x1920x3")]
# The paced methods: shmlane's readers asleep in receive, and with the
# predictive wait; the limits, a raw futex wake-up (FUTEX_WAIT, and
# futex_waitv on three words with a time-out as a stream reader sleeps)
# after the same fill; iceoryx2's Python binding.
PACED_METHODS = ("c", "c-auto", "shmlane", "shmlane-auto", "shmlane-auto-cw", "futex", "waitv", "iceoryx2")
# The paced methods behind bench/c/stream's writer: whether the reader is
# Python (bench/py/paced_reader.py), and its environment.
PACED_C_WRITER = {"c": (False, {}), "c-auto": (False, {"BENCH_SPIN": "auto"}),
                  "shmlane-auto-cw": (True, {"BENCH_READER_SPIN": "auto"})}
# The first frames of each paced run are left out, from the latencies and the
# CPU time of both processes alike: at least PACED_WARMUP (the predictive
# wait learns the pace from them) and PACED_SETTLE_S worth (the start-up's
# tail: NumPy's OpenBLAS thread spins for about 0.1 s of CPU after its
# import, and each slot's pages are touched first; neither is a cost per frame).
PACED_WARMUP = 3
PACED_SETTLE_S = 0.3


def paced_warmup(cfg, fps: int) -> int:
    return max(PACED_WARMUP, math.ceil(cfg.paced_settle_s * fps))


def paced_cpu(writer: dict, reader: dict) -> tuple:
    """Paced phase after the warm-up: CPU time (all threads) per frame of the
    writer's and the reader's process."""
    return tuple(p.get("lat_cpu_ns", float("nan")) / max(p.get("lat_cpu_frames", 0), 1)
                 for p in (writer, reader))


def paced_run(bin_dir, tmp, fps, frame, iters, warm, m):
    """One paced run: frames exactly 1/fps apart on an absolute schedule, as a
    camera, the writer filling each in its slot (the limits: into private
    memory) before it stamps and publishes it; the reader asleep in its
    receive, or with the predictive wait. Latencies, and the CPU time per
    frame of each process, without the first `warm` frames."""
    gap_ns = -(1_000_000_000 // fps)
    name, o = f"bz{os.getpid()}", os.path.join(tmp, f"paced.{m}.{fps}.{frame}")
    latc = []  # a Python writer's: from its publish call, without its stamp's store
    if m in ("futex", "waitv"):
        size = 1
        for x in frame.split("x"):
            size *= int(x)
        lat, _ = wake_pair([os.path.join(bin_dir, "wake")], m, tmp, iters, gap_ns, f"paced.{m}", fill=size)
        return {"lat": lat[warm:]}
    if m in PACED_C_WRITER:
        for f in os.listdir(tmp):  # an earlier round's
            if f.startswith((os.path.basename(o) + ".lat.", os.path.basename(o) + ".latp.")):
                os.unlink(os.path.join(tmp, f))
        exe = os.path.join(bin_dir, "stream")
        python, spin = PACED_C_WRITER[m]
        env = dict(os.environ, BENCH_WARMUP=str(warm), **spin)
        reader = ([sys.executable, PACED_READER, name, frame, str(iters), o] if python else
                  [exe, "reader", name, "latest", str(iters), "l", o])
        wr, rd = run_group([exe, "writer", name, frame, "latest", "1", str(iters), str(gap_ns), "0", "l", o],
                           [reader], env=env)
        lat = load(os.path.join(tmp, next(p for p in os.listdir(tmp)
                                          if p.startswith(os.path.basename(o) + ".lat."))))
        latp = load(os.path.join(tmp, next(p for p in os.listdir(tmp)
                                           if p.startswith(os.path.basename(o) + ".latp."))))
    else:
        env = dict(os.environ, BENCH_POLICY="latest", BENCH_WARMUP=str(warm))
        if m == "shmlane-auto":
            env["BENCH_READER_SPIN"] = "auto"
        method = "shmlane" if m.startswith("shmlane") else m
        wr, rd = pair_run(method, name, frame, iters, gap_ns / 1e9, 0, "l", o, env)
        lat, latp = load(o + ".lat"), load(o + ".latp") if method == "shmlane" else []
        if method == "shmlane":  # every frame is acknowledged before the next: one store a latency
            store = load(o + ".store")
            assert len(store) == len(lat), (len(store), len(lat))
            latc = [x - y for x, y in zip(lat, store)]
    wcpu, rcpu = paced_cpu(wr, rd[0] if isinstance(rd, list) else rd)
    return {"lat": lat[warm:], "latp": latp[warm:], "latc": latc[warm:], "writer_cpu_ns": wcpu,
            "reader_cpu_ns": rcpu}


# Ratios of the paced table (per round, then the median): row method against
# peer method, as row / peer.
PACED_RATIOS = (("c", "futex", "p50_vs_limit"), ("waitv", "futex", "p50_vs_limit"),
                ("c", "waitv", "p50_vs_waitv"), ("shmlane", "c", "p50_vs_c"),
                ("shmlane-auto", "c-auto", "p50_vs_c"), ("shmlane-auto-cw", "c-auto", "p50_vs_c"),
                ("c-auto", "c", "p50_vs_plain"),
                ("shmlane-auto", "shmlane", "p50_vs_plain"), ("iceoryx2", "shmlane", "p50_vs_shmlane"))


def bench_paced(cfg, bin_dir, tmp, res, skipped):
    """Frames at camera rates, every method taking a turn in each of
    cfg.rounds rounds: C and Python shmlane, asleep and with the predictive
    wait, against the raw futex (the limit) and iceoryx2's Python binding
    with its event service."""
    methods = [m for m in PACED_METHODS if not (m == "iceoryx2" and "iceoryx2" in skipped)]
    rows = []
    for fps, label, frame in PACED:
        if cfg.tiny and (label != "640x480x3" or fps != 240):
            continue
        warm = paced_warmup(cfg, fps)
        iters = warm + max(3, int(cfg.paced_s * fps / cfg.rounds))
        runs = {m: [] for m in methods}
        for _ in range(cfg.rounds):
            for m in methods:
                runs[m].append(paced_run(bin_dir, tmp, fps, frame, iters, warm, m))
        for m, rs in runs.items():
            lat = [x for r in rs for x in r["lat"]]
            row = {"fps": fps, "frame": label, "method": m, "latency_ns": summary(lat),
                   "p50_rounds": [pct(r["lat"], 50) for r in rs]}
            latp = [x for r in rs for x in r.get("latp", [])]
            if latp:  # shmlane: from the time publish stored with the frame
                row["latency_publish_ns"] = summary(latp)
            latc = [x for r in rs for x in r.get("latc", [])]
            if latc:  # shmlane, a Python writer: from its publish call
                row["latency_call_ns"] = summary(latc)
            if "reader_cpu_ns" in rs[0]:
                row["writer_cpu_ns"] = statistics.median(r["writer_cpu_ns"] for r in rs)
                row["reader_cpu_ns"] = statistics.median(r["reader_cpu_ns"] for r in rs)
                row["reader_core_share"] = row["reader_cpu_ns"] * fps / 1e9
            rows.append(row)
        these = {r["method"]: r for r in rows[-len(runs):]}
        for m, peer, key in PACED_RATIOS:
            if m in these and peer in these:
                these[m][key] = per_round(these[m]["p50_rounds"], these[peer]["p50_rounds"])
    res["paced"] = rows


# The pace changes (stream.c's phase a): ADAPT_FPS, twice that, half that,
# then no frame for a second; readers with the predictive wait, C and Python.
ADAPT_FPS = 30
ADAPT_METHODS = ("c-auto", "shmlane-auto-cw")
ADAPT_NAMES = {"c-auto": "C", "shmlane-auto-cw": "Python"}
# Each change: the leg it begins (legs of n frames), the old period (ns), as the tables say it.
ADAPT_EVENTS = (("faster", 1, 10**9 // ADAPT_FPS, f"{ADAPT_FPS} → {2 * ADAPT_FPS} fps"),
                ("slower", 2, 10**9 // (2 * ADAPT_FPS), f"{2 * ADAPT_FPS} → {ADAPT_FPS // 2} fps"),
                ("stopped", 3, 2 * 10**9 // ADAPT_FPS, f"{ADAPT_FPS // 2} fps → no frame"))


def adapt_events(cpu: list, n: int) -> dict:
    """One run's reader CPU (thread CPU time after each frame, by number, and
    after the quiet second) as each change's cost: the CPU time of the two
    frame intervals after it (the quiet second, once the frames stopped),
    beyond what two intervals of the new pace cost when settled (the median
    over the second half of its leg)."""
    steps = [b - a if a >= 0 and b >= 0 else None for a, b in zip(cpu, cpu[1:])]
    out = {}
    for event, leg, _, _ in ADAPT_EVENTS:
        first = leg * n  # steps[first - 1]: from the leg's last frame to the next leg's first
        if event == "stopped":
            after, settled = steps[first - 1], 0
        else:
            late = [x for x in steps[first + n // 2:first + n - 1] if x is not None]
            after = (None if None in steps[first - 1:first + 1]
                     else steps[first - 1] + steps[first])
            settled = 2 * statistics.median(late) if late else None
        out[event] = {"cpu_ns": after, "settled_ns": settled,
                      "extra_ns": None if after is None or settled is None else after - settled}
    return out


def bench_adapt(cfg, bin_dir, tmp, res):
    """A writer on a 30 fps schedule goes to 60, then to 15, then stops; each
    change's cost in the CPU time of a reader with the predictive wait (issue:
    at most one frame period of spinning), every method taking a turn in each
    of cfg.rounds rounds. The readers take every frame (policy all: a reader
    late by less than the ring's 8 frames misses none, and every interval
    counts)."""
    exe, n = os.path.join(bin_dir, "stream"), cfg.adapt_frames
    rows = [{"method": m, "runs": []} for m in ADAPT_METHODS]
    for _ in range(cfg.rounds):
        for row in rows:
            python, spin = PACED_C_WRITER[row["method"]]
            name, o = f"ba{os.getpid()}", os.path.join(tmp, f"adapt.{row['method']}")
            reader = ([sys.executable, PACED_READER, name, "480x640x3", str(n), o, "a"] if python
                      else [exe, "reader", name, "all", str(n), "a", o])
            run_group([exe, "writer", name, "480x640x3", "latest", "1", str(n),
                       str(-(10**9 // ADAPT_FPS)), "0", "a", o], [reader], env=dict(os.environ, **spin))
            done = next(f for f in os.listdir(tmp) if f.startswith(os.path.basename(o) + ".adapt."))
            row["runs"].append(adapt_events(load(os.path.join(tmp, done)), n))
            os.unlink(os.path.join(tmp, done))
    for row in rows:
        for event, _, old, _ in ADAPT_EVENTS:
            done = [r[event] for r in row["runs"] if r[event]["extra_ns"] is not None]
            mid = lambda k: statistics.median(e[k] for e in done) if done else None  # noqa: E731
            row[event] = {"cpu_ns": mid("cpu_ns"), "settled_ns": mid("settled_ns"),
                          "extra_ns": mid("extra_ns"),
                          "extra_max_ns": max(e["extra_ns"] for e in done) if done else None,
                          "old_period_ns": old, "rounds": len(done)}
    res["adapt"] = rows


# How the writer dies (tests/c/test_stream_death.c's cases): SIGKILLed alone;
# its process group SIGKILLed, one more reader in it (a container stop); with a
# reader thread of its own. The readers counted are the others, which must all
# be told.
DEATH_CASES = ("plain", "group", "thread")
DEATH_P99_MS = 50  # docs/reliability.md's promise, at every size and in every case


def bench_death(cfg, bin_dir, tmp, res):
    """Writer SIGKILLed while N readers sleep in receive (C, and Python), in
    each of DEATH_CASES: when each learnt of it (WRITER_GONE, WriterGone),
    from the kill. Rounds alternate the cells."""
    exe = os.path.join(bin_dir, "death")
    out = {}
    for _ in range(cfg.death_rounds):
        for case in DEATH_CASES:
            for lang in ("c", "python"):
                for n in cfg.death:
                    out.setdefault((case, lang, n), []).extend(death_run(exe, case, lang, n))
    order = {c: i for i, c in enumerate(DEATH_CASES)}
    res["death"] = [{"case": case, "readers": n, "lang": lang, "latency_ns": summary(v), "told": len(v),
                     "killed": n * cfg.death_rounds, "rounds": cfg.death_rounds}
                    for (case, lang, n), v in sorted(out.items(), key=lambda kv: (order[kv[0][0]], kv[0][1:]))]


def asleep_in_futex(pid: int, tid: int = 0, timeout: float = 30) -> bool:
    """Whether thread tid (0: the main thread) of process pid sleeps in futex or futex_waitv."""
    deadline = time.monotonic() + timeout
    path = f"/proc/{pid}/task/{tid or pid}/syscall"
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                if f.read().split()[0] in ("202", "98", "240", "449"):  # x86_64, arm64, i386; waitv
                    return True
        except (OSError, IndexError):
            pass
        time.sleep(0.002)
    return False


def death_run(exe, case, lang, n):
    """One kill: the times (ns) from the kill to each of the n readers' WriterGone."""
    name = f"bd{os.getpid()}"
    group = case == "group"
    # (preexec_fn rather than process_group=: Python < 3.11 too)
    w = subprocess.Popen([exe, "writer", name, str(n)] + (["thread"] if case == "thread" else []),
                         stdout=subprocess.PIPE, text=True, preexec_fn=os.setpgrp if group else None)
    readers, doomed = [], []
    try:
        said = w.stdout.readline().split()
        assert said[:1] == ["ready"], said
        cmd = [exe, "reader", name] if lang == "c" else [sys.executable, DEATH_PY, name]
        start = lambda join=None: subprocess.Popen(  # noqa: E731
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=join)
        doomed = [start(lambda: os.setpgid(0, w.pid))] if group else []  # dies with the writer's group
        readers = [start() for _ in range(n)]
        for r in doomed + readers:
            assert r.stdout.readline().strip() == "ready"
            assert asleep_in_futex(r.pid)
        if said[1] != "0":  # the writer's own reader thread
            assert asleep_in_futex(w.pid, int(said[1]))
        killed = time.monotonic_ns()
        if group:
            os.killpg(w.pid, signal.SIGKILL)
        else:
            os.kill(w.pid, signal.SIGKILL)
        took = []
        for r in readers:
            line = r.stdout.readline().split()
            if line[:1] == ["gone"]:
                took.append(int(line[1]) - killed)
        for r in readers:  # all have told: now they may exit
            r.stdin.close()
            r.wait(timeout=60)
        assert all(d.wait(timeout=60) == -signal.SIGKILL for d in doomed), "a reader outlived its group"
        return took
    finally:
        for p in [w] + doomed + readers:
            if p.poll() is None:
                p.kill()
            p.wait()
        import shmlane  # the killed writer leaves its stream

        try:
            shmlane.unlink(name)
        except Exception:
            pass


def task_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of a process."""
    n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                n += sum(int(x.split()[1]) for x in f if "ctxt_switches" in x)
        except OSError:
            pass
    return n


def bench_idle(cfg, bin_dir, tmp, res, skipped):
    """Wake-ups per second of a reader waiting on a stream whose writer lives
    but publishes nothing: the context switches of every thread of the
    reader's process over idle_s seconds. With the predictive wait too, from
    the start and after 30 frames at 30 fps that taught it a pace."""
    exe = os.path.join(bin_dir, "stream")
    hour = str(3600 * 10**9)  # the writer's pause before its one frame: never reached
    cam = str(-(10**9 // 30))  # 30 frames on a 30 fps schedule, then nothing (the reader waits for a 31st)
    auto_c, auto_py = {"BENCH_SPIN": "auto"}, {"BENCH_READER_SPIN": "auto"}
    c_idle = ([exe, "writer", "{n}", "64", "latest", "1", "1", hour, "0", "l", "{o}"],
              [exe, "reader", "{n}", "latest", "1", "l", "{o}"])
    c_paced = ([exe, "writer", "{n}", "64", "latest", "1", "30", cam, "0", "l", "{o}"],
               [exe, "reader", "{n}", "latest", "31", "l", "{o}"])
    py = lambda m, iters, gap, reads: (  # noqa: E731
        [sys.executable, PAIR, "writer", m, "{n}", "64", str(iters), gap, "0", "l", "{o}"],
        [sys.executable, PAIR, "reader", m, "{n}", "64", str(reads), "l", "{o}"])
    setups = [("c", *c_idle, {}, 0.0), ("c-auto", *c_idle, auto_c, 0.0),
              ("c-auto-paced", *c_paced, auto_c, 1.0), ("shmlane", *py("shmlane", 1, "3600", 1), {}, 0.0),
              ("shmlane-auto", *py("shmlane", 1, "3600", 1), auto_py, 0.0),
              ("shmlane-auto-paced", *py("shmlane", 30, str(-1 / 30), 31), auto_py, 1.0)]
    if "iceoryx2" not in skipped:
        setups.append(("iceoryx2", *py("iceoryx2", 1, "3600", 1), {}, 0.0))
    if cfg.tiny:
        setups = [x for x in setups if x[0] in ("c", "c-auto", "shmlane", "shmlane-auto")]
    rows = []
    for m, wcmd, rcmd, extra, paced_s in setups:
        env = dict(os.environ, BENCH_POLICY="latest", BENCH_RECV_TIMEOUT="3600", **extra)
        name, o = f"bi{os.getpid()}", os.path.join(tmp, f"idle.{m}")
        fill = lambda cmd: [x.format(n=name, o=o) for x in cmd]  # noqa: E731
        if m == "iceoryx2":  # what is there before the pair, to be left alone after its kill
            iox2_before = json.loads(subprocess.run(
                [sys.executable, "-c", "import iox2_method, json; print(json.dumps(sorted(iox2_method.files())))"],
                cwd=os.path.join(HERE, "py"), check=True, capture_output=True, text=True).stdout)
        w = subprocess.Popen(fill(wcmd), stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert w.stdout.readline().strip() == "ready", m
            r = subprocess.Popen(fill(rcmd), stdout=subprocess.DEVNULL, env=env)
            time.sleep(cfg.idle_settle_s + paced_s)  # opened, paced if it is, and asleep
            a, t0 = task_switches(r.pid), time.monotonic()
            time.sleep(cfg.idle_s)
            b, t1 = task_switches(r.pid), time.monotonic()
            rows.append({"method": m, "seconds": t1 - t0, "switches": b - a,
                         "wakeups_per_s": (b - a) / (t1 - t0)})
        finally:
            for p in (w, locals().get("r")):
                if p:
                    p.kill()
                    p.wait()
            import shmlane  # the killed pair leaves its stream and control segment
            for n in (name, name + ".c"):
                try:
                    shmlane.unlink(n)
                except Exception:
                    pass
            if m == "iceoryx2":
                subprocess.run([sys.executable, "-c", "import iox2_method, json, sys; "
                                "iox2_method.clean_after_kill(json.loads(sys.argv[1]))", json.dumps(iox2_before)],
                               cwd=os.path.join(HERE, "py"), check=False, capture_output=True)
    res["idle"] = rows


# ---------------------------------------------------------------- report


def machine() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version(), "commit": commit,
            "loadavg_before": os.getloadavg()[0]}


def us(ns: float) -> str:
    if ns != ns:
        return "–"
    return f"{ns / 1000:.2f}" if ns < 100_000 else f"{ns / 1000:.0f}"


def ratio(x: float) -> str:
    return "–" if x != x else (f"{x:.2f}×" if x < 100 else f"{x:.0f}×")


def spread_text(st: dict) -> str:
    """A median ratio and its spread over the rounds: 1.44× (1.20–1.60)."""
    if not st or st.get("n", 0) == 0:
        return "–"
    if st["n"] == 1:
        return ratio(st["median"])
    return f"{ratio(st['median'])} ({st['min']:.2f}–{st['max']:.2f})"


def targets(res: dict) -> list:
    """Each verdict from the median of per-round ratios (their spread shown)."""
    out = []
    nan = float("nan")
    w = res.get("wake_c")
    if w:
        st = w["shl"]["p50_vs_peer"]
        out.append(("wake-up p50 within 1.2× raw futex", spread_text(st), st["median"] <= 1.2))
        st = w["shlspin"]["p50_vs_peer"]
        out.append(("spinning wait (spin_ns) p50 within 1.5× of a spin on a cache line", spread_text(st),
                    st["median"] <= 1.5))
    big = [r for r in res.get("stream_c", []) if r["frame"] == "1920x1080x3"]
    for r in big:
        out.append((f"C per-frame IPC cost at 1920x1080x3 < 1% of one memcpy ({r['mode']}, readers asleep)",
                    f"{100 * r['ipc_vs_memcpy']:.2f}%", r["ipc_vs_memcpy"] < 0.01))
        out.append((f"same, counting the writer's CPU time, not time preempted ({r['mode']}, readers asleep)",
                    f"{100 * r['ipc_cpu_vs_memcpy']:.2f}%", r["ipc_cpu_vs_memcpy"] < 0.01))
        out.append((f"same, readers already awake (polling) ({r['mode']})",
                    f"{100 * r['ipc_polled_vs_memcpy']:.3f}%", r["ipc_polled_vs_memcpy"] < 0.01))
    py = {(r["method"], r["frame"]): r for r in res.get("python", [])}
    for r in res.get("stream_c", []):
        if r["mode"] != "latest":
            continue
        p = py.get(("shmlane", r["frame"]))
        if p:
            d = p["send_polled_ns"]["p50"] + p["recv_ns"]["p50"] - r["ipc_polled_ns_p50"]
            out.append((f"Python overhead < 3 µs on top of C ({r['frame']}, loan+publish+receive+release "
                        "p50, reader polling)", f"{d / 1000:.2f} µs", d < 3000))
            d = p["cost_ns_p50"] - r["ipc_ns_p50"]
            out.append((f"same, reader asleep, writer paced by sleeping ({r['frame']})",
                        f"{d / 1000:.2f} µs", d < 3000))
    keys = ("cost_vs_shmlane", "polled_cost_vs_shmlane", "cpu_vs_shmlane")
    for (m, frame), r in py.items():
        if not m.startswith("shmlane") and all(k in r for k in keys):
            v = [r[k] for k in keys]
            out.append((f"ahead of {m} ({frame}): per-frame cost / polled cost / CPU per distinct frame "
                        "(median of rounds, spread)", " / ".join(spread_text(x) for x in v),
                        all(x["median"] > 1 for x in v)))
    # Small messages: distinct messages per second and CPU per distinct
    # message, against the best peer of the run (zero-copy calls and copying ones).
    for own in ("shmlane", "shmlane-copy"):
        mine = py.get((own, "64 B"))
        peers = [r for (m, f), r in py.items() if f == "64 B" and not m.startswith("shmlane")]
        if not mine or not peers:
            continue
        for r in peers:
            rate = per_round(mine["round_figures"]["rate"], r["round_figures"]["rate"])
            cpu = per_round(r["round_figures"]["cpu"], mine["round_figures"]["cpu"])
            out.append((f"64 B, {own}: distinct messages/s and CPU per distinct message at least "
                        f"{r['method']}'s (shmlane / {r['method']}, {r['method']} / shmlane)",
                        f"{spread_text(rate)} / {spread_text(cpu)}",
                        rate["median"] >= 1 and cpu["median"] >= 1))
    s = py.get(("seed", "1920x1080x3"))
    if s and "cost_vs_shmlane" in s:
        v = [s[k]["median"] for k in keys]
        out.append(("≥100× less per-frame cost than the seed recipe at 1920x1080x3 (cost / polled cost / CPU)",
                    " / ".join(ratio(x) for x in v), min(v) >= 100))
    for r in res.get("paced", []):
        where = f"{r['fps']} fps, {r['frame']}"
        if r["method"] in ("c-auto", "shmlane-auto", "shmlane-auto-cw"):
            who = {"c-auto": "C", "shmlane-auto": "Python", "shmlane-auto-cw": "Python behind a C writer"}[
                r["method"]]
            lc = r.get("latency_call_ns", r["latency_ns"])["p50"]  # a C writer: the stamp is its call
            out.append((f"predictive wait, {who}, {where}: p50 publish → reader ≤ 5 µs (from the "
                        "publish call)", f"{us(lc)} µs", lc <= 5000))
            lp = r.get("latency_publish_ns", {}).get("p50", nan)
            out.append((f"same, from the time publish stored with the frame", f"{us(lp)} µs", lp <= 5000))
            if r["fps"] == 30:
                share = r.get("reader_core_share", nan)
                out.append((f"predictive wait, {who}, {where}: reader CPU ≤ 2% of a core",
                            f"{100 * share:.2f}%", share <= 0.02))
        if r["method"] == "c" and "p50_vs_limit" in r:
            st = r["p50_vs_limit"]
            out.append((f"paced C, reader asleep, {where}: p50 ≤ 1.1× a raw futex wake-up after the same fill",
                        spread_text(st), st["median"] <= 1.1))
    for r in res.get("adapt", []):
        for event, _, _, says in ADAPT_EVENTS:
            e = r[event]
            worst = e["extra_max_ns"]
            out.append((f"predictive wait, {ADAPT_NAMES[r['method']]}, {says}: extra CPU "
                        "at most one frame period of the old pace (worst round)",
                        "–" if worst is None else f"{us(worst)} µs of {us(e['old_period_ns'])} µs",
                        worst is not None and e["rounds"] == len(r["runs"])
                        and worst <= e["old_period_ns"]))
    for r in res.get("idle", []):
        out.append((f"idle reader ({r['method']}) makes no wake-up", f"{r['wakeups_per_s']:.2f}/s",
                    r["switches"] == 0))
    case = {"plain": "", "group": ", its group with a reader", "thread": ", with a reader thread"}
    for r in res.get("death", []):
        who = f"{r['readers']} {r['lang']} readers"
        out.append((f"writer SIGKILLed{case[r.get('case', 'plain')]}: every one of {who} told",
                    f"{r['told']} of {r['killed']}", r["told"] == r["killed"]))
        p99 = r["latency_ns"].get("p99", float("nan"))
        out.append((f"same: p99 ≤ {DEATH_P99_MS} ms", f"{p99 / 1e6:.2f} ms", p99 <= DEATH_P99_MS * 1e6))
    fan = res.get("fanout", [])
    for mode in ("latest", "all"):
        rows = [r for r in fan if r["mode"] == mode]
        if len(rows) > 1:
            worst = max(r["publish_cpu_vs_1_reader"] for r in rows)
            out.append((f"publish cost flat 1→{rows[-1]['readers']} readers ({mode}; readers asleep; "
                        "writer's CPU time)", f"{worst:.2f}× of 1 reader", worst < 1.5))
            worst = max(r["publish_vs_1_reader"] for r in rows)
            out.append((f"same, wall-clock time (includes being preempted by the readers it woke)",
                        f"{worst:.2f}× of 1 reader", worst < 1.5))
    return [{"target": t, "value": v, "met": bool(m)} for t, v, m in out]


def markdown(res: dict) -> str:
    L = []
    m = res["machine"]
    L.append(f"# shmlane benchmarks ({'QUICK' if res['quick'] else 'full'} run)\n")
    L.append(f"{m['nproc']} CPUs, {m['cpu']}, Linux {m['kernel']}, Python {m['python']}, "
             f"commit {m['commit']}, {res['runtime_s']:.0f} s, 1-min load average {m['loadavg_before']:.2f} "
             f"before and {m['loadavg_after']:.2f} after (the run itself loads both CPUs; "
             "anything else running skews the tails). Times in µs, p50 unless said. "
             "Comparisons: the methods take turns in rounds (A B A B ...), and a ratio is the median of "
             "the rounds' ratios with their spread, min–max, in brackets; every verdict uses the median. "
             "Ratios read above 1: shmlane ahead (costs, latency, CPU: other / shmlane; rates: "
             "shmlane / other).\n")
    w = res.get("wake_c")
    if w:
        L.append("## Wake-up latency, one way (writer signal → blocked reader returns), C and Python\n")
        L.append(f"{ROUNDS} rounds. *p50 / peer*: against the raw futex (sleeping waits), the cache line "
                 "(spinning ones), shmlane's C call (Python).\n")
        L.append("| method | p50 | p99 | p99.9 | signal call p50 | p50 / peer |")
        L.append("| --- | --- | --- | --- | --- | --- |")
        rows = [(w[k], label) for k, label in (
            ("shl", "shmlane shl_notify → shl_wait"), ("futex", "raw futex wake → wait"),
            ("shlspin", "shmlane, shl_wait_ex spinning up to 1 ms"), ("spin", "spin on a shared cache line"))]
        p = res.get("wake_py", {})
        rows += [(p[k], label) for k, label in (("shl", "Python: Segment.notify → Segment.wait"),
                                                ("shlspin", "Python: Segment.wait(spin=0.001)")) if k in p]
        for v, label in rows:
            st, g = v["latency_ns"], v["signal_ns"]
            L.append(f"| {label} | {us(st['p50'])} | {us(st['p99'])} | {us(st['p99.9'])} | {us(g['p50'])} "
                     f"| {spread_text(v.get('p50_vs_peer'))} |")
        L.append("")
    if res.get("stream_c"):
        L.append("## Frame streams, C, writer and reader in two processes\n")
        L.append("IPC cost = loan+publish (reader asleep, so publish wakes it) + receive+release. "
                 "*polled*: the same with the reader already awake and polling.\n")
        L.append("| frame | mode | loan+publish | (writer CPU time in it) | receive+release | IPC cost | "
                 "memcpy of the frame | IPC / memcpy | IPC polled / memcpy | latency p50 / p99 / p99.9 | "
                 "max frames/s published / delivered |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in res["stream_c"]:
            lat = r["latency_ns"]
            L.append(f"| {r['frame']} | {r['mode']} | {us(r['loan_publish_ns']['p50'])} | "
                     f"{us(r['loan_publish_cpu_ns']['p50'])} | {us(r['receive_release_ns']['p50'])} | {us(r['ipc_ns_p50'])} | {us(r['memcpy_ns']['p50'])} | "
                     f"{100 * r['ipc_vs_memcpy']:.2f}% | {100 * r['ipc_polled_vs_memcpy']:.3f}% | "
                     f"{us(lat['p50'])} / {us(lat['p99'])} / {us(lat['p99.9'])} | "
                     f"{r['published_per_s']:.0f} / {r['delivered_per_s']:.0f} |")
        L.append("")
    if res.get("python"):
        L.append("## Python: shmlane and the alternatives, two processes\n")
        L.append("cost = writer send (reader asleep) + reader receive (reader polling), p50; polled cost: "
                 "send also with the reader polling (nobody to wake). Throughput phase: *distinct frames/s* "
                 "counts each frame once (by its sequence number, frame counter or stamp); *duplicates*: "
                 "the share of a reader's receives that gave a frame it already had (a counting "
                 "semaphore's extra posts); CPU per frame: user+system time of both processes, all "
                 "threads, per frame sent plus per distinct frame received. Ratios: median of the rounds "
                 "(spread), above 1: shmlane ahead.\n")
        shown = dict.fromkeys(r["method"] for r in res["python"])
        L.extend(f"- {m}: {DESCRIBE[m]}" for m in shown)
        L.append("")
        L.append("| frame | method | send | send (reader polling) | receive | cost | cost ratio | "
                 "polled cost ratio | latency p50 / p99 | latency ratio | distinct frames/s | duplicates | "
                 "rate ratio | CPU per frame | CPU ratio |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in res["python"]:
            L.append(f"| {r['frame']} | {r['method']} | {us(r['send_ns']['p50'])} | "
                     f"{us(r['send_polled_ns'].get('p50', float('nan')))} | {us(r['recv_ns']['p50'])} | "
                     f"{us(r['cost_ns_p50'])} | {spread_text(r.get('cost_vs_shmlane'))} | "
                     f"{spread_text(r.get('polled_cost_vs_shmlane'))} | "
                     f"{us(r['latency_ns']['p50'])} / {us(r['latency_ns']['p99'])} | "
                     f"{spread_text(r.get('latency_vs_shmlane'))} | {r['distinct_per_s']:.0f} | "
                     f"{100 * r['duplicate_share']:.0f}% | {spread_text(r.get('rate_vs_shmlane'))} | "
                     f"{us(r['cpu_per_frame_ns'])} | {spread_text(r.get('cpu_vs_shmlane'))} |")
        L.append("")
        L.append("shmlane Python loan+publish p50 depending on what the writer did before it:\n")
        L.append("| frame | slept the gap (reader asleep) | busy-waited the gap (reader asleep) | "
                 "reader polling (no wake-up) | reader spinning, Reader(spin=0.001) | C, reader asleep | "
                 "C, reader polling | latency p50: reader asleep / spinning | distinct frames/s, "
                 "CPU per frame: reader spinning |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        cr = {r["frame"]: r for r in res.get("stream_c", []) if r["mode"] == "latest"}
        for r in res["python"]:
            if r["method"] == "shmlane" and "send_busy_ns" in r:
                c = cr.get(r["frame"])
                nan = float("nan")
                L.append(f"| {r['frame']} | {us(r['send_ns']['p50'])} | {us(r['send_busy_ns'].get('p50', nan))} | "
                         f"{us(r['send_polled_ns'].get('p50', nan))} | {us(r['send_spin_ns'].get('p50', nan))} | "
                         f"{us(c['loan_publish_ns']['p50']) if c else '–'} | "
                         f"{us(c['loan_publish_polled_ns']['p50']) if c else '–'} | "
                         f"{us(r['latency_ns']['p50'])} / {us(r['latency_spin_ns'].get('p50', nan))} | "
                         f"{r['delivered_spin_per_s']:.0f}, {us(r['cpu_per_frame_spin_ns'])} |")
        L.append("")
    a = res.get("attach")
    if a:
        L.append("## Open/attach cost (480x640x3 uint8; stream: 8 slots)\n")
        L.append("| operation | C p50 | Python p50 | Python / C |")
        L.append("| --- | --- | --- | --- |")
        for k, label in (("create", "create + close"), ("open", "open by name + typed view + close"),
                         ("sw", "stream: writer open (create) + close"), ("sr", "stream: reader open + close")):
            c, p = a["c"][k]["p50"], a["python"].get(k, {}).get("p50", float("nan"))
            L.append(f"| {label} | {us(c)} | {us(p)} | {ratio(p / c)} |")
        L.append("")
    if res.get("fanout"):
        L.append("## Fan-out, C, 640x480x3: one writer, N reader processes\n")
        L.append("loan+publish with the readers asleep: wall-clock time, and the writer's own CPU time in "
                 "it (the clock also counts time the writer spends preempted by readers it woke, when "
                 "there are more processes than CPUs).\n")
        L.append("| mode | readers | loan+publish p50 | vs 1 reader | writer CPU time p50 | vs 1 reader | "
                 "max published/s | delivered/s per reader (min / mean) |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in res["fanout"]:
            L.append(f"| {r['mode']} | {r['readers']} | {us(r['loan_publish_ns']['p50'])} | "
                     f"{ratio(r['publish_vs_1_reader'])} | {us(r['loan_publish_cpu_ns']['p50'])} | "
                     f"{ratio(r['publish_cpu_vs_1_reader'])} | {r['published_per_s']:.0f} | "
                     f"{r['delivered_per_s_min']:.0f} / {r['delivered_per_s_mean']:.0f} |")
        L.append("")
    if res.get("paced"):
        L.append("## Paced like a camera (frames exactly 1/fps apart; reader asleep, or predictive)\n")
        L.append("Latency publish → the reader holds the frame (its array, in Python), from the writer's "
                 "clock just before its publish call (*p50*, *p99*: what every method is compared by), and "
                 "for shmlane also from the time publish itself stored with the frame (Sample.timestamp_ns: "
                 "without the writer's own call, which a cold Python writer pays after its sleep and fill), "
                 "and for a Python writer from the clock it reads again after storing its stamp, just "
                 "before the call (*from the call*: without the stamp's own store, a Python store "
                 "into the frame that a writer needs not make). "
                 "The first frames of each run (at least 3, from which the predictive wait learns the "
                 f"pace, and {PACED_SETTLE_S} s worth: the start-up's tail) are left out of the latencies "
                 "and of the CPU time per frame of each process (all threads, the reader's also as a share "
                 "of one core). *auto*: "
                 "shl_reader_set_spin(SHL_SPIN_AUTO) / Reader(spin=\"auto\"); *C writer*: that Python "
                 "reader behind the C programs' writer (bench/py/paced_reader.py), whose latency from the "
                 "publish call holds no Python writer's own call. *limit*: a raw futex "
                 "wake-up paced the same way after the same fill (into private memory); *futex_waitv*: "
                 "the same, the reader asleep on three words with a time-out, as a stream reader sleeps. "
                 "*iceoryx2*: its Python binding, publish-subscribe plus an event service to block on. "
                 "Ratios: median of the rounds (spread).\n")
        L.append("| fps | frame | method | p50 | p99 | p50 / p99 from the call | p50 / p99 from publish's time | "
                 "writer CPU | reader CPU | reader, % of a core | p50 / limit | p50 / futex_waitv | "
                 "Python / C | auto / asleep | iceoryx2 / shmlane |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        names = {"c": "shmlane C", "c-auto": "shmlane C, auto", "shmlane": "shmlane Python",
                 "shmlane-auto": "shmlane Python, auto",
                 "shmlane-auto-cw": "shmlane Python, auto, C writer", "futex": "limit (raw futex)",
                 "waitv": "raw futex_waitv", "iceoryx2": "iceoryx2 Python"}
        for r in res["paced"]:
            share = r.get("reader_core_share", float("nan"))
            lp, lc = r.get("latency_publish_ns"), r.get("latency_call_ns")
            from_publish = f"{us(lp['p50'])} / {us(lp['p99'])}" if lp else "–"
            from_call = f"{us(lc['p50'])} / {us(lc['p99'])}" if lc else "–"
            L.append(f"| {r['fps']} | {r['frame']} | {names[r['method']]} | {us(r['latency_ns']['p50'])} | "
                     f"{us(r['latency_ns']['p99'])} | {from_call} | {from_publish} | "
                     f"{us(r.get('writer_cpu_ns', float('nan')))} | "
                     f"{us(r.get('reader_cpu_ns', float('nan')))} | "
                     f"{'–' if share != share else f'{100 * share:.2f}%'} | "
                     f"{spread_text(r.get('p50_vs_limit'))} | {spread_text(r.get('p50_vs_waitv'))} | "
                     f"{spread_text(r.get('p50_vs_c'))} | {spread_text(r.get('p50_vs_plain'))} | "
                     f"{spread_text(r.get('p50_vs_shmlane'))} |")
        L.append("")
    if res.get("death"):
        L.append("## Death detection: writer SIGKILLed, every reader asleep in receive\n")
        L.append("From the kill to each reader's SHL_E_WRITER_GONE (C) or WriterGone (Python), in ms; "
                 "the readers are separate processes (bench/c/death.c, bench/py/death.py). Cases: "
                 "`plain`, the writer alone killed; `group`, the writer's process group killed with "
                 "one more reader in it; `thread`, the writer has a reader thread of its own. The "
                 "readers counted are the others, each told; "
                 f"{res['death'][0].get('rounds', 1)} kills per row.\n")
        L.append("| case | readers | reader | told | p50 | p99 | worst |")
        L.append("| --- | --- | --- | --- | --- | --- | --- |")
        for r in res["death"]:
            st = r["latency_ns"]
            ms = lambda x: "–" if x != x else f"{x / 1e6:.2f}"  # noqa: E731
            L.append(f"| {r.get('case', 'plain')} | {r['readers']} | "
                     f"{'C' if r['lang'] == 'c' else 'Python'} | {r['told']} of "
                     f"{r['killed']} | {ms(st.get('p50', float('nan')))} | {ms(st.get('p99', float('nan')))} | "
                     f"{ms(st.get('max', float('nan')))} |")
        L.append("")
    if res.get("adapt"):
        L.append("## The pace changes (predictive wait)\n")
        L.append(f"A C writer publishes 640x480x3 frames on a {ADAPT_FPS} fps schedule, then at twice "
                 "and at half that rate, then stops; the reader's thread CPU time in the two frame "
                 "intervals after each change (once stopped: in the second after the last frame), two "
                 "settled intervals of the new pace, and the extra beyond them, in µs: medians and the "
                 "worst extra of "
                 f"{len(res['adapt'][0]['runs'])} rounds, against one frame period of the old pace. "
                 "Below zero: cheaper than settled (until the prediction locks on the new pace the "
                 "reader sleeps instead of spinning).\n")
        L.append("| reader | change | CPU after it | settled | extra, median | extra, worst | old period |")
        L.append("| --- | --- | --- | --- | --- | --- | --- |")
        fig = lambda x: "–" if x is None else us(x)  # noqa: E731
        for r in res["adapt"]:
            for event, _, _, says in ADAPT_EVENTS:
                e = r[event]
                L.append(f"| {ADAPT_NAMES[r['method']]} | {says} | {fig(e['cpu_ns'])} | "
                         f"{fig(e['settled_ns'])} | {fig(e['extra_ns'])} | {fig(e['extra_max_ns'])} | "
                         f"{us(e['old_period_ns'])} |")
        L.append("")
    if res.get("idle"):
        L.append("## Idle readers (writer alive, no frames)\n")
        L.append("Context switches of every thread of the reader's process, per second.\n")
        L.append("| reader | wake-ups / s | switches | seconds |")
        L.append("| --- | --- | --- | --- |")
        names = {"c": "shmlane C", "c-auto": "shmlane C, auto",
                 "c-auto-paced": "shmlane C, auto, after 30 frames at 30 fps",
                 "shmlane": "shmlane Python", "shmlane-auto": "shmlane Python, auto",
                 "shmlane-auto-paced": "shmlane Python, auto, after 30 frames at 30 fps",
                 "iceoryx2": "iceoryx2 Python (event listener)"}
        for r in res["idle"]:
            L.append(f"| {names[r['method']]} | {r['wakeups_per_s']:.2f} | {r['switches']} | {r['seconds']:.1f} |")
        L.append("")
    if res.get("targets"):
        L.append("## Targets\n")
        L.append("| target | measured | met |")
        L.append("| --- | --- | --- |")
        for t in res["targets"]:
            L.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")
        L.append("")
    if res.get("skipped"):
        L.append("## Skipped\n")
        for k, v in res["skipped"].items():
            L.append(f"- {k}: {v}")
        L.append("")
    return "\n".join(L)


def plots(res: dict, raw: dict, out: str) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    made = []

    def cdf(ax, values, label):
        v = np.sort(np.asarray(values, float)) / 1000
        if len(v):
            ax.plot(v, np.arange(1, len(v) + 1) / len(v), label=label, lw=1.2)

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=90)
    for k, label in (("c.shl", "shmlane notify→wait"), ("c.futex", "raw futex"),
                     ("c.shlspin", "shmlane wait with spin"), ("c.spin", "spin (cache line)"),
                     ("py.shl", "Python notify→wait"), ("py.shlspin", "Python wait(spin=)")):
        cdf(ax, raw.get(f"wake.{k}", []), label)
    ax.set_xscale("log"), ax.set_xlabel("one-way wake-up latency (µs, log)"), ax.set_ylabel("fraction")
    ax.set_title("Wake-up latency, two processes"), ax.legend(fontsize=7), ax.grid(alpha=0.3)
    fig.tight_layout(), fig.savefig(os.path.join(out, "wake_latency.png")), plt.close(fig)
    made.append("wake_latency.png")

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=90)
    for label, _ in FRAMES:
        cdf(ax, raw.get(f"stream.c.{label}.latest.lat", []), f"C {label}")
        cdf(ax, raw.get(f"py.shmlane.{label}.lat", []), f"Python {label}")
    for m in ALTERNATIVES:
        cdf(ax, raw.get(f"py.{m}.1920x1080x3.lat", []), f"{m} 1920x1080x3")
    ax.set_xscale("log"), ax.set_xlabel("end-to-end latency, frame ready → reader holds it (µs, log)")
    ax.set_ylabel("fraction"), ax.set_title("Frame latency (shmlane latest; alternatives)")
    ax.legend(fontsize=6, ncol=2), ax.grid(alpha=0.3)
    fig.tight_layout(), fig.savefig(os.path.join(out, "stream_latency.png")), plt.close(fig)
    made.append("stream_latency.png")

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=90)
    sizes = {"64 B": 64, "640x480x3": 640 * 480 * 3, "1920x1080x3": 1920 * 1080 * 3}
    series = {}
    for r in res.get("stream_c", []):
        if r["mode"] == "latest":
            series.setdefault("shmlane C", []).append((sizes[r["frame"]], r["ipc_ns_p50"]))
            series.setdefault("one memcpy (C)", []).append((sizes[r["frame"]], r["memcpy_ns"]["p50"]))
    for r in res.get("python", []):
        series.setdefault(r["method"] if r["method"] != "shmlane" else "shmlane Python", []).append(
            (sizes[r["frame"]], r["cost_ns_p50"]))
    for k, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] / 1000 for p in pts], marker="o", ms=3, lw=1.2, label=k,
                ls="--" if "memcpy" in k else "-")
    ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("frame size (bytes)")
    ax.set_ylabel("per-frame IPC cost, p50 (µs)"), ax.set_title("Per-frame cost vs frame size")
    ax.legend(fontsize=6, ncol=2), ax.grid(alpha=0.3)
    fig.tight_layout(), fig.savefig(os.path.join(out, "cost_vs_size.png")), plt.close(fig)
    made.append("cost_vs_size.png")

    if res.get("fanout"):
        fig, ax = plt.subplots(figsize=(6, 3.2), dpi=90)
        for mode in ("latest", "all"):
            rows = [r for r in res["fanout"] if r["mode"] == mode]
            ax.plot([r["readers"] for r in rows], [r["loan_publish_ns"]["p50"] / 1000 for r in rows],
                    marker="o", label=f"loan+publish p50, {mode}")
            ax.plot([r["readers"] for r in rows], [r["loan_publish_cpu_ns"]["p50"] / 1000 for r in rows],
                    marker="s", linestyle="--", label=f"writer CPU time in it, {mode}")
        ax.set_xlabel("reader processes"), ax.set_ylabel("µs"), ax.set_title("Fan-out: writer's publish cost")
        ax.legend(fontsize=8), ax.grid(alpha=0.3)
        fig.tight_layout(), fig.savefig(os.path.join(out, "fanout.png")), plt.close(fig)
        made.append("fanout.png")
    return made


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-bench", "c", "bench"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--no-install", action="store_true", help="skip comparisons not importable")
    ap.add_argument("--only", default="", help="comma-separated steps to run (wake, stream_c, python, "
                    "attach, fanout, paced, adapt, idle, death); default: all")
    args = ap.parse_args()
    cfg = Config(args.quick or args.tiny, args.tiny)
    os.makedirs(args.out, exist_ok=True)
    start = time.monotonic()
    res = {"machine": machine(), "quick": cfg.quick, "tiny": cfg.tiny, "skipped": {}}
    raw: dict = {}
    with tempfile.TemporaryDirectory(prefix="shlbench.") as tmp:
        for step, fn in (("wake", lambda: bench_wake(cfg, args.bin, tmp, res, raw)),
                         ("stream_c", lambda: bench_stream_c(cfg, args.bin, tmp, res, raw)),
                         ("python", lambda: bench_python(cfg, tmp, res, raw, res["skipped"], not args.no_install)),
                         ("attach", lambda: bench_attach(cfg, args.bin, tmp, res)),
                         ("fanout", lambda: bench_fanout(cfg, args.bin, tmp, res)),
                         ("paced", lambda: bench_paced(cfg, args.bin, tmp, res, res["skipped"])),
                         ("adapt", lambda: bench_adapt(cfg, args.bin, tmp, res)),
                         ("idle", lambda: bench_idle(cfg, args.bin, tmp, res, res["skipped"])),
                         ("death", lambda: bench_death(cfg, args.bin, tmp, res))):
            if args.only and step not in args.only.split(","):
                continue
            t = time.monotonic()
            print(f"bench: {step} ...", file=sys.stderr, flush=True)
            fn()
            print(f"bench: {step} {time.monotonic() - t:.1f} s", file=sys.stderr, flush=True)
    res["targets"] = targets(res)
    res["runtime_s"] = time.monotonic() - start
    res["machine"]["loadavg_after"] = os.getloadavg()[0]
    with open(os.path.join(args.out, "latest.json"), "w") as f:
        json.dump(res, f, indent=1)
    md = markdown(res)
    if not args.no_plots:
        res["plots"] = plots(res, raw, args.out)
        md += "\n" + "\n".join(f"![{p}]({p})" for p in res["plots"]) + "\n"
        with open(os.path.join(args.out, "latest.json"), "w") as f:
            json.dump(res, f, indent=1)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(md)
    print(md)
    print(f"bench: wrote {args.out}/latest.json, latest.md; {res['runtime_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PAIR = os.path.join(HERE, "py", "pair.py")
ATTACH_PY = os.path.join(HERE, "py", "attach.py")
WAKE_PY = os.path.join(HERE, "py", "wake.py")
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
    "zmq": "pyzmq PUSH/PULL over ipc://, copy=False",
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
            self.paced_s, self.idle_s = 0.1, 0.3
        elif quick:
            self.wake_iters, self.wake_gap_ns, self.py_wake_iters = 1500, 150_000, 500
            self.stream_iters, self.stream_gap_ns, self.thr_s = 300, 300_000, 0.3
            self.py_iters, self.py_thr_s, self.alt_iters = 150, 0.3, 40
            self.fanout = [1, 4]
            self.attach_iters = 50
            self.frames = FRAMES
            self.paced_s, self.idle_s = 1.5, 3.0
        else:
            self.wake_iters, self.wake_gap_ns, self.py_wake_iters = 10000, 200_000, 3000
            self.stream_iters, self.stream_gap_ns, self.thr_s = 2000, 500_000, 1.0
            self.py_iters, self.py_thr_s, self.alt_iters = 1000, 1.0, 250
            self.fanout = [1, 2, 4, 8]
            self.attach_iters = 300
            self.frames = FRAMES
            self.paced_s, self.idle_s = 8.0, 10.0


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


def summary(values: list) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p99": pct(values, 99),
        "p99.9": pct(values, 99.9),
        "mean": sum(values) / len(values),
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
            for q in readers + [w]:
                q.kill()
            raise RuntimeError(f"timed out: {writer_cmd}")
        if p.returncode != 0:
            raise RuntimeError(f"{p.args[:3]} exited {p.returncode}")
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


def wake_pair(program, method, tmp, iters, gap_ns, key):
    """One wake-up run: the reader (started first) creates the segment.
    Returns the latencies and the writer's signal times."""
    name = f"bw{os.getpid()}"
    f, fw = os.path.join(tmp, f"wake.{key}"), os.path.join(tmp, f"wake.{key}.w")
    r = subprocess.Popen(program + ["reader", method, name, str(iters), f], stdout=subprocess.PIPE,
                         text=True)
    assert r.stdout.readline().strip() == "ready"
    subprocess.run(program + ["writer", method, name, str(iters), str(gap_ns), fw], check=True,
                   timeout=300)
    r.wait(timeout=60)
    return load(f), load(fw)


def wake_methods(program, methods, tmp, iters, gap_ns, prefix, raw):
    lat = {m: [] for m in methods}
    sig = {m: [] for m in methods}
    for _ in range(ROUNDS):
        for m in methods:
            a, b = wake_pair(program, m, tmp, max(1, iters // ROUNDS), gap_ns, f"{prefix}.{m}")
            lat[m] += a
            sig[m] += b
    for m in methods:
        raw[f"wake.{prefix}.{m}"] = lat[m]
    return {m: {"latency_ns": summary(lat[m]), "signal_ns": summary(sig[m])} for m in methods}


def bench_wake(cfg, bin_dir, tmp, res, raw):
    out = wake_methods([os.path.join(bin_dir, "wake")], ("shl", "futex", "shlspin", "spin"), tmp,
                       cfg.wake_iters, cfg.wake_gap_ns, "c", raw)
    for m in ("shl", "spin"):
        out[m]["p50_vs_futex"] = out[m]["latency_ns"]["p50"] / out["futex"]["latency_ns"]["p50"]
    out["shlspin"]["p50_vs_spin"] = out["shlspin"]["latency_ns"]["p50"] / out["spin"]["latency_ns"]["p50"]
    res["wake_c"] = out
    res["wake_py"] = wake_methods([sys.executable, WAKE_PY], ("shl", "shlspin"), tmp,
                                  cfg.py_wake_iters, cfg.wake_gap_ns, "py", raw)


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


def bench_python(cfg, tmp, res, raw, skipped, install=True):
    rows = []
    methods = ["shmlane", "shmlane-copy"] + list(ALTERNATIVES)
    usable = []
    for m in methods:
        why = None if m.startswith("shmlane") else ensure_module(m, install)
        if why:
            skipped[m] = why
        else:
            usable.append(m)
    for label, frame in cfg.frames:
        for m in usable:
            iters = cfg.py_iters if m == "shmlane" else cfg.alt_iters
            name = f"bp{os.getpid()}"
            o = os.path.join(tmp, f"py.{m}.{frame}")
            env = dict(os.environ, BENCH_POLICY="latest")
            try:
                wr, rd = run_group(
                    [sys.executable, PAIR, "writer", m, name, frame, str(iters),
                     str(cfg.stream_gap_ns / 1e9), str(cfg.py_thr_s), "lct", o],
                    [[sys.executable, PAIR, "reader", m, name, frame, str(iters), "lct", o]],
                    env=env)
            except RuntimeError as exc:
                if m.startswith("shmlane"):
                    raise  # our own methods are measured, never skipped
                skipped[f"{m} {label}"] = str(exc)
                continue
            send, recv, lat, fill, sendp = (load(o + x) for x in (".send", ".recv", ".lat", ".fill",
                                                                   ".send_polled"))
            raw[f"py.{m}.{label}.lat"] = lat
            row = {
                "method": m, "frame": label,
                "send_ns": summary(send), "recv_ns": summary(recv),
                "send_polled_ns": summary(sendp),  # phase c: the reader polls, nobody to wake
                "latency_ns": summary(lat),
                "fill_ns": summary(fill) if any(fill) else {"n": 0},
                "delivered_per_s": rd[0].get("frames", 0) / max(rd[0].get("seconds", 1), 1e-9),
                "published_per_s": wr.get("published", 0) / max(wr.get("seconds", 1), 1e-9),
            }
            row["cost_ns_p50"] = row["send_ns"]["p50"] + row["recv_ns"]["p50"]
            row["cpu_per_frame_ns"] = cpu_per_frame(wr, rd[0])
            if m == "shmlane":
                # The same paced sends, but the writer waits out the gap on the
                # CPU instead of sleeping: how much of `send` is the writer's
                # own wake-up (cold caches) rather than the library.
                # And with the reader spinning 1 ms before it sleeps (Reader(spin=)),
                # longer than the gap: what a reader of a fast stream can choose.
                for key, extra, phases in (("busy", {"BENCH_BUSY_GAP": "1"}, "l"),
                                           ("spin", {"BENCH_READER_SPIN": "0.001"}, "lt")):
                    ob = f"{o}.{key}"
                    wx, rx = run_group(
                        [sys.executable, PAIR, "writer", m, name, frame, str(iters),
                         str(cfg.stream_gap_ns / 1e9), str(cfg.py_thr_s), phases, ob],
                        [[sys.executable, PAIR, "reader", m, name, frame, str(iters), phases, ob]],
                        env=dict(env, **extra))
                    row[f"send_{key}_ns"] = summary(load(ob + ".send"))
                    row[f"latency_{key}_ns"] = summary(load(ob + ".lat"))
                row["delivered_spin_per_s"] = rx[0].get("frames", 0) / max(rx[0].get("seconds", 1), 1e-9)
                row["cpu_per_frame_spin_ns"] = cpu_per_frame(wx, rx[0])
            rows.append(row)
    for row in rows:
        base = next((r for r in rows if r["method"] == "shmlane" and r["frame"] == row["frame"]), None)
        if base:
            row["cost_vs_shmlane"] = row["cost_ns_p50"] / base["cost_ns_p50"]
            row["latency_vs_shmlane"] = row["latency_ns"]["p50"] / base["latency_ns"]["p50"]
            row["rate_vs_shmlane"] = row["delivered_per_s"] / max(base["delivered_per_s"], 1e-9)
            row["cpu_vs_shmlane"] = row["cpu_per_frame_ns"] / base["cpu_per_frame_ns"]
            row["polled_cost_vs_shmlane"] = (row["send_polled_ns"]["p50"] + row["recv_ns"]["p50"]) / (
                base["send_polled_ns"]["p50"] + base["recv_ns"]["p50"])
    res["python"] = rows


def cpu_per_frame(writer: dict, reader: dict) -> float:
    """Throughput phase: CPU time (all threads) per frame sent plus per frame received."""
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


def paced_cpu(writer: dict, reader: dict) -> tuple:
    """Paced phase: CPU time (all threads) per frame of the writer's and the reader's process."""
    n = max(writer.get("lat_frames", 0), 1)
    return writer.get("lat_cpu_ns", float("nan")) / n, reader.get("lat_cpu_ns", float("nan")) / n


def paced_runs(cfg, bin_dir, tmp, fps, frame, iters, methods):
    """One paced run per method: frames GAP apart on average (0.5x..1.5x,
    phase l of stream.c and pair.py), the reader asleep in its receive."""
    gap_ns = 1_000_000_000 // fps
    exe = os.path.join(bin_dir, "stream")
    out = {}
    for m in methods:
        name, o = f"bz{os.getpid()}", os.path.join(tmp, f"paced.{m}.{fps}.{frame}")
        if m == "futex":  # the limit: a raw futex wake-up paced the same way, nothing moved
            lat, _ = wake_pair([os.path.join(bin_dir, "wake")], "futex", tmp, iters, gap_ns,
                               f"paced.{fps}.{frame}")
            out[m] = {"latency_ns": summary(lat)}
            continue
        if m == "c":
            wr, rd = run_group([exe, "writer", name, frame, "latest", "1", str(iters), str(gap_ns), "0",
                                "l", o], [[exe, "reader", name, "latest", str(iters), "l", o]])
            lat = load(os.path.join(tmp, next(p for p in os.listdir(tmp)
                                              if p.startswith(os.path.basename(o) + ".lat."))))
        else:
            wr, rd = run_group([sys.executable, PAIR, "writer", m, name, frame, str(iters),
                                str(gap_ns / 1e9), "0", "l", o],
                               [[sys.executable, PAIR, "reader", m, name, frame, str(iters), "l", o]],
                               env=dict(os.environ, BENCH_POLICY="latest"))
            lat = load(o + ".lat")
        wcpu, rcpu = paced_cpu(wr, rd[0])
        out[m] = {"latency_ns": summary(lat), "writer_cpu_ns": wcpu, "reader_cpu_ns": rcpu}
    return out


def bench_paced(cfg, bin_dir, tmp, res, skipped):
    """Frames at camera rates: C and Python shmlane against the raw futex
    (the limit) and iceoryx2's Python binding with its event service."""
    methods = ["c", "shmlane", "futex"] + ([] if "iceoryx2" in skipped else ["iceoryx2"])
    rows = []
    for fps, label, frame in PACED:
        if cfg.tiny and label != "640x480x3":
            continue
        iters = max(3, int(cfg.paced_s * fps))
        runs = paced_runs(cfg, bin_dir, tmp, fps, frame, iters, methods)
        limit = runs["futex"]["latency_ns"]
        for m, v in runs.items():
            lat = v["latency_ns"]
            row = {"fps": fps, "frame": label, "method": m, **v,
                   "p50_vs_limit": lat["p50"] / limit["p50"], "p99_vs_limit": lat["p99"] / limit["p99"]}
            if m == "shmlane":
                c = runs["c"]["latency_ns"]
                row["p50_vs_c"], row["p99_vs_c"] = lat["p50"] / c["p50"], lat["p99"] / c["p99"]
            rows.append(row)
        for row in rows[-len(runs):]:
            ice = runs.get("iceoryx2")
            if ice and row["method"] != "iceoryx2":
                row["iceoryx2_p50_vs"] = ice["latency_ns"]["p50"] / row["latency_ns"]["p50"]
    res["paced"] = rows


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
    reader's process over idle_s seconds."""
    exe = os.path.join(bin_dir, "stream")
    hour = str(3600 * 10**9)  # the writer's pause before its one frame: never reached
    setups = {"c": ([exe, "writer", "{n}", "64", "latest", "1", "1", hour, "0", "l", "{o}"],
                    [exe, "reader", "{n}", "latest", "1", "l", "{o}"])}
    for m in ["shmlane"] + ([] if "iceoryx2" in skipped else ["iceoryx2"]):
        setups[m] = ([sys.executable, PAIR, "writer", m, "{n}", "64", "1", "3600", "0", "l", "{o}"],
                     [sys.executable, PAIR, "reader", m, "{n}", "64", "1", "l", "{o}"])
    env = dict(os.environ, BENCH_POLICY="latest", BENCH_RECV_TIMEOUT="3600")
    rows = []
    for m, (wcmd, rcmd) in setups.items():
        name, o = f"bi{os.getpid()}", os.path.join(tmp, f"idle.{m}")
        fill = lambda cmd: [x.format(n=name, o=o) for x in cmd]  # noqa: E731
        w = subprocess.Popen(fill(wcmd), stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert w.stdout.readline().strip() == "ready", m
            r = subprocess.Popen(fill(rcmd), stdout=subprocess.DEVNULL, env=env)
            time.sleep(1.0)  # opened and asleep
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
                subprocess.run([sys.executable, "-c", "import iox2_method; iox2_method.remove_global_files()"],
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


def targets(res: dict) -> list:
    out = []
    w = res.get("wake_c")
    if w:
        r = w["shl"]["p50_vs_futex"]
        out.append(("wake-up p50 within 1.2× raw futex", f"{r:.2f}×", r <= 1.2))
        r = w["shlspin"]["p50_vs_spin"]
        out.append(("spinning wait (spin_ns) p50 within 1.5× of a spin on a cache line", f"{r:.2f}×",
                    r <= 1.5))
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
    for (m, frame), r in py.items():
        if not m.startswith("shmlane"):
            v = (r["cost_vs_shmlane"], r["polled_cost_vs_shmlane"], r["cpu_vs_shmlane"])
            out.append((f"ahead of {m} ({frame}): per-frame cost / polled cost / CPU per frame",
                        " / ".join(ratio(x) for x in v), all(x > 1 for x in v)))
    # Small messages have their own calls: compare those too.
    copy = py.get(("shmlane-copy", "64 B"))
    for (m, frame), r in py.items():
        if copy and frame == "64 B" and not m.startswith("shmlane"):
            v = (r["cost_ns_p50"] / copy["cost_ns_p50"],
                 (r["send_polled_ns"]["p50"] + r["recv_ns"]["p50"])
                 / (copy["send_polled_ns"]["p50"] + copy["recv_ns"]["p50"]),
                 r["cpu_per_frame_ns"] / copy["cpu_per_frame_ns"])
            out.append((f"ahead of {m} (64 B) with publish()/receive_into(): per-frame cost / polled "
                        "cost / CPU per frame", " / ".join(ratio(x) for x in v), all(x > 1 for x in v)))
    s = py.get(("seed", "1920x1080x3"))
    if s:
        out.append(("≥100× less per-frame cost than the seed recipe at 1920x1080x3 (cost / polled cost / CPU)",
                    " / ".join(ratio(x) for x in (s["cost_vs_shmlane"], s["polled_cost_vs_shmlane"],
                                                  s["cpu_vs_shmlane"])),
                    min(s["cost_vs_shmlane"], s["polled_cost_vs_shmlane"], s["cpu_vs_shmlane"]) >= 100))
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
             "anything else running skews the tails). Times in µs, p50 unless said; "
             "ratios are *other / shmlane* (above 1: shmlane ahead).\n")
    w = res.get("wake_c")
    if w:
        L.append("## Wake-up latency, one way (writer signal → blocked reader returns), C and Python\n")
        L.append("| method | p50 | p99 | p99.9 | signal call p50 | p50 ratio to shmlane |")
        L.append("| --- | --- | --- | --- | --- | --- |")
        base = w["shl"]["latency_ns"]["p50"]
        rows = [(w[k], label) for k, label in (
            ("shl", "shmlane shl_notify → shl_wait"), ("futex", "raw futex wake → wait"),
            ("shlspin", "shmlane, shl_wait_ex spinning up to 1 ms"), ("spin", "spin on a shared cache line"))]
        p = res.get("wake_py", {})
        rows += [(p[k], label) for k, label in (("shl", "Python: Segment.notify → Segment.wait"),
                                                ("shlspin", "Python: Segment.wait(spin=0.001)")) if k in p]
        for v, label in rows:
            s, g = v["latency_ns"], v["signal_ns"]
            L.append(f"| {label} | {us(s['p50'])} | {us(s['p99'])} | {us(s['p99.9'])} | {us(g['p50'])} "
                     f"| {ratio(s['p50'] / base)} |")
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
                 "send also with the reader polling (nobody to wake). CPU per frame: user+system time of both "
                 "processes, all threads, in the throughput phase, per frame sent plus per frame received. "
                 "Ratios: other / shmlane at the same frame size.\n")
        shown = dict.fromkeys(r["method"] for r in res["python"])
        L.extend(f"- {m}: {DESCRIBE[m]}" for m in shown)
        L.append("")
        L.append("| frame | method | send | send (reader polling) | receive | cost | cost ratio | "
                 "polled cost ratio | latency p50 / p99 | latency ratio | frames/s delivered | rate ratio | "
                 "CPU per frame | CPU ratio |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in res["python"]:
            L.append(f"| {r['frame']} | {r['method']} | {us(r['send_ns']['p50'])} | "
                     f"{us(r['send_polled_ns'].get('p50', float('nan')))} | {us(r['recv_ns']['p50'])} | "
                     f"{us(r['cost_ns_p50'])} | {ratio(r.get('cost_vs_shmlane', float('nan')))} | "
                     f"{ratio(r.get('polled_cost_vs_shmlane', float('nan')))} | "
                     f"{us(r['latency_ns']['p50'])} / {us(r['latency_ns']['p99'])} | "
                     f"{ratio(r.get('latency_vs_shmlane', float('nan')))} | {r['delivered_per_s']:.0f} | "
                     f"{ratio(r.get('rate_vs_shmlane', float('nan')))} | {us(r['cpu_per_frame_ns'])} | "
                     f"{ratio(r.get('cpu_vs_shmlane', float('nan')))} |")
        L.append("")
        L.append("shmlane Python loan+publish p50 depending on what the writer did before it:\n")
        L.append("| frame | slept the gap (reader asleep) | busy-waited the gap (reader asleep) | "
                 "reader polling (no wake-up) | reader spinning, Reader(spin=0.001) | C, reader asleep | "
                 "C, reader polling | latency p50: reader asleep / spinning | frames/s delivered, "
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
        L.append("## Paced like a camera (reader asleep in receive; frames 0.5x..1.5x the period apart)\n")
        L.append("Latency publish → the reader holds the frame; CPU per frame of each process over the "
                 "paced phase (all threads). *limit*: a raw futex wake-up paced the same way, nothing "
                 "moved. *iceoryx2*: its Python binding, publish-subscribe plus an event service to "
                 "block on. Ratios measured in this run.\n")
        L.append("| fps | frame | method | p50 | p99 | writer CPU | reader CPU | p50 / limit | "
                 "p99 / limit | Python / C p50, p99 | iceoryx2 / this p50 |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        names = {"c": "shmlane C", "shmlane": "shmlane Python", "futex": "limit (raw futex)",
                 "iceoryx2": "iceoryx2 Python"}
        for r in res["paced"]:
            pc = (f"{ratio(r['p50_vs_c'])}, {ratio(r['p99_vs_c'])}" if "p50_vs_c" in r else "")
            L.append(f"| {r['fps']} | {r['frame']} | {names[r['method']]} | {us(r['latency_ns']['p50'])} | "
                     f"{us(r['latency_ns']['p99'])} | {us(r.get('writer_cpu_ns', float('nan')))} | "
                     f"{us(r.get('reader_cpu_ns', float('nan')))} | {ratio(r['p50_vs_limit'])} | "
                     f"{ratio(r['p99_vs_limit'])} | {pc} | {ratio(r.get('iceoryx2_p50_vs', float('nan')))} |")
        L.append("")
    if res.get("idle"):
        L.append("## Idle readers (writer alive, no frames)\n")
        L.append("Context switches of every thread of the reader's process, per second.\n")
        L.append("| reader | wake-ups / s | switches | seconds |")
        L.append("| --- | --- | --- | --- |")
        names = {"c": "shmlane C", "shmlane": "shmlane Python", "iceoryx2": "iceoryx2 Python (event listener)"}
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
                    "attach, fanout, paced, idle); default: all")
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
                         ("idle", lambda: bench_idle(cfg, args.bin, tmp, res, res["skipped"]))):
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

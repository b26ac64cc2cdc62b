"""Smoke test of the benchmark: every scenario with a handful of iterations
(bench/run.py --tiny). Asserts only that it runs and writes well-formed
JSON and Markdown, never anything about timings.

    pytest -q bench/test_bench_smoke.py

Runs the C programs of bench/c/ that meson built, from $SHMLANE_BUILD/bench
(default build/bench; `make bench-smoke` builds them); uses the interpreter
running pytest (shmlane installed); installs nothing, so comparisons whose
packages are missing are reported as skipped."""

import importlib
import importlib.util
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.environ.get("SHMLANE_BUILD", os.path.join(ROOT, "build"))


@pytest.fixture(scope="module")
def programs():
    out = os.path.join(BUILD, "bench")
    missing = [p for p in ("wake", "stream", "attach", "death", "cold_copy")
               if not os.access(os.path.join(out, p), os.X_OK)]
    if missing:
        pytest.skip(f"no {', '.join(missing)} in {out}: build with meson first (make build)")
    return out


def test_tiny_run_writes_results(programs, tmp_path):
    args = [sys.executable, os.path.join(HERE, "run.py"), "--tiny", "--no-install",
            "--bin", programs, "--out", str(tmp_path)]
    plots = importlib.util.find_spec("matplotlib") is not None
    if not plots:
        args.append("--no-plots")
    subprocess.run(args, check=True, timeout=120, stdout=subprocess.DEVNULL)

    res = json.loads((tmp_path / "latest.json").read_text())
    for key in ("machine", "wake_c", "wake_py", "stream_c", "python", "attach", "fanout", "paced",
                "adapt", "idle", "death", "targets", "skipped"):
        assert key in res, key
    assert {"c", "c-auto", "shmlane", "shmlane-auto", "shmlane-auto-cw", "futex", "waitv"} <= {
        r["method"] for r in res["paced"]}
    assert all(r["latency_ns"]["n"] > 0 for r in res["paced"])
    # A Python writer's latency from its call: one per frame, none above that from its stamp.
    for r in res["paced"]:
        if r["method"] in ("shmlane", "shmlane-auto"):
            assert r["latency_call_ns"]["n"] == r["latency_ns"]["n"], r
            assert r["latency_call_ns"]["p50"] <= r["latency_ns"]["p50"], r
    assert all("p50_vs_limit" in r for r in res["paced"] if r["method"] in ("c", "waitv"))
    assert {(r["case"], r["lang"], r["told"]) for r in res["death"]} == {
        (case, lang, 1) for case in ("plain", "group", "thread") for lang in ("c", "python")}
    assert all("p50_vs_peer" in res["wake_c"][m] for m in ("shl", "shlspin"))
    assert [r["method"] for r in res["adapt"]] == ["c-auto", "shmlane-auto-cw"]
    for r in res["adapt"]:  # every change measured in the round, every frame seen
        for event in ("faster", "slower", "stopped"):
            assert r[event]["rounds"] == 1 and r[event]["extra_ns"] is not None, (r["method"], event)
    assert {"c", "c-auto", "shmlane", "shmlane-auto"} <= {r["method"] for r in res["idle"]}
    assert all(r["seconds"] > 0 for r in res["idle"])
    assert set(res["wake_c"]) == {"shl", "futex", "shlspin", "spin"}
    assert set(res["wake_py"]) == {"shl", "shlspin"}
    assert all(v["latency_ns"]["n"] > 0 for v in [*res["wake_c"].values(), *res["wake_py"].values()])
    assert {r["mode"] for r in res["stream_c"]} == {"latest", "all"}
    frames = {r["frame"] for r in res["python"]}
    for r in res["python"]:  # distinct frames and duplicates counted apart, for every method
        assert r["distinct_per_s"] > 0 and 0 <= r["duplicate_share"] < 1, r["method"]
    for own in ("shmlane", "shmlane-copy"):  # never skipped: a failure of ours fails the run
        assert {r["frame"] for r in res["python"] if r["method"] == own} == frames, own
        assert not any(k == own or k.startswith(own + " ") for k in res["skipped"]), own
    methods = {r["method"] for r in res["python"]} | set(res["skipped"])
    for m in ("shmlane-copy", "seed", "mpshm", "sharedarray", "iceoryx2", "zmq", "pipe"):
        assert m in methods or any(k.startswith(m + " ") for k in res["skipped"]), m
    for t in res["targets"]:
        assert set(t) == {"target", "value", "met"}

    md = (tmp_path / "latest.md").read_text()
    assert md.startswith("# shmlane benchmarks")
    tables = [line for line in md.splitlines() if line.startswith("|")]
    assert tables
    for line in tables:
        assert line.endswith("|"), line
    # Each table's rows have as many cells as its header.
    block = []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            block.append(line.count("|"))
        elif block:
            assert len(set(block)) == 1, block
            block = []
    if plots:
        for name in res["plots"]:
            assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def bench_module(name: str):
    """A module of bench/ (gst.py, gst_profile.py), imported from there."""
    sys.path.insert(0, HERE)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(HERE)


def fake_peer(tmp_path, script: str):
    """A stand-in for bench/gst_peer running `script` (below)."""
    peer = tmp_path / "gst_peer"
    peer.write_text(script.replace("PYTHON", sys.executable))
    peer.chmod(0o755)
    return peer


# A stand-in for bench/gst_peer: "send" runs until SIGINT; "recv" gets 3
# frames and then nothing, as a stalled shmsrc; each prints its report at
# SIGINT, as gst_peer does.
STALLING_PEER = """#!PYTHON
import json, signal, sys, time
role = sys.argv[1]
def report(*_):
    n = 3 if role == "recv" else 50
    print(json.dumps({"total": n, "frames": n, "cpu_ns": 1000 * n, "minflt": 0, "in_place": n,
                      "missed": 0, "latency_ns": [1000] * n}), flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, report)
while True:
    time.sleep(1)
"""


def test_gst_stalled_run_is_reported(tmp_path, monkeypatch):
    """bench/gst.py: a run whose source stops receiving is ended and
    reported as stalled, with the frames it got, outside the medians; the
    benchmark goes on."""
    gst = bench_module("gst")
    peer = fake_peer(tmp_path, STALLING_PEER)
    monkeypatch.setattr(gst, "STALL_SLACK_S", 0.5)
    monkeypatch.setattr(gst.time, "sleep", lambda s: None)  # the sender's head start
    stalled = gst.run_once(peer, dict(os.environ), "shm", ("s", 64, 48, False, 6), "t", 64)
    assert stalled == {"stalled": True, "frames": 3}
    done = {"stalled": False, **{k: 1.0 for k in gst.MEASURES}}
    rows = [gst.summary("s", "shm", [stalled, done]), gst.summary("s", "shmlane", [stalled])]
    assert rows[0]["stalled"] == 1 and rows[0]["p50_us"] == 1.0
    lines = gst.table(rows)
    assert "| 2 (1 stalled) | 1 µs |" in lines[2]
    assert lines[3].count("stalled") == 1 + len(gst.MEASURES)


# A stand-in for bench/gst_peer whose source receives all its frames: "recv"
# needs the sender's pid (it would signal the window to it), "send" reports
# its whole life and the source's window apart.
WINDOW_PEER = """#!PYTHON
import json, os, signal, sys, time
if sys.argv[1] == "recv":
    os.kill(int(sys.argv[4]), 0)
    n = int(sys.argv[3])
    print(json.dumps({"total": n, "frames": n, "cpu_ns": 2000 * n, "minflt": 0, "in_place": 0,
                      "missed": 0, "latency_ns": [1000] * n}))
    sys.exit(0)
def report(*_):
    print(json.dumps({"total": 500, "frames": 490, "cpu_ns": 490 * 1000, "minflt": 490,
                      "in_place": 500, "missed": 0, "window_cpu_ns": 40 * 7000,
                      "window_minflt": 20, "window_frames": 40, "window_ns": [100, 200],
                      "latency_ns": []}), flush=True)
    if os.environ.get("SHL_COPYTIME_OUT"):  # as bench/gst_copytime.c: [end, copy ns] a frame
        with open(f"{os.environ['SHL_COPYTIME_OUT']}/{os.getpid()}.json", "w") as f:
            json.dump({"frames": [[50, 9000], [150, 5000], [200, 3000], [250, 9000]]}, f)
    sys.exit(0)
signal.signal(signal.SIGINT, report)
while True:
    time.sleep(1)
"""


def test_gst_sink_counted_in_the_source_window(tmp_path):
    """bench/gst.py: the sink process's CPU and faults per frame are those of
    the source's window, not of the sink's whole life (most of it with no
    reader, flat out)."""
    gst = bench_module("gst")
    peer = fake_peer(tmp_path, WINDOW_PEER)  # gst.py's head start (0.5 s) lets send set its handler
    r = gst.run_once(peer, dict(os.environ), "shm", ("s", 64, 48, False, 6), "t", 64)
    assert r["send_cpu_us"] == 7.0 and r["send_faults"] == 0.5 and r["recv_cpu_us"] == 2.0


def test_gst_profile_copy_in_the_window(tmp_path):
    """bench/gst_profile.py --copy: the producer's copy a frame is taken over
    the frames the sink made in the source's window, as the sink's CPU."""
    gst_profile = bench_module("gst_profile")
    fake_peer(tmp_path, WINDOW_PEER)
    got = gst_profile.copy_rounds(tmp_path, dict(os.environ), (64, 48), False, 6, 1, ["shm"])
    assert got == {"shm": [{"sink": 7.0, "copy": 4.0, "rest": 3.0}]}


def test_gst_copytime_counts_whole_frames(tmp_path):
    """bench/gst_copytime.c, preloaded: a frame is SHL_COPYTIME_ROWS rows
    from the pattern's first on; a call of a row's length elsewhere, before
    a frame or after its last row, is not counted."""
    lib = os.path.join(BUILD, "gst", "gst_copytime.so")
    if not os.path.exists(lib):
        pytest.skip(f"no {lib} (built with GStreamer's development files)")
    script = """if True:
        import ctypes
        memcpy = ctypes.CDLL(None).memcpy
        pattern, slot, other = (ctypes.create_string_buffer(4 * 4000) for _ in range(3))
        def at(buf, offset):
            return ctypes.c_void_p(ctypes.addressof(buf) + offset)
        memcpy(other, pattern, 4000)  # a row's length, not a frame's row
        for frame in range(3):
            for row in range(2):  # luma rows: each follows the one before in the source
                memcpy(at(slot, 4000 * row), at(pattern, 4000 * row), 4000)
            for row in range(2):  # chroma rows, half as long
                memcpy(at(slot, 8000 + 2000 * row), at(pattern, 8000 + 2000 * row), 2000)
            memcpy(other, at(pattern, 100), 2000)  # after the frame's last row
    """
    env = {**os.environ, "LD_PRELOAD": lib, "SHL_COPYTIME_ROW": "4000", "SHL_COPYTIME_ROWS": "4",
           "SHL_COPYTIME_OUT": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, timeout=30)
    assert proc.returncode == 0
    (report,) = tmp_path.iterdir()
    frames = json.loads(report.read_text())["frames"]
    assert len(frames) == 3
    assert [end for end, _ in frames] == sorted(end for end, _ in frames)
    assert all(copy >= 0 for _, copy in frames)


def test_gst_ratios_per_round():
    """bench/gst.py compares each method to shmsink/shmsrc round by round:
    the median of the rounds' ratios and their spread, not a ratio of
    medians; a round in which either stalled counts for neither."""
    gst = bench_module("gst")

    def runs(p50s):
        return [{"stalled": True} if v is None else
                {"stalled": False, **{k: 1.0 for k in gst.MEASURES}, "p50_us": v} for v in p50s]

    # Medians 20 and 20 (a ratio of medians: 1.0); the rounds say 0.5, 1.5, 0.5.
    row = gst.compare("s", "shmlane", runs([10.0, 30.0, 20.0, None]), runs([20.0, 20.0, 40.0, 5.0]))
    assert row["p50_us"] == {"median": 0.5, "min": 0.5, "max": 1.5, "n": 3}
    assert row["send_cpu_us"]["median"] == 1.0
    lines = gst.ratio_table([row])
    assert lines[2].startswith("| s | shmlanesink/shmlanesrc | 3 | 0.50× (0.50–1.50) | "
                               "1.00× (1.00–1.00) |")


def test_gst_profile_counts_calls_and_wakeups(capsys):
    """bench/gst_profile.py: system calls a frame by process and name, and
    each wake-up of a source thread by the sink's process, to its running."""
    gst_profile = bench_module("gst_profile")
    sink, source, thread = 10, 20, 21
    events = [  # (pid, tid, cpu, time µs, event, trace), as events_of() makes them
        (sink, sink, 0, 1.0, "raw_syscalls:sys_enter", "NR 202 (1, 2)"),
        (source, thread, 1, 2.0, "raw_syscalls:sys_enter", "NR 449 (1, 2)"),
        (sink, sink, 0, 10.0, "sched:sched_wakeup", f"comm=x pid={thread} prio=120 target_cpu=000"),
        (sink, sink, 0, 10.5, "sched:sched_wakeup", "comm=y pid=99 prio=120 target_cpu=001"),
        (sink, sink, 0, 12.5, "sched:sched_switch", f"prev_comm=x prev_pid={sink} prev_prio=120 "
         f"prev_state=R ==> next_comm=x next_pid={thread} next_prio=120"),
    ]
    names = {202: "futex", 449: "futex_waitv"}
    gst_profile.report("shmlane", sink, source, {"latency_ns": [4000, 6000], "total": 1}, events,
                       names)
    out = capsys.readouterr().out
    assert "1 frames, latency p50 6.0 µs" in out
    assert "sink process: system calls a frame futex 1.00" in out
    assert "source process: system calls a frame futex_waitv 1.00" in out
    assert "1.00 times a frame: to running p50 2.5 µs, p90 2.5 µs; on the waker's CPU 100%" in out


def test_cold_copy_prints_every_variant(programs):
    """bench/c/cold_copy, one round of 3 small frames a variant: a row for
    each, and no shared memory object left behind."""
    before = set(os.listdir("/dev/shm"))
    out = subprocess.run([os.path.join(programs, "cold_copy"), str(1 << 20), "3", "1", "1000000"],
                         check=True, timeout=60, capture_output=True, text=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "µs" not in line and "---" not in line]
    assert [r.split(" | ")[0][2:] for r in rows] == [
        "no gap (flat out)", "1 ms asleep", "the gap asleep", "the gap spinning",
        "the gap spinning, caches swept", "the gap asleep, 2 MiB pages"], out
    assert not {n for n in set(os.listdir("/dev/shm")) - before if "bench-cold" in n}

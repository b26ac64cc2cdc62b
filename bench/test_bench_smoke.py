"""Smoke test of the benchmark: every scenario with a handful of iterations
(bench/run.py --tiny). Asserts only that it runs and writes well-formed
JSON and Markdown, never anything about timings.

    pytest -q bench/test_bench_smoke.py

Builds the C programs of bench/c/ with cc into a temporary directory; uses
the interpreter running pytest (shmlane installed); installs nothing, so
comparisons whose packages are missing are reported as skipped."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    cc = shutil.which(os.environ.get("CC", "cc"))
    if not cc:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("bin")
    core = sorted(os.path.join(ROOT, "src", f) for f in os.listdir(os.path.join(ROOT, "src"))
                  if f.endswith(".c"))
    for prog in ("wake", "stream", "attach"):
        subprocess.run([cc, "-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra",
                        "-I" + os.path.join(ROOT, "include"), "-I" + os.path.join(ROOT, "src"),
                        *core, os.path.join(HERE, "c", prog + ".c"), "-o", str(out / prog),
                        "-lpthread"], check=True)
    return out


def test_tiny_run_writes_results(programs, tmp_path):
    args = [sys.executable, os.path.join(HERE, "run.py"), "--tiny", "--no-install",
            "--bin", str(programs), "--out", str(tmp_path)]
    plots = importlib.util.find_spec("matplotlib") is not None
    if not plots:
        args.append("--no-plots")
    subprocess.run(args, check=True, timeout=120, stdout=subprocess.DEVNULL)

    res = json.loads((tmp_path / "latest.json").read_text())
    for key in ("machine", "wake_c", "wake_py", "stream_c", "python", "attach", "fanout", "targets",
                "skipped"):
        assert key in res, key
    assert set(res["wake_c"]) == {"shl", "futex", "shlspin", "spin"}
    assert set(res["wake_py"]) == {"shl", "shlspin"}
    assert all(v["latency_ns"]["n"] > 0 for v in [*res["wake_c"].values(), *res["wake_py"].values()])
    assert {r["mode"] for r in res["stream_c"]} == {"latest", "all"}
    frames = {r["frame"] for r in res["python"]}
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

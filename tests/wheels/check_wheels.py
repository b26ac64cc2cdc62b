#!/usr/bin/env python3
"""make test-dist: the wheels of dist/ installed and used on a system that has
no compiler and none of the libraries the wheels carry.

    python3 tests/wheels/check_wheels.py [--dist dist] [--work build-dist/check] [--all]

Each wheel must carry the platform tag release/build_dist.py names (PLATFORM:
manylinux_2_35), in its name and its WHEEL file.

A run is one wheel on one CPython: by default the cp39 wheel on 3.9 and the
abi3 wheel on 3.13, the two ends; --all adds each other CPython a wheel is
for. Each run, as root:

- In a mount namespace (unshare -m) where the compilers (cc, gcc, clang, as,
  ld, cpp and their own directories) and every shared library of the Debian
  packages the wheel carries copies of (libzmq5, libzstd1, ..., as its
  .dist-info/licenses/bundled/README lists them) are hidden under empty bind mounts, checked (no cc on PATH, libzmq.so.5
  does not load):
  1. a fresh venv, and pip installs the wheel (NumPy from the index);
  2. the README's Python quick starts, the reader first (readme_programs.py);
  3. the commands: shmlane --version, shmlane.__version__, the wheel's
     version and python -m shmlane.config --modversion agree; shmlane
     create, ls, info --json and rm; shmlane-camera publishes its pattern.
- Outside, with the compiler: the README's C programs and examples/c's writer
  and reader built against the wheel's library, with the flags of
  python -m shmlane.config (and once with pkg-config's, which must be the same).
- In the namespace again:
  4. the C programs: the README's pairs; they find libshmlane.so.0 in the
     venv by their rpath;
  5. a bridge over loopback: shmlane bridge keygen, send (CURVE keys, zstd)
     and recv; examples/c's writer publishes, its reader and read.py check
     every frame that arrives on the other side (stamp, metadata).

Shared-memory objects carry this run's names and are removed at the end,
pass or fail. Needs root and util-linux (unshare, mount). Stdlib only.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "python"))
sys.path.insert(0, str(ROOT / "release"))
from build_dist import bundled_packages, platform_tags  # noqa: E402
from pythons import find_python  # noqa: E402
from readme_programs import BLOCKS, PAIRS, check_output, source, waiting  # noqa: E402

# (wheel's ABI tag, CPython): the default runs, then those --all adds.
RUNS = [("cp39", "3.9"), ("abi3", "3.13")]
MORE_RUNS = [("cp310", "3.10"), ("abi3", "3.11"), ("abi3", "3.12")]
COMPILERS = ["cc", "c89", "c99", "gcc", "g++", "c++", "cpp", "clang", "clang++", "tcc", "as", "ld",
             "ld.bfd", "ld.gold", "ld.lld"]
COMPILER_GLOBS = ["/usr/bin/*-linux-gnu-*", "/usr/bin/gcc-*", "/usr/bin/clang-*"]
COMPILER_DIRS = ["/usr/lib/gcc", "/usr/libexec/gcc"] + sorted(glob.glob("/usr/lib/llvm-*"))
STEP_TIMEOUT = 120


class Failed(Exception):
    pass


# ---------------------------------------------------------------- inside the namespace


def hide(files: List[str], dirs: List[str]) -> None:
    """Empty bind mounts over files, empty read-only tmpfs over directories;
    then checks that neither a compiler nor libzmq can be had."""
    for path in files:
        subprocess.run(["mount", "--bind", "/dev/null", path], check=True)
    for path in dirs:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=4k", "tmpfs", path], check=True)
    found = [c for c in COMPILERS if shutil.which(c)]
    if found:
        raise Failed(f"still on PATH: {found}")
    import ctypes

    for lib in ("libzmq.so.5", "libzstd.so.1", "libjpeg.so.62"):
        try:
            ctypes.CDLL(lib)
        except OSError:
            continue
        raise Failed(f"{lib} still loads")


def sh(cmd: List[str], timeout: float = STEP_TIMEOUT, **kw) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        raise Failed(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def run_pair(pair: str, commands: Dict[str, List[str]]) -> None:
    """A README pair, the consumer first: it waits, the producer comes."""
    producer, consumer = PAIRS[pair]
    started = subprocess.Popen(commands[consumer], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    try:
        waiting(started, consumer)
        sh(commands[producer])
        out, err = started.communicate(timeout=STEP_TIMEOUT)
    finally:
        started.kill()
    if started.returncode != 0:
        raise Failed(f"{consumer}: exit {started.returncode}: {err}")
    check_output(pair, out, runs=1)


def install(job: dict) -> None:
    venv, py = Path(job["venv"]), Path(job["venv"]) / "bin" / "python"
    sh([job["python"], "-m", "venv", str(venv)])
    sh([str(py), "-m", "pip", "install", "--quiet", job["wheel"]], timeout=600)


def use_python(job: dict) -> None:
    venv = Path(job["venv"])
    py, bin_dir, names, work = str(venv / "bin/python"), venv / "bin", job["names"], Path(job["work"])
    commands = {}
    for block_id in BLOCKS:
        if block_id.startswith("py-"):
            path = work / f"{block_id}.py"
            path.write_text(source(block_id, names["py"]))
            commands[block_id] = [py, str(path)]
    for pair in ("py-quickstart", "py-stream"):
        run_pair(pair, commands)
    versions = {
        "shmlane --version": sh([str(bin_dir / "shmlane"), "--version"]).split()[-1],
        "shmlane.__version__": sh([py, "-c", "import shmlane; print(shmlane.__version__)"]).strip(),
        "wheel": job["version"],
        "shmlane.config": sh([py, "-m", "shmlane.config", "--modversion"]).strip(),
        "importlib.metadata": sh([py, "-c", "import importlib.metadata as m; "
                                  "print(m.version('shmlane'))"]).strip(),  # fmt: skip
    }
    if len(set(versions.values())) != 1:
        raise Failed(f"versions disagree: {versions}")
    cli, seg = str(bin_dir / "shmlane"), names["cli"]
    sh([cli, "create", seg, "--format", "<d", "--shape", "3,3"])
    if seg not in sh([cli, "ls"]):
        raise Failed(f"shmlane ls does not list {seg}")
    info = json.loads(sh([cli, "info", seg, "--json"]))
    if info.get("shape") != [3, 3]:
        raise Failed(f"shmlane info {seg} --json: {info}")
    sh([cli, "rm", seg])
    cam = names["camera"]
    sh([str(bin_dir / "shmlane-camera"), "--device", f"{cam}=pattern", "--width", "64", "--height",
        "48", "--fps", "30", "--seconds", "1.5"])  # fmt: skip
    info = json.loads(sh([cli, "info", cam, "--json"]))
    if (info.get("stream") or {}).get("last_seq", 0) < 10:
        raise Failed(f"shmlane-camera published too little: {info}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def use_programs(job: dict) -> None:
    venv, names, exes = Path(job["venv"]), job["names"], job["exes"]
    commands = {block_id: [exes[block_id]] for block_id in BLOCKS if block_id.startswith("c-")}
    for pair in ("c-calib", "c-stream"):
        run_pair(pair, commands)
    # The bridge: writer -> stream -> send -> TCP loopback -> recv -> stream -> readers.
    cli, keys, port = str(venv / "bin/shmlane"), Path(job["work"]) / "camA", free_port()
    sh([cli, "bridge", "keygen", str(keys)])
    there, here = names["bridge_src"], names["bridge_dst"]
    endpoint = f"tcp://127.0.0.1:{port}"
    procs: List[subprocess.Popen] = []

    def start(cmd: List[str]) -> subprocess.Popen:
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))  # fmt: skip
        return procs[-1]

    try:
        recv = start([cli, "bridge", "recv", endpoint, here, "--server-key", f"{keys}.pub",
                      "--seconds", "60", "--quiet"])  # fmt: skip
        c_reader = start([exes["reader"], "--name", here, "--mode", "all", "--seconds", "40",
                          "--wait-open", "30", "--exit-on-gone"])  # fmt: skip
        py_reader = start([str(venv / "bin/python"), str(ROOT / "examples/python/read.py"), "--name",
                           here, "--mode", "all", "--headless", "--seconds", "40", "--wait-open",
                           "30", "--exit-on-gone"])  # fmt: skip
        writer = start([exes["writer"], "--name", there, "--width", "320", "--height", "240",
                        "--fps", "30", "--seconds", "4"])  # fmt: skip
        send = start([cli, "bridge", "send", there, endpoint, "--key", f"{keys}.key", "--zstd",
                      "--seconds", "60", "--quiet"])  # fmt: skip
        results = {}
        for what, proc in (("writer", writer), ("C reader", c_reader), ("read.py", py_reader)):
            out, err = proc.communicate(timeout=60)
            results[what] = (proc.returncode, out.strip().splitlines()[-1:] or [err.strip()])
        for proc in (send, recv):  # SIGTERM: a clean stop, exit 0
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
            results[proc.args[2]] = (proc.returncode, err.strip().splitlines()[-1:])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    bad = {what: got for what, got in results.items() if got[0] != 0}
    if bad:
        raise Failed(f"bridge: {bad}; all: {results}")
    print(f"bridge: C reader: {results['C reader'][1][0]}; read.py: {results['read.py'][1][0]}")


def inside(job: dict) -> int:
    try:
        hide(job["hide_files"], job["hide_dirs"])
        {"install": install, "python": use_python, "programs": use_programs}[job["step"]](job)
    except (Failed, subprocess.SubprocessError, AssertionError, OSError) as e:
        print(f"{job['step']}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- outside


def wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def hidden_paths(wheel: Path) -> Dict[str, List[str]]:
    files = set()
    for name in COMPILERS:
        found = shutil.which(name)
        if found:
            files.add(os.path.realpath(found))
    for pattern in COMPILER_GLOBS:
        files.update(os.path.realpath(p) for p in glob.glob(pattern) if os.path.isfile(p))
    for pkg in bundled_packages(wheel):
        listed = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True).stdout.split()
        files.update(os.path.realpath(p) for p in listed if ".so" in os.path.basename(p)
                     and os.path.isfile(p))  # fmt: skip
    files = {f for f in files if "/ld-linux" not in f}  # the dynamic loader runs everything
    if not files:
        raise Failed("nothing to hide?")
    return {"hide_files": sorted(files), "hide_dirs": [d for d in COMPILER_DIRS if os.path.isdir(d)]}


def in_namespace(job: dict, log: Path) -> None:
    cmd = ["unshare", "--mount", "--propagation", "private", "--", sys.executable, __file__,
           "--inside", json.dumps(job)]  # fmt: skip
    with open(log, "a") as f:
        f.write(f"--- {job['step']} (in the namespace)\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=900, cwd=job["work"])
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-12:])
        raise Failed(f"{job['step']} failed (see {log}):\n{tail}")


def compile_programs(venv: Path, work: Path, names: dict) -> Dict[str, str]:
    """The README's C programs and examples/c's writer and reader, built
    against the wheel's library with python -m shmlane.config's flags; one
    of them with pkg-config's too (where pkg-config is), which must agree."""
    flags = sh([str(venv / "bin/python"), "-m", "shmlane.config", "--cflags", "--libs"]).split()
    if shutil.which("pkg-config"):
        pcdir = sh([str(venv / "bin/python"), "-m", "shmlane.config", "--pkgconfigdir"]).strip()
        pc = sh(["pkg-config", "--cflags", "--libs", "shmlane"],
                env=dict(os.environ, PKG_CONFIG_PATH=pcdir)).split()  # fmt: skip
        if [os.path.normpath(f) for f in pc] != [os.path.normpath(f) for f in flags]:
            raise Failed(f"pkg-config says {pc}, shmlane.config {flags}")
    exes = {}
    for block_id in BLOCKS:
        if block_id.startswith("c-"):
            src = work / f"{block_id.replace('-', '_')}.c"
            src.write_text(source(block_id, names["c"]))
            exes[block_id] = str(src.with_suffix(""))
            sh(["cc", "-O1", "-o", exes[block_id], str(src), *flags])
    for name in ("writer", "reader"):
        exes[name] = str(work / name)
        sh(["cc", "-O1", "-o", exes[name], str(ROOT / "examples/c" / f"{name}.c"), *flags, "-lm"])
    needed = sh(["readelf", "-d", exes["reader"]]) if shutil.which("readelf") else "libshmlane.so.0"
    if "libshmlane.so.0" not in needed:
        raise Failed("the reader does not link libshmlane.so.0")
    return exes


def check_run(tag: str, minor: str, wheel: Path, work: Path, prefix: str) -> None:
    python = find_python(minor)
    if python is None:
        raise Failed(f"no CPython {minor} found")
    here = work / f"{tag}-{minor}"
    shutil.rmtree(here, ignore_errors=True)
    here.mkdir(parents=True)
    log = here / "log.txt"
    # The README's Python and C programs use the same names: each gets its own.
    base = f"{prefix}{tag}{minor.replace('.', '')}"
    readme = {n for ids in BLOCKS.values() for n in ids}
    names = {kind: {n: f"{base}{kind}{n}" for n in readme} for kind in ("py", "c")}
    names.update({n: base + n for n in ("cli", "camera", "bridge_src", "bridge_dst")})
    job = {"python": python, "venv": str(here / "venv"), "wheel": str(wheel), "work": str(here),
           "names": names, "version": wheel_version(wheel), **hidden_paths(wheel)}  # fmt: skip
    for step in ("install", "python"):
        t = time.monotonic()
        in_namespace(dict(job, step=step), log)
        print(f"check: {tag} on {minor}: {step} ok ({time.monotonic() - t:.0f} s)", flush=True)
    t = time.monotonic()
    job["exes"] = compile_programs(Path(job["venv"]), here, names)
    in_namespace(dict(job, step="programs"), log)
    print(f"check: {tag} on {minor}: C programs and bridge ok ({time.monotonic() - t:.0f} s)",
          flush=True)  # fmt: skip


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--inside":
        return inside(json.loads(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dist", default=str(ROOT / "dist"), help="where the wheels are (dist/)")
    ap.add_argument("--work", default=str(ROOT / "build-dist" / "check"), help="venvs and logs")
    ap.add_argument("--all", action="store_true", help="every CPython each wheel is for")
    a = ap.parse_args()
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        print("check: needs root and unshare (mount namespaces)")
        return 1
    dist, work = Path(a.dist).resolve(), Path(a.work).resolve()
    prefix = f"whl{os.getpid()}"
    passed = failed = 0
    start = time.monotonic()
    try:
        for tag, minor in RUNS + (MORE_RUNS if a.all else []):
            wheels = sorted(dist.glob(f"shmlane-*-{tag}-*.whl")) if tag == "abi3" else \
                sorted(dist.glob(f"shmlane-*-{tag}-{tag}-*.whl"))  # fmt: skip
            try:
                if len(wheels) != 1:
                    raise Failed(f"{len(wheels)} {tag} wheels in {dist}: make dist first")
                problems = platform_tags(wheels[0])
                if problems:
                    raise Failed("; ".join(problems))
                check_run(tag, minor, wheels[0], work, prefix)
                passed += 1
            except (Failed, subprocess.SubprocessError) as e:
                print(f"check: {tag} on {minor}: FAILED: {e}", flush=True)
                failed += 1
    finally:
        for left in glob.glob(f"/dev/shm/shl.{prefix}*"):
            os.unlink(left)
    print(f"check: {time.monotonic() - start:.0f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

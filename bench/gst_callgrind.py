"""Instructions per frame of the sink process of bench/gst.py's flat-out
pipelines, counted by callgrind (docs/gstreamer.md, Figures; not part of
`make bench`): `videotestsrc pattern=black num-buffers=N ! I420 ! SINK`
run by gst-launch-1.0 for a few and for more frames, the difference of the
two totals divided by the difference of the frames. Deterministic where a
timed run is not, so it shows what the elements add to a frame beside
fakesink's (videotestsrc painting the frame) even on a loaded machine. No
reader runs: no wake-up is counted, for either sink. Part of the difference
to fakesink is not the sink's: videotestsrc copies its frame a row at a
time, and glibc's memcpy takes a path 2 instructions longer a row for
destinations placed as both sinks' shared memory is (1,920 instructions a
frame at 640x480, 4,320 at 1080p).

    python bench/gst_callgrind.py --plugin build/gst [--size 640x480 ...]
        [--methods shmlane shm fakesink] [--frames 100 400] [--functions N]

--functions N also prints the N functions whose inclusive cost a frame
differs most from fakesink's run (callgrind_annotate --inclusive)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from pathlib import Path

from gst import METHODS, pipelines

ALL = [*METHODS, "fakesink"]
TOTAL = re.compile(r"^summary:\s+(\d+)", re.M)
FUNCTION = re.compile(r"^\s*([\d,]+)\s+\([^)]*\)\s+\S+:(\S+)", re.M)


def sink_pipeline(method: str, width: int, height: int, frames: int, tag: str) -> str:
    if method == "fakesink":
        send, _ = pipelines("shmlane", width, height, False, tag)
        send = send.split(" ! shmlanesink")[0] + " ! fakesink sync=false"
    else:
        send, _ = pipelines(method, width, height, False, tag)
    return send.replace("videotestsrc ", f"videotestsrc num-buffers={frames} ", 1)


def run(env: dict, method: str, size: tuple, frames: int, out: str) -> int:
    """One run under callgrind: its total instructions."""
    tag = f"gcg{os.getpid()}{method}"
    try:
        r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                            "gst-launch-1.0", *sink_pipeline(method, *size, frames,
                                                               tag).split()],
                           env=env, capture_output=True, text=True)
        # Every frame went through: EOS came. shmsink's stop then posts
        # "Failed waiting on fd activity", and gst-launch ends with 1.
        if "Got EOS" not in r.stdout or (r.returncode != 0 and not (
                method == "shm" and "fd activity" in r.stdout + r.stderr)):
            raise RuntimeError(f"{method}: {r.stdout}{r.stderr}")
    finally:
        for leftover in (f"/dev/shm/shl.{tag}", f"{tempfile.gettempdir()}/{tag}"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return int(TOTAL.search(Path(out).read_text())[1])


def inclusive(out: str) -> dict:
    """Inclusive instructions by function name (unnamed ones, in libraries
    without symbols, left out)."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", "--auto=no",
                           out], capture_output=True, text=True, check=True).stdout
    return {m[2]: int(m[1].replace(",", "")) for m in FUNCTION.finditer(text)
            if not m[2].startswith("0x")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plugin", required=True, help="directory of libgstshmlane.so")
    ap.add_argument("--size", nargs="+", default=["640x480", "1920x1080"])
    ap.add_argument("--methods", nargs="+", default=ALL, choices=ALL)
    ap.add_argument("--frames", nargs=2, type=int, default=[100, 400])
    ap.add_argument("--functions", type=int, default=0)
    args = ap.parse_args()
    few, more = args.frames
    if not 0 <= few < more:
        ap.error("--frames: fewer, then more")
    with tempfile.TemporaryDirectory() as tmp:
        # A registry of its own, made before the runs so that none counts it.
        env = {**os.environ, "GST_PLUGIN_PATH": str(Path(args.plugin).resolve()),
               "GST_REGISTRY": f"{tmp}/registry.bin"}
        subprocess.run(["gst-inspect-1.0", "shmlanesink"], env=env, check=True,
                       capture_output=True)
        for size in args.size:
            wh = tuple(int(x) for x in size.split("x"))
            per: dict = {}
            for method in args.methods:
                outs = [f"{tmp}/{method}.{size}.{n}" for n in (few, more)]
                totals = [run(env, method, wh, n, o) for n, o in zip((few, more), outs)]
                print(f"{size:9} {method:8} {(totals[1] - totals[0]) / (more - few):10,.0f} "
                      "instructions/frame", flush=True)
                if args.functions:
                    a, b = inclusive(outs[0]), inclusive(outs[1])
                    per[method] = {f: (b.get(f, 0) - a.get(f, 0)) / (more - few) for f in b}
            for method in per:
                if method == "fakesink":
                    continue
                base = per.get("fakesink", {})
                diff = sorted(((v - base.get(f, 0), v, f) for f, v in per[method].items()),
                              key=lambda t: -abs(t[0]))
                print(f"{size} {method}: inclusive instructions a frame (beside fakesink's)")
                for d, v, f in diff[:args.functions]:
                    print(f"  {v:10,.0f} ({d:+9,.0f})  {f}")


if __name__ == "__main__":
    main()

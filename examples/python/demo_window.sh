#!/usr/bin/env bash
# Checks that `make demo` shows its frames in a window: runs it on the
# virtual display this script is given (xvfb-run), takes a screenshot of the
# display 3 s after the writer starts, and checks that it holds read.py's
# window with a frame in it: a region of at least 640x480 in many colours
# (the test pattern's gradients), on an otherwise black screen.
#
#   xvfb-run -a -s "-screen 0 1024x768x24" examples/python/demo_window.sh MAKE PYTHON [SHOT.png]
#
# `make demo-window` runs it. Exits 0 only if make demo passed and the
# screenshot shows the window. Needs ImageMagick's `import`.
set -u
make=${1:?usage: demo_window.sh MAKE PYTHON [SHOT.png]}
python=${2:?usage: demo_window.sh MAKE PYTHON [SHOT.png]}
shot=${3:-demo-window.png}
[ -n "${DISPLAY:-}" ] || { echo "demo_window.sh: no DISPLAY: run it under xvfb-run" >&2; exit 2; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT

$make demo >"$log" 2>&1 &
demo=$!
for _ in $(seq 600); do # the demo first installs the package and OpenCV
  grep -q '^writer:' "$log" && break
  kill -0 "$demo" 2>/dev/null || break
  sleep 0.2
done
sleep 3
import -window root "$shot"
wait "$demo"
demo_rc=$?
grep -v -e '^QFontDatabase' -e '^Note that Qt' "$log" # OpenCV's Qt build finds no fonts of its own
echo "--- make demo exit $demo_rc; screenshot in $shot"

"$python" - "$shot" <<'PY' && [ "$demo_rc" -eq 0 ]
import sys

import cv2  # opencv-python: make demo installed it for the display
import numpy as np

image = cv2.imread(sys.argv[1])
lit = np.argwhere(image.any(axis=2))  # the root window is black where nothing is drawn
if not lit.size:
    sys.exit("screenshot: the display is black, no window")
(top, left), (bottom, right) = lit.min(axis=0), lit.max(axis=0) + 1
region = image[top:bottom, left:right].reshape(-1, 3)
colours = len(np.unique(region, axis=0))
print(f"screenshot: a window of {right - left}x{bottom - top} at ({left}, {top}), {colours} colours")
if right - left < 640 or bottom - top < 480 or colours < 1000:
    sys.exit("screenshot: that is not read.py's window showing a frame")
PY

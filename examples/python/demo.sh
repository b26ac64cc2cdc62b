#!/usr/bin/env bash
# Run the Python stream demo: write.py publishes a test pattern at 30 fps for
# 10 s, each frame with its metadata record, 640x480 then 320x240 after 4 s
# and 640x480 again after 8 s (each change a new stream under the name, which
# the reader follows), and read.py shows it in a window with the metadata
# drawn on it (or, without a display, prints frames/s, latency, drops and
# metadata checks once a second): two unrelated processes that share nothing
# but the stream's name.
#
#   examples/python/demo.sh [PYTHON]
#
# Exits 0 only if both exit 0 and the reader saw frames, none of them torn
# and each with the metadata that belongs to it.
set -u
python=${1:-python3}
here=$(dirname "$0")
name=pydemo.$$ # a name of our own: a stream left by another run cannot interfere
log=$(mktemp)
# A stream outlives its writer (a restarted writer takes it over): remove ours.
trap 'rm -f "$log"; "$python" -c "import shmlane, sys; shmlane.unlink(sys.argv[1])" "$name" 2>/dev/null' EXIT

headless=--headless
[ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && headless= # read.py falls back to printing by itself

# The reader starts first and waits for the writer's stream to appear. It
# stops once the writer is gone; --seconds is a backstop.
"$python" "$here/read.py" --name "$name" --mode latest $headless --wait-open 30 --seconds 60 \
  --exit-on-gone | tee "$log" &
reader=$!
"$python" "$here/write.py" --name "$name" --width 640 --height 480 --fps 30 --seconds 10 \
  --resize-every 4 320x240 &
writer=$!

wait "$writer"
writer_rc=$?
wait "$reader"
reader_rc=$? # tee's status: read.py's comes from the log below
summary=$(grep '^reader: frames=' "$log")
frames=$(sed -n 's/.*frames=\([0-9]*\).*/\1/p' <<<"$summary")
torn=$(sed -n 's/.*torn=\([0-9]*\).*/\1/p' <<<"$summary")
bad=$(sed -n 's/.* bad=\([0-9]*\).*/\1/p' <<<"$summary")
echo "--- writer exit $writer_rc, ${frames:-no} frame(s) received, ${torn:-?} torn," \
  "${bad:-?} with metadata that disagrees"
[ "$writer_rc" -eq 0 ] && [ "$reader_rc" -eq 0 ] && [ "${frames:-0}" -gt 0 ] && [ "${torn:-1}" -eq 0 ] \
  && [ "${bad:-1}" -eq 0 ]

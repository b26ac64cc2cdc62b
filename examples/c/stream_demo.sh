#!/usr/bin/env bash
# Run the C stream demo: a writer publishing 640x480 frames at 30 fps for 2 s
# and a reader checking every frame, two unrelated processes that share
# nothing but the stream's name.
#
#   examples/c/stream_demo.sh BUILD_DIR
#
# Exits 0 only if both exit 0 and the reader saw frames, none of them torn.
set -u
build=${1:?usage: stream_demo.sh BUILD_DIR}
bin=$build/examples/c
name=stream-demo.$$ # a name of our own: a stream left by another run cannot interfere
log=$(mktemp)
# A stream outlives its writer (a restarted writer takes it over): remove ours.
trap 'rm -f "$log"; "$build/tools/shmlane" rm "$name" 2>/dev/null' EXIT

# The reader starts first and waits for the writer's stream to appear. It
# stops once the writer is gone and every frame is in; --seconds is a backstop.
"$bin/reader" --name "$name" --mode all --seconds 20 --exit-on-gone >"$log" &
reader=$!
"$bin/writer" --name "$name" --width 640 --height 480 --fps 30 --seconds 2 &
writer=$!

wait "$writer"
writer_rc=$?
wait "$reader"
reader_rc=$?

echo "--- what the reader saw:"
cat "$log"
summary=$(grep '^reader: frames=' "$log")
frames=$(sed -n 's/.*frames=\([0-9]*\).*/\1/p' <<<"$summary")
torn=$(sed -n 's/.*torn=\([0-9]*\).*/\1/p' <<<"$summary")
echo "--- writer exit $writer_rc, reader exit $reader_rc, ${frames:-no} frame(s), ${torn:-?} torn"
[ "$writer_rc" -eq 0 ] && [ "$reader_rc" -eq 0 ] && [ "${frames:-0}" -gt 0 ] && [ "${torn:-1}" -eq 0 ]

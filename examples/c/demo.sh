#!/usr/bin/env bash
# Run the C demo: a watcher and a publisher, two unrelated processes that
# share nothing but a named segment.
#
#   examples/c/demo.sh BUILD_DIR
#
# Exits 0 only if both exit 0 and the watcher saw changes.
set -u
build=${1:?usage: demo.sh BUILD_DIR}
bin=$build/examples/c
name=demo.$$ # a name of our own: a segment left by another run cannot interfere
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# The watcher starts first and waits for the publisher's segment to appear.
"$bin/demo_watcher" "$name" >"$log" &
watcher=$!
"$bin/demo_publisher" "$name" &
publisher=$!

wait "$publisher"
publisher_rc=$?
wait "$watcher"
watcher_rc=$?

echo "--- what the watcher saw:"
cat "$log"
changes=$(grep -c '^version=' "$log")
echo "--- publisher exit $publisher_rc, watcher exit $watcher_rc, $changes change(s) seen"
[ "$publisher_rc" -eq 0 ] && [ "$watcher_rc" -eq 0 ] && [ "$changes" -gt 0 ]

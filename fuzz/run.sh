#!/usr/bin/env bash
# Runs libFuzzer targets for SECONDS each and holds each to its coverage floor.
#
# Inputs of fuzz_<target>: what earlier runs found (BUILD/corpus-<target>,
# where new inputs go), the seeds the build made from the code as it is
# (BUILD/fuzz/seeds/<target>) and the checked-in regression inputs
# (fuzz/corpus/<target>). Crashes go to BUILD/artifacts/<target>-*.
# Prints each target's executions and edges (libFuzzer's "cov"), and fails
# when a target crashed, or ended below the floor that fuzz/fuzz_<target>.floor
# records for KIND (smoke: make fuzz-smoke; fuzz: make fuzz): seeds that no
# longer reach past a check show up as a fall in edges, not as an error.
#
# Usage: fuzz/run.sh BUILD SECONDS KIND TARGET...
set -u
build=$1 seconds=$2 kind=$3
shift 3
here=$(dirname "$0")
mkdir -p "$build/artifacts"
status=0
for t in "$@"; do
  floor_file=$here/fuzz_$t.floor
  floor=$(awk -v k="$kind" '$1 == k { print $2 }' "$floor_file" 2>/dev/null)
  case $floor in
    '' | *[!0-9]*) echo "fuzz_$t: no '$kind' floor in $floor_file"; status=1; continue ;;
  esac
  mkdir -p "$build/corpus-$t"
  dirs=("$build/corpus-$t")
  for d in "$build/fuzz/seeds/$t" "$here/corpus/$t"; do
    if [ -d "$d" ]; then dirs+=("$d"); fi
  done
  log=$build/log-$t.txt
  "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$t-" "${dirs[@]}" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  edges=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\) .*/\1/p')
  features=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\) .*/\1/p')
  echo "fuzz_$t: $seconds s, ${execs:-?} executions, ${edges:-?} edges (floor $floor)," \
    "${features:-?} features, exit $rc"
  if [ "$rc" -ne 0 ]; then
    status=1
    grep -E 'ERROR|SUMMARY|runtime error|Test unit' "$log" | head -n 5
  elif [ "${edges:-0}" -lt "$floor" ]; then
    status=1
    echo "fuzz_$t: below its $kind floor ($floor_file): do its seeds still reach past the" \
      "format checks? (log: $log)"
  fi
done
exit $status

#!/usr/bin/env bash
# Runs libFuzzer targets for SECONDS each and holds each to its coverage floor.
#
# Inputs of fuzz_<target>: what earlier runs found (BUILD/corpus-<target>,
# where new inputs go), the seeds the build made from the code as it is
# (BUILD/fuzz/seeds/<target>) and the checked-in regression inputs
# (fuzz/corpus/<target>). Crashes go to BUILD/artifacts/<target>-*.
# Prints each target's executions and edges (libFuzzer's "cov"), and fails
# when a target crashed, or ended below its floor: seeds that no longer reach
# past a check show up as a fall in edges, not as an error.
#
# fuzz/fuzz_<target>.floor holds lines "KIND EDGES [EXECUTIONS]": a run of
# KIND (fuzz: make fuzz) that made at least EXECUTIONS (0 if left out) must
# end with EDGES or more. The smoke lines hold for every run (make
# fuzz-smoke's, and one a loaded machine left too few executions for the
# others); every floor file needs one.
#
# Usage: fuzz/run.sh BUILD SECONDS KIND TARGET...
set -u
build=$1 seconds=$2 kind=$3
shift 3
here=$(dirname "$0")
mkdir -p "$build/artifacts"

# floor FILE KIND EXECUTIONS: "EDGES EXECUTIONS KIND" of the highest floor
# that holds for a run of KIND that made EXECUTIONS; nothing without a smoke line.
floor() {
  awk -v k="$2" -v n="$3" '
    ($1 == k || $1 == "smoke") && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]*$/ && $3 + 0 <= n + 0 &&
      $2 + 0 >= m + 0 { m = $2; x = $3 + 0; kind = $1 }
    $1 == "smoke" { smoke = 1 }
    END { if (smoke) print m + 0, x + 0, kind }' "$1" 2>/dev/null
}

status=0
for t in "$@"; do
  floor_file=$here/fuzz_$t.floor
  if [ -z "$(floor "$floor_file" smoke 0)" ]; then
    echo "fuzz_$t: no smoke floor in $floor_file"
    status=1
    continue
  fi
  dirs=("$build/corpus-$t")
  for d in "$build/fuzz/seeds/$t" "$here/corpus/$t"; do
    if [ -d "$d" ]; then dirs+=("$d"); fi
  done
  mkdir -p "$build/corpus-$t"
  log=$build/log-$t.txt
  "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$t-" "${dirs[@]}" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  edges=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\) .*/\1/p')
  features=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\) .*/\1/p')
  read -r edges_min at from < <(floor "$floor_file" "$kind" "${execs:-0}")
  why=
  if [ "$from" != "$kind" ]; then
    why=", its $from floor: too few executions for its $kind floors"
  elif [ "$at" -gt 0 ]; then
    why=", for runs of $at executions or more"
  fi
  echo "fuzz_$t: $seconds s, ${execs:-?} executions, ${edges:-?} edges (floor $edges_min$why)," \
    "${features:-?} features, exit $rc"
  if [ "$rc" -ne 0 ]; then
    status=1
    grep -E 'ERROR|SUMMARY|runtime error|Test unit' "$log" | head -n 5
  elif [ "${edges:-0}" -lt "$edges_min" ]; then
    status=1
    echo "fuzz_$t: below its floor ($floor_file): do its seeds still reach past the" \
      "format checks? (log: $log)"
  fi
done
exit $status

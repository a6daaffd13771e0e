#!/usr/bin/env bash
# Compares one criterion bench between a git revision and the working tree,
# the way this shared machine allows: both builds run at the same time, each
# pinned to its own core, then again with the cores swapped. A slow minute of
# the machine then slows both alike, and the ratio of the pair is what to
# read (one build run after the other swings by 20-30% here).
#
#   scripts/ab-bench.sh BASE_REV BENCH FILTER [ROUNDS]
#   scripts/ab-bench.sh HEAD~1 engine 'apply_1m_workers$' 2
#
# FILTER is criterion's filter and should select one bench. Each round runs
# two pairs (cores swapped); the output is one line per pair and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 3 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
base_rev="$1" bench="$2" filter="$3" rounds="${4:-2}"
if [ "$(nproc)" -lt 2 ]; then
  echo "needs two cores, one per build" >&2
  exit 1
fi

work="$(mktemp -d)"
cleanup() {
  git worktree remove --force "$work/base" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# One target directory: dependencies are built once (see the note at the
# builds below on why the working tree's sources are touched).
target="${CARGO_TARGET_DIR:-$PWD/target}"

# Builds the bench in directory $1 and copies its executable to $2.
build() {
  local exe
  exe="$(cd "$1" && CARGO_TARGET_DIR="$target" cargo bench --bench "$bench" --no-run \
    --message-format=json 2>/dev/null |
    grep -F '"kind":["bench"]' | grep -F "\"name\":\"$bench\"" |
    grep -o '"executable":"[^"]*"' | tail -1 | sed 's/"executable":"\(.*\)"/\1/')"
  if [ -z "$exe" ]; then
    echo "building bench '$bench' in $1 failed; run cargo bench --bench $bench --no-run there" >&2
    exit 1
  fi
  cp "$exe" "$2"
}

echo "== building $base_rev and the working tree"
git worktree add --detach --quiet "$work/base" "$base_rev"
build "$work/base" "$work/bench-base"
# Both builds share one target directory, and cargo names the crate's
# artifacts alike from either checkout: having just built the base, it
# would take the working tree's sources (older than that build) for
# unchanged and hand back the base's bench. Newer sources make it rebuild.
find src benches -type f -exec touch {} +
build "$PWD" "$work/bench-new"

# Runs build $1 on core $2; prints its median throughput in elements/s.
run() {
  CRITERION_HOME="$work/criterion-$1" taskset -c "$2" "$work/bench-$1" --bench "$filter" 2>"$work/$1.err" |
    awk '/^ *thrpt: +\[[0-9]/ && !seen {
      seen = 1; v = $4; u = $5
      m = (u ~ /^G/) ? 1e9 : (u ~ /^M/) ? 1e6 : (u ~ /^K/) ? 1e3 : 1
      printf "%.0f\n", v * m
    }'
}

ratios=()
for round in $(seq 1 "$rounds"); do
  for cores in "0 1" "1 0"; do
    set -- $cores
    run base "$1" >"$work/base.out" &
    run new "$2" >"$work/new.out" &
    wait
    b="$(cat "$work/base.out")" n="$(cat "$work/new.out")"
    if [ -z "$b" ] || [ -z "$n" ]; then
      echo "no throughput read: does '$filter' select a bench of '$bench'?" >&2
      tail -n 3 "$work/base.err" "$work/new.err" >&2
      exit 1
    fi
    r="$(awk -v n="$n" -v b="$b" 'BEGIN { printf "%.3f", n / b }')"
    ratios+=("$r")
    echo "round $round: base $b/s on core $1, new $n/s on core $2, new/base $r"
  done
done
echo "new/base per pair: ${ratios[*]}"

#!/usr/bin/env bash
# Quick stop/start cycles of one detector against a Tansu broker of its own:
# each cycle starts `driftwatch run`, waits until its log says either that it
# was assigned partitions or that it has held none for longer than
# kafka.unassigned_warning, and stops it with SIGTERM (STOP_SIGNAL=KILL
# kills it instead, so that the next one joins while the group still holds
# the dead member until its session times out). A cycle in which the
# detector says neither within the limit (silent and unassigned) fails the
# run. Prints one line per cycle and a summary.
#
#   scripts/stop-start-loop.sh [cycles, default 50] [driftwatch binary]
#
# Needs `tansu` on PATH (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

CYCLES="${1:-50}"
BIN="${2:-target/release/driftwatch}"
LIMIT=90 # seconds a cycle may take to say something
export PATH="$HOME/.cargo/bin:$PATH"
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release, or give the binary" >&2; exit 2; }
command -v tansu >/dev/null || { echo "tansu is not on PATH (scripts/test.sh installs it)" >&2; exit 2; }

work="$(mktemp -d)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tansu_pid=""
det_pid=""
cleanup() {
  [ -n "$det_pid" ] && kill -9 "$det_pid" 2>/dev/null || true
  [ -n "$tansu_pid" ] && kill "$tansu_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$work" && exec tansu broker --storage-engine "sqlite://broker.db" \
  --listener-url "tcp://127.0.0.1:$port" \
  --advertised-listener-url "tcp://127.0.0.1:$port" >"$work/tansu.log" 2>&1) &
tansu_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

cat >"$work/driftwatch.toml" <<EOF
[detector]
idle_advance = "off"
shutdown_timeout = "30s"

[admin]
listen = "127.0.0.1:$admin"

[kafka]
bootstrap_servers = "127.0.0.1:$port"
group_id = "stop-start-loop"
unassigned_warning = "10s"

[kafka.librdkafka]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
EOF

"$BIN" create-topics --config "$work/driftwatch.toml" --partitions 3 >/dev/null
"$BIN" generate --config "$work/driftwatch.toml" --workers 300 --rate 50 --duration 5s 2>/dev/null

assigned=0 warned=0 silent=0
for cycle in $(seq 1 "$CYCLES"); do
  log="$work/cycle-$cycle.log"
  RUST_LOG=info "$BIN" run --config "$work/driftwatch.toml" 2>"$log" >/dev/null &
  det_pid=$!
  outcome=silent
  started=$(date +%s)
  while [ $(( $(date +%s) - started )) -lt "$LIMIT" ]; do
    if grep -q "rebalance: assigned partitions" "$log"; then outcome=assigned; break; fi
    if grep -q "has held no partition for" "$log"; then outcome=warned; break; fi
    if ! kill -0 "$det_pid" 2>/dev/null; then outcome=exited; break; fi
    sleep 0.2
  done
  took=$(( $(date +%s) - started ))
  kill -"${STOP_SIGNAL:-TERM}" "$det_pid" 2>/dev/null || true
  wait "$det_pid" 2>/dev/null || true
  det_pid=""
  echo "cycle $cycle: $outcome after ${took}s"
  case "$outcome" in
    assigned) assigned=$((assigned + 1)) ;;
    warned) warned=$((warned + 1)) ;;
    *) silent=$((silent + 1)); echo "--- log of cycle $cycle:"; tail -20 "$log" ;;
  esac
done
echo "$CYCLES cycles: $assigned assigned, $warned warned of holding no partition, $silent silent"
[ "$silent" -eq 0 ]

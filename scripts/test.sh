#!/usr/bin/env bash
# The test suite with everything it needs: installs Tansu (a Kafka-compatible
# broker, cached in ~/.cargo/bin after the first install), starts it on a
# fresh sqlite file, runs `cargo test --all-targets` (the in-process mock
# cluster) and then the Tansu cases, and stops it.
#
#   scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

TANSU_VERSION=0.6.0
PORT="${DRIFTWATCH_TANSU_PORT:-19092}"
export PATH="$HOME/.cargo/bin:$PATH"

if ! tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  echo "== installing Tansu $TANSU_VERSION (once; about 15 minutes on two cores)"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
fi

# The independent readers of the finding encoding tests: fastavro for Avro,
# jsonschema for OCSF, and the pinned package the OCSF schema fixture is
# generated from (scripts/ocsf-schema.py --check compares).
venv="${XDG_CACHE_HOME:-$HOME/.cache}/driftwatch-test-venv"
ocsf_req="$(python3 scripts/ocsf-schema.py --requirement)"
if ! "$venv/bin/python" -c "import fastavro, jsonschema, importlib.metadata as m; assert m.version('${ocsf_req%%==*}') == '${ocsf_req#*==}'" 2>/dev/null; then
  echo "== installing fastavro, jsonschema and $ocsf_req into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q fastavro "jsonschema>=4.18,<5" "$ocsf_req"
fi
export DRIFTWATCH_PYTHON="$venv/bin/python"

work="$(mktemp -d)"
tansu_pid=""
cleanup() {
  if [ -n "$tansu_pid" ]; then kill "$tansu_pid" 2>/dev/null || true; wait "$tansu_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "port $PORT is in use; stop what listens there or set DRIFTWATCH_TANSU_PORT" >&2
  exit 1
fi
echo "== starting Tansu on 127.0.0.1:$PORT"
(cd "$work" && exec tansu broker \
  --storage-engine "sqlite://broker.db" \
  --listener-url "tcp://127.0.0.1:$PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$PORT" >"$work/tansu.log" 2>&1) &
tansu_pid=$!
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  if ! kill -0 "$tansu_pid" 2>/dev/null; then cat "$work/tansu.log"; echo "Tansu did not start"; exit 1; fi
  sleep 0.1
done

export DRIFTWATCH_TANSU_BOOTSTRAP="127.0.0.1:$PORT"
echo "== cargo test --all-targets"
cargo test --all-targets "$@"
# The Tansu cases are #[ignore]d so that a plain `cargo test` says they did
# not run; here the broker is up, and they run.
# reliability::corpus::tansu is left out: reading its dead-letter topic back
# spins Tansu 0.6 (RELIABILITY.md, known limits); the mock cluster variant
# proves the same guarantee, and the case can still be run by name.
echo "== the Tansu cases"
cargo test --test it "$@" -- --ignored --skip reliability::corpus::tansu

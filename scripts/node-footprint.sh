#!/usr/bin/env bash
# Measures herd-node's idle footprint at its default 5 s cadence: RSS and CPU share while it
# reports a simulated Ollama to a local `herd`. Everything listens on 127.0.0.1.
#   bash scripts/node-footprint.sh [seconds]   (default 120)
set -euo pipefail
secs=${1:-120}
cd "$(dirname "$0")/.."
cargo build --release -q -p herd-node -p herd-tokio -p herd-fake-ollama --bin herd-node --bin herd --bin herd-fake-ollama
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port); oport=$(free_port); data=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
target/release/herd --host 127.0.0.1 --port "$rport" --data-dir "$data" >"$data/herd.log" 2>&1 & pids+=($!)
target/release/herd-fake-ollama --port "$oport" --preload qwen3:8b >"$data/fake.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$rport/api/version" >/dev/null && break; sleep 0.1; done
NO_COLOR=1 target/release/herd-node --router-url "http://127.0.0.1:$rport" \
  --ollama-host "http://127.0.0.1:$oport" --node-id footprint >"$data/node.log" 2>&1 & node=$!; pids+=($node)
sleep 6 # first heartbeat and NVML/sysinfo start-up are not part of the steady state
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' "/proc/$node/stat"; }
t0=$(ticks); s0=$(date +%s.%N)
sleep "$secs"
t1=$(ticks); s1=$(date +%s.%N)
rss=$(awk '/VmRSS/{print $2}' "/proc/$node/status"); hwm=$(awk '/VmHWM/{print $2}' "/proc/$node/status")
status=$(curl -s "http://127.0.0.1:$rport/fleet/status" | python3 -c 'import json,sys; print([n["status"] for n in json.load(sys.stdin)["nodes"] if n["node_id"]=="footprint"])')
python3 - "$t0" "$t1" "$s0" "$s1" "$hz" "$rss" "$hwm" "$status" <<'PY'
import sys
t0, t1, s0, s1, hz = (float(x) for x in sys.argv[1:6])
rss, hwm, status = int(sys.argv[6]), int(sys.argv[7]), sys.argv[8]
print(f"herd-node over {s1 - s0:.0f} s at a 5 s cadence: CPU {100 * (t1 - t0) / hz / (s1 - s0):.3f} % of one core, "
      f"RSS {rss / 1024:.1f} MB (peak {hwm / 1024:.1f} MB), node status at the router: {status}")
PY

#!/usr/bin/env bash
# Measures herd-node's idle footprint at its default 5 s cadence: RSS and CPU share while it
# reports a simulated Ollama to a local `herd`. Everything listens on 127.0.0.1.
#   bash scripts/node-footprint.sh [seconds]   (default 120)
set -euo pipefail
secs=${1:-120}
cd "$(dirname "$0")/.."
cargo build --release -q -p herd-node -p herd-tokio -p herd-fake-ollama -p herd-bench \
  --bin herd-node --bin herd --bin herd-fake-ollama --bin herd-bench
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
# herd-bench watches it (RSS, peak RSS and CPU from /proc) for the whole period.
watch=$(target/release/herd-bench --proc "$node" --proc-secs "$secs")
status=$(curl -s "http://127.0.0.1:$rport/fleet/status" | python3 -c 'import json,sys; print([n["status"] for n in json.load(sys.stdin)["nodes"] if n["node_id"]=="footprint"])')
python3 - "$watch" "$status" <<'PY'
import json, sys
w, status = json.loads(sys.argv[1]), sys.argv[2]
print(f"herd-node over {w['wall_secs']:.0f} s at a 5 s cadence: CPU {100 * w['cpu_cores']:.3f} % of one core, "
      f"RSS {w['rss_kb'] / 1024:.1f} MB (peak {w['hwm_kb'] / 1024:.1f} MB), node status at the router: {status}")
PY

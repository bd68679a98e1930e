#!/usr/bin/env bash
# vs-ollama-herd.sh: measures the Python router ollama-herd 0.11.4 side by side with herd in one
# run of herd-bench (columns direct, herd, ollama-herd), on the same simulated Ollama.
#
#   bash scripts/vs-ollama-herd.sh [herd-bench options]
#   e.g. bash scripts/vs-ollama-herd.sh --scenario s1,s4 --rounds 1 --secs 2
#
# Options go to herd-bench unchanged, except --fake-port and --ollama-herd, which this script sets.
# What it does:
#   1. In this machine's network namespace: creates the venv with ollama-herd 0.11.4 if it is
#      missing (target/tmp/ollama-herd-0.11.4-venv, as the interop tests do; pip needs PyPI), and
#      builds herd-bench, herd and herd-fake-ollama if they are missing.
#   2. Re-runs itself under `unshare --net --pid --fork --mount-proc --kill-child=SIGTERM`: a
#      private network namespace with only loopback (ollama-herd advertises over mDNS; nothing may
#      leave this machine) and a PID namespace, whose processes the kernel kills when the script
#      ends, however it ends. Normally its trap stops them one by one first (on exit, Ctrl-C or
#      SIGTERM; a signal to unshare reaches the script as SIGTERM).
#   3. There: starts a stand-in simulated Ollama on the fixed fake port, ollama-herd's router
#      (started as node/tests/ollama_herd_router.rs does: uvloop unimportable, the network guard
#      adapter-tokio/tests/interop/sitecustomize.py on PYTHONPATH, a temporary HOME, telemetry
#      off) and ollama-herd's own agent (`herd-node` from the venv, heartbeat every second);
#      waits until the router has the node online with qwen3:8b loaded and has served one chat
#      through it; stops the stand-in; then runs herd-bench with --fake-port on the same port, so
#      the agent goes on reporting the fake the bench starts (and restarts for each --token-ms).
#      ollama-herd's agent exits at start when its Ollama does not answer, hence the stand-in.
#   4. Afterwards prints (on stderr) what ollama-herd's router saw of the node during the run, the
#      router's CPU time and peak memory, and notable lines from its log.
#
# Exit status: herd-bench's (0: every request succeeded, 1: some failed, often ollama-herd's,
# 2: setup failed), or 2 when this script's own setup failed.
#
# Settings (environment):
#   VS_FAKE_PORT (11434), VS_ROUTER_PORT (11435)  ports inside the private namespace
#   VS_NUM_PARALLEL (64)    OLLAMA_NUM_PARALLEL told to ollama-herd's agent: the fake's real
#                           --num-parallel (herd-bench uses max(64, the largest concurrency)).
#                           Without it ollama-herd assumes 1 and sends one request at a time.
#   VS_OLLAMA_HERD_ENV      extra NAME=value words for ollama-herd's router, e.g.
#                           "FLEET_THINKING_OVERHEAD=1 FLEET_THINKING_MIN_PREDICT=0" to stop it
#                           raising num_predict to 1024 for qwen3:8b (the fake reports "thinking").
#   VS_OLLAMA_HERD_UVLOOP=1 run the router on uvloop, as installed (the guard cannot see uvloop's
#                           sockets; the namespace still keeps everything on this machine).
#   VS_KEEP=1               keep the work folder (logs, ollama-herd's HOME); also kept on failure
#                           or with --keep-temp.
# Needs: root (unshare), python3 with venv, curl, jq, ip.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/scripts/$(basename "${BASH_SOURCE[0]}")"
BIN="$ROOT/target/release"
VENV="$ROOT/target/tmp/ollama-herd-0.11.4-venv"
PKG="ollama-herd==0.11.4"
MODEL="qwen3:8b"
NODE_ID="ollama-herd-agent"
FAKE_PORT=${VS_FAKE_PORT:-11434}
ROUTER_PORT=${VS_ROUTER_PORT:-11435}
NUM_PARALLEL=${VS_NUM_PARALLEL:-64}

say() { echo "vs-ollama-herd: $*" >&2; }
die() {
    say "$*"
    exit 2
}

# ---- outside: venv, programs, then the namespace ------------------------------------------------
if [[ -z "${VS_OLLAMA_HERD_PARENT_NETNS:-}" ]]; then
    for arg in "$@"; do
        case "$arg" in
        -h | --help)
            sed -n '2,/^set -euo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//' >&2
            [[ -x "$BIN/herd-bench" ]] && exec "$BIN/herd-bench" --help
            exit 0
            ;;
        --fake-port | --fake-port=* | --ollama-herd | --ollama-herd=*)
            die "$arg is set by this script; leave it out"
            ;;
        esac
    done
    for tool in unshare ip curl jq python3; do
        command -v "$tool" >/dev/null || die "$tool not found"
    done
    # The venv, made as adapter-tokio/tests/common/mod.rs (fn venv) makes it, with the same marker.
    if [[ ! -e "$VENV/installed-$PKG" ]]; then
        say "creating $VENV with $PKG"
        python3 -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$PKG"
        touch "$VENV/installed-$PKG"
    fi
    [[ -x "$VENV/bin/herd-node" ]] || die "$VENV has no bin/herd-node"
    if [[ ! -x "$BIN/herd-bench" || ! -x "$BIN/herd" || ! -x "$BIN/herd-fake-ollama" ]]; then
        say "building herd-bench, herd and herd-fake-ollama"
        (cd "$ROOT" && cargo build --release -p herd-tokio -p herd-fake-ollama -p herd-bench)
    fi
    unshare --net -- true 2>/dev/null || die "cannot create a network namespace (unshare --net needs root)"
    parent_netns=$(readlink /proc/self/ns/net)
    export VS_OLLAMA_HERD_PARENT_NETNS="$parent_netns"
    exec unshare --net --pid --fork --mount-proc --kill-child=SIGTERM -- bash "$SELF" "$@"
fi

# ---- inside the private namespaces --------------------------------------------------------------
[[ "$(readlink /proc/self/ns/net)" != "$VS_OLLAMA_HERD_PARENT_NETNS" ]] ||
    die "refusing to run ollama-herd in the machine's own network namespace"
ip link set lo up

# Nothing of the caller's herd, ollama-herd, Ollama or fake settings, or proxies, reaches any child.
while IFS='=' read -r name _; do
    case "$name" in
    FLEET_* | HERD_* | OLLAMA_* | FAKE_OLLAMA_* | http_proxy | https_proxy | all_proxy | HTTP_PROXY | HTTPS_PROXY | ALL_PROXY)
        unset "$name"
        ;;
    esac
done < <(env)
export NO_PROXY='*' no_proxy='*'

KEEP=${VS_KEEP:-0}
for arg in "$@"; do
    [[ "$arg" == --keep-temp ]] && KEEP=1
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vs-ollama-herd.XXXXXX")
mkdir -p "$WORK/router-home" "$WORK/agent-home" "$WORK/shim"
# ollama-herd's agent starts `ollama serve` when its Ollama does not answer; make sure it can't.
printf '#!/bin/sh\necho "vs-ollama-herd: no real ollama here" >&2\nexit 1\n' >"$WORK/shim/ollama"
chmod +x "$WORK/shim/ollama"
FAKE_URL="http://127.0.0.1:$FAKE_PORT"
ROUTER_URL="http://127.0.0.1:$ROUTER_PORT"

PIDS=() # started here, in start order
STANDIN_PID="" ROUTER_PID="" AGENT_PID="" WATCH_PID="" BENCH_PID=""
RC=2

alive() { [[ -e /proc/$1 ]] && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null; }

# Stops one process started here: SIGTERM, up to 5 s, then SIGKILL.
stop() {
    local pid=$1
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        alive "$pid" || break
        sleep 0.1
    done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    trap - EXIT
    trap '' INT TERM # a second signal must not cut the cleanup short
    local i
    # Latest first: the bench (and its fake), the watcher, the agent (its drain needs the router),
    # the router, the stand-in fake.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop "${PIDS[i]}"
    done
    if [[ "$KEEP" == 1 || "$RC" != 0 ]]; then
        say "kept $WORK (router.log, agent.log, fleet-status.log, ...)"
    else
        rm -rf "$WORK"
    fi
    exit "$RC"
}
trap cleanup EXIT
trap 'say interrupted; RC=130; exit 130' INT TERM

node_ready() {
    curl -sf --max-time 2 "$ROUTER_URL/fleet/status" |
        jq -e --arg n "$NODE_ID" --arg m "$MODEL" \
            '.nodes[] | select(.node_id == $n and .status == "online") | .ollama.models_loaded[]? | select(.name == $m)' \
            >/dev/null
}

# Waits up to $2 seconds for command $3... to succeed, failing with $1 otherwise.
wait_for() {
    local what=$1 secs=$2 pid=$3
    shift 3
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        alive "$pid" || die "$what: the process exited (see $WORK)"
        ((SECONDS < deadline)) || die "$what: not within $secs s (see $WORK)"
        sleep 0.2
    done
}

cpu_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
hwm_mb() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }

# 1. A stand-in simulated Ollama on the bench's port, configured as the bench configures its fake.
"$BIN/herd-fake-ollama" --host 127.0.0.1 --port "$FAKE_PORT" --timing fixed --first-token-ms 0 \
    --token-ms 0 --num-parallel "$NUM_PARALLEL" --models "$MODEL" --preload "$MODEL" --name bench \
    >"$WORK/standin.out" 2>"$WORK/standin.err" </dev/null &
STANDIN_PID=$!
PIDS+=("$STANDIN_PID")
wait_for "the stand-in fake on $FAKE_URL" 15 "$STANDIN_PID" curl -sf --max-time 2 "$FAKE_URL/api/version"

# 2. ollama-herd's router, as node/tests/ollama_herd_router.rs (start_router) starts it.
if [[ "${VS_OLLAMA_HERD_UVLOOP:-0}" == 1 ]]; then
    entry="import sys; sys.argv[0] = 'herd'; from fleet_manager.cli.server_cli import main; sys.exit(main())"
else
    entry="import sys; sys.modules['uvloop'] = None; sys.argv[0] = 'herd'; from fleet_manager.cli.server_cli import main; sys.exit(main())"
fi
read -r -a extra_env <<<"${VS_OLLAMA_HERD_ENV:-}"
RH="$WORK/router-home"
(cd "$RH" && exec env -i PATH="$WORK/shim:/usr/local/bin:/usr/bin:/bin" LANG="${LANG:-C.UTF-8}" \
    HOME="$RH" FLEET_ENV_FILE="$RH/.fleet-manager/env" FLEET_TELEMETRY=false FLEET_NODE_TELEMETRY=false \
    PYTHONPATH="$ROOT/adapter-tokio/tests/interop" PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 COLUMNS=200 NO_PROXY='*' no_proxy='*' "${extra_env[@]}" \
    "$VENV/bin/python" -c "$entry" --host 127.0.0.1 --port "$ROUTER_PORT") \
    >"$WORK/router.log" 2>&1 </dev/null &
ROUTER_PID=$!
PIDS+=("$ROUTER_PID")
started=$SECONDS
wait_for "ollama-herd's router answering on $ROUTER_URL" 120 "$ROUTER_PID" curl -sf --max-time 2 "$ROUTER_URL/fleet/status"
say "ollama-herd router answering on $ROUTER_URL after $((SECONDS - started)) s"

# 3. ollama-herd's agent, as adapter-tokio/tests/ollama_herd_interop.rs starts it.
AH="$WORK/agent-home"
(cd "$AH" && exec env -i PATH="$WORK/shim:/usr/local/bin:/usr/bin:/bin" LANG="${LANG:-C.UTF-8}" \
    HOME="$AH" FLEET_ENV_FILE="$AH/.fleet-manager/env" FLEET_TELEMETRY=false FLEET_NODE_TELEMETRY=false \
    FLEET_NODE_HEARTBEAT_INTERVAL=1 OLLAMA_NUM_PARALLEL="$NUM_PARALLEL" \
    PYTHONPATH="$ROOT/adapter-tokio/tests/interop" PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 COLUMNS=200 NO_PROXY='*' no_proxy='*' \
    "$VENV/bin/herd-node" --router-url "$ROUTER_URL" --ollama-host "$FAKE_URL" --node-id "$NODE_ID") \
    >"$WORK/agent.log" 2>&1 </dev/null &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
started=$SECONDS
wait_for "$NODE_ID online at ollama-herd with $MODEL loaded" 60 "$AGENT_PID" node_ready
say "$NODE_ID registered with $MODEL loaded after $((SECONDS - started)) s"

# 4. One chat through ollama-herd to prove the path, then the stand-in makes way for the bench's fake.
chat='{"model":"'"$MODEL"'","stream":false,"options":{"num_predict":16},"messages":[{"role":"user","content":"hello"}]}'
code=$(curl -s --max-time 60 -o "$WORK/smoke.json" -D "$WORK/smoke.headers" -w '%{http_code} %{time_total}' \
    -H 'content-type: application/json' -d "$chat" "$ROUTER_URL/api/chat") || true
[[ "$code" == 200\ * ]] || die "a chat through ollama-herd failed: ${code:-no answer}: $(head -c 300 "$WORK/smoke.json" 2>/dev/null)"
grep -qi "^x-fleet-node: $NODE_ID" "$WORK/smoke.headers" || die "ollama-herd's chat did not come from $NODE_ID"
say "a chat through ollama-herd answered in ${code#200 } s"
stop "$STANDIN_PID"

# 5. What ollama-herd's router sees of the node, each change timestamped, during the bench.
(
    last=""
    while :; do
        now=$(curl -s --max-time 2 "$ROUTER_URL/fleet/status" |
            jq -c '[.nodes[] | {node: .node_id, status, loaded: [.ollama.models_loaded[]?.name]}]' 2>/dev/null) ||
            now="no answer"
        [[ -n "$now" ]] || now="no answer"
        if [[ "$now" != "$last" ]]; then
            echo "$(date +%T.%3N) $now" >>"$WORK/fleet-status.log"
            last=$now
        fi
        sleep 1
    done
) </dev/null &
WATCH_PID=$!
PIDS+=("$WATCH_PID")

# 6. The bench, with ollama-herd as its last column.
cpu0=$(cpu_ticks "$ROUTER_PID")
agent0=$(cpu_ticks "$AGENT_PID")
started=$SECONDS
say "running: herd-bench --fake-port $FAKE_PORT --ollama-herd $ROUTER_URL $*"
(cd "$ROOT" && exec "$BIN/herd-bench" --fake-port "$FAKE_PORT" --ollama-herd "$ROUTER_URL" "$@") </dev/null &
BENCH_PID=$!
PIDS+=("$BENCH_PID")
RC=0
wait "$BENCH_PID" || RC=$?
BENCH_PID=""
wall=$((SECONDS - started))

# 7. What ollama-herd did meanwhile.
{
    echo "---- ollama-herd 0.11.4 during the bench ($wall s, all columns' rounds) ----"
    if alive "$ROUTER_PID"; then
        echo "router: $(awk -v t=$(($(cpu_ticks "$ROUTER_PID") - cpu0)) 'BEGIN { printf "%.1f", t / 100 }') CPU-s, VmHWM $(hwm_mb "$ROUTER_PID") MB; agent: $(awk -v t=$(($(cpu_ticks "$AGENT_PID") - agent0)) 'BEGIN { printf "%.1f", t / 100 }') CPU-s"
    else
        echo "router: EXITED during the bench"
    fi
    echo "node as the router reported it (changes only):"
    sed 's/^/  /' "$WORK/fleet-status.log" 2>/dev/null || true
    echo "responses ollama-herd started, by request and status (uvicorn's access log):"
    grep -oE '"(POST|GET) /(api|v1)/[^ ]* HTTP/1.1" [0-9]+' "$WORK/router.log" | sed 's/ HTTP\/1.1"//; s/"//' |
        sort | uniq -c | sed 's/^/  /' || true
    echo "its queue for the node (workers = requests it lets through at once):"
    grep -oE 'Queue [^ ]+: [0-9]+ workers \(target=[0-9]+\)' "$WORK/router.log" | sort | uniq -c | sed 's/^/  /' || true
    echo "num_predict raised by the router (thinking overhead):"
    grep -oE 'inflated num_predict [0-9]+ → [0-9]+' "$WORK/router.log" | sort | uniq -c | sed 's/^/  /' || true
    echo "warnings and errors in its log, by kind:"
    grep -E '^(\[[^]]*\])? +(WARNING|ERROR|CRITICAL) ' "$WORK/router.log" |
        grep -v 'herd-interop-guard\|224\.0\.0\.251\|10\.255\.255\.255\|LAN IP' |
        sed -E 's/^(\[[^]]*\])? +//; s/ {2,}[^ ]+\.py:[0-9]+ *$//; s/\b[0-9a-f]{8}\b/<id>/g; s/ +$//' |
        sort | uniq -c | sort -rn | head -8 | sed 's/^/  /' || true
    bad=$(grep 'herd-interop-guard: refused' "$WORK/router.log" "$WORK/agent.log" |
        grep -v "('10.255.255.255', 1)\|('224.0.0.251', 5353)" || true)
    [[ -z "$bad" ]] || echo "UNEXPECTED off-host attempts refused by the guard:"$'\n'"$bad"
} >&2
exit "$RC"

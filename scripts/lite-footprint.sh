#!/usr/bin/env bash
# Measures herd-lite's footprint next to herd's: binary sizes (release and stripped), idle RSS with
# one static node, and RSS while 1,000 slow streams (100 tokens 200 ms apart, ~20 s each) pass
# through it at once, against herd-lite's goals. Everything listens on 127.0.0.1.
#   bash scripts/lite-footprint.sh [streams]   (default 1000)
set -euo pipefail
streams=${1:-1000}
tokens=100 token_ms=200
cd "$(dirname "$0")/.."
cargo build --release -q -p herd-smol -p herd-tokio -p herd-fake-ollama -p herd-bench \
  --bin herd-lite --bin herd --bin herd-fake-ollama --bin herd-bench

# Each router holds two sockets per stream, the fake and the client one each: raise the soft
# limit towards the hard one.
want=$((2 * streams + 256)); hard=$(ulimit -Hn)
[ "$hard" = unlimited ] || [ "$hard" -ge "$want" ] || want=$hard
[ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$want" ] && ulimit -Sn "$want"
[ "$(ulimit -Sn)" = unlimited ] || [ "$(ulimit -Sn)" -ge $((2 * streams + 64)) ] ||
  echo "warning: open files limited to $(ulimit -Sn) (hard $hard); $streams streams need about $((2 * streams + 64))" >&2

data=$(mktemp -d); pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

# spawn NAME PROGRAM ARGS...: starts it and waits for its `listening on URL` line; sets url, pid.
spawn() {
  local name=$1; shift
  "$@" >"$data/$name.out" 2>"$data/$name.err" & pid=$!; pids+=("$pid")
  for _ in $(seq 150); do
    url=$(sed -n 's/^listening on //p' "$data/$name.out" | head -1)
    [ -n "$url" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not start; its stderr ends:" >&2; tail -5 "$data/$name.err" >&2; exit 1
}
# ready URL: waits until the router shows its node online with the model loaded.
ready() {
  for _ in $(seq 300); do
    curl -s "$1/fleet/status" 2>/dev/null | python3 -c 'import json, sys; n = json.load(sys.stdin)["nodes"][0]
m = [x.get("name") if isinstance(x, dict) else x for x in n["models_loaded"]]
sys.exit(0 if n["status"] == "online" and "qwen3:8b" in m else 1)' 2>/dev/null && return 0
    sleep 0.1
  done
  echo "the router at $1 never showed its node ready" >&2; exit 1
}
# kb PID VmRSS|VmHWM: from /proc, read by herd-bench (the one /proc reader).
kb() { target/release/herd-bench --proc "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['${2,,}'.replace('vmrss','rss_kb').replace('vmhwm','hwm_kb')])"; }
mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k / 1024}'; }
verdict() { awk -v v="$1" -v g="$2" 'BEGIN{print (v <= g ? "yes" : "NO")}'; }

# (a) Binary sizes.
line="binary size (release / stripped):"
for b in herd-lite herd; do
  size=$(stat -c %s "target/release/$b")
  if command -v strip >/dev/null; then
    cp "target/release/$b" "$data/$b.stripped" && strip "$data/$b.stripped"
    stripped="$(mb $(($(stat -c %s "$data/$b.stripped") / 1024))) MB"
  else
    stripped="n/a (no strip on PATH)"
  fi
  line+=" $b $(mb $((size / 1024))) MB / $stripped;"
done
echo "${line%;}"

# The fake sizes each model's KV cache by --num-parallel: at 1,000 it no longer fits the default
# 64 GB and the preload silently fails, so the fake gets a large RAM.
spawn fake target/release/herd-fake-ollama --host 127.0.0.1 --port 0 --timing fixed --first-token-ms 0 \
  --token-ms "$token_ms" --num-parallel "$streams" --ram-gb 1024 --models qwen3:8b --preload qwen3:8b --name footprint
fake=$url fake_pid=$pid

# (b) Idle RSS and (c, d) RSS with the streams open, one router at a time against the same fake.
for router in herd-lite herd; do
  spawn "$router" "target/release/$router" --host 127.0.0.1 --port 0 --node "$fake" \
    --node-parallel "$streams" --no-mdns --seed 1 --data-dir "$data/$router-data"
  rurl=$url rpid=$pid
  ready "$rurl"
  sleep 5
  rss=$(kb "$rpid" VmRSS) hwm=$(kb "$rpid" VmHWM)
  if [ "$router" = herd-lite ]; then goal="goal <= 8 MB: $(verdict "$(mb "$rss")" 8)"; else goal="no goal, for comparison"; fi
  echo "$router idle with one static node, 5 s after it saw the node ready: RSS $(mb "$rss") MB (VmHWM $(mb "$hwm") MB); $goal"
  python3 - "$rurl" "$rpid" "$streams" "$tokens" "$token_ms" "$router" <<'PY'
import asyncio, collections, json, os, subprocess, sys, time, urllib.request

url, name = sys.argv[1], sys.argv[6]
pid, n, tokens, token_ms = (int(a) for a in sys.argv[2:6])
host, port = url.removeprefix("http://").rsplit(":", 1)
body = json.dumps({"model": "qwen3:8b", "stream": True, "options": {"num_predict": tokens},
                   "messages": [{"role": "user", "content": "hello"}]}).encode()
request = (f"POST /api/chat HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
IDLE_S = 30  # no byte for this long on an open stream counts as stuck
opened = finished = 0
done_ok = 0
errors = collections.Counter()
lasted = []

def proc():  # the router's memory and CPU from /proc, read by herd-bench (the one /proc reader)
    out = subprocess.run(["target/release/herd-bench", "--proc", str(pid)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)

def kb(field):
    return proc()["rss_kb" if field == "VmRSS:" else "hwm_kb"]

def cpu_s():  # user + system time so far, seconds
    return proc()["cpu_total_secs"]

async def read(coro):
    return await asyncio.wait_for(coro, IDLE_S)

async def body_pieces(r, headers):
    if "transfer-encoding: chunked" in headers:
        while True:
            size = int((await read(r.readline())).split(b";")[0], 16)
            if size == 0:
                return
            yield await read(r.readexactly(size))
            await read(r.readexactly(2))
    else:
        while piece := await read(r.read(65536)):
            yield piece

async def stream():
    global opened, finished, done_ok
    started, is_open, w = time.monotonic(), False, None
    try:
        r, w = await read(asyncio.open_connection(host, int(port)))
        w.write(request)
        await w.drain()
        status_line = await read(r.readline())
        if not status_line:
            raise ConnectionError("closed before the status line")
        status = int(status_line.split()[1])
        headers = (await read(r.readuntil(b"\r\n\r\n"))).decode("latin-1").lower()
        kept, last = b"", b""
        async for piece in body_pieces(r, headers):
            if not is_open:
                is_open = True
                opened += 1
            kept += piece
            *lines, kept = kept.split(b"\n")
            last = next((l for l in reversed(lines) if l.strip()), last)
        last = kept.strip() or last
        if status != 200:
            errors[f"HTTP {status}: {last[:120].decode(errors='replace')}"] += 1
        elif json.loads(last or b"{}").get("done") is True:
            done_ok += 1
            lasted.append(time.monotonic() - started)
        else:
            errors[f"stream ended without done: {last[:120].decode(errors='replace')}"] += 1
    except asyncio.TimeoutError:
        errors[f"no byte for {IDLE_S} s ({'after' if is_open else 'before'} the first chunk)"] += 1
    except Exception as e:
        errors[f"{type(e).__name__}: {e}"] += 1
    finally:
        finished += 1
        if is_open:
            opened -= 1
        if w is not None:
            w.close()

def fleet():
    with urllib.request.urlopen(f"{url}/fleet/status", timeout=5) as answer:
        f = json.load(answer)["fleet"]
    return f["requests_live"], f["attempts_in_flight"]

async def main():
    tasks, cpu0 = [], cpu_s()
    for i in range(n):
        tasks.append(asyncio.create_task(stream()))
        if i % 50 == 49:
            await asyncio.sleep(0.02)  # a ramp, so the accept backlog never overflows
    # Memory is sampled while at least 99% of the streams are open (all of them, normally).
    began, full_at, peak_open, live, rss_full, hwm_full = time.monotonic(), None, 0, (0, 0), 0, 0
    while finished < n:
        peak_open = max(peak_open, opened)
        if opened >= n - n // 100:
            full_at = full_at or time.monotonic()
            rss_full, hwm_full = max(rss_full, kb("VmRSS:")), kb("VmHWM:")
            if time.monotonic() - full_at < 3:
                live = max(live, await asyncio.to_thread(fleet))
        await asyncio.sleep(0.1)
    await asyncio.gather(*tasks)
    hwm_end, busy = kb("VmHWM:"), (cpu_s() - cpu0) / (time.monotonic() - began)
    mb = lambda k: f"{k / 1024:.1f} MB"
    print(f"{name} with {n} slow streams ({tokens} tokens {token_ms} ms apart):")
    if full_at is None:
        print(f"  never had {n - n // 100} or more open at once (at most {peak_open}); VmHWM {mb(hwm_end)}; "
              "goal <= 40 MB: not measured")
    else:
        goal = ("goal <= 40 MB: " + ("yes" if max(rss_full, hwm_full) <= 40 * 1024 else "NO")) if name == "herd-lite" \
            else "no goal, for comparison"
        print(f"  {peak_open} open at once at most, {n - n // 100}+ from {full_at - began:.1f} s; /fleet/status then: "
              f"requests_live {live[0]}, attempts_in_flight {live[1]}")
        print(f"  RSS peak {mb(rss_full)} while they were open (VmHWM then {mb(hwm_full)}, after the run {mb(hwm_end)}); "
              f"{goal}")
    took = f", each took {min(lasted):.1f}..{max(lasted):.1f} s" if lasted else ""
    print(f"  {done_ok}/{n} streams ended with done:true{took}; {sum(errors.values())} failed; "
          f"{name} used {100 * busy:.0f}% of one core meanwhile")
    for message, count in errors.most_common():
        print(f"    {count} x {message}")

asyncio.run(main())
PY
  kill "$rpid" 2>/dev/null || true
  wait "$rpid" 2>/dev/null || true
  if [ -s "$data/$router.err" ] && grep -qiE 'warn|error|panic' "$data/$router.err"; then
    echo "  $router's stderr has $(grep -ciE 'warn|error|panic' "$data/$router.err") warning/error lines; the last ones:"
    grep -iE 'warn|error|panic' "$data/$router.err" | tail -5 | sed 's/^/    /'
  fi
done
kill -0 "$fake_pid" 2>/dev/null || echo "warning: the fake exited during the run" >&2

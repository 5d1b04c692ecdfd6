#!/usr/bin/env bash
# Memory-hit throughput under wrk on loopback: a bare fasthttp server returning the same bytes, then
# llmcache answering the same POST from its memory cache, in one run; prints both and their ratio.
# Usage: bench/load.sh [seconds=10] [connections=64]
set -euo pipefail
secs=${1:-10}
conns=${2:-64}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/llmcache" .
go build -o "$tmp/bare" ./bench/bare

body='{"model":"fake-model","messages":[{"role":"system","content":"You are a helpful assistant for a travel company. Answer briefly and accurately, use metric units, and say so when you are not sure about something."},{"role":"user","content":"Question 1: I am planning a four-day trip to Lisbon in early spring with two children. Which neighbourhoods are good to stay in, what should we not miss, and how do we get around without a car? Please keep it short."}],"temperature":0.7,"max_tokens":512}'
printf '%s' "$body" >"$tmp/body.json"
cat >"$tmp/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$tmp/body.json", "rb"); wrk.body = f:read("*a"); f:close()
LUA

"$tmp/llmcache" -demo -listen 127.0.0.1:4398 -db "$tmp/cache.db" 2>"$tmp/llmcache.log" &
for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:4398/healthz && break; sleep 0.1; done
# The first request is the miss that fills the cache; its answer is what the bare server returns.
curl -fs -X POST -H 'Content-Type: application/json' --data-binary @"$tmp/body.json" http://127.0.0.1:4398/v1/chat/completions >"$tmp/answer.json"
"$tmp/bare" -listen 127.0.0.1:4397 -body "$tmp/answer.json" &
for _ in $(seq 100); do curl -fs -o /dev/null -X POST http://127.0.0.1:4397/ && break; sleep 0.1; done

rps() { wrk -t1 -c"$conns" -d"${secs}s" -s "$tmp/post.lua" "$1" | awk '/Requests\/sec/ {print $2}'; }
bare=$(rps http://127.0.0.1:4397/v1/chat/completions)
hit=$(rps http://127.0.0.1:4398/v1/chat/completions)
curl -s -D - -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @"$tmp/body.json" http://127.0.0.1:4398/v1/chat/completions | grep -i '^x-cache:'
echo "bare fasthttp:      $bare req/s"
echo "llmcache mem hits:  $hit req/s"
awk -v a="$hit" -v b="$bare" 'BEGIN {printf "ratio:              %.2fx (target >= 0.80x)\n", a/b}'

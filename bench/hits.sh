#!/usr/bin/env bash
# Hits under wrk on loopback, every server in its own process and measured in the same run, in
# interleaved rounds: a bare fasthttp server returning the same bytes, nginx's proxy_cache answering the same
# POST from its cache, llmcache's memory hits, its streamed memory hits, and its SQLite hits (memory layer
# off). For each: req/s and server CPU per request (user + system time of the server's processes, from
# /proc, over the round). Installs wrk and nginx with apt-get when they are missing.
# Usage: bench/hits.sh [seconds=5] [connections=128] [rounds=3]
set -euo pipefail
secs=${1:-5}
conns=${2:-128}
rounds=${3:-3}
cd "$(dirname "$0")/.."
source bench/lib.sh
need_tools wrk nginx
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; stop_nginx; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/llmcache" .
go build -o "$tmp/bare" ./bench/bare

body='{"model":"fake-model","messages":[{"role":"system","content":"You are a helpful assistant for a travel company. Answer briefly and accurately, use metric units, and say so when you are not sure about something."},{"role":"user","content":"Question 1: I am planning a four-day trip to Lisbon in early spring with two children. Which neighbourhoods are good to stay in, what should we not miss, and how do we get around without a car? Please keep it short."}],"temperature":0.7,"max_tokens":512}'
printf '%s' "$body" >"$tmp/body.json"
printf '%s' "${body%\}},\"stream\":true}" >"$tmp/stream.json"
for name in body stream; do
	cat >"$tmp/$name.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$tmp/$name.json", "rb"); wrk.body = f:read("*a"); f:close()
LUA
done

post() { curl -fs -X POST -H 'Content-Type: application/json' --data-binary @"$tmp/$2.json" "$1"; }

# llmcache with its memory layer (memory and streamed hits), and one without (SQLite hits).
"$tmp/llmcache" -demo -listen 127.0.0.1:4398 -db "$tmp/mem.db" 2>"$tmp/mem.log" &
mem_pid=$!
printf '[cache]\nenabled = false\n' >"$tmp/nomem.toml"
"$tmp/llmcache" -demo -config "$tmp/nomem.toml" -listen 127.0.0.1:4399 -db "$tmp/db.db" 2>"$tmp/db.log" &
db_pid=$!
wait_up http://127.0.0.1:4398/healthz
wait_up http://127.0.0.1:4399/healthz
post http://127.0.0.1:4398/v1/chat/completions body >"$tmp/answer.json" # the miss that fills the cache
post http://127.0.0.1:4398/v1/chat/completions stream >/dev/null
post http://127.0.0.1:4399/v1/chat/completions body >/dev/null
sleep 1 # the writer's flush interval: the SQLite-hit server must have the answer on disk

"$tmp/bare" -listen 127.0.0.1:4397 -body "$tmp/answer.json" &
bare_pid=$!
wait_up http://127.0.0.1:4397/

# nginx in front of the bare server, caching the POST by its body.
start_nginx_cache 4396 4397
post http://127.0.0.1:4396/v1/chat/completions body >/dev/null || { cat "$tmp/nginx.err" >&2; exit 1; }
[ "$(curl -s -D - -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @"$tmp/body.json" http://127.0.0.1:4396/v1/chat/completions | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache" {print $2}')" = HIT ] || {
	echo "nginx does not answer the POST from its cache" >&2
	exit 1
}

for round in $(seq "$rounds"); do
	echo "round $round ($conns connections, ${secs}s each)"
	wrk_round bare-fasthttp http://127.0.0.1:4397/v1/chat/completions "$tmp/body.lua" "" "$bare_pid"
	# shellcheck disable=SC2046
	wrk_round nginx-proxy_cache http://127.0.0.1:4396/v1/chat/completions "$tmp/body.lua" "" $(nginx_pids)
	wrk_round llmcache-memory http://127.0.0.1:4398/v1/chat/completions "$tmp/body.lua" "" "$mem_pid"
	wrk_round llmcache-memory-stream http://127.0.0.1:4398/v1/chat/completions "$tmp/stream.lua" "" "$mem_pid"
	wrk_round llmcache-sqlite http://127.0.0.1:4399/v1/chat/completions "$tmp/body.lua" "" "$db_pid"
done

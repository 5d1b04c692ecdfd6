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
for tool in wrk nginx; do
	command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin command -v "$tool" >/dev/null || {
		apt-get update -qq && apt-get install -y -qq wrk nginx-light >/dev/null
	}
done
export PATH=$PATH:/usr/sbin
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
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

wait_up() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return; sleep 0.05; done; echo "$1 did not come up" >&2; exit 1; }
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
mkdir -p "$tmp/nginx/cache"
cat >"$tmp/nginx.conf" <<CONF
$([ "$(id -u)" = 0 ] && echo "user root;") # its workers must reach the temporary directory
worker_processes auto;
pid $tmp/nginx.pid;
error_log $tmp/nginx.err warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $tmp/nginx;
	proxy_temp_path $tmp/nginx;
	proxy_cache_path $tmp/nginx/cache levels=1:2 keys_zone=llm:10m max_size=100m inactive=1h;
	upstream bare { server 127.0.0.1:4397; keepalive 64; }
	server {
		listen 127.0.0.1:4396;
		client_body_buffer_size 64k; # the request body in memory, so that it can be the key
		location / {
			proxy_pass http://bare;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_cache llm;
			proxy_cache_methods POST;
			proxy_cache_key "\$request_uri|\$request_body";
			proxy_cache_valid 200 1h;
			add_header X-Cache \$upstream_cache_status;
		}
	}
}
CONF
nginx -c "$tmp/nginx.conf"
wait_up http://127.0.0.1:4396/
post http://127.0.0.1:4396/v1/chat/completions body >/dev/null || { cat "$tmp/nginx.err" >&2; exit 1; }
[ "$(curl -s -D - -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @"$tmp/body.json" http://127.0.0.1:4396/v1/chat/completions | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache" {print $2}')" = HIT ] || {
	echo "nginx does not answer the POST from its cache" >&2
	exit 1
}

ticks=$(getconf CLK_TCK)
cpu() { # user + system ticks of the given processes and their threads (a process gone since is skipped)
	local t=0 v
	for p in "$@"; do
		v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || continue
		t=$((t + ${v:-0}))
	done
	echo "$t"
}
run() { # name url script pids...
	local name=$1 url=$2 script=$3
	shift 3
	local before after out reqs
	before=$(cpu "$@")
	out=$(wrk -t2 -c"$conns" -d"${secs}s" -s "$tmp/$script.lua" "$url")
	after=$(cpu "$@")
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	awk -v n="$name" -v r="$(awk '/Requests\/sec/ {print $2}' <<<"$out")" -v c=$((after - before)) -v q="$reqs" -v hz="$ticks" \
		'BEGIN {printf "%-22s %10.0f req/s %8.1f us CPU/request\n", n, r, c / hz / q * 1e6}'
}
nginx_pids() { pgrep -f "nginx.*$tmp/nginx.conf" | tr '\n' ' '; pgrep -P "$(cat "$tmp/nginx.pid")" | tr '\n' ' '; }
for round in $(seq "$rounds"); do
	echo "round $round ($conns connections, ${secs}s each)"
	run bare-fasthttp http://127.0.0.1:4397/v1/chat/completions body "$bare_pid"
	# shellcheck disable=SC2046
	run nginx-proxy_cache http://127.0.0.1:4396/v1/chat/completions body $(nginx_pids)
	run llmcache-memory http://127.0.0.1:4398/v1/chat/completions body "$mem_pid"
	run llmcache-memory-stream http://127.0.0.1:4398/v1/chat/completions stream "$mem_pid"
	run llmcache-sqlite http://127.0.0.1:4399/v1/chat/completions body "$db_pid"
done

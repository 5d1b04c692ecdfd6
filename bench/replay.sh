#!/usr/bin/env bash
# An evaluation run replayed: distinct prompts, more of them than llmcache's memory layer holds (max_items,
# 10,000 by default), each asked again in turn, under wrk on loopback. Every server is a process of its own,
# filled with the same prompts first (not measured), then measured in interleaved rounds: the bare fasthttp
# server returning a fixed answer (no cache at all), nginx's proxy_cache answering each POST from its cache
# on disk, and llmcache with its defaults (most replays are SQLite hits: an LRU smaller than a cycle keeps
# none of it; each hit is also counted in its entry's hit figures). For each: req/s and server CPU per
# request (user + system time of its processes, from /proc); for llmcache, the share of its CPU spent by the
# writer (the hit counts) from a CPU profile of the whole run. Installs wrk and nginx when missing.
# Usage: bench/replay.sh [seconds=5] [connections=128] [rounds=3] [prompts=40000]
set -euo pipefail
secs=${1:-5}
conns=${2:-128}
rounds=${3:-3}
prompts=${4:-40000}
per=$((prompts / 2)) # wrk -t2: each thread cycles through its own half
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
go build -o "$tmp/fake" ./bench/fake

wait_up() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return; sleep 0.05; done; echo "$1 did not come up" >&2; exit 1; }

"$tmp/fake" -listen 127.0.0.1:4380 -indent -prose -answer-bytes 520 & # ~1.3 KB answers
wait_up http://127.0.0.1:4380/v1/models
curl -fs -X POST -H 'Content-Type: application/json' -d '{"model":"fake-model","messages":[{"role":"user","content":"hello"}]}' \
	http://127.0.0.1:4380/v1/chat/completions >"$tmp/answer.json"
"$tmp/bare" -listen 127.0.0.1:4381 -body "$tmp/answer.json" &
bare_pid=$!
wait_up http://127.0.0.1:4381/
printf '[[api_endpoints]]\nname = "fake"\nurl = "http://127.0.0.1:4380"\n' >"$tmp/llmcache.toml"
"$tmp/llmcache" -config "$tmp/llmcache.toml" -listen 127.0.0.1:4382 -db "$tmp/cache.db" -cpuprofile "$tmp/llmcache.prof" 2>"$tmp/llmcache.log" &
llm_pid=$!
wait_up http://127.0.0.1:4382/healthz

# nginx in front of the bare server, caching each POST by its body (as bench/hits.sh).
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
	proxy_cache_path $tmp/nginx/cache levels=1:2 keys_zone=llm:64m max_size=1g inactive=1h;
	upstream bare { server 127.0.0.1:4381; keepalive 64; }
	server {
		listen 127.0.0.1:4383;
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
wait_up http://127.0.0.1:4383/

# Fill: every prompt once through each cache (wrk runs until each thread has sent its half at least once).
fill() { # url
	local fill_secs=5
	while :; do
		out=$(wrk -t2 -c32 -d"${fill_secs}s" -s bench/replay.lua "$1" -- run "$per")
		[ "$(awk '/requests in/ {print $1}' <<<"$out")" -ge "$prompts" ] && return
		fill_secs=$((fill_secs * 2))
	done
}
fill http://127.0.0.1:4382/v1/chat/completions
fill http://127.0.0.1:4383/v1/chat/completions
misses=$(curl -fs http://127.0.0.1:4382/stats | awk -F': *' '/"misses":/ {gsub(/[ ,]/, "", $2); print $2; exit}')
[ "$misses" -eq "$prompts" ] || { echo "llmcache fetched $misses answers, want $prompts" >&2; exit 1; }
for _ in $(seq 100); do # the fill's answers on disk
	[ "$(curl -fs http://127.0.0.1:4382/stats | awk -F': *' '/"written":/ {gsub(/[ ,]/, "", $2); print $2; exit}')" -ge "$prompts" ] && break
	sleep 0.1
done

ticks=$(getconf CLK_TCK)
cpu() { # user + system ticks of the given processes (a process gone since is skipped)
	local t=0 v
	for p in "$@"; do
		v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || continue
		t=$((t + ${v:-0}))
	done
	echo "$t"
}
run() { # name url pids...
	local name=$1 url=$2
	shift 2
	local before after out reqs
	before=$(cpu "$@")
	out=$(wrk -t2 -c"$conns" -d"${secs}s" -s bench/replay.lua "$url" -- run "$per")
	after=$(cpu "$@")
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	if grep -q "Non-2xx" <<<"$out"; then
		echo "$name: answers other than 200:" >&2
		echo "$out" >&2
		exit 1
	fi
	awk -v n="$name" -v r="$(awk '/Requests\/sec/ {print $2}' <<<"$out")" -v c=$((after - before)) -v q="$reqs" -v hz="$ticks" \
		'BEGIN {printf "%-22s %10.0f req/s %8.1f us CPU/request\n", n, r, c / hz / q * 1e6}'
}
nginx_pids() { cat "$tmp/nginx.pid"; pgrep -P "$(cat "$tmp/nginx.pid")" | tr '\n' ' '; }
echo "$prompts distinct prompts, replayed in turn"
for round in $(seq "$rounds"); do
	echo "round $round ($conns connections, ${secs}s each)"
	run bare-fasthttp http://127.0.0.1:4381/v1/chat/completions "$bare_pid"
	# shellcheck disable=SC2046
	run nginx-proxy_cache http://127.0.0.1:4383/v1/chat/completions $(nginx_pids)
	run llmcache http://127.0.0.1:4382/v1/chat/completions "$llm_pid"
done
curl -fs http://127.0.0.1:4382/stats | awk -F': *' '/"(memory_hits|db_hits|misses)":/ {gsub(/[ ,"]/, ""); printf "%s ", $0} END {print ""}'
kill -TERM "$llm_pid"
wait "$llm_pid" || true
echo "llmcache's CPU by stage over the whole run (fill included):"
go tool pprof -tags "$tmp/llmcache" "$tmp/llmcache.prof" 2>/dev/null | sed -n '/stage:/,/^$/p'

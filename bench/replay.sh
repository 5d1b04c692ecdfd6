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
source bench/lib.sh
need_tools wrk nginx
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; stop_nginx; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/llmcache" .
go build -o "$tmp/bare" ./bench/bare
go build -o "$tmp/fake" ./bench/fake

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
start_nginx_cache 4383 4381

# Fill: every prompt once through each cache (wrk runs until each thread has sent its half at least once).
fill() { # url
	local fill_secs=5
	while :; do
		out=$(wrk -t2 -c32 -d"${fill_secs}s" -s bench/prompts.lua "$1" -- run "$per")
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

echo "$prompts distinct prompts, replayed in turn"
for round in $(seq "$rounds"); do
	echo "round $round ($conns connections, ${secs}s each)"
	wrk_round bare-fasthttp http://127.0.0.1:4381/v1/chat/completions bench/prompts.lua "run $per" "$bare_pid"
	# shellcheck disable=SC2046
	wrk_round nginx-proxy_cache http://127.0.0.1:4383/v1/chat/completions bench/prompts.lua "run $per" $(nginx_pids)
	wrk_round llmcache http://127.0.0.1:4382/v1/chat/completions bench/prompts.lua "run $per" "$llm_pid"
done
curl -fs http://127.0.0.1:4382/stats | awk -F': *' '/"(memory_hits|db_hits|misses)":/ {gsub(/[ ,"]/, ""); printf "%s ", $0} END {print ""}'
kill -TERM "$llm_pid"
wait "$llm_pid" || true
echo "llmcache's CPU by stage over the whole run (fill included):"
go tool pprof -tags "$tmp/llmcache" "$tmp/llmcache.prof" 2>/dev/null | sed -n '/stage:/,/^$/p'

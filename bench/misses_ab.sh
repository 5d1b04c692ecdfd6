#!/usr/bin/env bash
# Two llmcache binaries side by side under the misses load of bench/misses.sh (wrk, every request a new
# prompt, stored with the defaults; the fake upstream a process of its own answering ~1.3 KB of prose), in
# alternating rounds: req/s and each proxy's CPU per request. For a change's effect on the miss path, build
# the binaries from the two commits (go build -o /tmp/a . ; ... -o /tmp/b .).
# Usage: bench/misses_ab.sh A-binary B-binary [rounds=3] [seconds=5]
set -euo pipefail
A=$1; B=$2; rounds=${3:-3}; secs=${4:-5}
cd "$(dirname "$0")/.."
source bench/lib.sh
need_tools wrk
conns=32
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/fake" ./bench/fake

"$tmp/fake" -listen 127.0.0.1:4390 -indent -prose -answer-bytes 520 &
wait_up http://127.0.0.1:4390/v1/models
printf '[[api_endpoints]]\nname = "fake"\nurl = "http://127.0.0.1:4390"\n' >"$tmp/c.toml"
"$A" -config "$tmp/c.toml" -listen 127.0.0.1:4392 -db "$tmp/a.db" 2>"$tmp/a.log" & a_pid=$!
"$B" -config "$tmp/c.toml" -listen 127.0.0.1:4393 -db "$tmp/b.db" 2>"$tmp/b.log" & b_pid=$!
wait_up http://127.0.0.1:4392/healthz; wait_up http://127.0.0.1:4393/healthz
for p in 4392 4393; do wrk -t1 -c4 -d2s -s bench/prompts.lua http://127.0.0.1:$p/v1/chat/completions -- warm >/dev/null; done
for p in 4392 4393; do # the rounds start once each compresses with a trained dictionary
	for _ in $(seq 600); do
		curl -fs "http://127.0.0.1:$p/stats" | grep -q '"dictionary": *[1-9]' && break
		sleep 0.1
	done
done
for r in $(seq "$rounds"); do
	wrk_round A http://127.0.0.1:4392/v1/chat/completions bench/prompts.lua "$r-A" "$a_pid"
	wrk_round B http://127.0.0.1:4393/v1/chat/completions bench/prompts.lua "$r-B" "$b_pid"
done

#!/usr/bin/env bash
# Misses under wrk on loopback: every request a new prompt, so every one goes upstream. The fake upstream
# runs as a process of its own (bench/fake, answering in OpenAI's indented JSON with ~1.3 KB of natural
# text), and in front of it, in interleaved rounds: a bare fasthttp reverse proxy (bench/bare -upstream),
# llmcache storing every answer (the defaults: SQLite, compressed bodies), llmcache storing them as they
# are (compress_bodies = false) and llmcache storing nothing (cache_mode = "off"), so that the figures show
# what storage costs. For each: req/s and the proxy's CPU per request (user + system time of its process,
# from /proc, over the round; the upstream's is not counted). At the end, the stored instance's CPU a miss
# over its whole run (warm-up and dictionary trainings included) split by stage, from a CPU profile whose
# storage goroutines carry a "stage" label: the writer, compression, the checkpointer, dictionary training,
# and the rest (the requests themselves, the runtime).
# Installs wrk with apt-get when it is missing.
# Usage: bench/misses.sh [seconds=5] [connections=32] [rounds=3]
set -euo pipefail
secs=${1:-5}
conns=${2:-32}
rounds=${3:-3}
cd "$(dirname "$0")/.."
source bench/lib.sh
need_tools wrk
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/llmcache" .
go build -o "$tmp/bare" ./bench/bare
go build -o "$tmp/fake" ./bench/fake


"$tmp/fake" -listen 127.0.0.1:4390 -indent -prose -answer-bytes 520 & # ~1.3 KB answers, as in the other benchmarks
wait_up http://127.0.0.1:4390/v1/models
"$tmp/bare" -listen 127.0.0.1:4391 -upstream 127.0.0.1:4390 &
bare_pid=$!
start_llmcache() { # name port extra-config
	printf '%s\n[[api_endpoints]]\nname = "fake"\nurl = "http://127.0.0.1:4390"\n' "$3" >"$tmp/$1.toml"
	"$tmp/llmcache" -config "$tmp/$1.toml" -listen "127.0.0.1:$2" -db "$tmp/$1.db" -cpuprofile "$tmp/$1.prof" 2>"$tmp/$1.log" &
	wait_up "http://127.0.0.1:$2/healthz"
}
start_llmcache stored 4392 ''
llm_pid=$!
start_llmcache plain 4393 $'[cache]\ncompress_bodies = false'
plain_pid=$!
start_llmcache off 4394 'cache_mode = "off"'
off_pid=$!
wait_up http://127.0.0.1:4391/v1/models

# Warm-up, not measured: llmcache trains its compression dictionary once 1,000 answers are stored (about half
# a second of CPU, again at ten times as many); the rounds start once it compresses.
wrk -t1 -c4 -d2s -s bench/prompts.lua http://127.0.0.1:4392/v1/chat/completions -- warm >/dev/null
for _ in $(seq 600); do
	curl -fs http://127.0.0.1:4392/stats | grep -q '"dictionary": *[1-9]' && break
	sleep 0.1
done
curl -fs http://127.0.0.1:4392/stats | grep -q '"dictionary": *[1-9]' || { echo "no dictionary was trained" >&2; exit 1; }

for round in $(seq "$rounds"); do
	echo "round $round ($conns connections, ${secs}s each)"
	wrk_round bare-reverse-proxy http://127.0.0.1:4391/v1/chat/completions bench/prompts.lua "$round-bare" "$bare_pid"
	wrk_round llmcache-misses http://127.0.0.1:4392/v1/chat/completions bench/prompts.lua "$round-stored" "$llm_pid"
	wrk_round llmcache-uncompressed http://127.0.0.1:4393/v1/chat/completions bench/prompts.lua "$round-plain" "$plain_pid"
	wrk_round llmcache-cache_mode=off http://127.0.0.1:4394/v1/chat/completions bench/prompts.lua "$round-off" "$off_pid"
done
echo "llmcache's writer: $(curl -fs http://127.0.0.1:4392/stats | grep -E '"(written|failures|dropped)": ' | tr -d ' \n')"

# The stored instance's CPU a miss by stage. Its profile is written when it stops.
misses=$(curl -fs http://127.0.0.1:4392/stats | awk -F': *' '/"misses":/ {gsub(/[ ,]/, "", $2); print $2; exit}')
total=$(cpu_ticks "$llm_pid")
ticks=$(getconf CLK_TCK)
kill -TERM "$llm_pid"
wait "$llm_pid" || true
go tool pprof -tags "$tmp/llmcache" "$tmp/stored.prof" 2>/dev/null | awk -v cpu="$total" -v hz="$ticks" -v n="$misses" '
	BEGIN { perMiss = cpu / hz / n * 1e6 }
	/^ *stage:/ { on = 1; next }
	on && /%\):/ { sub(/\( +/, "("); pct = $2; gsub(/[()%:]/, "", pct); per[$3] = pct * perMiss / 100; rest -= pct; next }
	on && !/%\):/ { on = 0 }
	END {
		printf "llmcache stored, the whole run: %d misses, %.1f us CPU a miss:", n, perMiss
		for (s in per) printf " %s %.1f,", s, per[s]
		printf " the rest %.1f\n", (100 + rest) * perMiss / 100
	}'

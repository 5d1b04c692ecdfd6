#!/usr/bin/env bash
# A look at GET /dashboard as a person sees it: runs the demo proxy, sends a minute of mixed traffic
# (repeats become hits, new prompts misses, some through a failing second endpoint), then takes a
# screenshot with headless Chromium. Not part of CI: check the picture by eye.
# Usage: bench/dashboard.sh [out.png=dashboard.png] [seconds=60]
set -euo pipefail
out=$(realpath -m "${1:-dashboard.png}")
secs=${2:-60}
cd "$(dirname "$0")/.."
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "chromium is missing: apt-get install -y chromium" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/llmcache" .

port=4396
"$tmp/llmcache" -demo -listen 127.0.0.1:$port -db "$tmp/cache.db" 2>"$tmp/llmcache.log" &
for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:$port/healthz && break; sleep 0.1; done

# Four senders for the whole time: prompts drawn from a pool that grows, so the hit rate climbs.
send() {
  local end=$((SECONDS + secs)) i=0
  while [ $SECONDS -lt $end ]; do
    i=$((i + 1))
    n=$((RANDOM % (i / 4 + 10)))
    curl -fs -o /dev/null -X POST -H 'Content-Type: application/json' \
      -d "{\"model\":\"fake-model\",\"messages\":[{\"role\":\"user\",\"content\":\"dashboard prompt $n\"}]}" \
      http://127.0.0.1:$port/v1/chat/completions || true
  done
}
for _ in 1 2 3 4; do send & done
wait $(jobs -p | tail -4) 2>/dev/null || true
sleep 11 # the last chart point closes
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,1300 \
  --screenshot="$out" "http://127.0.0.1:$port/dashboard" 2>/dev/null
echo "screenshot: $out"
curl -fs http://127.0.0.1:$port/stats | head -c 400; echo

#!/usr/bin/env bash
# Start-up with a big cache (DESIGN §9: 1,000,000 entries, under 1 s, memory bounded by the memory
# cache's limit): fills a database once (bench/fill, ~1 minute and ~2 GB for a million ~1.3 KB answers),
# then starts llmcache on it three times, timing the start until /healthz answers and reading its RSS.
# Not part of CI. Usage: bench/startup.sh [entries=1000000] [db=/tmp/llmcache-startup-<entries>.db]
set -euo pipefail
entries=${1:-1000000}
dbfile=${2:-/tmp/llmcache-startup-$entries.db}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/llmcache" .
go build -o "$tmp/fill" ./bench/fill
[ -f "$dbfile" ] || "$tmp/fill" -db "$dbfile" -entries "$entries" | tail -1
ls -la "$dbfile"
port=4393
for run in 1 2 3; do
  began=$(date +%s%N)
  "$tmp/llmcache" -demo -listen 127.0.0.1:$port -db "$dbfile" 2>"$tmp/llmcache.log" &
  pid=$!
  until curl -fs -o /dev/null http://127.0.0.1:$port/healthz; do sleep 0.005; done
  ready=$(( ($(date +%s%N) - began) / 1000000 ))
  rss=$(awk '/VmRSS/ {print $2 " " $3}' /proc/$pid/status)
  # The filter of the keys on disk loads in the background after start: until then misses read SQLite.
  until curl -fs http://127.0.0.1:$port/stats | grep -q '"key_filter": *"ready"'; do sleep 0.005; done
  filtered=$(( ($(date +%s%N) - began) / 1000000 ))
  sleep 2 # the start-up maintenance run
  rss2=$(awk '/VmRSS/ {print $2 " " $3}' /proc/$pid/status)
  rows=$(curl -fs http://127.0.0.1:$port/stats | awk -F': ' '/"entries"/ {v=$2} END {print v}' | tr -d ',')
  echo "run $run: /healthz after $ready ms; key filter ready after $filtered ms; RSS $rss at once, $rss2 after 2 s; $rows rows on disk"
  kill $pid; wait $pid 2>/dev/null || true
done

# Shell helpers of the wrk scripts in bench/ (hits.sh, misses.sh, misses_ab.sh, replay.sh), sourced by them
# from the repository's root. They expect $tmp (the script's temporary directory) and, for wrk_round, $secs
# and $conns.

# need_tools installs the commands named (wrk, nginx: Debian's nginx-light) with apt-get when missing.
need_tools() {
	export PATH=$PATH:/usr/sbin
	local missing=()
	for tool in "$@"; do
		command -v "$tool" >/dev/null || missing+=("$([ "$tool" = nginx ] && echo nginx-light || echo "$tool")")
	done
	if ((${#missing[@]})); then
		apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
}

# wait_up waits until URL answers at all (any status), for up to ten seconds.
wait_up() {
	for _ in $(seq 200); do curl -s -o /dev/null "$1" && return; sleep 0.05; done
	echo "$1 did not come up" >&2
	exit 1
}

# cpu_ticks is the user + system CPU ticks of the processes named (one gone since is skipped).
cpu_ticks() {
	local t=0 v
	for p in "$@"; do
		v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || continue
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# wrk_round NAME URL SCRIPT LUA_ARGS PID... runs wrk -t2 for $secs seconds over $conns connections with the
# Lua SCRIPT (its arguments LUA_ARGS, split on spaces) against URL and prints req/s and the CPU per request
# of the processes named. An answer other than 200 stops the script.
wrk_round() {
	local name=$1 url=$2 script=$3 args=$4
	shift 4
	local before after out reqs
	before=$(cpu_ticks "$@")
	# shellcheck disable=SC2086
	out=$(wrk -t2 -c"$conns" -d"${secs}s" -s "$script" "$url" -- $args)
	after=$(cpu_ticks "$@")
	if grep -q "Non-2xx" <<<"$out"; then
		echo "$name: answers other than 200:" >&2
		echo "$out" >&2
		exit 1
	fi
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	awk -v n="$name" -v r="$(awk '/Requests\/sec/ {print $2}' <<<"$out")" -v c=$((after - before)) -v q="$reqs" \
		-v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%-24s %10.0f req/s %8.1f us CPU/request\n", n, r, c / hz / q * 1e6}'
}

# start_nginx_cache PORT UPSTREAM_PORT starts nginx on PORT in front of the server on UPSTREAM_PORT, caching
# each POST by its body under $tmp/nginx (stopped by stop_nginx, which the script's exit trap should call).
start_nginx_cache() {
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
	upstream origin { server 127.0.0.1:$2; keepalive 64; }
	server {
		listen 127.0.0.1:$1;
		client_body_buffer_size 64k; # the request body in memory, so that it can be the key
		location / {
			proxy_pass http://origin;
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
	wait_up "http://127.0.0.1:$1/"
}

stop_nginx() { [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null; true; }

# nginx_pids is nginx's master and workers.
nginx_pids() { cat "$tmp/nginx.pid"; pgrep -P "$(cat "$tmp/nginx.pid")" | tr '\n' ' '; }

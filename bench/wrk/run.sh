#!/bin/sh
# The issue 13 goal rows measured with wrk, beside the harness's figures:
# plain `respond 200`, ingest into one webhook (1 KiB and 64 KiB bodies),
# and ingest spread at random over N webhooks (one `database` target each,
# max_open_event_dbs 256), each on a fresh data_dir, synchronous full.
#
#   bench/wrk/run.sh <caddy binary> [duration] [spreads...]
#   bench/wrk/run.sh ./caddy 10s 1000 10000
#
# Prints one RESULT line per row (see body.lua). Needs wrk and a free
# localhost:8081 and :2020.
set -eu
bin=$(realpath "$1"); dur=${2:-10s}; shift; [ $# -gt 0 ] && shift
spreads=${*:-1000 10000}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

start() { # config file
	"$bin" run --config "$1" >"$work/caddy.log" 2>&1 &
	pid=$!
	i=0
	until curl -s -o /dev/null localhost:2020/config/; do
		i=$((i + 1)); [ $i -gt 600 ] && { echo "caddy did not start" >&2; cat "$work/caddy.log" >&2; exit 1; }
		sleep 0.1
	done
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
load() { # label path [env...]
	label=$1; path=$2; shift 2
	# warm-up, then the measured run
	env "$@" wrk -t2 -c64 -d2s -s "$here/body.lua" "http://localhost:8081$path" >/dev/null
	printf '%-28s ' "$label"
	env "$@" wrk -t2 -c64 -d"$dur" --latency -s "$here/body.lua" "http://localhost:8081$path" | grep '^RESULT'
}
site() { # data_dir webhook-blocks
	cat <<CFG
{
	admin localhost:2020
	webhooker {
		data_dir $1
		synchronous full
$2
	}
}
http://localhost:8081 {
	webhooker /hooks/*
}
CFG
}

cat >"$work/respond.Caddyfile" <<CFG
{
	admin localhost:2020
}
http://localhost:8081 {
	respond /hooks/* 200
}
CFG
start "$work/respond.Caddyfile"
load "respond 200, 1 KiB" /hooks/bench
load "respond 200, 64 KiB" /hooks/bench BODY_BYTES=65536
stop

one='		webhook bench {
			entrypoint bench
			target archive database
		}'
for size in 1024 65536; do
	site "$work/one-$size" "$one" >"$work/one-$size.Caddyfile"
	start "$work/one-$size.Caddyfile"
	load "one webhook, $size B" /hooks/bench BODY_BYTES=$size
	stop
done

for n in $spreads; do
	blocks=$(awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) printf "\t\twebhook w%05d {\n\t\t\tentrypoint k%05d\n\t\t\ttarget db database\n\t\t}\n", i, i }')
	site "$work/spread-$n" "$blocks" >"$work/spread-$n.Caddyfile"
	start "$work/spread-$n.Caddyfile"
	load "spread over $n, 1024 B" /hooks/k00000 SPREAD=$n
	stop
done

#!/bin/sh
# Ingest throughput of a three-node cluster (cluster mode, NATS JetStream
# R3, three Caddy processes on this machine) beside a single node, in one
# run, with wrk: 1 KiB bodies spread at random over 16 webhooks (one
# `database` target each), 64 connections in all (the cluster's split 22,
# 21, 21 over its three nodes, each node's wrk at once).
#
#   bench/cluster/run.sh <caddy binary> [duration] [synchronous...]
#   bench/cluster/run.sh ./caddy 10s full normal
#
# Prints one line per row: ok answers/s (2xx only) and each wrk's p99.
# CLUSTER_ONLY=1 skips the single node.
# Needs wrk, curl and free localhost ports 2020-2023, 8081, 8091-8093,
# 4231-4233, 6231-6233.
set -eu
bin=$(realpath "$1"); dur=${2:-10s}; shift; [ $# -gt 0 ] && shift
syncs=${*:-full}
here=$(cd "$(dirname "$0")" && pwd)
lua="$here/../wrk/body.lua"
work=$(mktemp -d)
pids=""
trap 'for p in $pids; do kill $p 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT

webhooks=$(awk 'BEGIN { for (i = 0; i < 16; i++) printf "\t\twebhook w%05d {\n\t\t\tentrypoint k%05d\n\t\t\ttarget db database\n\t\t}\n", i, i }')

up() { # admin-port site-port: wait until an ingest is acknowledged
	i=0
	until [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' "localhost:$2/hooks/k00000")" = 200 ]; do
		i=$((i + 1)); [ $i -gt 900 ] && { echo "node on :$2 never acknowledged" >&2; cat "$work"/*.log >&2; exit 1; }
		sleep 0.1
	done
}
run() { # name config
	"$bin" run --config "$2" >"$work/$1.log" 2>&1 &
	pids="$pids $!"
}
stopall() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	pids=""
}
# wrkrow label conns:port... : every wrk at once, then the sum of their 2xx/s
wrkrow() {
	label=$1; shift
	# (wait for the wrk processes only: the Caddy ones run on)
	w=""
	for cp in "$@"; do
		c=${cp%%:*}; p=${cp##*:}
		SPREAD=16 wrk -t1 -c"$c" -d2s -s "$lua" "http://localhost:$p/hooks/k00000" >/dev/null &
		w="$w $!"
	done
	for p in $w; do wait "$p"; done
	w=""
	for cp in "$@"; do
		c=${cp%%:*}; p=${cp##*:}
		SPREAD=16 wrk -t1 -c"$c" -d"$dur" --latency -s "$lua" "http://localhost:$p/hooks/k00000" >"$work/wrk-$p.out" &
		w="$w $!"
	done
	for p in $w; do wait "$p"; done
	cat "$work"/wrk-*.out | grep '^RESULT' | awk -v label="$label" '
		{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		  ok += v["ok"]; bad += v["non2xx"] + v["connect"] + v["read"] + v["write"] + v["timeout"]
		  if (v["duration_s"] > d) d = v["duration_s"]; p99 = p99 sep v["p99_ms"]; sep = "/" }
		END { printf "%-34s ok_per_s=%.0f errors=%d p99_ms=%s\n", label, ok / d, bad, p99 }'
	rm -f "$work"/wrk-*.out
}

for sync in $syncs; do
	cat >"$work/single.Caddyfile" <<CFG
{
	admin localhost:2020
	webhooker {
		data_dir $work/single-$sync
		synchronous $sync
$webhooks
	}
}
http://localhost:8081 {
	webhooker /hooks/*
}
CFG
	if [ -z "${CLUSTER_ONLY:-}" ]; then
		run single "$work/single.Caddyfile"
		up 2020 8081
		wrkrow "single node, synchronous $sync" 64:8081
		stopall
	fi

	for i in 1 2 3; do
		routes=""
		for j in 1 2 3; do [ "$j" != "$i" ] && routes="$routes 127.0.0.1:623$j"; done
		cat >"$work/n$i.Caddyfile" <<CFG
{
	admin localhost:202$i
	webhooker {
		data_dir $work/n$i-$sync
		synchronous $sync
		cluster {
			node n$i
			listen 127.0.0.1:423$i
			cluster_listen 127.0.0.1:623$i
			routes$routes
			replicas 3
		}
$webhooks
	}
}
http://localhost:809$i {
	webhooker /hooks/*
}
CFG
		run "n$i" "$work/n$i.Caddyfile"
	done
	for i in 1 2 3; do up "202$i" "809$i"; done
	wrkrow "three-node cluster, synchronous $sync" 22:8091 21:8092 21:8093
	stopall
done

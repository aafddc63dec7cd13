#!/bin/sh
# Ingest spread at random over N webhooks, sustained (issue 13, goal 2):
# wrk -t2 -c64 with 1 KiB bodies for a duration, on a fresh data_dir
# (synchronous full, max_open_event_dbs 256, one `database` target per
# webhook), with the intake's gauges read from /metrics every 10 s.
#
#   bench/wrk/sustained.sh <caddy binary> [duration] [webhooks]
#   bench/wrk/sustained.sh ./caddy 60s 1000
#
# Prints a line of gauges per 10 s and wrk's RESULT line (see body.lua).
# Needs wrk and a free localhost:8081 and :2020.
set -eu
bin=$(realpath "$1"); dur=${2:-60s}; n=${3:-1000}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
blocks=$(awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) printf "\t\twebhook w%05d {\n\t\t\tentrypoint k%05d\n\t\t\ttarget db database\n\t\t}\n", i, i }')
cat >"$work/Caddyfile" <<CFG
{
	admin localhost:2020
	webhooker {
		data_dir $work/data
		synchronous full
$blocks
	}
}
http://localhost:8081 {
	webhooker /hooks/*
}
CFG
"$bin" run --config "$work/Caddyfile" >"$work/caddy.log" 2>&1 &
pid=$!
i=0
until curl -s -o /dev/null localhost:2020/config/; do
	i=$((i + 1)); [ $i -gt 600 ] && { echo "caddy did not start" >&2; cat "$work/caddy.log" >&2; exit 1; }
	sleep 0.1
done
secs=${dur%s}
(
	t=0
	while [ $t -lt "$secs" ]; do
		sleep 10; t=$((t + 10))
		printf 't=%ss ' $t
		curl -s localhost:2020/metrics | grep -E '^caddy_webhooker_intake' | sed 's/^caddy_webhooker_//' | tr '\n' ' '
		printf 'rss_kb=%s\n' "$(awk '/VmRSS/ {print $2}' /proc/$pid/status)"
	done
) &
SPREAD=$n wrk -t2 -c64 -d"$dur" --latency -s "$here/body.lua" "http://localhost:8081/hooks/k00000" | grep '^RESULT'
wait $!
printf 'intake.db: %s\n' "$(du -sh "$work/data/intake.db" | cut -f1)"

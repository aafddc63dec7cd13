#!/usr/bin/env bash
# Builds the image of deploy/Containerfile.scratch from this checkout and
# runs it: a POST answered 200, then the container restarted (and once
# killed) on the same /data volume, and the event still there, read back
# through the admin API inside the container. Needs buildah, podman and runc
# (Debian's packages) and root; prints what it did and the timings.
#
# This machine (a Firecracker VM without CAP_SYS_RESOURCE or a full cgroup v2)
# needs two things the usual `podman run` does not: runc rather than crun
# (crun refuses the hybrid cgroup layout), and ulimits under the current ones
# (podman's defaults raise them, which is refused; nproc was refused here at
# 40,000 and over, even under the current limit, and taken at 8,192).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work=$(mktemp -d)
name=webhooker-ct-$$
volume=webhooker-ct-data-$$
port=$((20000 + RANDOM % 10000))
admin=$((port + 1))
cleanup() {
	podman rm -f -v "$name" >/dev/null 2>&1 || true
	podman volume rm -f "$volume" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
step() { printf '%s  %s\n' "$(date +%T)" "$*"; }

step "build a static binary of ./cmd/caddy"
CGO_ENABLED=0 GOWORK=off go build -o "$work/caddy" ./cmd/caddy
cp /etc/ssl/certs/ca-certificates.crt "$work/"
# The image's Caddyfile, on a port of this run (the container shares the
# host's network: no port mapping to set up).
sed -e "s/^:80 {/:$port {/" -e "s/admin localhost:2019/admin localhost:$admin/" deploy/Caddyfile >"$work/Caddyfile"
cp deploy/Containerfile.scratch "$work/"

step "build the image (buildah, FROM scratch)"
buildah build -q -f "$work/Containerfile.scratch" -t localhost/caddy-webhooker:test "$work" >/dev/null

run=(podman run -d --name "$name" --runtime "$(command -v runc)" --network host
	--ulimit "nofile=$(ulimit -n):$(ulimit -Hn)" --ulimit nproc=8192:8192
	-v "$volume:/data" localhost/caddy-webhooker:test)
post() { curl -s -o "$work/answer" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
	-d "$1" "http://127.0.0.1:$port/hooks/example-in" || true; }
ready() {
	for _ in $(seq 1 300); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/nothing" || true)" = 404 ] && return 0
		sleep 0.1
	done
	podman logs "$name" >&2
	return 1
}
events() { # the ids of the stored events, from the admin API inside the container
	curl -s "http://localhost:$admin/webhooker/webhooks/$(webhook_id)/events" |
		grep -o '"id":"[0-9a-f-]*"' | sort -u || true
}
webhook_id() { curl -s "http://localhost:$admin/webhooker/webhooks" | grep -o '"id":"[0-9a-f-]*","name":"example"' | cut -d'"' -f4; }

step "run it on volume $volume"
"${run[@]}" >/dev/null
ready
status=$(post '{"hello":"container"}')
answer=$(cat "$work/answer")
step "POST /hooks/example-in: $status $answer"
[ "$status" = 200 ] || { echo "want 200" >&2; exit 1; }
event=$(echo "$answer" | grep -o '[0-9a-f-]\{36\}')

step "restart the container (SIGTERM, then start)"
podman restart -t 30 "$name" >/dev/null
ready
events | grep -q "$event" || { echo "event $event gone after the restart" >&2; exit 1; }
step "event $event still there after the restart"

step "POST again, then kill -9 the container and start it"
status=$(post '{"hello":"again"}')
second=$(grep -o '[0-9a-f-]\{36\}' "$work/answer")
[ "$status" = 200 ] || { echo "want 200" >&2; exit 1; }
podman kill -s KILL "$name" >/dev/null
podman start "$name" >/dev/null
ready
for id in "$event" "$second"; do
	events | grep -q "$id" || { echo "event $id gone after kill -9" >&2; exit 1; }
done
step "events $event and $second still there after kill -9"
step "ok"

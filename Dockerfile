# syntax=docker/dockerfile:1
# Caddy with caddy-webhooker, built from this checkout in Caddy's official
# builder image and copied into its official runtime image:
#
#	docker build -t caddy-webhooker .
#	docker compose up -d            # compose.yaml: volumes and ports
#
# /data holds data_dir (deploy/Caddyfile: /data/webhooker) and Caddy's own
# data (certificates): keep it on a volume, or every event is lost with the
# container. See the README's "Container" section for what was tested.
ARG CADDY_VERSION=2.11.9

FROM caddy:${CADDY_VERSION}-builder AS builder
ARG CADDY_VERSION
# The builder's Go may be older than go.mod's: let it fetch that toolchain.
ENV GOTOOLCHAIN=auto CGO_ENABLED=0
COPY . /src/caddy-webhooker
# The module is built from /src (a replace), not fetched. Until its path is
# published, the module proxy refuses it and xcaddy's `go get` would stop
# there: "|off" makes Go take the replace when the proxy errs (xcaddy.md).
RUN GOPROXY="$(go env GOPROXY | cut -d, -f1)|off" \
	xcaddy build v${CADDY_VERSION} \
		--with github.com/webhooker/caddy-webhooker=/src/caddy-webhooker \
		--output /usr/bin/caddy

FROM caddy:${CADDY_VERSION}
COPY --from=builder /usr/bin/caddy /usr/bin/caddy
COPY deploy/Caddyfile /etc/caddy/Caddyfile
# The base image declares /data and /config as volumes, sets
# XDG_DATA_HOME=/data and XDG_CONFIG_HOME=/config, exposes 80, 443 and
# 443/udp, and runs `caddy run --config /etc/caddy/Caddyfile --adapter caddyfile`.

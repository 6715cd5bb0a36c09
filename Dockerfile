# mcpgate — Debian bookworm, multi-stage: the same packages and build steps
# as the Makefile (`make deps` covers the build stage's apt list).
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config libuv1-dev node-llhttp libssl-dev liblmdb-dev \
      libcurl4-openssl-dev libjansson-dev unicode-data \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY gateway gateway
COPY store store
COPY scim scim
COPY policy policy
COPY auth auth
COPY vault vault
COPY audit audit
COPY web web
COPY tests/unit/unit.h tests/unit/unit.h
RUN make -j"$(nproc)" build/mcpgate

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libuv1 libssl3 liblmdb0 lmdb-utils libcurl4 libjansson4 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/mcpgate --shell /usr/sbin/nologin mcpgate \
 && mkdir -p /var/lib/mcpgate && chown mcpgate:mcpgate /var/lib/mcpgate && chmod 700 /var/lib/mcpgate
COPY --from=build /src/build/mcpgate /usr/local/bin/mcpgate
USER mcpgate
VOLUME ["/var/lib/mcpgate"]
EXPOSE 8080
# Set MCPGATE_PUBLIC_URL (docker run -e MCPGATE_PUBLIC_URL=https://gw.example.com) to the
# address clients use: derived from the wildcard listen address, every URL the gateway
# hands out would say http://0.0.0.0:8080 (the gateway warns at start).
# The master key is created in the data volume, beside the secrets it seals, and every start
# warns about it: in production mount it from elsewhere and set MCPGATE_MASTER_KEY_FILE.
# shutdown_timeout_ms 8000: a drain ends (and the process exits 0) inside `docker stop`'s
# default 10 s grace, before its SIGKILL; raise both together.
ENV MCPGATE_LISTEN=0.0.0.0:8080 MCPGATE_DATA=/var/lib/mcpgate MCPGATE_SHUTDOWN_TIMEOUT_MS=8000
# the port MCPGATE_LISTEN says (docker run -e MCPGATE_LISTEN=0.0.0.0:9000 moves both)
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
  CMD curl -fsS "http://127.0.0.1:${MCPGATE_LISTEN##*:}/healthz" || exit 1
# SIGTERM drains in-flight requests (shutdown_timeout_ms, 8 s here) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/mcpgate"]
CMD ["serve"]

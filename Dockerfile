# syntax=docker/dockerfile:1
# stepgate: a static binary on distroless, non-root (SPEC §10).
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t stepgate .
#   docker run -v $PWD/config.yaml:/etc/stepgate/config.yaml:ro \
#     -e STEPGATE_SECOND_FACTOR_SECRET_FILE=/run/secrets/stepgate -p 8080:8080 -p 9090:9090 stepgate
#
# In a container set server.listen and server.admin_listen to 0.0.0.0:8080
# and 0.0.0.0:9090 (or STEPGATE_SERVER_LISTEN / STEPGATE_SERVER_ADMIN_LISTEN):
# the defaults listen on 127.0.0.1 only.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/stepgate . \
 && /out/stepgate version

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/stepgate /stepgate
# No config is baked in (the reference config carries dev-only secrets):
# mount one at /etc/stepgate/config.yaml.
USER 65532:65532
EXPOSE 8080 9090
# distroless has no shell or curl: the binary checks itself. The URL is the
# admin listener's /healthz; change it with the admin port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/stepgate", "healthcheck", "-url", "http://127.0.0.1:9090/healthz"]
# SIGTERM (docker stop) drains in-flight requests for server.shutdown_grace
# (15s); keep `docker stop -t` above it. SIGHUP reloads the config.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/stepgate"]
CMD ["serve", "-config", "/etc/stepgate/config.yaml"]

#!/bin/sh
# Run the collector on otelcol.yaml plus the file of each backend whose endpoint variable is set:
#   collector/otelcol.sh                                            # the archive only
#   JAEGER_OTLP_ENDPOINT=127.0.0.1:14317 collector/otelcol.sh       # and Jaeger
#   TEMPO_OTLP_ENDPOINT=127.0.0.1:24317 collector/otelcol.sh        # and Tempo
#   POSTGRES_EXPORTER_TARGETS='[db:9187]' collector/otelcol.sh      # and PostgreSQL's metrics
#   RABBITMQ_PROMETHEUS_TARGETS='[mq:15692]' collector/otelcol.sh   # and RabbitMQ's queues
#   REDIS_EXPORTER_TARGETS='[cache:9121]' collector/otelcol.sh      # and Redis's streams
#   collector/otelcol.sh validate                                   # the same files, validated
# Arguments go to the collector; OTELCOL names its binary (default: otelcol-contrib on PATH).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
set -- "$@" --config "$here/otelcol.yaml"
if [ -n "${JAEGER_OTLP_ENDPOINT:-}" ]; then
  set -- "$@" --config "$here/backends/jaeger.yaml"
fi
if [ -n "${TEMPO_OTLP_ENDPOINT:-}" ]; then
  set -- "$@" --config "$here/backends/tempo.yaml"
fi
if [ -n "${POSTGRES_EXPORTER_TARGETS:-}" ]; then
  set -- "$@" --config "$here/metrics/postgresql.yaml"
fi
if [ -n "${RABBITMQ_PROMETHEUS_TARGETS:-}" ]; then
  set -- "$@" --config "$here/metrics/rabbitmq.yaml"
fi
if [ -n "${REDIS_EXPORTER_TARGETS:-}" ]; then
  set -- "$@" --config "$here/metrics/redis.yaml"
fi
exec "${OTELCOL:-otelcol-contrib}" "$@"

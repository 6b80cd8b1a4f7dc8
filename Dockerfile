# The lupus-stream image: the package and its CLI, plus the example monitor definitions
# (detectors/) and the topic contracts (topics/) it runs with by default.
#
#   docker build -t lupus-stream .
#   docker run --rm -e LUPUS_KAFKA_BOOTSTRAP_SERVERS=broker:9092 lupus-stream worker
#
# Settings come from LUPUS_* variables (lupus_stream/settings.py); docker-compose.yml at the
# repository root runs a whole stack (Kafka, Redis, two workers, Prometheus, Grafana).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The package first (a regular, non-editable install; its source is not kept): editing
# detectors/ or topics/ keeps this layer cached. Every dependency has a cp311 manylinux wheel,
# so the slim image needs no compiler.
COPY pyproject.toml README.md /tmp/src/
COPY lupus_stream /tmp/src/lupus_stream
RUN pip install /tmp/src && rm -rf /tmp/src
# Compile the seasonal detector's batch update into numba's cache now (next to the installed
# package), so that no container spends its first seconds compiling it.
RUN python -c "from lupus_stream.detection import seasonal_steady; seasonal_steady.warm()"

WORKDIR /app
COPY detectors ./detectors
COPY topics ./topics

# Unprivileged user; /var/lib/lupus holds a worker's local state (snapshots, Faust data dir)
# and is owned by that user, so a named volume mounted there inherits the ownership.
RUN useradd --system --uid 10001 --home-dir /var/lib/lupus --create-home lupus
USER lupus

ENV LUPUS_DETECTORS=/app/detectors \
    LUPUS_TOPICS=/app/topics \
    LUPUS_WORKER_DATA_DIR=/var/lib/lupus/worker \
    LUPUS_WORKER_METRICS_PORT=9464
EXPOSE 9464

ENTRYPOINT ["lupus-stream"]
CMD ["--help"]

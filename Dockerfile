# Production image: the service as a non-root user, talking to an external PostgreSQL
# (DB_HOST or DATABASE_URL must be set; see docker-compose.yml). Migrations run with
# `inbox-allocation migrate up` (the `migrate` service in docker-compose.yml).
# There is no Docker engine on our development machines: keep this file correct by reading.
#
# Build arguments: OTEL=true adds the [otel] extra (OTLP trace export); GIT_COMMIT and
# BUILD_TIME are what /version reports, e.g.
#   docker build --build-arg OTEL=true --build-arg GIT_COMMIT=$(git rev-parse HEAD) \
#     --build-arg BUILD_TIME=$(date -u +%Y-%m-%dT%H:%M:%SZ) -t inbox-allocation .

FROM python:3.11-slim AS build
ARG OTEL=false
WORKDIR /src
COPY requirements ./requirements
COPY pyproject.toml README.md ./
COPY src ./src
# Wheels for every dependency, exactly as hash-locked in requirements/ (no embedded
# PostgreSQL: the image always talks to a configured database), then the service itself; the
# runtime stage then needs no compiler and no index.
RUN lock=requirements/service.txt; \
    if [ "$OTEL" = true ]; then lock=requirements/service-otel.txt; fi; \
    pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r "$lock" && \
    pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ARG BUILD_TIME=unknown
ARG GIT_COMMIT=unknown
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BUILD_TIME=${BUILD_TIME} \
    GIT_COMMIT=${GIT_COMMIT} \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=8080
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
COPY alembic.ini openapi.yaml ./
COPY migrations ./migrations
USER app
EXPOSE 8080
# Probes the port the service listens on, also when SERVER_PORT is overridden at run time.
HEALTHCHECK --interval=10s --timeout=3s \
  CMD python -c 'import os, urllib.request; urllib.request.urlopen("http://127.0.0.1:%s/health" % os.environ.get("SERVER_PORT", "8080"), timeout=2)'
CMD ["inbox-allocation", "serve"]

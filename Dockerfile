# Production image: the service as a non-root user, talking to an external PostgreSQL
# (DB_HOST or DATABASE_URL must be set; see docker-compose.yml). Migrations run with
# `inbox-allocation migrate up` (the `migrate` service in docker-compose.yml).
# There is no Docker engine on our development machines: keep this file correct by reading.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# Wheels for the service and every dependency, so the runtime stage needs no compiler.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

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
HEALTHCHECK --interval=10s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)"
CMD ["inbox-allocation", "serve"]

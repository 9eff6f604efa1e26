# responder: the daemon by default; the compose file also runs the simulated exchange from it.
#   docker build -t responder .
#   docker run --rm --init -p 127.0.0.1:9095:9095 -e RESPONDER_WEBHOOK_TOKENS=... responder
# Without RESPONDER_DATABASE_URL the daemon starts an embedded PostgreSQL under
# RESPONDER_DATA_DIR (mount a volume there to keep the action log; --init reaps its processes).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# README.m[d] and LICENS[E]: copied when present (pyproject names both), no error when absent.
COPY pyproject.toml README.m[d] LICENS[E] ./
COPY responder ./responder
RUN /opt/venv/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RESPONDER_LISTEN=0.0.0.0:9095 \
    RESPONDER_RULES_DIR=/app/rules \
    RESPONDER_DATA_DIR=/var/lib/responder
# PostgreSQL (embedded store) refuses to run as root, and so should we.
RUN groupadd --system --gid 10001 responder \
 && useradd --system --uid 10001 --gid responder --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin responder \
 && install -d -o responder -g responder -m 0700 /var/lib/responder
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY rules ./rules
COPY examples ./examples
USER responder:responder
EXPOSE 9095
# Liveness only; /readyz (store reachable, rules loaded) is for load balancers and orchestrators.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('RESPONDER_LISTEN', '').rpartition(':')[2] or '9095'; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
ENTRYPOINT ["responder"]
CMD ["run"]

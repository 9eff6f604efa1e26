#!/usr/bin/env bash
# `make run`: the simulated exchange on :9096 and responder on :9095, on the embedded store.
set -euo pipefail
cd "$(dirname "$0")/.."
export RESPONDER_CONFIG_FILE="${RESPONDER_CONFIG_FILE:-examples/demo.toml}"
export RESPONDER_EXCHANGE_URL="${RESPONDER_EXCHANGE_URL:-http://127.0.0.1:9096}"
export RESPONDER_EXCHANGE_TOKEN="${RESPONDER_EXCHANGE_TOKEN:-demo-exchange-admin-token}"
exchange_listen="${RESPONDER_EXCHANGE_URL#http://}"

.venv/bin/python -m examples.exchange --listen "$exchange_listen" \
  --token "$RESPONDER_EXCHANGE_TOKEN" &
exchange_pid=$!
trap 'kill $exchange_pid 2>/dev/null || true' EXIT

cat <<MSG
responder demo
  responder          http://${RESPONDER_LISTEN:-127.0.0.1:9095}  (settings: $RESPONDER_CONFIG_FILE)
  simulated exchange $RESPONDER_EXCHANGE_URL  (state: $RESPONDER_EXCHANGE_URL/_sim/state)
  webhook token      demo-webhook-token   (Authorization: Bearer demo-webhook-token)
  API tokens        demo-viewer-token, demo-operator-token, demo-admin-token (see README)
  store              embedded PostgreSQL under .responder/ (set RESPONDER_DATABASE_URL to use yours)
Fire an alert: see README.md, "Try it". Stop with Ctrl-C.
MSG
.venv/bin/responder run

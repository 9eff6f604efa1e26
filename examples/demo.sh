#!/usr/bin/env bash
# `make run`: the simulated exchange on :9096 and responder on :9095, on the embedded store.
set -euo pipefail
cd "$(dirname "$0")/.."
export RESPONDER_CONFIG_FILE="${RESPONDER_CONFIG_FILE:-examples/demo.toml}"
export RESPONDER_EXCHANGE_URL="${RESPONDER_EXCHANGE_URL:-http://127.0.0.1:9096}"
export RESPONDER_EXCHANGE_TOKEN="${RESPONDER_EXCHANGE_TOKEN:-demo-exchange-admin-token}"
exchange_listen="${RESPONDER_EXCHANGE_URL#http://}"
# The rule packs (rules/*.yaml naming a pack) act on the packs simulator: a generic admin API.
export RESPONDER_RULE_PACKS="${RESPONDER_RULE_PACKS:-all}"
packs_sim="${RESPONDER_PACKS_SIM_LISTEN:-127.0.0.1:9097}"
for service in GATEWAY BRIEFCASE EDGE; do
  lower=$(tr 'A-Z' 'a-z' <<<"$service")
  url_var="RESPONDER_${service}_URL" token_var="RESPONDER_${service}_TOKEN"
  export "$url_var=${!url_var:-http://$packs_sim/$lower}"
  export "$token_var=${!token_var:-demo-$lower-admin-token}"
done
export RESPONDER_MARKETDATA_URL="${RESPONDER_MARKETDATA_URL:-http://$packs_sim/marketdata}"

# The simulators keep their levels under .responder/ (beside the embedded store), so a
# restarted demo finds the target as responder left it, as a real exchange would.
mkdir -p .responder
.venv/bin/python -m examples.exchange --listen "$exchange_listen" \
  --token "$RESPONDER_EXCHANGE_TOKEN" --state-file .responder/demo-exchange.json &
exchange_pid=$!
.venv/bin/python -m examples.admin_sim --listen "$packs_sim" --token "$RESPONDER_EXCHANGE_TOKEN" \
  --token "$RESPONDER_GATEWAY_TOKEN" --token "$RESPONDER_BRIEFCASE_TOKEN" \
  --token "$RESPONDER_EDGE_TOKEN" --state-file .responder/demo-packs.json &
packs_sim_pid=$!
trap 'kill $exchange_pid $packs_sim_pid 2>/dev/null || true' EXIT

cat <<MSG
responder demo
  responder          http://${RESPONDER_LISTEN:-127.0.0.1:9095}  (settings: $RESPONDER_CONFIG_FILE)
  simulated exchange $RESPONDER_EXCHANGE_URL  (state: $RESPONDER_EXCHANGE_URL/_sim/state)
  rule packs         $RESPONDER_RULE_PACKS, on the packs simulator http://$packs_sim (state: /_sim/state)
  webhook token      demo-webhook-token   (Authorization: Bearer demo-webhook-token)
  API tokens        demo-viewer-token, demo-operator-token, demo-admin-token (see README)
  store              embedded PostgreSQL under .responder/ (set RESPONDER_DATABASE_URL to use yours)
Fire an alert: see README.md, "Try it". Stop with Ctrl-C.
MSG
.venv/bin/responder run

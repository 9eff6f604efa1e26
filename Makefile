# One target per habit; CI (.ci/run) calls `make test`, exactly what a newcomer runs.
# `make run` installs only what the daemon needs; the test tools come with `make setup`
# and `make test`. Each install prints what it does, step by step.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Unbuffered, so the filtered lines below appear as pip works, not all at the end.
PIP := PYTHONUNBUFFERED=1 $(PY) -m pip --disable-pip-version-check
SUM := $(shell cksum pyproject.toml | cut -d' ' -f1)
RUN_STAMP := $(VENV)/.run-$(SUM)
DEV_STAMP := $(VENV)/.dev-$(SUM)

.PHONY: setup system-deps run test lint typecheck layers unit check-rules compose-check \
        k8s-check bench clean

$(PY):
	@echo "==> [1/2] creating $(VENV) (python: $$($(PYTHON) --version))"
	@$(PYTHON) -m venv $(VENV)

# The daemon's own dependencies only: what `make run` needs.
$(RUN_STAMP): pyproject.toml | $(PY)
	@echo "==> [2/2] installing responder and what the daemon needs (one line per package)"
	@set -o pipefail; $(PIP) install --progress-bar on -e . 2>&1 | grep --line-buffered -E '^(Collecting|Successfully|ERROR)' || { \
	  echo "install failed; run: $(PIP) install -e ."; exit 1; }
	@rm -f $(VENV)/.run-*
	@touch $@

# The test and lint tools on top: `make setup`, and every target `make test` runs.
$(DEV_STAMP): $(RUN_STAMP)
	@echo "==> installing the test tools (pytest, mypy, ruff, selenium, ...)"
	@set -o pipefail; $(PIP) install --progress-bar on -e '.[dev]' 2>&1 | grep --line-buffered -E '^(Collecting|Successfully|ERROR)' || { \
	  echo "install failed; run: $(PIP) install -e '.[dev]'"; exit 1; }
	@rm -f $(VENV)/.dev-*
	@touch $@

setup: $(DEV_STAMP)

# The end-to-end test drives the real Alertmanager binary, and promtool checks responder's
# own alerting rules (Debian's packages). The web page test drives Debian's headless chromium.
system-deps:
	@command -v prometheus-alertmanager >/dev/null && command -v promtool >/dev/null || { \
	  echo "installing prometheus-alertmanager and prometheus (Debian packages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-alertmanager prometheus >/dev/null; }
	@test -x /usr/bin/chromium && test -x /usr/bin/chromedriver || { \
	  echo "installing chromium and chromium-driver (Debian packages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

run: $(RUN_STAMP)
	@bash examples/demo.sh

lint: setup
	$(VENV)/bin/ruff check responder tests examples bench

typecheck: setup
	$(VENV)/bin/mypy

# The import rules of the house: the contracts in pyproject.toml ([tool.importlinter]).
layers: setup
	$(VENV)/bin/lint-imports --no-cache

check-rules: setup
	RESPONDER_EXCHANGE_TOKEN=check $(VENV)/bin/responder check-rules rules
	$(VENV)/bin/responder check-rules rules --packs all --skip-secrets
	$(VENV)/bin/responder test-rules rules/tests/*.yaml

compose-check: setup
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

# Offline: kubernetes-validate carries the Kubernetes schemas; ServiceMonitor (a CRD) is
# checked against deploy/kubernetes/schemas/servicemonitor.json.
k8s-check: setup
	$(VENV)/bin/kubernetes-validate --strict --quiet $(filter-out %/kustomization.yaml %/servicemonitor.yaml,$(wildcard deploy/kubernetes/*.yaml))
	$(VENV)/bin/check-jsonschema --schemafile deploy/kubernetes/schemas/servicemonitor.json deploy/kubernetes/servicemonitor.yaml

unit: setup system-deps
	$(VENV)/bin/pytest

test: setup system-deps lint typecheck layers check-rules compose-check k8s-check unit

bench: setup
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) bench/run.py --rounds 3 --footprint --profile
	$(PY) bench/metrics.py
	$(PY) bench/kafka_latency.py
	$(PY) bench/takeover.py --rounds 5 --restart
	@if [ -z "$(BENCH_QUICK)" ]; then $(PY) bench/replicas.py; else echo "bench: replicas skipped (BENCH_QUICK)"; fi

clean:
	rm -rf $(VENV) .responder .mypy_cache .ruff_cache .pytest_cache tests/artefacts

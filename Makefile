# One target per habit; CI (.ci/run) calls `make test`, exactly what a newcomer runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup system-deps run test lint typecheck unit check-rules compose-check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

# The end-to-end test drives the real Alertmanager binary, and promtool checks responder's
# own alerting rules (Debian's packages). The web page test drives Debian's headless chromium.
system-deps:
	@command -v prometheus-alertmanager >/dev/null && command -v promtool >/dev/null || { \
	  echo "installing prometheus-alertmanager and prometheus (Debian packages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-alertmanager prometheus >/dev/null; }
	@test -x /usr/bin/chromium && test -x /usr/bin/chromedriver || { \
	  echo "installing chromium and chromium-driver (Debian packages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

run: setup
	@bash examples/demo.sh

lint: setup
	$(VENV)/bin/ruff check responder tests examples bench

typecheck: setup
	$(VENV)/bin/mypy

check-rules: setup
	RESPONDER_EXCHANGE_TOKEN=check $(VENV)/bin/responder check-rules rules
	$(VENV)/bin/responder check-rules rules --packs all --skip-secrets
	$(VENV)/bin/responder test-rules rules/tests/*.yaml

compose-check: setup
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

unit: setup system-deps
	$(VENV)/bin/pytest

test: setup system-deps lint typecheck check-rules compose-check unit

bench: setup
	$(PY) bench/run.py --rounds 3 --footprint --profile
	$(PY) bench/metrics.py

clean:
	rm -rf $(VENV) .responder .mypy_cache .ruff_cache .pytest_cache

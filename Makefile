# coincast — every target bootstraps .venv itself (idempotent; a no-op when up to date).
SHELL := /bin/bash
# The first of python3.11, python3.12, python3 that runs and is 3.11 or 3.12 (ploomber, ydata-profiling).
PYTHON ?= $(shell for p in python3.11 python3.12 python3; do $$p -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12))' 2>/dev/null && command -v $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9

# Telemetry off: offline hosts hang on it.
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PLOOMBER_STATS_ENABLED := false
export PLOOMBER_VERSION_CHECK_DISABLED := true
export PYTHONUNBUFFERED := 1

ENV_FILE ?=
REPLAY_FILE ?=
JUPYTER_PORT ?= 8888
MLFLOW_PORT ?= 5000
SERVE_PORT ?= 5001
DASHBOARD_PORT ?= 8866
DASHBOARD_IP ?= 127.0.0.1
COIN ?= bitcoin
TRACKING_URI := $(or $(MLFLOW_TRACKING_URI),sqlite:///$(CURDIR)/mlflow.db)

.PHONY: install demo run test jupyter dashboard mlflow-ui serve bench-accuracy clean clean-products

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock Makefile
	@test -n "$(PYTHON)" || { echo "coincast needs Python 3.11 or 3.12 (python3.11 / python3.12 on PATH)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

## make demo: offline, full pipeline on the built-in simulator (or REPLAY_FILE=path to replay a real file)
demo: $(STAMP)
ifeq ($(strip $(REPLAY_FILE)),)
	$(BIN)/coincast build --source simulated $(if $(ENV_FILE),--env $(ENV_FILE))
else
	$(BIN)/coincast build --source replay --replay-file "$(REPLAY_FILE)" $(if $(ENV_FILE),--env $(ENV_FILE))
endif

## make run: live CoinGecko (COINGECKO_API_KEY / COINGECKO_API_PLAN from the environment or .env)
run: $(STAMP)
	$(BIN)/coincast build --source coingecko $(if $(ENV_FILE),--env $(ENV_FILE))

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make jupyter: JupyterLab on 127.0.0.1 with jupytext (open notebooks/*.py as notebooks)
jupyter: $(STAMP)
	JUPYTER_CONFIG_DIR=$(CURDIR)/.jupyter $(BIN)/jupyter lab --ip 127.0.0.1 --port $(JUPYTER_PORT) --no-browser

## make dashboard: the Voila dashboard (reads products and MLflow only) on http://$(DASHBOARD_IP):$(DASHBOARD_PORT)
dashboard: $(STAMP)
	$(BIN)/python -m coincast.dashboard --project "$(CURDIR)" --port $(DASHBOARD_PORT) --ip $(DASHBOARD_IP)

## make mlflow-ui: runs, metrics, artifacts and the model registry on http://127.0.0.1:$(MLFLOW_PORT)
mlflow-ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri "$(TRACKING_URI)" --host 127.0.0.1 --port $(MLFLOW_PORT)

## make serve [COIN=bitcoin]: the champion as a REST model server (MLflow's own) on 127.0.0.1:$(SERVE_PORT)
serve: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" MLFLOW_TRACKING_URI="$(TRACKING_URI)" $(BIN)/mlflow models serve \
	  -m "models:/coincast-$(COIN)@champion" --env-manager local -h 127.0.0.1 -p $(SERVE_PORT)

## make bench-accuracy: backtests BTC/ETH/LTC from ../shared/data; writes bench/results/accuracy.{md,json}
bench-accuracy: $(STAMP)
	$(BIN)/python bench/accuracy.py

clean-products:
	rm -rf products/*/

clean: clean-products
	rm -rf $(VENV) mlflow.db mlartifacts

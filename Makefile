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
MLFLOW_HOST ?= 127.0.0.1
MLFLOW_WORKERS ?= 2
SERVE_PORT ?= 5001
DASHBOARD_PORT ?= 8866
DASHBOARD_IP ?= 127.0.0.1
COIN ?= bitcoin
TRACKING_URI := $(or $(MLFLOW_TRACKING_URI),sqlite:///$(CURDIR)/mlflow.db)

DVC_REMOTE ?= $(CURDIR)/dvc-remote
# an S3-compatible server's URL for an s3:// DVC_REMOTE (MinIO, moto_server); empty: AWS S3 itself
DVC_REMOTE_ENDPOINT ?=
HOURS ?= 48
START ?=
SOURCE ?=
CRON_MINUTE ?= 5
comma := ,
# dvc runs `coincast build` from dvc.yaml: the venv's bin must be on its PATH.
VENV_PATH := PATH="$(CURDIR)/$(BIN):$$PATH"

.PHONY: install demo run test jupyter dashboard mlflow-ui serve bench-accuracy clean clean-products \
        mlflow-server hourly replay cron-install cron-remove dvc-init bench bench-quick bench-soak airflow airflow-venv \
        airflow-test airflow-test-project bench-airflow

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock Makefile
	@test -n "$(PYTHON)" || { echo "coincast needs Python 3.11 or 3.12 (python3.11 / python3.12 on PATH)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install -q --compile-bytecode --no-deps --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

## make demo: offline, full pipeline on the built-in simulator (or REPLAY_FILE=path to replay a real file);
## the simulated raw history and prediction log are versioned with DVC and pushed to the local remote.
## DVC runs quietly (-q: no stage banner, no `git add dvc.lock` advice); coincast's own lines say what failed.
demo: $(STAMP) dvc-init
ifeq ($(strip $(REPLAY_FILE)),)
	@$(VENV_PATH) COINCAST_ENV="$(ENV_FILE)" $(BIN)/dvc repro -q --force build@simulated || { echo "make demo: \
	dvc repro build@simulated failed (coincast's lines above say why; for DVC's own errors run it without -q)" >&2; \
	exit 1; }
	$(BIN)/dvc push -q build@simulated
else
	$(BIN)/coincast build --source replay --replay-file "$(REPLAY_FILE)" $(if $(ENV_FILE),--env $(ENV_FILE))
endif

## make run: live CoinGecko (COINGECKO_API_KEY / COINGECKO_API_PLAN from the environment or .env)
run: $(STAMP)
	$(BIN)/coincast build --source coingecko $(if $(ENV_FILE),--env $(ENV_FILE))

## make hourly: one unattended tick (env.yaml + env.cron.yaml [+ ENV_FILE]); logs in logs/hourly.log
hourly: $(STAMP)
	COINCAST_ENV="$(ENV_FILE)" $(BIN)/coincast hourly $(if $(SOURCE),--source $(SOURCE))

## make replay HOURS=48 [START=2025-06-01T13:05Z]: that many ticks on simulated data, the clock advancing an hour
## per tick (default: ending at the current hour; refused if the prediction log already holds those hours)
replay: $(STAMP)
	COINCAST_ENV="$(ENV_FILE)" $(BIN)/coincast replay --source simulated --hours $(HOURS) $(if $(START),--start $(START))

## make cron-install / cron-remove: one tagged crontab line running `make hourly` at CRON_MINUTE past each hour
cron-install: $(STAMP)
	$(BIN)/coincast cron install --project "$(CURDIR)" --minute $(CRON_MINUTE) $(if $(ENV_FILE),--env-files "$(ENV_FILE)")

cron-remove: $(STAMP)
	$(BIN)/coincast cron remove --project "$(CURDIR)"

## make dvc-init: DVC with a default remote DVC_REMOTE (a git-ignored folder here; s3://bucket/path with dvc-s3,
## DVC_REMOTE_ENDPOINT=http://host:port for MinIO or another S3-compatible server; keys from AWS_* variables)
## in DVC_DIR (default: this project; make airflow-test: its scratch copy)
DVC_DIR ?= $(CURDIR)
DVC := cd "$(DVC_DIR)" && $(CURDIR)/$(BIN)/dvc
dvc-init: $(STAMP)
	@test -d "$(DVC_DIR)/.dvc" || { $(DVC) init -q $(if $(wildcard $(DVC_DIR)/.git),,--no-scm); }
	@$(DVC) config core.analytics false
	@$(DVC) remote add -f -d local "$(DVC_REMOTE)" >/dev/null
	$(if $(strip $(DVC_REMOTE_ENDPOINT)),@$(DVC) remote modify local endpointurl "$(DVC_REMOTE_ENDPOINT)")

## make test: everything, two tests at a time (pytest-xdist), the 15 slowest printed at the end; the host's speed
## (bench/hostspeed.py) before and after, since this host's speed varies ~2.5x.
## PYTEST_ARGS adds options: make test PYTEST_ARGS="-m 'not slow'" (the quick loop), "-k gate", "-n 0" (one at a time)
TEST_JOBS ?= 2
test: $(STAMP)
	@$(BIN)/python bench/hostspeed.py
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist worksteal --durations=15 $(PYTEST_ARGS)
	@$(BIN)/python bench/hostspeed.py

## make jupyter: JupyterLab on 127.0.0.1 with jupytext (open notebooks/*.py as notebooks)
jupyter: $(STAMP)
	JUPYTER_CONFIG_DIR=$(CURDIR)/.jupyter $(BIN)/jupyter lab --ip 127.0.0.1 --port $(JUPYTER_PORT) --no-browser

## make dashboard: the Voila dashboard (reads products and MLflow only) on http://$(DASHBOARD_IP):$(DASHBOARD_PORT)
dashboard: $(STAMP)
	$(BIN)/python -m coincast.dashboard --project "$(CURDIR)" --port $(DASHBOARD_PORT) --ip $(DASHBOARD_IP)

## make mlflow-ui: runs, metrics, artifacts and the model registry on http://127.0.0.1:$(MLFLOW_PORT)
mlflow-ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri "$(TRACKING_URI)" --host 127.0.0.1 --port $(MLFLOW_PORT)

## make mlflow-server: the tracking server several workers share (docs/scaling.md, "Shared services"), set up from
## the environment: MLFLOW_BACKEND_STORE_URI (postgresql+psycopg2://user:password@host:5432/mlflow) and
## MLFLOW_ARTIFACTS_DESTINATION (s3://bucket/mlflow; MLFLOW_S3_ENDPOINT_URL for MinIO, keys in AWS_*).
## Workers then set MLFLOW_TRACKING_URI=http://$(MLFLOW_HOST):$(MLFLOW_PORT); artifacts go through the server.
mlflow-server: $(STAMP)
	@test -n "$$MLFLOW_BACKEND_STORE_URI" -a -n "$$MLFLOW_ARTIFACTS_DESTINATION" || { echo "make mlflow-server: \
	set MLFLOW_BACKEND_STORE_URI and MLFLOW_ARTIFACTS_DESTINATION (docs/scaling.md)" >&2; exit 2; }
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false exec $(BIN)/mlflow server --host $(MLFLOW_HOST) --port $(MLFLOW_PORT) \
	  --workers $(MLFLOW_WORKERS)

## make serve [COIN=bitcoin]: the champion as a REST model server (MLflow's own) on 127.0.0.1:$(SERVE_PORT)
serve: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" MLFLOW_TRACKING_URI="$(TRACKING_URI)" $(BIN)/mlflow models serve \
	  -m "models:/coincast-$(COIN)@champion" --env-manager local -h 127.0.0.1 -p $(SERVE_PORT)

## make bench: speed, memory, the plain-script limit and growth; writes bench/results/speed.{md,json} (~30 min)
bench: $(STAMP)
	$(BIN)/python bench/speed.py

## make bench-quick: the same, once, on small data (no timing claims; make test runs its harness on tiny data)
bench-quick: $(STAMP)
	$(BIN)/python bench/speed.py --quick --out $(CURDIR)/bench/results

## make bench-soak: two writers under load: 8 coins two at a time, 48 replayed ticks retraining every 6 h, one
## sqlite MLflow store; every registry version and alias checked; writes bench/results/soak.{md,json} (~30 min)
bench-soak: $(STAMP)
	$(BIN)/python bench/soak.py

## make bench-accuracy: backtests BTC/ETH/LTC from ../shared/data; writes bench/results/accuracy.{md,json}
bench-accuracy: $(STAMP)
	$(BIN)/python bench/accuracy.py

## --- Apache Airflow (opt-in; docs/scaling.md) -------------------------------------------------------------
## Airflow lives in its own venv (.venv-airflow: its pins conflict with Ploomber's), pinned by airflow/requirements.lock
## (uv pip compile --universal airflow/requirements.in). make install / make demo never install it.
AIRFLOW_VENV := .venv-airflow
AIRFLOW_BIN := $(AIRFLOW_VENV)/bin
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
AIRFLOW_PORT ?= 8080
AIRFLOW_TRAINING_SLOTS ?= 1
AIRFLOW_TEST_DIR ?= $(CURDIR)/.airflow-test
AIRFLOW_TEST_COINS ?= bitcoin,ethereum
# One machine: LocalExecutor, SQLite metadata in a git-ignored AIRFLOW_HOME inside the project, 127.0.0.1 only, two
# task processes at a time (2 cores; the default 32 starts 32 workers, ~5.4 GB). Task workers reach the API server
# over HTTP: its URL follows AIRFLOW_PORT.
# (standalone starts `airflow scheduler`, `airflow api-server`, ... by name: the venv's bin first on PATH)
AIRFLOW_VARS = PATH="$(CURDIR)/$(AIRFLOW_BIN):$$PATH" AIRFLOW_HOME="$(1)/.airflow" AIRFLOW__CORE__DAGS_FOLDER="$(CURDIR)/airflow/dags" \
  COINCAST_AIRFLOW_GRAPH="$(1)/airflow/coincast-dag.json" COINCAST_BIN="$(CURDIR)/$(BIN)/coincast" \
  AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__EXECUTOR=LocalExecutor AIRFLOW__CORE__PARALLELISM=2 \
  AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
  AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(AIRFLOW_PORT)/execution/
AIRFLOW_POOL = $(AIRFLOW_BIN)/airflow pools set coincast_training $(AIRFLOW_TRAINING_SLOTS) "coincast trainings at a time" >/dev/null

airflow-venv: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP): airflow/requirements.lock | $(STAMP)
	@test -x $(AIRFLOW_BIN)/python || $(BIN)/uv venv -q --python $(PYTHON) $(AIRFLOW_VENV)
	$(BIN)/uv pip install -q --compile-bytecode --no-deps --python $(AIRFLOW_BIN)/python -r airflow/requirements.lock
	@touch $(AIRFLOW_STAMP)

## make airflow: Airflow on this machine (standalone: scheduler, API server and UI on http://127.0.0.1:$(AIRFLOW_PORT)),
## running the DAG `coincast` every hour for env.yaml's coins (+ ENV_FILE); the admin password is printed on first start
## (AIRFLOW_PROJECT: another project folder, AIRFLOW_EXPORT: other settings arguments for its tasks; the benchmark's)
AIRFLOW_PROJECT ?= $(CURDIR)
AIRFLOW_EXPORT ?= $(if $(ENV_FILE),--env $(ENV_FILE))
airflow: $(AIRFLOW_STAMP)
	$(BIN)/coincast airflow export --project "$(AIRFLOW_PROJECT)" $(AIRFLOW_EXPORT)
	@$(call AIRFLOW_VARS,$(AIRFLOW_PROJECT)) $(AIRFLOW_BIN)/airflow db migrate >/dev/null
	@$(call AIRFLOW_VARS,$(AIRFLOW_PROJECT)) $(AIRFLOW_POOL)
	@echo "make airflow: http://127.0.0.1:$(AIRFLOW_PORT) (user admin; its password is printed below on first start and kept in $(AIRFLOW_PROJECT)/.airflow/simple_auth_manager_passwords.json.generated)"
	$(call AIRFLOW_VARS,$(AIRFLOW_PROJECT)) $(AIRFLOW_BIN)/airflow standalone

## make bench-airflow: the DAG's run for 8 simulated coins on 2 workers (airflow standalone, LocalExecutor) vs
## `coincast hourly` for the same coins; the scheduler's overhead per task; writes bench/results/airflow.{md,json}
bench-airflow: $(AIRFLOW_STAMP)
	$(BIN)/python bench/airflow.py

## make airflow-test: the DAG run offline for two simulated coins in a scratch copy of the project (AIRFLOW_TEST_DIR,
## a git repo with DVC set up: remote AIRFLOW_TEST_DVC_REMOTE, endpoint DVC_REMOTE_ENDPOINT), env.test.yaml with the naive
## model only: `airflow dags test --use-executor` (airflow/dags-test.sh: LocalExecutor, 2 task processes at a time, an
## execution API server for them; metadata in AIRFLOW_TEST_DB, default SQLite in the copy); then each coin's products
## are checked. AIRFLOW_TEST_DATA: a folder copied into the copy's data/ first; AIRFLOW_TEST_GATE_COIN: one more coin,
## whose data there fails the gate (the run must then fail, and the other coins still publish). tests/test_airflow.py.
AIRFLOW_TEST_DVC_REMOTE ?= $(AIRFLOW_TEST_DIR)/dvc-remote
AIRFLOW_TEST_DB ?=
AIRFLOW_TEST_DATA ?=
AIRFLOW_TEST_GATE_COIN ?=
AIRFLOW_TEST_RUN = $(call AIRFLOW_VARS,$(AIRFLOW_TEST_DIR)) $(if $(AIRFLOW_TEST_DB),AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="$(AIRFLOW_TEST_DB)")
airflow-test: $(AIRFLOW_STAMP)
	rm -rf "$(AIRFLOW_TEST_DIR)" && mkdir -p "$(AIRFLOW_TEST_DIR)"
	@$(AIRFLOW_TEST_RUN) $(AIRFLOW_BIN)/airflow db migrate >/dev/null
	@echo "make airflow-test: airflow dags test --use-executor coincast (log: $(AIRFLOW_TEST_DIR)/dags-test.log)"
	@$(AIRFLOW_TEST_RUN) airflow/dags-test.sh $(MAKE) -s airflow-test-project > "$(AIRFLOW_TEST_DIR)/dags-test.log" 2>&1; \
	  status=$$?; \
	  if [ -z "$(AIRFLOW_TEST_GATE_COIN)" -a $$status != 0 ]; then tail -40 "$(AIRFLOW_TEST_DIR)/dags-test.log"; exit 1; fi; \
	  if [ -n "$(AIRFLOW_TEST_GATE_COIN)" ] && ! grep -q "DagRun failed" "$(AIRFLOW_TEST_DIR)/dags-test.log"; then \
	    tail -40 "$(AIRFLOW_TEST_DIR)/dags-test.log"; \
	    echo "make airflow-test: the run did not fail, though $(AIRFLOW_TEST_GATE_COIN)'s gate should fail it"; exit 1; fi
	@for coin in $(subst $(comma), ,$(AIRFLOW_TEST_COINS)); do \
	  for product in published.json forecast.parquet live.json; do \
	    test -s "$(AIRFLOW_TEST_DIR)/products/$$coin/published/$$product" \
	      || { echo "make airflow-test: $$coin: no published $$product (log: $(AIRFLOW_TEST_DIR)/dags-test.log)"; exit 1; }; \
	  done; echo "make airflow-test: $$coin: published (forecast, live scores)"; done

# make airflow-test's scratch copy of the project, run while the execution API server starts (airflow/dags-test.sh)
airflow-test-project: $(STAMP)
	mkdir -p "$(AIRFLOW_TEST_DIR)/src" "$(AIRFLOW_TEST_DIR)/data"
	cp -r pipeline.yaml env.yaml env.test.yaml env.cron.yaml dvc.yaml notebooks "$(AIRFLOW_TEST_DIR)/"
	cp -r src/coincast "$(AIRFLOW_TEST_DIR)/src/" && find "$(AIRFLOW_TEST_DIR)/src" -name __pycache__ -prune -exec rm -rf {} +
	$(if $(AIRFLOW_TEST_DATA),cp -r "$(AIRFLOW_TEST_DATA)/." "$(AIRFLOW_TEST_DIR)/data/")
	git -C "$(AIRFLOW_TEST_DIR)" init -q
	@$(MAKE) -s dvc-init DVC_DIR="$(AIRFLOW_TEST_DIR)" DVC_REMOTE="$(AIRFLOW_TEST_DVC_REMOTE)"
	$(BIN)/coincast airflow export --project "$(AIRFLOW_TEST_DIR)" --env env.test.yaml \
	  --coins $(AIRFLOW_TEST_COINS)$(if $(AIRFLOW_TEST_GATE_COIN),$(comma)$(AIRFLOW_TEST_GATE_COIN)) \
	  --set "models=[{kind: naive}]" --set history_dir="$(AIRFLOW_TEST_DIR)/data/history" \
	  --set predictions_dir="$(AIRFLOW_TEST_DIR)/data/predictions"

clean-products:
	rm -rf products/*/

clean: clean-products
	rm -rf $(VENV) mlflow.db mlartifacts

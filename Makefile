# TurboMode Pipeline. Every target creates the environment from uv.lock first.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen --no-sync
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
export UV_PYTHON_DOWNLOADS := never
export PYTHONWARNINGS := ignore::UserWarning
# Dagster writes a range run's events in batches (turbomode_pipeline/instance_storage.py) only when set.
export DAGSTER_EVENT_BATCH_SIZE ?= 500

.PHONY: env demo test system-deps ui bench soak mlflow clean

env: .venv/.synced-bytecode

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

# --compile-bytecode: every run Dagster launches is a new process that imports dagster, MLflow,
# sklearn and scipy; without .pyc files written ahead (PYTHONDONTWRITEBYTECODE set, or a venv the
# service user cannot write) each of them compiles ~1,700 modules from source first (~8 s).
.venv/.synced-bytecode: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --python 3.11 --compile-bytecode
	touch $@

demo: env  ## run the main job on the embedded defaults and print a summary
	$(RUN) turbomode demo

test: env system-deps  ## the test suite
	$(RUN) pytest

system-deps:  ## Chromium and PostgreSQL's server for the end-to-end tests, from Debian, when missing
	bash scripts/system-deps.sh

ui: env  ## Dagster webserver and daemon on http://127.0.0.1:3000
	$(RUN) dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

mlflow: env  ## MLflow UI (runs, registered models) on http://127.0.0.1:5000
	$(RUN) mlflow ui --host 127.0.0.1 --port 5000 \
	  --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/data/mlflow.db}" \
	  --default-artifact-root "$${TURBOMODE_MLFLOW_ARTIFACTS:-$(CURDIR)/data/mlartifacts}"

bench: env  ## benchmarks: printed tables with ratios against baselines
	$(RUN) python -m turbomode_pipeline_tests.bench

soak: env  ## a simulated trading week, every market minute, with two kill -9s and a slow night; prints sizes
	set -o pipefail; TEST_SOAK_SESSIONS=5 TEST_SOAK_EVERY=1 $(RUN) pytest -s -q -p no:cacheprovider --timeout 3600 \
	  turbomode_pipeline_tests/test_soak.py | grep -E '^soak \||passed|failed|Error'


clean:  ## forget the data and the Dagster instance's history (keeps dagster.yaml)
	rm -rf data/*.duckdb data/*.wal dagster_home/history dagster_home/schedules dagster_home/storage dagster_home/logs

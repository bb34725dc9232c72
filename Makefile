# Everything a fresh machine needs: `make demo` and `make test` create the
# virtualenv and install the project (with its test tools) on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-postgres validate dev bench clean

$(STAMP): pyproject.toml devtools/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]' -e ./devtools
	touch $(STAMP)

## Run the main job on the embedded default: demo Stripe data in a local stand-in, SQLite, results printed.
demo: $(STAMP)
	$(BIN)/s2s-demo

## Run the whole test suite in three processes, a test file per process at a time
## (Postgres tests too when S2S_TEST_DATABASE_URL or CI=true is set). Three on 2 cores: many tests
## wait for Dagster runs, daemons and child processes (with two: 11.4 min on a slow host, 9.3 with three).
test: $(STAMP)
	@bash .ci/install-chromium.sh >/dev/null 2>&1 || echo "note: Chromium could not be installed; the UI screenshot test will be skipped"
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 3 --dist loadfile

## Load the code location as Dagster and dg do (a throwaway DAGSTER_HOME: the shipped dagster.yaml wants Postgres).
validate: $(STAMP)
	@home=$$(mktemp -d) && printf 'telemetry:\n  enabled: false\n' > $$home/dagster.yaml && \
	  DAGSTER_HOME=$$home $(BIN)/dagster definitions validate -w workspace.yaml && \
	  DAGSTER_HOME=$$home $(BIN)/dg list defs && \
	  DAGSTER_HOME=$$home $(BIN)/dg check defs; status=$$?; rm -rf $$home; exit $$status

## The Dagster UI on http://127.0.0.1:3000 against the demo state (runs `make demo` first when needed), with
## the demo's Stripe stand-in, a Segment sink and s2s-webhooks running, and a failed payment every 3 minutes.
dev: $(STAMP)
	$(BIN)/python -m s2s_devtools.demo.dev --dir .demo --port 3000

bench: $(STAMP)
	$(BIN)/python bench/extract_bench.py

clean:
	rm -rf .demo .pytest_cache

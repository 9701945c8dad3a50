# One entry point for people and CI. `make test` works on a fresh Debian machine:
# it creates the venv, installs the project and, when it can, the OS servers the
# integration tests run against (mosquitto, clickhouse-server).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv servers test test-unit lint demo bench clean

help:
	@echo "make demo   - local broker + collector (embedded chdb) + simulated fleet, then a summary"
	@echo "make test   - install everything needed, then run unit and integration tests"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - every benchmark (python -m benchmarks NAME)"

# setup.py and the C sources too: a changed or new extension is rebuilt by the next make
$(STAMP): pyproject.toml setup.py $(wildcard */*.c */*.h)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

servers:
	scripts/install-servers.sh

test: venv servers
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -q tests

test-unit: venv
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -q tests/unit

demo: venv servers
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m demo

bench: venv servers
	$(BIN)/pip install -q -e '.[bench]'
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m benchmarks all
	$(BIN)/python -m benchmarks.plots

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy agent collector crm proto stbcommon warehouse recommender firmware_sim marketing console demo benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# The two commands: `make serve` runs the service, `make test` runs every check.
# Both create .venv and install the project into it when needed (the system
# Python's own trio is too old to rely on).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8765

.PHONY: test serve lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	touch $(STAMP)

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check runtime actors tests bench
	$(BIN)/ruff format --check runtime actors tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

serve: $(STAMP)
	@if [ -n "$$GREENROOM_SECRET" ]; then \
		exec $(BIN)/greenroom serve --host $(HOST) --port $(PORT); \
	else \
		exec $(BIN)/greenroom serve --host $(HOST) --port $(PORT) --dev; \
	fi

bench: $(STAMP)
	$(BIN)/python -m bench.kernel --quick
	$(BIN)/python -m bench.factory --quick
	$(BIN)/python -m bench.pipeline --quick
	$(BIN)/python -m bench.bridge --quick
	$(BIN)/python -m bench.load --quick

clean:
	rm -rf $(VENV) build *.egg-info

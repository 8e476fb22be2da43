PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO ?= demo-project

.PHONY: run test test-fast bench clean-demo

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	@test -f $(DEMO)/quorum.duckdb || $(BIN)/python -m labeling demo $(DEMO)
	$(BIN)/python -m labeling serve $(DEMO)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Unit tests only (tests/unit): the fast lane for day-to-day work.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

bench: $(STAMP)
	$(BIN)/python -m bench --quick

clean-demo:
	rm -rf $(DEMO)

# The two commands a newcomer needs:  `make demo`  and  `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
FIXTURES ?= ../shared/fixtures
export LOOKALIKE_DATA_DIR ?= $(CURDIR)/data

.PHONY: setup demo test bench clean

$(BIN)/lookalike: pyproject.toml
	@command -v $(PY) >/dev/null || { echo "needs $(PY)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/lookalike

# Build the demo gallery from the fixture faces, then match a portrait that is not in it.
demo: setup
	$(BIN)/lookalike gallery import $(FIXTURES)/faces --metadata examples/demo-gallery.csv
	$(BIN)/lookalike run $(FIXTURES)/bad-inputs/baseline.jpg --out out/demo

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/pipeline.py --fixtures $(FIXTURES) --write docs/BENCHMARKS.md

clean:
	rm -rf $(VENV) data out test-artifacts

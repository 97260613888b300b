# The two commands a newcomer needs:  `make demo`  and  `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
FIXTURES ?= ../shared/fixtures
export LOOKALIKE_DATA_DIR ?= $(CURDIR)/data

.PHONY: setup browser demo test bench bench-service clean

$(BIN)/lookalike: pyproject.toml
	@command -v $(PY) >/dev/null || { echo "needs $(PY)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/lookalike

# The browser tests (tests/web) drive Debian's Chromium; installed once, never downloaded by Playwright.
browser:
	@test -x /usr/bin/chromium || { apt-get update -q && apt-get install -y -q chromium; }

# Build the demo gallery from the fixture faces, then match a portrait that is not in it.
demo: setup
	$(BIN)/lookalike gallery import $(FIXTURES)/faces --metadata examples/demo-gallery.csv
	$(BIN)/lookalike run $(FIXTURES)/bad-inputs/baseline.jpg --out out/demo

test: setup browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/pipeline.py --fixtures $(FIXTURES) --write docs/BENCHMARKS.md

# The service benchmarks start a private stack on loopback (redis-server, PostgreSQL at
# 127.0.0.1:5432, weed mini) and drive it with wrk, installed from Debian once.
bench-service: setup
	@command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
	$(BIN)/python bench/api_load.py --fixtures $(FIXTURES) --write docs/BENCHMARKS.md
	$(BIN)/python bench/throughput.py --fixtures $(FIXTURES) --write docs/BENCHMARKS.md

clean:
	rm -rf $(VENV) data out test-artifacts

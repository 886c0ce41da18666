# taxii-node: every target creates the virtualenv it needs, so each works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NODE   := $(BIN)/taxii-node
STAMP  := $(VENV)/.installed
# OpenTAXII, a third-party TAXII 2.1 test peer, in a virtualenv of its own: it
# pins SQLAlchemy 1.4, the node needs 2.x (tests/opentaxii_peer.py uses it).
OPENTAXII_VERSION := 0.10.0b1
OPENTAXII_VENV    := .venv-opentaxii
OPENTAXII_STAMP   := $(OPENTAXII_VENV)/.opentaxii-$(OPENTAXII_VERSION)
PYTEST_ARGS ?=
# Parallel test workers (pytest-xdist). Most test time is spent waiting on real
# servers and databases, so more workers than this machine's 2 cores pay off.
# Tests are handed out one at a time (--maxschedchunk 1), the modules with the
# longest tests first (tests/conftest.py LONGEST_FIRST): xdist's default hands
# each worker a quarter of its share at once, and one worker got them all.
TEST_WORKERS ?= 4
XDIST_ARGS := -n $(TEST_WORKERS) --dist load --maxschedchunk 1

.PHONY: help install opentaxii run demo test lint format bench pair pair-up clean screenshots

help:
	@echo "make demo    two nodes on loopback, sync both ways, print a report"
	@echo "make test    lint and run the whole test suite in parallel (TEST_WORKERS=4)"
	@echo "make run     serve node A (config/node-a.toml) on 127.0.0.1:6001"
	@echo "make pair    initialise both example nodes and create their accounts"
	@echo "make pair-up run both example nodes and both sync workers until Ctrl-C"
	@echo "make bench   benchmarks (prints figures)"
	@echo "make lint    ruff check, format check and mypy"
	@echo "make screenshots  retake the README's console screenshots (docs/)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv installs the project and its test extra into the virtualenv in a few seconds,
# where pip took 30 (a fresh clone's make test, every CI run); pip installs uv.
# --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set (the CI
# machine) no process writes .pyc files, and each of the hundreds of processes the
# tests start would compile the libraries it imports again.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(OPENTAXII_STAMP): | $(STAMP)
	$(PYTHON) -m venv --clear --without-pip $(OPENTAXII_VENV)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(OPENTAXII_VENV)/bin/python opentaxii==$(OPENTAXII_VERSION)
	touch $(OPENTAXII_STAMP)

opentaxii: $(OPENTAXII_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# lint (after the install) and the OpenTAXII virtualenv side by side: each pip and
# mypy uses one core; one after the other they took 119 s on a fresh clone, side by
# side 68 s (this 2-core machine, load 4-7).
test:
	@$(MAKE) --no-print-directory -j2 lint opentaxii
	@start=$$(date +%s); \
	$(BIN)/python -m pytest $(XDIST_ARGS) $(PYTEST_ARGS); status=$$?; \
	echo "make test: pytest took $$(( $$(date +%s) - start )) s with $(TEST_WORKERS) workers"; \
	exit $$status

pair: $(STAMP)
	$(BIN)/python tools/demo.py pair

pair-up: $(STAMP)
	$(BIN)/python tools/demo.py up

run: pair
	@echo "node A on http://127.0.0.1:6001/ (Ctrl-C stops it). In another terminal:"
	@echo "  export TAXII_NODE_USER=admin TAXII_NODE_PASSWORD=\$$(cat var/secrets/admin-node-a)"
	@echo "  $(NODE) publish --url http://127.0.0.1:6001/ --collection shared examples/bundle.json"
	$(NODE) --config config/node-a.toml serve

demo: $(STAMP)
	$(BIN)/python tools/demo.py run

# TAXII_NODE_BENCH_MILLION=0 leaves out the 1,000,000-object scale run (2.5 min idle, 40 loaded).
bench: $(STAMP)
	$(BIN)/python bench/bench_platform.py
	$(BIN)/python bench/bench_startup.py
	$(BIN)/python bench/bench_node.py --quick
	$(BIN)/python bench/bench_sync.py
	$(BIN)/python bench/bench_sharing.py

screenshots: $(STAMP)
	TAXII_NODE_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/test_console_browser.py -k analyst_day

clean:
	rm -rf var/ .pytest_cache .mypy_cache $(OPENTAXII_VENV)

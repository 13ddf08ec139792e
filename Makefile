# Andromède: `make test` is the one command that installs what the tests need and runs them all.

SHELL := /bin/bash
.DEFAULT_GOAL := test

# scripts/install-deps puts the Python packages in ./.venv where python3 is Debian's own
# (externally managed); otherwise in python3 itself. Deferred (`=`), so the choice is made after
# the `deps` prerequisite ran.
PYTHON = $(if $(wildcard .venv/bin/python3),.venv/bin/python3,python3)
export PATH := $(CURDIR)/.venv/bin:$(PATH)

# make serve ARGS='--address 127.0.0.1:9000 --data-dir ./andromede-data'
ARGS ?=
# make bench BENCH_ARGS='--quick'   or   BENCH_ARGS='--compare andromede,swift,ceph'
BENCH_ARGS ?=

.PHONY: deps test check lint format serve bench conformance

deps:
	scripts/install-deps

## test: the README's test command: install, static checks, then the whole pytest suite on
## 4 xdist workers (2 cores, but most tests wait on a server or a subprocess: 4 keep both busy);
## tests/support/scheduling.py says how the tests are grouped and ordered, and why xdist must
## keep that order (--no-loadscope-reorder).
test: deps check
	$(PYTHON) -m pytest -q -n 4 --dist loadgroup --no-loadscope-reorder

## check: ruff (rules and formatting), mypy --strict (package and bench), the import-layer
## contracts
check: deps
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy bench conformance/run.py
	lint-imports

## lint: ruff only (fast): rules and formatting
lint: deps
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format: deps
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

## serve: the README's quick start: install what the server needs (not the test tools; in
## ./.venv where python3 is Debian's own), then run it in the foreground
serve:
	scripts/serve $(ARGS)

## bench: start a fresh andromede on a temp data dir and print the figures against a disk baseline
bench: deps
	$(PYTHON) bench/s3bench.py --start-andromede $(BENCH_ARGS)

## conformance: the ceph/s3-tests suite (../shared/conformance) against a fresh server, checked
## against conformance/expected-failures.txt; a whole run rewrites the table in
## docs/s3-compatibility.md. make conformance CONFORMANCE_ARGS='-k multipart' runs one group.
CONFORMANCE_ARGS ?=
conformance: deps
	$(PYTHON) conformance/run.py $(CONFORMANCE_ARGS)

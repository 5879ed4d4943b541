# The two commands of a fresh machine: `make study` and `make test`. Both create .venv when it is missing and
# install the pinned dependencies (constraints.txt) before doing anything else.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SPEC ?= study/specs/quick.yaml
# make test runs the suite on TEST_WORKERS pytest-xdist workers; tests/conftest.py keeps each module, and each study
# that several modules share, on one worker.
TEST_WORKERS ?= 2
NAME ?= $(basename $(notdir $(SPEC)))-$(shell date +%Y%m%d-%H%M%S)

.PHONY: install test study bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt setuptools
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt --no-build-isolation -e '.[test]'
	@touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

study: install
	$(BIN)/diffctl study run $(SPEC) --name $(NAME)

bench: install
	$(BIN)/python -m benchmarks.bench

clean:
	rm -rf $(VENV) .pytest_cache

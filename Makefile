# Two commands on a fresh machine: `make demo` (the embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test matrix lint format bench clean chromium redis
# apt-get needs root; as another user, sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,django,flask,asgi]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m analytics_core.demo

test: $(STAMP) chromium redis
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# The test suite on CPython 3.9 with the oldest supported frameworks and on CPython 3.13 with the
# newest (noxfile.py; pins in matrix/oldest.txt), one session after the other, each in its own
# virtualenv under .nox/, kept between runs. Pythons come from pyenv or PATH. One session, or
# pytest arguments: make matrix NOXFLAGS="-s tests-3.9-oldest -- -x tests/test_flask_apps.py"
MATRIX_STAMP := $(VENV)/.matrix-installed
NOXFLAGS ?=

$(MATRIX_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[matrix]'
	touch $(MATRIX_STAMP)

matrix: $(MATRIX_STAMP) chromium redis
	$(BIN)/nox $(NOXFLAGS)

# The debugger page's test drives a real headless chromium: Debian's package, installed if missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		echo "installing Debian's chromium (for the debugger page test)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# The Celery and RQ tests start their own Redis broker: Debian's redis-server, installed if missing.
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing Debian's redis-server (for the Celery and RQ tests)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.middleware
	$(BIN)/python -m bench.inprocess
	@if command -v valgrind >/dev/null; then $(BIN)/python -m bench.instructions; \
	else echo "bench.instructions: skipped (no valgrind; Debian's valgrind package)"; fi
	$(BIN)/python -m bench.summary

clean:
	rm -rf $(VENV) .nox build dist *.egg-info .pytest_cache .ruff_cache .hypothesis

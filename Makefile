# Rondpoint: the two commands of the quick start are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST := $(BIN)/python -m pytest

.PHONY: run test test-fast test-js test-wheel test-interop lint system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

NATIVE := setup.py gateway/media/_fastpath.c

# The JavaScript that ESLint checks (eslint.config.js says how).
JS_LINTED := eslint.config.js gateway/web/static tests/js

$(VENV)/.installed: pyproject.toml $(NATIVE) | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# The example protocol plugin (tests/test_plugin_example.py), installed for the tests only: into
# its own folder, which tests/conftest.py puts on the path of pytest and of the gateways it starts,
# so that `make run` never serves the example's echo: scheme.
PLUGIN_EXAMPLE := tests/plugin_example/pyproject.toml $(wildcard tests/plugin_example/rondpoint_echo/*.py)
TEST_PLUGINS   := .cache/test-plugins

$(VENV)/.installed-test: pyproject.toml $(NATIVE) $(PLUGIN_EXAMPLE) | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip uninstall -q -y rondpoint-echo 2>/dev/null || true  # an older make put it in .venv
	rm -rf $(TEST_PLUGINS)
	$(BIN)/pip install -q --no-deps --target $(TEST_PLUGINS) tests/plugin_example
	touch $@ $(VENV)/.installed

## Install into .venv and start the gateway on its embedded defaults (the relay's native fast path
## is built when gcc and libsrtp2-dev are there, `make system-deps`; without them it runs in Python).
run: $(VENV)/.installed
	$(BIN)/rondpoint serve

## Debian packages the interop and browser tests drive (Chromium, Firefox ESR, rtpengine, SIPp...).
system-deps:
	bash tests/setup-system.sh

## Every test: lint, types; the built wheel installed without extras and checked against the
## conformance suite; unit, protocol, browser and interop; then the media tests again on the
## pure-Python packet path (RONDPOINT_NATIVE=0; the default is the native fast path).
## A failed test gets one more try, listed as RERUN in the summary (and by .ci/run): a test that
## needed it is a bug to fix, not a pass.
test: system-deps $(VENV)/.installed-test lint test-js test-wheel
	$(PYTEST) -q -p no:cacheprovider -rR --reruns 1 --reruns-delay 2
	RONDPOINT_NATIVE=0 $(PYTEST) -q -p no:cacheprovider -rR --reruns 1 tests/unit/media tests/interop/test_relay_aiortc.py tests/ors

## Build the wheel, install it into a fresh virtual environment without extras, start
## `rondpoint serve` from an empty folder and run the conformance suite against it.
test-wheel: $(VENV)/.installed-test
	$(BIN)/python -m tests.wheel_install

## Unit and in-process protocol tests only (under a minute: two workers, one per core).
test-fast: $(VENV)/.installed-test test-js
	$(PYTEST) -q -p no:cacheprovider -n 2 -m "not interop and not browser"

## The web page's logic under Node's own test runner (tests/js, a second or two; Node from
## `make system-deps`, which installs npm and so nodejs).
test-js:
	@command -v node >/dev/null || { echo "test-js: Node.js is missing: make system-deps" >&2; exit 1; }
	node --test $(wildcard tests/js/*.test.mjs)

test-interop: system-deps $(VENV)/.installed-test
	$(PYTEST) -q -p no:cacheprovider -m "interop or browser"

## Python: ruff and mypy. JavaScript (the web page and its Node tests): ESLint with
## eslint.config.js, installed from npm under .cache/ by tests/eslint_npm.sh (pinned).
lint: $(VENV)/.installed-test
	$(BIN)/ruff check gateway protocols tests bench spec
	$(BIN)/ruff format --check gateway protocols tests bench spec
	$(BIN)/mypy
	eslint="$$(bash tests/eslint_npm.sh)" && NODE_PATH="$$eslint/node_modules" \
	    node "$$eslint/node_modules/eslint/bin/eslint.js" --max-warnings 0 $(JS_LINTED)

bench: system-deps $(VENV)/.installed-test
	$(BIN)/python -m bench.relay_vs_rtpengine
	$(BIN)/python -m bench.join_latency
	$(BIN)/python -m bench.sip_load

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts

# Two commands do all the set-up on a fresh machine:
#   make demo   installs what is needed and runs the whole system on the shipped demo data
#   make test   installs what is needed, starts PostgreSQL and Mosquitto if down, runs the tests
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PYTEST_ARGS ?=

.PHONY: setup system services demo test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

system:          ## Debian packages and npm tools the tests use (chromium, fonts, pglite)
	bash scripts/install-system.sh

services:        ## start PostgreSQL and Mosquitto when they are not running
	bash scripts/start-services.sh

demo: setup
	$(VENV)/bin/gps-monitor demo

# pytest prints its standard closing line ("N passed, M skipped in Ts"). Exit code 5 (no test
# collected) means the suite is broken, so it fails with a message instead of passing silently.
test: setup system services
	@$(VENV)/bin/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no test (exit 5): the suite is broken" >&2; exit 1; fi; \
	exit $$rc

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .tools build *.egg-info

# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run serve initdb install install-dev lint test fuzz test-system-deps test-node-clients bench soak env-example vendor clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.dev-installed

## Create or upgrade the database schema (SQLite under data/ unless DATABASE_URL says otherwise).
initdb: install
	$(BIN)/flask --app app.wsgi db-upgrade

## Serve on http://127.0.0.1:5001: the web server and the background worker, under Supervisor, in the foreground.
run: initdb
	@mkdir -p data logs
	@echo "aiserver on HOST:PORT from .env (default http://127.0.0.1:5001); Ctrl-C stops it. Every log line"
	@echo "shows here; files: logs/app.log, logs/error.log, logs/debug.log, logs/supervisord.log."
	$(BIN)/supervisord --nodaemon --configuration supervisord.conf

## Just the web server (Gunicorn + gevent), without Supervisor or the worker.
serve: initdb
	$(BIN)/gunicorn --config gunicorn.conf.py app.wsgi:app

## System packages the tests drive for real (Chromium, Caddy); installed only when missing.
test-system-deps:
	bash scripts/install-test-deps

## Lint and import order (ruff, ruff.toml) over the code, and types (mypy, setup.cfg) over app/.
lint: install-dev
	$(BIN)/ruff check app tests bench scripts
	$(BIN)/mypy

## The Node clients of the client matrix (tests/clients/: npm ci, only when its lock file changed).
test-node-clients:
	bash scripts/install-node-clients

test: install-dev test-system-deps test-node-clients lint
	$(BIN)/python -m pytest

## A longer schemathesis run over /openapi.json (FUZZ_EXAMPLES cases per operation; `make test` runs 5).
fuzz: install-dev
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-200} $(BIN)/python -m pytest tests/test_fuzz.py -q --timeout=0

## The speed comparison with LiteLLM's proxy and Portkey's gateway (about 15 minutes); writes docs/performance.md.
bench: install
	bash bench/run.sh --aiserver-key

## The soak of issue 14 (held streams, 10,000 requests' memory, a disconnect storm; about 3 minutes, one
## gevent worker): figures printed as a Markdown table and written to bench/results/. SOAK_ARGS=--quick: smaller.
soak: install
	[ -x bench/.venv-bench/bin/python ] || $(PYTHON) -m venv bench/.venv-bench
	bench/.venv-bench/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	bench/.venv-bench/bin/python bench/soak.py --markdown $(SOAK_ARGS)

## Regenerate .env.example and the README's configuration table from app/core/config.py.
env-example:
	$(BIN)/python -m app.core.config > .env.example
	$(BIN)/python -m app.core.config --readme

## Refresh the /ui page's browser libraries (Markdown, sanitiser, highlighter) in app/static/vendor/ from npm.
vendor:
	bash scripts/vendor-static

clean:
	rm -rf $(VENV) .pytest_cache

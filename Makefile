# The README's commands. `make run` starts the whole shop; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format migrate seed clean screenshots lock

# The lock files pin every package, indirect ones included, with their hashes: the same install on
# every machine and in the image. `make lock` writes them from requirements*.txt (the pins people edit).
$(STAMP): requirements.lock requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed (found " + sys.version.split()[0] + ")")'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	touch $(STAMP)

# Keeps the versions already locked unless an input asks for another (UPGRADE=1 takes the newest).
LOCK := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)
lock: $(STAMP)
	$(LOCK) requirements.txt --output-file requirements.lock
	$(LOCK) requirements-dev.txt --constraint requirements.lock --output-file requirements-dev.lock

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py sync_schedules

seed: migrate
	$(BIN)/python manage.py seed_catalog

# Every line of the Procfile under honcho, each started again if it exits (devtools/run.py). Flower
# always asks for a password: CELERY_FLOWER_PASSWORD, or the one kept in var/flower-password.
run: seed
	@PATH="$(CURDIR)/$(BIN):$$PATH" exec $(BIN)/python -m devtools.run

test: $(STAMP)
	$(BIN)/pytest

# The README's screenshots, taken by the browser tests (needs /usr/bin/chromium).
screenshots: $(STAMP)
	UPDATE_SCREENSHOTS=1 $(BIN)/pytest -p no:cacheprovider tests/browser

# The same checks as .pre-commit-config.yaml, and the types of the modules pyproject.toml lists.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python manage.py makemigrations --check --dry-run

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache

# --- Production shape and benchmarks (docs/performance.md, docs/scaling.md) -----------------------
.PHONY: run-production bench bench-smoke bench-cluster cluster test-cluster test-cluster-full

# The processes docker-compose.yml runs, natively: set DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY,
# ALLOWED_HOSTS, EMAIL_HOST, SITE_URL, PAYMENT_GATEWAY (the demo's simulator by name:
# devtools.payment_gateway.SimulatedGateway), CELERY_FLOWER_USER/PASSWORD (see .env.example) first.
# The one-shot `release` line runs first, then the long-running ones.
run-production: $(STAMP)
	export DJANGO_SETTINGS_MODULE=config.settings_production PATH="$(CURDIR)/$(BIN):$$PATH"; \
	python manage.py collectstatic --no-input \
	  && sh -c "$$(sed -n 's/^release: //p' Procfile.production)" \
	  && exec honcho start --procfile Procfile.production \
	    web warehouse worker-critical worker-default beat relay flower

# Needs PostgreSQL (DATABASE_URL) and RabbitMQ (CELERY_BROKER_URL); makes its own database and vhost.
bench: $(STAMP)
	$(BIN)/python -m bench.run --runs 3

bench-smoke: $(STAMP)
	$(BIN)/python -m bench.run --smoke

# Needs root: what a second worker host adds, on the cluster below (bench/cluster.py); a same-box
# measurement. Results in bench/results/cluster.json.
bench-cluster: $(STAMP)
	$(BIN)/python -m bench.cluster

# --- Several hosts (docs/scaling.md, "Several hosts") ---------------------------------------------
# Needs root: three clustered RabbitMQ nodes, two worker hosts, web, beat + relay, each a network
# namespace on a bridge (tests/cluster.py); PostgreSQL, SMTP and the warehouse on the machine. Ctrl-C
# removes it all. The tests: the short suite (what CI runs inside `make test`), then the full one.
cluster: $(STAMP)
	$(BIN)/python -m tests.cluster

test-cluster: $(STAMP)
	CLUSTER_SUITE=short $(BIN)/pytest -m cluster tests/integration/test_cluster.py

test-cluster-full: $(STAMP)
	CLUSTER_SUITE=full $(BIN)/pytest -m cluster tests/integration/test_cluster.py

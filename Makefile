# Two commands on a fresh machine: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Runtime only (`make run`), or runtime plus test and lint tools (`make test`, `make lint`): one stamp each,
# remade when its lock changes. Both locks carry hashes, so pip checks every file it installs.
RUNTIME_STAMP := $(VENV)/.runtime.stamp
DEV_STAMP := $(VENV)/.dev.stamp
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check --require-hashes
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/reconcile
export REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test lint venv dev-venv lock migrate seed clean runbook-check image image-size

$(RUNTIME_STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements.txt
	@touch $(RUNTIME_STAMP)

$(DEV_STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements-dev.txt
	@touch $(DEV_STAMP) $(RUNTIME_STAMP)

venv: $(RUNTIME_STAMP)

dev-venv: $(DEV_STAMP)

# Re-resolves the locks from requirements/*.in (README "Dependencies"). Versions already locked are kept
# unless asked: `make lock UPGRADE=1` (everything) or `make lock UPGRADE_PACKAGE=celery` (one package).
LOCK := $(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 --custom-compile-command "make lock" \
	$(if $(UPGRADE),--upgrade) $(if $(UPGRADE_PACKAGE),--upgrade-package $(UPGRADE_PACKAGE))
lock: $(DEV_STAMP)
	$(LOCK) requirements/base.in requirements/psycopg-binary.in -o requirements.txt
	$(LOCK) requirements/base.in requirements/psycopg-c.in -c requirements.txt -o requirements/image.txt
	$(LOCK) requirements/dev.in -o requirements-dev.txt

migrate: venv
	$(PY) manage.py migrate --noinput

seed: migrate
	$(PY) manage.py seed_demo

run: venv
	@$(PY) -m reconcile_project.preflight redis
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py seed_demo
	@echo
	@echo "Admin:    http://127.0.0.1:8000/admin/  (logins, unless set earlier: admin / $${DEMO_ADMIN_PASSWORD:-demo-admin-pass}; analyst / $${DEMO_ANALYST_PASSWORD:-demo-analyst-pass}; ops / $${DEMO_OPS_PASSWORD:-demo-ops-pass})"
	@echo "API docs: http://127.0.0.1:8000/api/docs/   health: http://127.0.0.1:8000/health/detailed   metrics: /metrics"
	@echo "Flower:   http://127.0.0.1:5555/  (login: admin / $${DEMO_ADMIN_PASSWORD:-demo-admin-pass}, or FLOWER_BASIC_AUTH)   platform sandbox: http://127.0.0.1:8100/_control/stats"
	@echo "Webhooks: what the demo's notifications delivered: http://127.0.0.1:8100/_control/webhooks"
	@echo "Demo:     in another shell, .venv/bin/python manage.py demo"
	@echo "Stopping: Ctrl-C stops every process below."
	@echo
	@# Prometheus multiprocess files of a previous run would be summed into this one's counters.
	rm -rf "$${PROMETHEUS_MULTIPROC_DIR:-$${VAR_DIR:-var}/prometheus}"
	exec $(VENV)/bin/honcho -f Procfile start

test: dev-venv
	@$(PY) -m reconcile_project.preflight redis postgres
	$(VENV)/bin/pytest

# Runs every command of docs/RUNBOOK.md against the stack `make run` started (starts nothing itself).
runbook-check: venv
	scripts/runbook_check.sh

lint: dev-venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

# The image Compose builds (docker-compose.yml's `image:`). `make image` builds it; `make image-size` prints its
# size as Docker reports it (the uncompressed size of all its layers). Both need a Docker engine.
IMAGE ?= affiliate-reconciliation:latest
DOCKER_ENGINE_CHECK = command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || { \
	echo "$@: no Docker engine answers here (docker info failed); run it where Docker runs" >&2; exit 1; }

image:
	@$(DOCKER_ENGINE_CHECK)
	docker build -t $(IMAGE) .

image-size:
	@$(DOCKER_ENGINE_CHECK)
	@docker image inspect $(IMAGE) >/dev/null 2>&1 || { echo "$@: no image $(IMAGE); build it first (make image)" >&2; exit 1; }
	@docker image inspect --format '{{.Size}}' $(IMAGE) | awk '{ printf "$(IMAGE): %d bytes (%.1f MB)\n", $$1, $$1 / 1000000 }'

clean:
	rm -rf var/ .pytest_cache .mypy_cache .ruff_cache

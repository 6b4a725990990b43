# Two commands on a fresh machine: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/reconcile
export REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test lint venv migrate seed clean runbook-check

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

venv: $(STAMP)

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

test: venv
	@$(PY) -m reconcile_project.preflight redis postgres
	$(VENV)/bin/pytest

# Runs every command of docs/RUNBOOK.md against the stack `make run` started (starts nothing itself).
runbook-check: venv
	scripts/runbook_check.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

clean:
	rm -rf var/ .pytest_cache .mypy_cache .ruff_cache

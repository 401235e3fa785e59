# resourced: `make run` starts the whole service on embedded defaults; `make test` runs the suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SETTINGS ?= resourced.settings.base

.PHONY: run test bench demo lint migrate clean services

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

migrate: $(VENV)/.installed
	mkdir -p var
	DJANGO_SETTINGS_MODULE=$(SETTINGS) $(PY) manage.py migrate --noinput -v 0
	DJANGO_SETTINGS_MODULE=$(SETTINGS) $(PY) manage.py collectstatic --noinput -v 0

run: migrate
	DJANGO_SETTINGS_MODULE=$(SETTINGS) $(PY) scripts/devserver.py

demo: $(VENV)/.installed
	DJANGO_SETTINGS_MODULE=$(SETTINGS) $(PY) scripts/demo.py

test: $(VENV)/.installed-dev
	bash scripts/test-services.sh
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	bash bench/run.sh

clean:
	rm -rf var .pytest_cache

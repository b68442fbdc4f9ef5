# Spotter: `make run` starts the bot, `make test` runs the checks. Both create .venv on first use.
PY := .venv/bin/python
SHELL := /bin/bash

.venv/.installed: requirements.txt
	test -x $(PY) || python3.11 -m venv .venv || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

.PHONY: install run test lint typecheck pytest migrate seed benchmark
install: .venv/.installed

migrate: install
	$(PY) -m alembic upgrade head

seed: migrate
	$(PY) -m db seed

run: seed
	$(PY) -m bot

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy

pytest: install
	$(PY) -m pytest

test: lint typecheck pytest

# Both targets set themselves up from a fresh clone: a virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.darkroom-installed

.PHONY: serve test lint sdk

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,train]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/darkroom serve

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check pipelines server training tests bench
	$(VENV)/bin/mypy --follow-imports=silent server client/darkroom_client_ext

# Regenerate the client SDK (client/darkroom_client) from the committed openapi.json.
sdk: $(STAMP)
	$(PY) client/generate_sdk.py

# The two commands: `make demo` (set-up + the main job on the `local` region) and
# `make test` (set-up + the whole suite, real servers included). Both work on a fresh clone.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
VOX    := $(VENV)/bin/voxplane
STAMP  := $(VENV)/.installed

.PHONY: setup demo test e2e unit bench servers livekit-up livekit-down docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: setup
	$(VOX) validate
	$(VOX) render local --out out/local

# Real servers for the integration tests and CRD schemas for custom-resource checks.
servers:
	bash scripts/ensure-servers.sh
	bash scripts/fetch-crds.sh

test: setup servers
	$(PY) -m mypy
	$(PY) -m pytest

# A real call through livekit-sip + sipp. livekit-sip is not served by the Go module proxy: build
# it from source and export VOXPLANE_LIVEKIT_SIP_BIN=/path/to/livekit-sip first.
e2e: setup servers
	bash scripts/ensure-sip.sh
	$(PY) -m pytest -m e2e tests/e2e

unit: setup
	$(PY) -m pytest -m 'not integration'

bench: setup servers
	$(PY) bench/validate.py
	$(PY) bench/render.py
	$(PY) bench/livekit_drift.py

# eval "$(make -s livekit-up)" — Redis + livekit-server on loopback with the local region's config.
livekit-up: setup servers
	@$(PY) -m voxplane.devservers up --region local

livekit-down:
	@$(PY) -m voxplane.devservers down

docs: setup
	$(PY) -m voxplane.docs > docs/manifest-reference.md

clean:
	rm -rf out build .pytest_cache .hypothesis

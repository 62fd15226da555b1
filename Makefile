# The two commands: `make demo` (set-up + the main job on the `local` region) and
# `make test` (set-up + the whole suite, real servers included). Both work on a fresh clone.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
VOX    := $(VENV)/bin/voxplane
STAMP  := $(VENV)/.installed

.PHONY: setup toolchain demo test e2e unit bench servers images livekit-up livekit-down cluster-up cluster-down docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The engine (pulumi, language host, Kubernetes provider) and the local control plane (etcd,
# kube-apiserver, controller-manager, scheduler, kwok, kubectl), built once from the Go module
# proxy into ~/.cache/voxplane, with KEDA's operator and adapter (and Prometheus from Debian):
# ~35-40 min cold on 2 cores, seconds warm.
toolchain:
	bash scripts/ensure-toolchain.sh all

# The local region deployed for real: control plane + dev LiveKit up, `pulumi up -s local`, then
# what runs. A second run changes nothing: `dev cluster wait` first lets a restarted cluster's agent
# workers register again, so the refresh does not read them as starting. Both servers keep running.
demo: setup servers toolchain
	$(VOX) validate
	$(VOX) dev cluster up --region local >/dev/null
	$(VOX) dev servers up --region local >/dev/null
	$(VOX) dev cluster wait --timeout 180 || echo "demo: going on; the engine waits for what has not settled"
	$(VOX) dev pulumi local up --yes --refresh --skip-preview
	@eval "$$($(VOX) dev cluster env)" && eval "$$($(VOX) dev servers env)" && $(VOX) status local
	@echo
	@echo "Running: the dev cluster and the dev LiveKit server. Reach them with"
	@echo '  eval "$$(.venv/bin/voxplane dev cluster env)"   # kubectl: $$(bash scripts/ensure-toolchain.sh --print-bin-dir)/kubectl'
	@echo '  eval "$$(.venv/bin/voxplane dev servers env)"   # LIVEKIT_URL and the admin key'
	@echo "Stop them with: make cluster-down livekit-down"

cluster-up: setup toolchain
	@$(VOX) dev cluster up --region local

cluster-down:
	@$(VOX) dev cluster down

# Real servers for the integration tests, CRD schemas for custom-resource checks, the policy
# scanners (checkov, kube-score), the workflow linters (actionlint, ShellCheck, zizmor) and the
# upstream checks' servers (vLLM's CPU build, the LLM router, livekit-server's config loader).
servers:
	bash scripts/ensure-servers.sh
	bash scripts/ensure-tool.sh routeprobe
	bash scripts/ensure-tool.sh promqleval
	bash scripts/ensure-tool.sh npeval
	bash scripts/ensure-tool.sh lkconfig
	bash scripts/ensure-vllm-venv.sh
	bash scripts/ensure-agents-venv.sh
	bash scripts/ensure-image-venv.sh voxplane/gateway
	bash scripts/ensure-image-venv.sh voxplane/llm_router
	bash scripts/ensure-image-venv.sh voxplane/gpu_preflight
	bash scripts/ensure-image-venv.sh voxplane/controllers/deletion_cost
	bash scripts/ensure-image-venv.sh voxplane/controllers/recovery
	bash scripts/fetch-crds.sh
	bash scripts/ensure-scanners.sh
	bash scripts/ensure-ci-linters.sh

# The image tooling (tests/images): Debian's docker.io, docker-registry and mmdebstrap, the Python base
# stand-in and the wheels the images install, cached under ~/.cache/voxplane/images (~2 min cold,
# seconds warm). Starts nothing: the tests start the engine, registry and index and stop them.
images: setup
	bash scripts/ensure-images.sh

# The suite in TEST_LANES parallel processes: most of its time is spent waiting on servers (HPA syncs,
# ICE, the engine), not computing. tests/support/lanes.py cuts it into units of work (a module, or a folder
# sharing a slow session fixture), whatever the --dist; TEST_LANES=0: one process, no lanes.
TEST_LANES ?= 2

test: setup servers toolchain images
	$(PY) -m mypy
	$(PY) -m pytest -n $(TEST_LANES) --dist loadscope

# A real call through livekit-sip + sipp. livekit-sip is not served by the Go module proxy: build
# it from source and export VOXPLANE_LIVEKIT_SIP_BIN=/path/to/livekit-sip first.
e2e: setup servers
	bash scripts/ensure-sip.sh
	$(PY) -m pytest -m e2e tests/e2e

unit: setup
	$(PY) -m pytest -m 'not integration'

bench: setup servers toolchain
	$(PY) bench/validate.py
	$(PY) bench/render.py
	$(PY) bench/livekit_drift.py
	$(PY) bench/livekit_route.py
	$(PY) bench/gateway.py
	$(PY) bench/gateway_load.py
	$(PY) bench/dispatch.py
	$(PY) bench/faults.py
	$(PY) bench/kube_drift.py
	$(PY) bench/engine.py
	$(PY) bench/llm_routing.py
	$(PY) bench/autoscale.py --ramps 10

# eval "$(make -s livekit-up)" — Redis + livekit-server on loopback with the local region's config.
livekit-up: setup servers
	@$(VOX) dev servers up --region local

livekit-down:
	@$(VOX) dev servers down

docs: setup
	$(PY) -m voxplane.devtools.docs > docs/manifest-reference.md

clean:
	rm -rf out build .pytest_cache .hypothesis

# `make test` and `make serve` each set up their own virtual environment on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PORT ?= 8000
HOST ?= 127.0.0.1
BIN := $(VENV)/bin

.PHONY: venv test test-fast serve bench image compose-images clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: 2.13.0 is the local CPU wheel; an unpinned torch would pull a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed

test: venv
	# nginx for the load-balancer test: installed where this machine can (Debian, as root), else that test skips.
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -q nginx-light || { apt-get update -q && apt-get install -y -q nginx-light; }; } >/dev/null 2>&1; } || echo "nginx not installed: its test will skip"
	# PostgreSQL for the job-store tests, likewise.
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -q postgresql || { apt-get update -q && apt-get install -y -q postgresql; }; } >/dev/null 2>&1; } || echo "PostgreSQL not installed: its tests will skip"
	# Chromium for the browser tests (Playwright drives it; its own browser download cannot be used here).
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; } >/dev/null 2>&1; } || echo "Chromium not installed: the browser tests will skip"
	# podman (with runc) and debootstrap for the image test: it builds the CPU image and runs it.
	@{ command -v podman && command -v runc && command -v debootstrap; } >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -q podman runc debootstrap || { apt-get update -q && apt-get install -y -q podman runc debootstrap; }; } >/dev/null 2>&1; } || echo "podman not installed: the image test will skip"
	$(BIN)/python -m pytest -q

# The fast lane while working: every test but those marked slow (statistical runs, the shipped checkpoints'
# cards, the browser, the image and compose builds, real servers); `make test` runs them all.
test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

serve: venv
	LOGPX_HOST=$(HOST) LOGPX_PORT=$(PORT) $(BIN)/logpx serve

# The CPU image, with Docker or podman (podman here: the runc runtime and cgroupfs, docs/deploy.md). Where
# the base image cannot be pulled, docker/base-image.sh makes one from Debian's packages. With podman, the
# local torch wheel and the host's CA bundle (for a TLS-inspecting proxy) are mounted into the build, never
# copied into the image; --format docker keeps the HEALTHCHECK (podman's default OCI format drops it).
ENGINE ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo podman)  # a docker CLI with no engine is not enough
ENGINE_CMD := $(ENGINE) $(if $(filter podman,$(ENGINE)),--runtime runc --cgroup-manager cgroupfs,)
BASE_IMAGE ?= python:3.11-slim-bookworm
# `make image EXTRAS='[ray]' IMAGE_TAG=cpu-ray`: the image of the compose ray profile (docs/deploy.md).
IMAGE_TAG ?= cpu
EXTRAS ?=
TORCH_WHEEL ?= $(firstword $(wildcard /opt/wheels/torch-2.13.0+cpu-cp311-*.whl))
HOST_CA ?= $(firstword $(wildcard /etc/ssl/certs/ca-certificates.crt))
BUILD_MOUNTS := $(if $(filter podman,$(ENGINE)),--format docker $(if $(TORCH_WHEEL),--build-arg TORCH_SPEC=/wheels/$(notdir $(TORCH_WHEEL)) -v $(dir $(TORCH_WHEEL)):/wheels:ro) $(if $(HOST_CA),--build-arg HOST_CA=/host-ca.crt -v $(HOST_CA):/host-ca.crt:ro))

image:
	@base=$(BASE_IMAGE); \
	$(ENGINE_CMD) image inspect $$base >/dev/null 2>&1 || $(ENGINE_CMD) pull -q $$base >/dev/null 2>&1 || \
		{ $(ENGINE_CMD) image inspect localhost/logpx-base:bookworm >/dev/null 2>&1 && base=localhost/logpx-base:bookworm; } || \
		base=$$(docker/base-image.sh "$(ENGINE_CMD)"); \
	echo "base image: $$base"; \
	$(ENGINE_CMD) build --target cpu -t logpx:$(IMAGE_TAG) --build-arg PYTHON_IMAGE=$$base --build-arg EXTRAS='$(EXTRAS)' $(BUILD_MOUNTS) .

# Where nginx:1.27-alpine and postgres:16-alpine cannot be pulled: the same contracts on the Debian base
# (docker/nginx.Dockerfile, docker/postgres.Dockerfile); use them with LOGPX_NGINX_IMAGE=localhost/logpx-nginx
# and LOGPX_POSTGRES_IMAGE=localhost/logpx-postgres (docs/deploy.md).
compose-images: image
	$(ENGINE_CMD) build $(if $(filter podman,$(ENGINE)),--format docker) -q -f docker/nginx.Dockerfile -t localhost/logpx-nginx .
	$(ENGINE_CMD) build $(if $(filter podman,$(ENGINE)),--format docker) -q -f docker/postgres.Dockerfile -t localhost/logpx-postgres .

bench: venv
	$(BIN)/python -m benchmarks.run --repeats 5

clean:
	rm -rf $(VENV) .pytest_cache

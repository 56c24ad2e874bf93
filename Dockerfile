# syntax=docker/dockerfile:1
# Two targets from one file:
#   docker build --target cpu  -t logpx:cpu  .    small CPU image (torch CPU wheel)
#   docker build --target cuda -t logpx:cuda .    CUDA image (torch CUDA wheel; CUDA libraries come as
#                                                 pip packages, the driver from the host's NVIDIA runtime)
# `make image` builds the CPU one with Docker or podman, and where python:3.11-slim-bookworm cannot be
# pulled, on a Debian base it makes itself (docker/base-image.sh; docs/deploy.md).
# The runtime stages hold no compiler and run as a fixed non-root UID; the entry command is the one
# `make serve` runs.

# Any Debian-like image with python3 (3.11) and its venv module.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build-base
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY app ./app
COPY models ./models

FROM build-base AS build-cpu
# Where torch comes from: the official CPU index by default; a wheel file mounted at build time where
# that index is out of reach (make image). HOST_CA: a CA bundle mounted at build time for a TLS-inspecting
# proxy; used by pip during the build only, never written into a layer. (DL3013 is ignored below: TORCH_SPEC
# pins torch, as a version or a file, and `pip install .` takes the project's own requirements.) torch's C++
# tests and headers (145 MB) serve only C++ builds against it, never this service.
ARG TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
ARG HOST_CA=""
# hadolint ignore=DL3013
RUN if [ -n "$HOST_CA" ]; then export PIP_CERT="$HOST_CA"; fi \
    && pip install $TORCH_SPEC \
    && pip install . \
    && rm -rf "$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')"/test \
              "$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')"/include
# Optional extras of the project, in a layer of their own (the one above is shared): EXTRAS="[ray]" for the Ray
# head, workers and service of the compose ray profile (docs/deploy.md, "Jobs on Ray").
ARG EXTRAS=""
# hadolint ignore=DL3013
RUN if [ -n "$EXTRAS" ]; then \
        if [ -n "$HOST_CA" ]; then export PIP_CERT="$HOST_CA"; fi; pip install ".$EXTRAS"; \
    fi

FROM build-base AS build-cuda
ARG TORCH_SPEC="torch==2.13.0"
ARG HOST_CA=""
# hadolint ignore=DL3013
RUN if [ -n "$HOST_CA" ]; then export PIP_CERT="$HOST_CA"; fi \
    && pip install $TORCH_SPEC \
    && pip install .
ARG EXTRAS=""
# hadolint ignore=DL3013
RUN if [ -n "$EXTRAS" ]; then \
        if [ -n "$HOST_CA" ]; then export PIP_CERT="$HOST_CA"; fi; pip install ".$EXTRAS"; \
    fi

FROM ${PYTHON_IMAGE} AS runtime-base
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LOGPX_HOST=0.0.0.0 \
    LOGPX_PORT=8000 \
    LOGPX_CHECKPOINT_DIR=/srv/logpx/checkpoints \
    LOGPX_DATA_DIR=/srv/logpx/data
RUN groupadd --system --gid 10001 logpx \
    && useradd --system --uid 10001 --gid logpx --home-dir /srv/logpx --no-create-home logpx \
    && mkdir -p /srv/logpx/data && chown 10001:10001 /srv/logpx/data
WORKDIR /srv/logpx
COPY --chown=10001:10001 checkpoints/*.safetensors /srv/logpx/checkpoints/
VOLUME ["/srv/logpx/checkpoints", "/srv/logpx/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('LOGPX_PORT', '8000'), timeout=2)"]
USER 10001:10001
CMD ["logpx", "serve"]

FROM runtime-base AS cuda
ENV LOGPX_DEVICE=cuda
COPY --from=build-cuda /opt/venv /opt/venv

FROM runtime-base AS cpu
ENV LOGPX_DEVICE=cpu
COPY --from=build-cpu /opt/venv /opt/venv

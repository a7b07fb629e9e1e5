# srlib on an NVIDIA GPU: the library, its notebooks and JupyterLab in one image.
#
#   docker build -t srlib:latest .
#   docker run --rm --gpus all --shm-size 16g -v "$PWD/data:/opt/srlib/data" ... srlib:latest
#
# scripts/gpu_run.sh does the build/pull, the GPU check and the mounts in one command, and
# docs/gpu.md explains the rest (JupyterLab, multi-GPU, cloud hosts).
#
# Base image: the official PyTorch runtime image for exactly the torch/torchvision pinned in
# pyproject.toml (torch 2.14.1, torchvision 0.29.1; Ubuntu 24.04, Python 3.12, cuDNN 9).
# Why this one:
#   - It ships torch and torchvision already built for CUDA, so the build does not download
#     ~3 GB of wheels, and `pip install .[notebooks]` below finds torch==2.14.1 and
#     torchvision==0.29.1 satisfied (the installed "2.14.1+cu126" matches "==2.14.1").
#   - CUDA 12.6 rather than the 13.x variants of the same release: CUDA 13 needs an NVIDIA
#     driver >= 580 and dropped Maxwell/Pascal/Volta GPUs (P4000/P5000/V100 machines are
#     still rented), while the cu126 build runs on drivers from R525 on (CUDA minor-version
#     compatibility) and on every GPU from Pascal to Hopper. On Blackwell GPUs (B200,
#     RTX 50xx) build with --build-arg BASE_IMAGE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime.
#   - The runtime flavour (no compilers, no CUDA headers) is enough: srlib has no extensions.
# A RUN step below checks every installed version against pyproject's pins (torch and
# torchvision included) and fails the build on any difference; tests/test_packaging.py
# checks that this tag names the pinned torch.
ARG BASE_IMAGE=pytorch/pytorch:2.14.1-cuda12.6-cudnn9-runtime
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# The image is the environment, so pip installs into the system Python (Ubuntu's
# PEP 668 marker would refuse that otherwise). MPLBACKEND: no display in a container.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    MPLBACKEND=Agg \
    TORCH_HOME=/cache/torch

# Non-root user "sr" with UID 1000, the usual UID of the first user on a Linux host, so that
# files written to bind-mounted folders belong to that user. Ubuntu 24.04 images already
# have "ubuntu" at UID 1000: whoever holds UID 1000 is removed first. HOME is world-writable
# (sticky, like /tmp) so that `docker run --user "$(id -u):$(id -g)"` (what
# scripts/gpu_run.sh does) still has a usable home for Jupyter's runtime files.
RUN old="$(getent passwd 1000 | cut -d: -f1 || true)" \
    && if [ -n "$old" ]; then userdel "$old" && rm -rf "/home/${old:?}"; fi \
    && useradd --create-home --uid 1000 --shell /bin/bash sr \
    && chmod 1777 /home/sr \
    && mkdir -p /cache/torch/hub/checkpoints \
    && chown -R sr:sr /cache

WORKDIR /opt/srlib

# Install the package and its pinned dependencies first (this layer is rebuilt only when
# pyproject.toml, README.md or srlib/ change). The pins come from pyproject.toml itself
# (.[notebooks] = the core pins + papermill + ipykernel); JupyterLab is the one extra, pinned
# here. torch/torchvision are not reinstalled: the base image's CUDA build satisfies the pins.
COPY pyproject.toml README.md ./
COPY srlib/ srlib/
# DL3013 (unpinned pip package) does not see that ".[notebooks]" takes its pins from pyproject.toml.
# hadolint ignore=DL3013
RUN python3 -m pip install ".[notebooks]" "jupyterlab==4.6.6" \
    && python3 -c "import importlib.metadata as md, sys, tomllib; \
project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
pins = [r.split('==') for r in project['dependencies'] + project['optional-dependencies']['notebooks']]; \
bad = [f'{n} {md.version(n)} (pinned {v})' for n, v in pins if md.version(n).split('+')[0] != v]; \
sys.exit('installed versions differ from pyproject.toml: ' + ', '.join(bad) if bad else 0)" \
    && rm -rf build srlib.egg-info

# Everything else the pipeline reads: configs, notebooks, scripts, the small sample sets
# (Set5, Set14, T91; see .dockerignore). data/, runs/ and results/ are volumes: a named
# volume starts with the image's content (the sample sets), a bind mount shows the host's.
COPY --chown=sr:sr . .
RUN mkdir -p data runs results \
    && chown sr:sr . data runs results

# HOME is set only now (the build ran as root): Docker would give a --user UID that has no
# passwd entry HOME=/, which is not writable.
ENV HOME=/home/sr

VOLUME ["/opt/srlib/data", "/opt/srlib/runs", "/opt/srlib/results", "/cache/torch"]

# JupyterLab: docker run -p 127.0.0.1:8888:8888 ... IMAGE jupyter lab --ip 0.0.0.0
EXPOSE 8888

# UID of "sr" (numeric, so that runtimes checking runAsNonRoot can verify it).
USER 1000

# Default: the full pipeline (notebooks 01..04 executed by papermill into runs/<timestamp>/).
CMD ["bash", "scripts/run_pipeline.sh", "full"]

# srlib on an NVIDIA GPU: the library, its notebooks and JupyterLab in one image.
#
#   docker build -t srlib:latest .
#   docker run --rm --gpus all --shm-size 16g -v "$PWD/data:/opt/srlib/data" ... srlib:latest
#
# scripts/gpu_run.sh does the build/pull, the GPU check and the mounts in one command, and
# docs/gpu.md explains the rest (JupyterLab, multi-GPU, cloud hosts).
#
# Base image: the official PyTorch runtime image for exactly the torch/torchvision of
# constraints.txt (torch 2.14.1, torchvision 0.29.1; Ubuntu 24.04, Python 3.12, cuDNN 9).
# Why this one:
#   - It ships torch and torchvision already built for CUDA, so the build does not download
#     ~3 GB of wheels: the install below finds torch==2.14.1 and torchvision==0.29.1
#     satisfied (the installed "2.14.1+cu126" matches "==2.14.1").
#   - CUDA 12.6 rather than the 13.x variants of the same release: CUDA 13 needs an NVIDIA
#     driver >= 580 and dropped Maxwell/Pascal/Volta GPUs (P4000/P5000/V100 machines are
#     still rented), while the cu126 build runs on drivers from R525 on (CUDA minor-version
#     compatibility) and on every GPU from Pascal to Hopper. On Blackwell GPUs (B200,
#     RTX 50xx) build with --build-arg BASE_IMAGE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime.
#   - The runtime flavour (no compilers, no CUDA headers) is enough: srlib has no extensions.
# A RUN step below checks every installed version against constraints.txt (torch and
# torchvision included) and fails the build on any difference; tests/test_packaging.py
# checks that this tag names the torch of constraints.txt.
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

# Dependencies first, in a layer of their own: it depends on pyproject.toml and
# constraints.txt only, so an edit to srlib/ (or anything else) does not reinstall them.
# What is installed: srlib's dependencies and its extras notebooks (papermill, ipykernel),
# tensorboard and lpips, read from pyproject.toml, plus JupyterLab (`jupyter lab` in the
# container) and pytest (benchmarks/gpu_check.sh runs the GPU tests), every one at the
# version of constraints.txt; then the build checks each installed version against that file.
# torch/torchvision are not reinstalled: the base image's CUDA build satisfies the pins.
COPY pyproject.toml constraints.txt ./
RUN python3 -c "import tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = project['optional-dependencies']; \
reqs = project['dependencies'] + extras['notebooks'] + extras['tensorboard'] + extras['lpips']; \
print(*reqs, 'jupyterlab', 'pytest', sep='\n')" > /tmp/requirements.txt \
    && python3 -m pip install -c constraints.txt -r /tmp/requirements.txt \
    && python3 -c "import importlib.metadata as md, re, sys; \
name = lambda r: re.sub(r'[-_.]+', '-', re.match(r'[A-Za-z0-9._-]+', r.strip())[0]).lower(); \
lines = [line.split('#')[0].strip() for line in open('constraints.txt')]; \
pins = {name(line): line.split('==')[1] for line in lines if '==' in line}; \
wanted = [name(r) for r in open('/tmp/requirements.txt') if r.strip()]; \
bad = [f'{n} {md.version(n)} (constraints.txt: {pins.get(n)})' for n in wanted \
       if md.version(n).split('+')[0] != pins.get(n)]; \
sys.exit('installed versions differ from constraints.txt: ' + ', '.join(bad) if bad else 0)" \
    && rm /tmp/requirements.txt

# Then srlib itself, editable and without dependencies (already there), with everything else
# the pipeline reads: configs, notebooks, scripts, tests, benchmarks, the small sample sets
# (Set5, Set14, T91; see .dockerignore). data/, runs/ and results/ are volumes: a named volume
# starts with the image's content (the sample sets), a bind mount shows the host's.
COPY --chown=sr:sr . .
RUN python3 -m pip install --no-deps -e . \
    && rm -rf build srlib.egg-info \
    && mkdir -p data runs results \
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

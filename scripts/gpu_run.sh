#!/usr/bin/env bash
# Run the srlib pipeline in Docker on a Linux host with an NVIDIA GPU: build (or pull) the
# image, check that a container sees the GPU, then execute the notebooks with papermill.
#
#   scripts/gpu_run.sh                  build srlib:local, run the full pipeline
#   scripts/gpu_run.sh --quick          the quick pipeline (minutes): smoke-test a new host
#   scripts/gpu_run.sh --pull --image ghcr.io/you/srlib:0.1.0
#   scripts/gpu_run.sh -- srlib prepare div2k     any other command in the same container
#   scripts/gpu_run.sh --push --image ghcr.io/you/srlib:0.1.0   build and publish, then stop
#
# Needs Docker and the NVIDIA Container Toolkit (docs/gpu.md). Host folders data/, runs/ and
# results/ of this checkout, and the torch hub cache, are mounted into the container, so
# downloads, checkpoints, executed notebooks and figures stay on the host when the container
# ends. The container's output is also written to runs/gpu_run-<timestamp>.log.
#
# Registry credentials (only for --pull of a private image or --push) are read from the
# environment or from a file outside this repository, never from the repository:
#   REGISTRY            registry host (default: Docker Hub)
#   REGISTRY_USER       user name
#   REGISTRY_PASSWORD   password or access token, or
#   REGISTRY_PASSWORD_FILE  a file holding it (e.g. ~/.config/srlib/registry-token)
# Without them the script relies on an earlier `docker login` (or needs none: public image).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/gpu_run.sh [options] [-- COMMAND ...]

  --image NAME     image to build or pull (default: $SRLIB_IMAGE or srlib:local)
  --pull           pull NAME instead of building it from this checkout
  --push           build NAME, push it to its registry and stop (no GPU needed: do it
                   on any machine, then --pull on GPU hosts; credentials: see the header)
  --base IMAGE     base image for the build (default: the Dockerfile's, CUDA 12.6;
                   e.g. pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime for Blackwell GPUs)
  --quick          run the quick pipeline instead of the full one (a smoke test)
  --gpus SPEC      what `docker run --gpus` gets (default: all; e.g. '"device=0,1"')
  --shm-size SIZE  shared memory for DataLoader workers (default: 16g)
  --skip-check     do not run the GPU checks first
  -h, --help       this text

Anything after -- replaces the pipeline command, e.g. -- srlib prepare div2k
EOF
}

die() {
    printf 'gpu_run.sh: %s\n' "$*" >&2
    exit 1
}

image="${SRLIB_IMAGE:-srlib:local}"
pull=0
push=0
base=""
mode=full
gpus=all
shm_size=16g
check=1
command=()

while (($#)); do
    case "$1" in
        --image) [[ $# -ge 2 ]] || die "--image needs a name"; image="$2"; shift 2 ;;
        --image=*) image="${1#*=}"; shift ;;
        --pull) pull=1; shift ;;
        --push) push=1; shift ;;
        --base) [[ $# -ge 2 ]] || die "--base needs an image"; base="$2"; shift 2 ;;
        --base=*) base="${1#*=}"; shift ;;
        --quick) mode=quick; shift ;;
        --gpus) [[ $# -ge 2 ]] || die "--gpus needs a value"; gpus="$2"; shift 2 ;;
        --gpus=*) gpus="${1#*=}"; shift ;;
        --shm-size) [[ $# -ge 2 ]] || die "--shm-size needs a value"; shm_size="$2"; shift 2 ;;
        --shm-size=*) shm_size="${1#*=}"; shift ;;
        --skip-check) check=0; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; command=("$@"); break ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
((pull && push)) && die "--pull and --push do not go together (push is for an image built here)"
[[ -n "$base" && $pull -eq 1 ]] && die "--base applies to a build, not to --pull"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$repo"

# --- Docker itself -------------------------------------------------------------------
command -v docker >/dev/null 2>&1 \
    || die "docker not found. Install Docker Engine and the NVIDIA Container Toolkit (docs/gpu.md)."
if ! docker_error="$(docker info 2>&1 >/dev/null)"; then
    if grep -qi 'permission denied' <<<"$docker_error"; then
        die "cannot talk to the Docker daemon (permission denied): add yourself to the 'docker' group (then log in again) or run with sudo."
    fi
    die "the Docker daemon is not reachable (start it: sudo systemctl start docker). Docker said: $docker_error"
fi

# --- Registry login, from the environment or a file, never from the repository ----------
registry_login() {
    local user="${REGISTRY_USER:-}" server="${REGISTRY:-}" file="${REGISTRY_PASSWORD_FILE:-}"
    if [[ -z "$user" ]]; then
        return 0  # public image, or an earlier `docker login`
    fi
    local args=(login --username "$user" --password-stdin)
    [[ -n "$server" ]] && args+=("$server")
    if [[ -n "$file" ]]; then
        [[ -r "$file" ]] || die "REGISTRY_PASSWORD_FILE=$file is not a readable file"
        local real
        real="$(cd "$(dirname "$file")" && pwd -P)/$(basename "$file")"
        case "$real" in
            "$repo"/*) die "REGISTRY_PASSWORD_FILE is inside the repository ($real): keep credentials outside it" ;;
        esac
        docker "${args[@]}" <"$file" >/dev/null
    elif [[ -n "${REGISTRY_PASSWORD:-}" ]]; then
        printf '%s' "$REGISTRY_PASSWORD" | docker "${args[@]}" >/dev/null
    else
        die "REGISTRY_USER is set but neither REGISTRY_PASSWORD nor REGISTRY_PASSWORD_FILE is"
    fi
    echo "logged in to ${server:-Docker Hub} as $user"
}

# --- The image ------------------------------------------------------------------------
if ((pull)); then
    registry_login
    echo "pulling $image"
    docker pull "$image"
else
    build_args=(build --tag "$image")
    [[ -n "$base" ]] && build_args+=(--build-arg "BASE_IMAGE=$base")
    echo "building $image from $repo"
    docker "${build_args[@]}" .
    if ((push)); then
        registry_login
        docker push "$image"
        echo "pushed $image; on a GPU host: scripts/gpu_run.sh --pull --image $image"
        exit 0
    fi
fi

# --- Is a GPU visible inside a container? -------------------------------------------------
if ((check)); then
    echo "checking the GPU from inside a container"
    if ! docker run --rm --gpus "$gpus" "$image" nvidia-smi; then
        die "no GPU is visible to Docker. Check that 'nvidia-smi' works on this host (NVIDIA driver installed), that the NVIDIA Container Toolkit is installed and configured (sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker), and that this machine has a GPU at all."
    fi
    if ! docker run --rm --gpus "$gpus" "$image" python3 -c '
import sys, torch
if not torch.cuda.is_available():
    sys.exit("torch %s (CUDA %s) cannot use the GPU" % (torch.__version__, torch.version.cuda))
print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPUs:",
      ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
'; then
        die "the GPU is visible but PyTorch cannot use it: the host's NVIDIA driver is probably too old for the image's CUDA (nvidia-smi shows the highest CUDA it supports), or the GPU is newer than the build; see 'Which CUDA' in docs/gpu.md (--base)."
    fi
fi

# --- Run ----------------------------------------------------------------------------------
torch_cache="${SRLIB_TORCH_CACHE:-${TORCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/torch}}"
mkdir -p data runs results "$torch_cache"  # before docker run, which would create them as root

if ((${#command[@]} == 0)); then
    command=(bash scripts/run_pipeline.sh "$mode")
fi
stamp="$(date +%Y%m%d-%H%M%S)"
log="runs/gpu_run-$stamp.log"

run_args=(
    run --rm --init
    --gpus "$gpus"
    --shm-size "$shm_size"
    --user "$(id -u):$(id -g)"
    --volume "$repo/data:/opt/srlib/data"
    --volume "$repo/runs:/opt/srlib/runs"
    --volume "$repo/results:/opt/srlib/results"
    --volume "$torch_cache:/cache/torch"
)
# An interactive terminal gets one in the container too (progress bars, Ctrl-C).
[[ -t 0 && -t 1 ]] && run_args+=(--interactive --tty)

echo "running '${command[*]}' in $image; log: $log"
status=0
docker "${run_args[@]}" "$image" "${command[@]}" 2>&1 | tee "$log" || status=$?
if ((status != 0)); then
    die "the run failed (exit $status); see $log"
fi
echo "done. Executed notebooks: the newest folder in runs/; figures: results/; log: $log"

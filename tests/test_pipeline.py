"""The notebooks as a pipeline: a training notebook killed half-way continues from last.pt when
run again, and the full path (the GPU configs) runs end to end at toy size on a CPU."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
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
                     msrresnet_config=configs["msrresnet_x4"], srresnet_config=configs["srresnet_x4"],
                     srgan_config=configs["srgan_x4"], run_dir=runs, results_dir=results,
                     run_label="toy", min_gain_db=-99))
    for run in ("msrresnet_x4", "srresnet_x4", "srgan_x4"):
        state = torch.load(runs / run / "last.pt", weights_only=True)
        assert state["finished"] and state["iteration"] == 4
    assert (runs / "srgan_x4/discriminator.pt").exists()
    assert (results / "results_grid.png").stat().st_size > 10_000
    print(f"toy full pipeline: {time.time() - start:.0f} s")

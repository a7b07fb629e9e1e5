"""A committed notebook run again by hand ("Run All" in JupyterLab, no parameters) never replaces
a finished run: chapter 3's cells, in order, up to and including its training cell, against a
run folder that already holds finished runs of chapter 2's and chapter 3's configs."""
import json
import os

import nbformat
from conftest import ROOT
from nbclient import NotebookClient

from srlib import config as config_mod
from srlib.train import train


def _finished_run(config: str, folder, *overrides):
    """A 2-iteration run of a quick config (its architecture, so the chapter can load it)."""
    name = json.loads((ROOT / config).read_text())["logdir"].rsplit("/", 1)[-1]
    cfg = config_mod.load(ROOT / config, [f"logdir={folder / name}", "iterations=2",
                                          "validation.max_images=1", "save_every=2",
                                          *overrides])
    train(cfg, progress=False)
    return folder / name


def test_run_all_of_chapter_3_reuses_the_finished_runs(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    _finished_run("configs/quick/msrresnet.json", runs)
    gan = _finished_run("configs/quick/srgan.json", runs,
                        f"generator_path={runs / 'msrresnet/last.pt'}")
    before = {p.name: p.read_bytes() for p in gan.iterdir() if p.name != "srlib.lock"}
    nb = nbformat.read(ROOT / "notebooks/03_train_srgan.ipynb", as_version=4)
    training = next(i for i, c in enumerate(nb.cells)
                    if c.cell_type == "code" and "train_or_reuse(cfg, overwrite)" in c.source)
    nb.cells = nb.cells[:training + 1]  # the committed cells, as they are, in order
    monkeypatch.setenv("SRLIB_RUN_DIR", str(runs))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "notebooks")]))
    NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(ROOT / "notebooks")}}
                   ).execute()
    said = "".join(o.get("text", "") for o in nb.cells[training].outputs)
    assert "reusing the finished run" in said and "overwrite = True" in said
    after = {p.name: p.read_bytes() for p in gan.iterdir() if p.name != "srlib.lock"}
    assert after == before  # not one byte of the finished run changed

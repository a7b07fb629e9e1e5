"""Nothing lost under faults and hostile input: what a run or a user still needs is never
replaced, one run per logdir, a torn log or a failed write ends in one line and resumes, and
every malformed input is one line with exit code 2."""
import contextlib
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
from conftest import ROOT, tiny_config, write_config
from PIL import Image

from srlib import config as config_mod
from srlib.cli import main
from srlib.config import ConfigError, LoaderParams
from srlib.data.datasets import PairedPatchDataset
from srlib.data.io import ImageReadError, load_image, save_image
from srlib.data.sampler import make_batches
from srlib.train import train


def _cli(*args, limit_file_bytes=None, timeout=300):
    """``srlib ARGS``: in this process (what main() prints and returns), or in a child whose
    files may not grow past ``limit_file_bytes`` (EFBIG, as a full disk fails a write)."""
    if limit_file_bytes is None:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
        return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))
    return subprocess.run([sys.executable, "-m", "srlib", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"))


def _one_line(done, expected: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert lines and expected in lines[-1] and "Traceback" not in done.stderr, done.stderr


def _files(folder):
    """What a run folder holds (the lock file holds only the PID of its last holder)."""
    return {p.name: p.read_bytes() for p in folder.iterdir()
            if p.is_file() and p.name != "srlib.lock"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run and its config file."""
    tmp = tmp_path_factory.mktemp("finished")
    config = write_config(tmp, iterations=4, save_every=2, validation=None)
    assert _cli("train", "--config", config, "--no-progress").returncode == 0
    return config, tmp / "run"


# ----------------------------------------------------------------- outputs never replace inputs

def test_export_refuses_names_it_would_misread_and_replaces_only_with_overwrite(finished):
    config, run = finished
    before = _files(run)
    _one_line(_cli("export", run / "last.pt", run / "last.pt"), "name it last.safetensors")
    _one_line(_cli("export", run / "best.pt", run / "last.pt"), "writes safetensors")
    assert _files(run) == before  # the training checkpoint is intact
    out = run.parent / "g.safetensors"
    assert _cli("export", run / "last.pt", out).returncode == 0
    _one_line(_cli("export", run / "last.pt", out), "pass --overwrite")
    assert _cli("export", run / "last.pt", out, "--overwrite").returncode == 0


def test_overwrite_checks_the_whole_new_run_before_removing_anything(finished):
    config, run = finished
    before = _files(run)
    _one_line(_cli("train", "--config", config, "--overwrite", "--set",
                   "validation.root=/nonexistent"), "/nonexistent")
    _one_line(_cli("train", "--config", config, "--overwrite", "--set", "patch_size=400"),
              "no usable images")
    assert _files(run) == before


def test_a_folder_srlib_did_not_make_is_not_a_logdir(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    config = write_config(tmp_path, iterations=2, validation=None)
    _one_line(_cli("train", "--config", config), "holds files srlib did not write (notes.txt)")
    (tmp_path / "run" / "notes.txt").unlink()
    (tmp_path / "run" / "config.json").write_text("{}")  # someone else's config.json
    _one_line(_cli("train", "--config", config), "not a run srlib made")
    assert (tmp_path / "run" / "config.json").read_text() == "{}"
    _one_line(_cli("train", "--config", config, "--set", f"logdir={ROOT}"),
              "holds files srlib did not write")  # the project folder
    assert not (ROOT / "srlib.lock").exists()
    (tmp_path / "file").write_text("x")
    _one_line(_cli("train", "--config", config, "--set", f"logdir={tmp_path / 'file'}"),
              "is a file, not a folder")


# ----------------------------------------------------------------- one run per logdir

def _start(config, *extra):
    return subprocess.Popen([sys.executable, "-m", "srlib", "train", "--config", str(config),
                             "--no-progress", *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"))


def _wait_for(condition, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_a_second_run_into_a_live_logdir_is_refused_until_the_first_dies(tmp_path):
    config = write_config(tmp_path, iterations=5000, save_every=20, validation=None,
                          log_every=10)
    first, last = _start(config), tmp_path / "run/last.pt"
    _wait_for(last.exists)
    second = _cli("train", "--config", config, "--no-progress")
    _one_line(second, f"is in use by another run (PID {first.pid})")
    first.send_signal(signal.SIGKILL)
    first.wait()
    third = _start(config, "--set", "iterations=60")  # the dead run's lock is free again
    try:
        out, err = third.communicate(timeout=300)
    finally:
        third.kill()
    assert third.returncode == 0, err[-2000:]
    assert out.count("resuming the unfinished run") == 1


# ----------------------------------------------------------------- logs and writes that fail

def test_a_torn_last_line_in_metrics_does_not_block_a_resume(tmp_path):
    cfg = config_mod.from_dict(tiny_config(tmp_path, iterations=12, save_every=4,
                                           validation=None))
    train(cfg, progress=False)
    run = tmp_path / "run"
    state = torch.load(run / "last.pt", weights_only=True)
    state.update(finished=False)  # as if killed after iteration 12's save ...
    torch.save(state, run / "last.pt")
    text = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(text + text.splitlines()[-1][:25])  # ... mid-append
    summary = train(config_mod.from_dict(tiny_config(tmp_path, iterations=16, save_every=4,
                                                     validation=None)), progress=False)
    assert summary["iterations"] == 16
    assert any("torn write" in n for n in summary["notes"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["kind"] == "train"] == list(range(1, 17))


def test_a_failed_checkpoint_write_keeps_the_last_one_and_says_so(tmp_path):
    config = write_config(tmp_path, iterations=40, save_every=4, validation=None)
    proc, last = _start(config), tmp_path / "run/last.pt"
    _wait_for(lambda: last.exists() and torch.load(last, weights_only=True)["iteration"] >= 8)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = last.read_bytes()
    (tmp_path / "run" / ".last.pt.abc123.tmp").write_bytes(b"half a save")  # a killed save
    done = _cli("train", "--config", config, "--no-progress",
                limit_file_bytes=len(kept) // 2)  # checkpoints no longer fit: "the disk is full"
    _one_line(done, f"{last}: File too large")
    assert last.read_bytes() == kept  # the previous checkpoint is intact
    assert not list((tmp_path / "run").glob(".*.tmp"))  # and nothing partial is left


# ----------------------------------------------------------------- malformed input

def _truncated_png(path, source=ROOT / "data/Set5/bird.png"):
    data = source.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # its header says 288x288, its pixels stop halfway


def test_a_corrupt_image_read_in_a_loader_worker_is_the_same_one_line_error(tmp_path):
    shutil.copy(ROOT / "data/Set5/baby.png", tmp_path / "baby.png")
    _truncated_png(tmp_path / "bird.png")
    ds = PairedPatchDataset(tmp_path, patch_size=96, cache=False)  # headers read fine
    batches = make_batches(ds, LoaderParams(batch_size=2, num_workers=1), seed=0, total=1)
    with pytest.raises(ImageReadError) as info:
        list(batches)
    assert str(info.value).startswith(f"cannot read image {tmp_path / 'bird.png'}: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cache", [True, False])
def test_skip_corrupt_skips_what_does_not_decode_naming_it(tmp_path, cache):
    for name in ("baby.png", "head.png"):
        shutil.copy(ROOT / "data/Set5" / name, tmp_path / name)
    _truncated_png(tmp_path / "bird.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = PairedPatchDataset(tmp_path, patch_size=96, cache=cache, skip_corrupt=True)
        patches = [ds[(k, seed)] for k in range(len(ds)) for seed in range(2)]
    said = [str(w.message) for w in caught if "bird.png" in str(w.message)]
    assert len(said) == 1 and "decoded" in said[0]
    assert len(patches) == 2 * len(ds) and len(ds) == (2 if cache else 3)


def test_a_damaged_decode_cache_is_rebuilt(tmp_path):
    for p in sorted((ROOT / "data/Set5").glob("*.png"))[:2]:
        shutil.copy(p, tmp_path / p.name)
    good = PairedPatchDataset(tmp_path, patch_size=96).pair(1)[0].copy()
    data = next((tmp_path / ".srlib_cache").glob("*.u8"))
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="damaged"):
        again = PairedPatchDataset(tmp_path, patch_size=96)
    assert np.array_equal(again.pair(1)[0], good)
    next((tmp_path / ".srlib_cache").glob("*.json")).write_text("{not json")
    with pytest.warns(UserWarning, match="damaged"):
        assert np.array_equal(PairedPatchDataset(tmp_path, patch_size=96).pair(1)[0], good)


def test_malformed_inputs_are_one_line(tmp_path):
    bad = tmp_path / "latin.json"
    bad.write_bytes('{"logdir": "caf\xe9"}'.encode("latin-1"))
    _one_line(_cli("train", "--config", bad), "not UTF-8")
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    save_image(tiny / "a.png", np.zeros((8, 8, 3), np.uint8))
    config = write_config(tmp_path, validation=None, dataset={"root": str(tiny), "name": "t91"})
    _one_line(_cli("train", "--config", config), "no usable images")
    _one_line(_cli("prepare", "div2k", "--root", tmp_path, "--mirror", "not a url"),
              "is not an http(s) URL")
    _one_line(_cli("train", "--config", write_config(tmp_path), "--set", "seed=1e400"),
              'key "seed"')


# ----------------------------------------------------------------- upscale writes what it reads

@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("g")
    train(config_mod.from_dict(tiny_config(tmp, iterations=1, validation=None)), progress=False)
    return tmp / "run/last.pt"


def test_upscale_keeps_transparency_and_says_what_it_changed(generator, tmp_path):
    rgba = np.zeros((20, 24, 4), np.uint8)
    rgba[..., :3] = 200  # colour stored under transparent pixels must stay hidden
    rgba[5:15, 6:18, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    done = _cli("upscale", "--checkpoint", generator, tmp_path / "a.png", tmp_path / "a_x4.png")
    assert done.returncode == 0, done.stderr
    out = np.asarray(Image.open(tmp_path / "a_x4.png"))
    assert out.shape == (80, 96, 4)
    assert out[0, 0, 3] == 0 and out[40, 48, 3] == 255  # transparent stays transparent
    _one_line(_cli("upscale", "--checkpoint", generator, tmp_path / "a.png",
                   tmp_path / "a_x4.jpg"), "transparency")
    Image.fromarray((np.arange(20 * 24).reshape(20, 24) * 100).astype(np.uint16)).save(
        tmp_path / "deep.png")
    frames = [Image.fromarray(np.full((20, 24, 3), v, np.uint8)) for v in (0, 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    said = _cli("upscale", "--checkpoint", generator, tmp_path / "deep.png",
                tmp_path / "deep_x4.png").stdout
    assert "16-bit values: written as 8-bit" in said
    said = _cli("upscale", "--checkpoint", generator, tmp_path / "anim.gif",
                tmp_path / "anim_x4.png").stdout
    assert "has 2 frames: this is the first" in said


def test_upscale_shows_an_image_as_a_viewer_does(generator, tmp_path):
    """A phone photo stored sideways with an EXIF orientation is upscaled the way it shows."""
    img = Image.fromarray(load_image(ROOT / "data/Set5/bird.png")[:20, :32])  # 32 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "phone.jpg", exif=exif)
    assert _cli("upscale", "--checkpoint", generator, tmp_path / "phone.jpg",
                tmp_path / "phone_x4.png").returncode == 0
    assert Image.open(tmp_path / "phone_x4.png").size == (80, 128)  # as displayed: 20 x 32


def test_upscale_folder_lists_what_it_skipped(generator, tmp_path):
    folder = tmp_path / "in"
    save_image(folder / "a.png", load_image(ROOT / "data/Set5/bird.png")[:16, :16])
    (folder / "notes.txt").write_text("not an image")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "b.gif")
    done = _cli("upscale", "--checkpoint", generator, folder, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "skipped 2 file(s): b.gif (not one of" in done.stdout and "notes.txt" in done.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x4.png"]


def test_an_output_too_large_for_memory_is_refused_up_front(generator, tmp_path, monkeypatch):
    from srlib import inference
    monkeypatch.setattr(inference, "_available_bytes", lambda: 10_000)
    save_image(tmp_path / "a.png", np.zeros((40, 40, 3), np.uint8))
    model = inference.load_generator(generator)
    with pytest.raises(ConfigError, match=r"160x160 .* GiB of memory is available"):
        inference.upscale_file(model, tmp_path / "a.png", tmp_path / "a_x4.png")
    assert not (tmp_path / "a_x4.png").exists()


def test_filesystem_errors_are_one_line(generator, tmp_path):
    save_image(tmp_path / "a.png", np.zeros((16, 16, 3), np.uint8))
    (tmp_path / "dir.png").mkdir()
    _one_line(_cli("upscale", "--checkpoint", generator, tmp_path / "a.png", tmp_path / "dir.png"),
              "is a folder")
    _one_line(_cli("upscale", "--checkpoint", generator, tmp_path / "a.png",
                   "/proc/srlib_x4.png"), "/proc/")

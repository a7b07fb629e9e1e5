"""Sub-image preparation: BasicSR crop convention, MATLAB-bicubic LR, skip/resume, errors."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from srlib.data import download as dl
from srlib.data import prepare as prep
from srlib.data.imresize import make_lr
from srlib.data.io import ImageReadError, list_images, load_image, save_image
from srlib.data.prepare import crop_positions, prepare_dataset, prepare_subimages

REPO = Path(__file__).parents[1]
CROP, STEP = 96, 48
OPTS = {"crop_size": CROP, "step": STEP, "scale": 4, "progress": False}


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """Real images: two T91 (one smaller than a crop), one Set14, one gray Set14 cut."""
    folder = tmp_path_factory.mktemp("src")
    for rel in ("T91/t5.png", "T91/t20.png", "Set14/face.png"):
        shutil.copy(REPO / "data" / rel, folder)
    gray = load_image(REPO / "data" / "Set14" / "bridge.png")
    assert gray.ndim == 2
    save_image(folder / "bridge_cut.png", gray[100:250, 50:250])  # 150 x 200, not square
    return folder


@pytest.fixture(scope="module")
def prepared(src, tmp_path_factory) -> Path:
    return prepare_subimages(src, tmp_path_factory.mktemp("out") / "set", workers=2, **OPTS)


def crops_of(folder: Path, stem: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if re.fullmatch(rf"{stem}_s\d{{3}}\.png", p.name))


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in folder.rglob("*") if p.is_file()}


def same_files(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def spy_cut(monkeypatch, fail_on: int | None = None) -> list[str]:
    """Record which images get cut (workers=1 runs in-process); optionally interrupt."""
    calls: list[str] = []
    real = prep._cut_image

    def cut(job):
        calls.append(job[1])
        if fail_on is not None and len(calls) == fail_on:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(prep, "_cut_image", cut)
    return calls


# ------------------------------------------------------------------------ crop geometry


def test_crop_positions_follow_basicsr():
    # DIV2K-like 1356 x 2040 at 480/240: the strips left over (156 and 120 pixels) get
    # one extra crop flush with the far edge ...
    assert crop_positions(2040, 480, 240) == [0, 240, 480, 720, 960, 1200, 1440, 1560]
    assert crop_positions(1356, 480, 240) == [0, 240, 480, 720, 876]
    # ... unless they are no wider than thresh_size
    assert crop_positions(1356, 480, 240, thresh_size=156) == [0, 240, 480, 720]
    assert crop_positions(2040, 480, 240, thresh_size=119)[-1] == 1560
    assert crop_positions(480, 480, 240) == [0]
    assert crop_positions(479, 480, 240) == []


# ----------------------------------------------------------------------------- outputs


def test_layout_and_counts(prepared, src):
    assert sorted(p.name for p in prepared.iterdir()) == ["HR", "LR_x4", "manifest.json"]
    manifest = json.loads((prepared / "manifest.json").read_text())
    total = 0
    for path in list_images(src):
        h, w = load_image(path).shape[:2]
        n = len(crop_positions(h, CROP, STEP)) * len(crop_positions(w, CROP, STEP))
        assert len(crops_of(prepared / "HR", path.stem)) == n, path.name
        assert manifest["per_image"][path.stem] == n
        total += n
    assert manifest["per_image"]["t20"] == 0  # 78 x 78: smaller than a crop
    assert manifest["crops"] == total > 0 and manifest["images"] == 4
    assert sorted(p.name for p in (prepared / "HR").iterdir()) == sorted(
        p.name for p in (prepared / "LR_x4").iterdir())
    assert manifest["params"]["crop_size"] == CROP and manifest["params"]["step"] == STEP


def test_hr_crops_are_source_regions_and_lr_is_make_lr(prepared, src):
    for path in list_images(src):
        img = load_image(path)
        h, w = img.shape[:2]
        boxes = [(y, x) for y in crop_positions(h, CROP, STEP)
                 for x in crop_positions(w, CROP, STEP)]
        for index, (y, x) in enumerate(boxes, start=1):
            name = f"{path.stem}_s{index:03d}.png"
            hr = load_image(prepared / "HR" / name)
            np.testing.assert_array_equal(hr, img[y:y + CROP, x:x + CROP], err_msg=name)
            lr = load_image(prepared / "LR_x4" / name)
            assert lr.shape == (CROP // 4, CROP // 4) + img.shape[2:]
            if index <= 3:  # MATLAB bicubic is the slow part; three per image suffice
                np.testing.assert_array_equal(lr, make_lr(hr, 4)[1], err_msg=name)


# ---------------------------------------------------------------------- skip and resume


def test_finished_run_is_skipped_without_rewriting(prepared, src, monkeypatch):
    before = mtimes(prepared)
    calls = spy_cut(monkeypatch)
    assert prepare_subimages([src], prepared, workers=1, **OPTS) == prepared
    assert calls == [] and mtimes(prepared) == before


def test_interrupted_run_resumes_where_it_stopped(prepared, src, tmp_path, monkeypatch):
    out = tmp_path / "set"
    calls = spy_cut(monkeypatch, fail_on=2)
    with pytest.raises(KeyboardInterrupt):
        prepare_subimages([src], out, workers=1, **OPTS)
    assert calls == ["bridge_cut", "face"] and not (out / "manifest.json").exists()
    first = mtimes(out / "HR")
    assert first and all(k.startswith("bridge_cut_") for k in first)

    calls = spy_cut(monkeypatch)
    prepare_subimages([src], out, workers=1, **OPTS)
    assert calls == ["face", "t5"]  # bridge_cut was finished; t20 gives no crop
    assert {k: v for k, v in mtimes(out / "HR").items() if k in first} == first
    assert (out / "manifest.json").read_text() == (prepared / "manifest.json").read_text()
    same_files(out / "HR", prepared / "HR")  # in-process run == pool run, byte for byte
    same_files(out / "LR_x4", prepared / "LR_x4")


def test_deleted_manifest_and_crops_are_redone(prepared, src, tmp_path, monkeypatch):
    out = tmp_path / "set"
    shutil.copytree(prepared, out)
    (out / "manifest.json").unlink()
    (out / "HR" / "face_s002.png").unlink()
    (out / "LR_x4" / "t5_s009.png").unlink()
    before = mtimes(out)
    calls = spy_cut(monkeypatch)
    prepare_subimages([src], out, workers=1, **OPTS)
    assert calls == ["face", "t5"]
    after = mtimes(out)
    untouched = [k for k in before if k.startswith("HR/bridge_cut_")]
    assert untouched and all(before[k] == after[k] for k in untouched)
    assert (out / "manifest.json").read_text() == (prepared / "manifest.json").read_text()
    same_files(out / "HR", prepared / "HR")
    same_files(out / "LR_x4", prepared / "LR_x4")


def test_changed_parameters_raise(prepared, src, tmp_path, monkeypatch):
    before = mtimes(prepared)
    with pytest.raises(ValueError, match=r"'step': 48.*not.*'step': 64.*Delete"):
        prepare_subimages([src], prepared, **{**OPTS, "step": 64})
    assert mtimes(prepared) == before
    unfinished = tmp_path / "set"  # killed before it wrote its manifest
    spy_cut(monkeypatch, fail_on=1)
    with pytest.raises(KeyboardInterrupt):
        prepare_subimages([src], unfinished, workers=1, **OPTS)
    with pytest.raises(ValueError, match=r"'crop_size': 96.*not.*'crop_size': 128"):
        prepare_subimages([src], unfinished, **{**OPTS, "crop_size": 128})


def test_bad_input_fails_early_naming_the_problem(src, tmp_path):
    with pytest.raises(ValueError, match="multiple of scale"):
        prepare_subimages([src], tmp_path / "o", **{**OPTS, "crop_size": 98})
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(src / "t5.png", other)
    with pytest.raises(ValueError, match="named 't5'"):
        prepare_subimages([src, other], tmp_path / "o", **OPTS)
    (other / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(ImageReadError, match="broken.png"):
        prepare_subimages([other], tmp_path / "o", **OPTS)
    assert not (tmp_path / "o" / "manifest.json").exists()


# ------------------------------------------------------------------------- end to end


def test_prepare_dataset_combines_placed_archives(prepared, src, tmp_path, monkeypatch):
    """A DF2K-like two-archive dataset, placed by hand (offline), fetched and cut."""
    zip_buf = io.BytesIO()
    with zipfile.ZipFile(zip_buf, "w") as zf:
        zf.write(src / "t5.png", "A_HR/t5.png")
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w") as tf:
        tf.add(src / "face.png", "B/B_HR/face.png")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    archives = []
    for name, buf, sub in (("a.zip", zip_buf, "A_HR"), ("b.tar", tar_buf, "B/B_HR")):
        (downloads / name).write_bytes(buf.getvalue())
        md5 = hashlib.md5(buf.getvalue()).hexdigest()
        archives.append(dl.Archive(name, "http://127.0.0.1:9/" + name, md5, "1 KB", 1, sub))
    monkeypatch.setitem(dl.DATASETS, "tiny", tuple(archives))

    out = prepare_dataset("tiny", root=tmp_path, crop_size=CROP, step=STEP, workers=1,
                          progress=False)
    assert out == tmp_path / "tiny"
    assert sorted(p.name for p in out.iterdir()) == ["HR", "LR_x4", "manifest.json"]
    names = sorted(p.name for p in (out / "HR").iterdir())
    assert names == [p.name for p in crops_of(prepared / "HR", "face")
                     + crops_of(prepared / "HR", "t5")]
    for name in names:
        assert (out / "LR_x4" / name).read_bytes() == (prepared / "LR_x4" / name).read_bytes()

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

from srlib.data import prepare as prep
from srlib.data import sources
from srlib.data.io import ImageReadError, list_images, load_image, save_image
from srlib.data.prepare import (
    crop_positions,
    expected_subimage_count,
    prepare_dataset,
    prepare_subimages,
)
from srlib.evaluate import make_lr

REPO = Path(__file__).parents[1]
CROP, STEP = 96, 48
OPTS = dict(crop_size=CROP, step=STEP, scale=4, progress=False)


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
def prepared(src, tmp_path_factory):
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
    # one extra crop flush with the far edge
    assert crop_positions(2040, 480, 240) == [0, 240, 480, 720, 960, 1200, 1440, 1560]
    assert crop_positions(1356, 480, 240) == [0, 240, 480, 720, 876]
    assert expected_subimage_count(1356, 2040, 480, 240, 0) == 40
    # ... unless they are no wider than thresh_size
    assert crop_positions(1356, 480, 240, thresh_size=156) == [0, 240, 480, 720]
    assert crop_positions(2040, 480, 240, thresh_size=119)[-1] == 1560
    assert expected_subimage_count(1356, 2040, 480, 240, 200) == 28
    assert crop_positions(480, 480, 240) == [0]
    assert expected_subimage_count(479, 2040, 480, 240, 0) == 0


# ----------------------------------------------------------------------------- outputs


def test_counts_match_expected(prepared, src):
    manifest = json.loads(prepared.manifest.read_text())
    total = 0
    for path in list_images(src):
        h, w = load_image(path).shape[:2]
        n = expected_subimage_count(h, w, CROP, STEP, 0)
        assert len(crops_of(prepared.hr_dir, path.stem)) == n, path.name
        assert manifest["per_image"][path.stem] == n
        total += n
    assert manifest["per_image"]["t20"] == 0  # 78 x 78: smaller than a crop
    assert prepared.num_crops == manifest["crops"] == total > 0
    assert prepared.num_images == manifest["images"] == 4
    assert sorted(p.name for p in prepared.hr_dir.iterdir()) == sorted(
        p.name for p in prepared.lr_dir.iterdir())
    assert prepared.lr_dir.name == "LR_x4"
    assert manifest["params"]["crop_size"] == CROP and manifest["params"]["step"] == STEP


def test_hr_crops_are_source_regions_and_lr_is_make_lr(prepared, src):
    for path in list_images(src):
        img = load_image(path)
        h, w = img.shape[:2]
        ys, xs = crop_positions(h, CROP, STEP), crop_positions(w, CROP, STEP)
        boxes = [(y, x) for y in ys for x in xs]
        for index, (y, x) in enumerate(boxes, start=1):
            name = f"{path.stem}_s{index:03d}.png"
            hr = load_image(prepared.hr_dir / name)
            np.testing.assert_array_equal(hr, img[y:y + CROP, x:x + CROP], err_msg=name)
            lr = load_image(prepared.lr_dir / name)
            assert lr.shape == (CROP // 4, CROP // 4) + img.shape[2:]
            if index <= 3:  # MATLAB bicubic is the slow part; three per image suffice
                np.testing.assert_array_equal(lr, make_lr(hr, 4)[1], err_msg=name)


# ---------------------------------------------------------------------- skip and resume


def test_finished_run_is_skipped_without_rewriting(prepared, src, monkeypatch):
    before = mtimes(prepared.out_dir)
    calls = spy_cut(monkeypatch)
    again = prepare_subimages(src, prepared.out_dir, workers=1, **OPTS)
    assert calls == [] and mtimes(prepared.out_dir) == before
    assert (again.num_images, again.num_crops) == (prepared.num_images, prepared.num_crops)


def test_interrupted_run_resumes_where_it_stopped(prepared, src, tmp_path, monkeypatch):
    out = tmp_path / "set"
    calls = spy_cut(monkeypatch, fail_on=2)
    with pytest.raises(KeyboardInterrupt):
        prepare_subimages(src, out, workers=1, **OPTS)
    assert calls == ["bridge_cut", "face"] and not (out / "manifest.json").exists()
    first = mtimes(out / "HR")
    assert first and all(k.startswith("bridge_cut_") for k in first)

    calls = spy_cut(monkeypatch)
    result = prepare_subimages(src, out, workers=1, **OPTS)
    assert calls == ["face", "t20", "t5"]  # bridge_cut was logged as finished
    assert {k: v for k, v in mtimes(out / "HR").items() if k in first} == first
    assert result.num_crops == prepared.num_crops
    same_files(out / "HR", prepared.hr_dir)
    same_files(out / "LR_x4", prepared.lr_dir)


def test_deleted_manifest_and_crops_are_redone(prepared, src, tmp_path, monkeypatch):
    out = tmp_path / "set"
    shutil.copytree(prepared.out_dir, out)
    (out / "manifest.json").unlink()
    (out / "HR" / "face_s002.png").unlink()
    (out / "LR_x4" / "t5_s009.png").unlink()
    before = mtimes(out)
    calls = spy_cut(monkeypatch)
    result = prepare_subimages(src, out, workers=1, **OPTS)
    assert sorted(calls) == ["face", "t5"]
    after = mtimes(out)
    untouched = [k for k in before if re.search(r"/(bridge_cut|t20)_s", k)]
    assert untouched and all(before[k] == after[k] for k in untouched)
    assert result.num_crops == prepared.num_crops
    same_files(out / "HR", prepared.hr_dir)
    same_files(out / "LR_x4", prepared.lr_dir)


def test_changed_parameters_raise(prepared, src, tmp_path):
    before = mtimes(prepared.out_dir)
    with pytest.raises(ValueError, match=r"step=48 there but 64 asked.*Delete"):
        prepare_subimages(src, prepared.out_dir, **{**OPTS, "step": 64})
    assert mtimes(prepared.out_dir) == before
    unfinished = tmp_path / "set"  # only the progress log says what was asked
    shutil.copytree(prepared.out_dir, unfinished)
    (unfinished / "manifest.json").unlink()
    with pytest.raises(ValueError, match="crop_size=96 there but 128 asked"):
        prepare_subimages(src, unfinished, **{**OPTS, "crop_size": 128})


def test_bad_arguments_fail_early(src, tmp_path):
    with pytest.raises(ValueError, match="multiple of scale"):
        prepare_subimages(src, tmp_path / "o", **{**OPTS, "crop_size": 98})
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(src / "t5.png", other)
    with pytest.raises(ValueError, match="share the name 't5'"):
        prepare_subimages([src, other], tmp_path / "o", **OPTS)


# ------------------------------------------------------------------------ corrupt files


def test_corrupt_image_raises_or_is_skipped(prepared, src, tmp_path):
    folder = tmp_path / "src"
    shutil.copytree(src, folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    out = tmp_path / "set"
    with pytest.raises(ImageReadError, match="broken.png"):
        prepare_subimages(folder, out, workers=1, **OPTS)
    assert not (out / "manifest.json").exists()

    with pytest.warns(UserWarning, match="broken.png"):
        result = prepare_subimages(folder, out, workers=1, skip_corrupt=True, **OPTS)
    manifest = json.loads(result.manifest.read_text())
    assert [s["stem"] for s in manifest["skipped_corrupt"]] == ["broken"]
    assert manifest["skipped_corrupt"][0]["file"].endswith("broken.png")
    assert result.num_images == 4 and result.num_crops == prepared.num_crops
    same_files(out / "HR", prepared.hr_dir)  # in-process run == pool run, byte for byte
    # a finished folder with a skipped file is still recognised as finished
    assert prepare_subimages(folder, out, workers=1, **OPTS).skipped == result.skipped


# ------------------------------------------------------------------------- end to end


def test_prepare_dataset_combines_archives(prepared, src, tmp_path, monkeypatch):
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
        data = buf.getvalue()
        (downloads / name).write_bytes(data)
        archives.append(sources.Archive(name, "http://127.0.0.1:9/" + name,
                                        hashlib.md5(data).hexdigest(), 1, sub, len(data)))
        monkeypatch.setitem(sources.ARCHIVES, name, archives[-1])
    monkeypatch.setitem(sources.DATASETS, "tiny",
                        sources.Dataset("tiny", ("a.zip", "b.tar"), ()))

    result = prepare_dataset("tiny", root=tmp_path, crop_size=CROP, step=STEP,
                             workers=1, progress=False)
    assert result.out_dir == tmp_path / "tiny" and result.hr_dir == tmp_path / "tiny" / "HR"
    names = sorted(p.name for p in result.hr_dir.iterdir())
    assert names == [p.name for p in crops_of(prepared.hr_dir, "face")
                     + crops_of(prepared.hr_dir, "t5")]
    for name in names:
        assert (result.lr_dir / name).read_bytes() == (prepared.lr_dir / name).read_bytes()

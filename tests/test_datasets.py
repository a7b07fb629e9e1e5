"""Datasets on the shipped images: alignment, augmentation, seeding, and failure modes."""

import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srlib.config import ConfigError, LoaderParams
from srlib.data import datasets
from srlib.data.augment import dihedral
from srlib.data.datasets import BenchmarkDataset, PairedPatchDataset
from srlib.data.imresize import make_lr
from srlib.data.io import ImageReadError, gray_from_rgb, load_image, save_image
from srlib.data.sampler import make_batches

DATA = Path(__file__).resolve().parents[1] / "data"
T91, SET5, SET14 = DATA / "T91", DATA / "Set5", DATA / "Set14"


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """Float CHW [0,1] back to uint8 HWC; exact because values came from uint8/255."""
    return np.round(t.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def undo_dihedral(img, hflip, vflip, transpose):
    """Inverse of augment.dihedral (the operations applied in reverse order)."""
    if transpose:
        img = img.swapaxes(0, 1)
    if vflip:
        img = img[::-1]
    if hflip:
        img = img[:, ::-1]
    return img


def find_patch(full: np.ndarray, patch: np.ndarray) -> list[tuple[int, int]]:
    """All (y, x) where `patch` occurs verbatim in `full` (corner filter, then verify)."""
    p = patch.shape[0]
    h, w = full.shape[0] - p + 1, full.shape[1] - p + 1
    corner = (full[:h, :w] == patch[0, 0]).all(axis=-1)
    return [(y, x) for y, x in zip(*np.nonzero(corner))
            if np.array_equal(full[y:y + p, x:x + p], patch)]


def full_pair(path: Path):
    hr, lr = make_lr(load_image(path), 4)
    return hr, lr


@pytest.fixture(scope="module")
def set5_pairs():
    return [full_pair(p) for p in sorted(SET5.glob("*.png"))]


def test_shapes_dtypes_ranges_and_items_named_by_their_seed():
    ds = PairedPatchDataset(SET5, patch_size=96)
    assert len(ds) == 5
    for k, seed in ((0, 0), (3, 7), (4, 11)):
        item = ds[(k, seed)]
        assert item["lr"].shape == (3, 24, 24) and item["hr"].shape == (3, 96, 96)
        assert item["lr"].dtype == torch.float32 and item["hr"].dtype == torch.float32
        for t in item.values():
            assert 0.0 <= t.min() and t.max() <= 1.0 and t.std() > 0
        torch.manual_seed(seed + 1)  # the global RNG plays no part
        assert torch.equal(ds[(k, seed)]["hr"], item["hr"])
    assert not torch.equal(ds[(0, 0)]["hr"], ds[(0, 1)]["hr"])
    with pytest.raises(IndexError):
        ds[(5, 0)]


def test_crop_is_aligned_with_full_image_lr(set5_pairs):
    """Without augmentation the LR patch is a crop of make_lr(HR), and the HR patch
    is the crop at scale x the same position."""
    n = len(set5_pairs)
    ds = PairedPatchDataset(SET5, patch_size=96, augment=False)
    for i in range(2 * n):
        hr_full, lr_full = set5_pairs[i % n]
        item = ds[(i % n, i)]
        lr, hr = to_uint8(item["lr"]), to_uint8(item["hr"])
        hits = find_patch(lr_full, lr)
        assert hits, f"LR patch {i} not found in its image's LR"
        assert any(np.array_equal(hr_full[4 * y:4 * y + 96, 4 * x:4 * x + 96], hr)
                   for y, x in hits)


def test_crop_positions_are_random_and_cover_the_image(tmp_path, set5_pairs):
    shutil.copy(SET5 / "baby.png", tmp_path / "baby.png")
    lr_full = set5_pairs[0][1]
    ds = PairedPatchDataset(tmp_path, patch_size=96, augment=False)
    starts = [find_patch(lr_full, to_uint8(ds[(0, seed)]["lr"]))[0] for seed in range(40)]
    ys, xs = zip(*starts)
    span = lr_full.shape[0] - 24  # last valid start; baby is square
    assert len(set(ys)) > 20 and len(set(xs)) > 20
    assert min(ys) < span / 4 and max(ys) > 3 * span / 4
    assert min(xs) < span / 4 and max(xs) > 3 * span / 4


def test_every_start_including_the_last_is_reachable(tmp_path):
    """An image exactly one LR pixel larger than the patch has two starts; one exactly
    patch-sized has one (and must not be skipped)."""
    hr = load_image(SET5 / "baby.png")
    Image.fromarray(hr[:100, :96]).save(tmp_path / "a.png")  # LR 25x24
    Image.fromarray(hr[:96, :96]).save(tmp_path / "b.png")  # LR 24x24
    ds = PairedPatchDataset(tmp_path, patch_size=96, augment=False)
    lr_a = make_lr(hr[:100, :96], 4)[1]
    starts = {find_patch(lr_a, to_uint8(ds[(0, seed)]["lr"]))[0] for seed in range(20)}
    assert starts == {(0, 0), (1, 0)}
    assert ds[(1, 0)]["hr"].shape == (3, 96, 96)


def test_augmentation_applies_one_dihedral_transform_to_both(set5_pairs):
    """Each returned LR patch is a dihedral variant of an aligned crop, and the HR patch
    is the same variant of the matching HR crop; all 8 variants actually occur."""
    n = len(set5_pairs)
    ds = PairedPatchDataset(SET5, patch_size=48, augment=True)
    seen = set()
    for i in range(8 * n):
        hr_full, lr_full = set5_pairs[i % n]
        item = ds[(i % n, i)]
        lr, hr = to_uint8(item["lr"]), to_uint8(item["hr"])
        found = set()
        for d in [(h, v, t) for h in (0, 1) for v in (0, 1) for t in (0, 1)]:
            for y, x in find_patch(lr_full, np.ascontiguousarray(undo_dihedral(lr, *d))):
                if np.array_equal(dihedral(hr_full[4 * y:4 * y + 48, 4 * x:4 * x + 48], *d), hr):
                    found.add(d)
        assert found, f"patch {i}: no single transform maps both LR and HR crops"
        seen |= found
    assert len(seen) == 8


def _batches(loader):
    return [(b["lr"].clone(), b["hr"].clone()) for b in loader]


def _same(a, b):
    return all(torch.equal(x, y) and torch.equal(u, v) for (x, u), (y, v) in zip(a, b))


def _loader(ds, seed, workers=0, start=0, batch=8, total=4):
    params = LoaderParams(batch_size=batch, num_workers=workers)
    return make_batches(ds, params, seed=seed, total=total, start=start)


def test_training_batches_follow_the_seed_alone():
    """The training loader: the same seed gives the same patches with or without workers,
    whatever the global RNG holds, and a resume at iteration k yields the tail of the run."""
    ds = PairedPatchDataset(SET5, patch_size=48)
    torch.manual_seed(0)
    a = _batches(_loader(ds, seed=3))
    lr, hr = a[0]
    assert len(a) == 4 and lr.shape == (8, 3, 12, 12) and hr.shape == (8, 3, 48, 48)
    torch.manual_seed(123)  # must not matter
    assert _same(a, _batches(_loader(ds, seed=3, workers=2)))
    assert _same(a[2:], _batches(_loader(ds, seed=3, start=2)))
    assert not _same(a, _batches(_loader(ds, seed=4)))


def test_patch_size_must_divide_by_scale():
    with pytest.raises(ValueError, match=r"patch_size=98.*scale=4"):
        PairedPatchDataset(SET5, patch_size=98)


@pytest.mark.parametrize("cache", [True, False])
def test_small_images_are_skipped_with_one_warning(cache):
    patch = 112
    if cache:  # keep the cached (full decode + make_lr) case small
        root = SET5
    else:
        root = T91
    too_small = sorted(p.name for p in root.glob("*.png")
                       if min(Image.open(p).size) // 4 < patch // 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = PairedPatchDataset(root, patch_size=patch, cache=cache)
    kept = {p.name for p, _ in ds.paths}
    assert kept.isdisjoint(too_small)
    assert len(kept) + len(too_small) == len(list(root.glob("*.png")))
    if too_small:
        assert len(caught) == 1
        msg = str(caught[0].message)
        assert f"patch_size={patch}" in msg and all(name in msg for name in too_small)
    else:
        assert not caught
    assert ds[(0, 0)]["hr"].shape == (3, patch, patch)


@pytest.mark.parametrize("cache", [True, False])
def test_t91_skips_its_one_tiny_image_at_patch_96(cache):
    with pytest.warns(UserWarning, match=r"t20\.png"):
        ds = PairedPatchDataset(T91, patch_size=96, cache=cache)
    assert len(ds) == 85  # 86 files (5 more are held aside in data/T91_holdout)


def test_no_usable_image_names_folder_and_patch():
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match=r"Set5.*patch_size=1024"):
        PairedPatchDataset(SET5, patch_size=1024, cache=False)


@pytest.fixture
def corrupt_folder(tmp_path):
    for p in sorted(SET5.glob("*.png"))[:3]:
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "bird.png").write_bytes(b"this is not a png" * 10)
    return tmp_path


@pytest.mark.parametrize("cache", [True, False])
def test_corrupt_image_raises_naming_file(corrupt_folder, cache):
    with pytest.raises(ImageReadError, match=r"bird\.png"):
        PairedPatchDataset(corrupt_folder, patch_size=96, cache=cache)


def test_corrupt_image_skipped_on_request(corrupt_folder):
    with pytest.warns(UserWarning, match=r"bird\.png"):
        ds = PairedPatchDataset(corrupt_folder, patch_size=96, skip_corrupt=True)
    assert sorted(p.name for p, _ in ds.paths) == ["baby.png", "butterfly.png"]


def test_single_channel_training_image_becomes_rgb(tmp_path):
    shutil.copy(SET14 / "bridge.png", tmp_path / "bridge.png")
    lr = PairedPatchDataset(tmp_path, patch_size=96)[(0, 0)]["lr"]
    assert lr.shape == (3, 24, 24)
    assert torch.equal(lr[0], lr[1]) and torch.equal(lr[0], lr[2])


def _prepare(root: Path, names, lr_transform=lambda lr: lr):
    (root / "HR").mkdir()
    (root / "LR_x4").mkdir()
    for name in names:
        hr, lr = full_pair(SET5 / name)
        Image.fromarray(hr).save(root / "HR" / name)
        Image.fromarray(lr_transform(lr)).save(root / "LR_x4" / name)


@pytest.mark.parametrize("cache", [True, False])
def test_prepared_layout_loads_lr_files(tmp_path, cache):
    """LR must come from LR_x4/, not be re-synthesised: store an inverted LR and find it."""
    _prepare(tmp_path, ["bird.png", "head.png"], lambda lr: 255 - lr)
    ds = PairedPatchDataset(tmp_path, patch_size=96, augment=False, cache=cache)
    assert ds.hr_dir == tmp_path / "HR" and len(ds) == 2
    for i, name in enumerate(["bird.png", "head.png"]):
        lr = to_uint8(ds[(i, 0)]["lr"])
        assert find_patch(255 - full_pair(SET5 / name)[1], lr)


@pytest.mark.parametrize("cache", [True, False])
def test_prepared_layout_size_mismatch_names_file(tmp_path, cache):
    _prepare(tmp_path, ["bird.png", "head.png"])
    lr = load_image(tmp_path / "LR_x4" / "head.png")
    Image.fromarray(lr[:-1]).save(tmp_path / "LR_x4" / "head.png")
    with pytest.raises(ValueError, match=r"head\.png"):
        PairedPatchDataset(tmp_path, patch_size=96, cache=cache)


def test_prepared_layout_missing_lr_names_file(tmp_path):
    _prepare(tmp_path, ["bird.png"])
    shutil.copy(SET5 / "head.png", tmp_path / "HR" / "head.png")
    with pytest.raises(FileNotFoundError, match=r"head\.png"):
        PairedPatchDataset(tmp_path, patch_size=96)


def test_benchmark_set14_keeps_gray_for_scoring():
    ds = BenchmarkDataset(SET14)
    assert ds.name == "Set14" and len(ds) == 14
    items = {it["name"]: it for it in ds}
    bridge = items["bridge"]
    assert bridge["gray"] and bridge["hr_uint8"].ndim == 2
    h, w = bridge["hr_uint8"].shape
    assert bridge["lr"].shape == (3, h // 4, w // 4)
    assert torch.equal(bridge["lr"][0], bridge["lr"][2])
    assert not any(it["gray"] for n, it in items.items() if n != "bridge")
    for name, it in items.items():
        hr_ref, lr_ref = full_pair(SET14 / f"{name}.png")
        assert np.array_equal(it["hr_uint8"], hr_ref) and np.array_equal(it["lr_uint8"], lr_ref)
        assert it["hr_uint8"].shape[0] % 4 == 0 and it["hr_uint8"].shape[1] % 4 == 0
        assert it["hr"].shape == (3, *it["hr_uint8"].shape[:2])
    # comic is 250x361: modcrop must have trimmed it before downscaling
    assert items["comic"]["hr_uint8"].shape[:2] == (360, 248)


def test_gray_from_rgb_is_rounded_channel_mean():
    rgb = np.array([[[10, 11, 13], [255, 255, 254]]], dtype=np.uint8)
    assert gray_from_rgb(rgb).tolist() == [[11, 255]]
    gray = np.zeros((2, 2), np.uint8)
    assert gray_from_rgb(gray) is gray


def test_tiny_images_are_skipped_in_training_and_named_in_evaluation(tmp_path):
    """1x1 to 12x12 images: training skips them with the one warning; scoring refuses in one
    line that names the file (SSIM's window must fit inside the border)."""
    for side in (1, 5, 12):
        save_image(tmp_path / f"tiny{side}.png", np.full((side, side, 3), 128, np.uint8))
    shutil.copy(SET5 / "bird.png", tmp_path / "bird.png")
    with pytest.warns(UserWarning, match="skipped 3 image.*tiny1.png, tiny12.png, tiny5.png"):
        assert len(PairedPatchDataset(tmp_path, patch_size=32)) == 1
    with pytest.raises(ImageReadError, match="tiny1.png: 1x1 is too small to score at x4"):
        BenchmarkDataset(tmp_path, scale=4)


def _cached_set(tmp_path, count=3):
    for p in sorted(SET5.glob("*.png"))[:count]:
        shutil.copy(p, tmp_path / p.name)
    return PairedPatchDataset(tmp_path, patch_size=96)


def test_cache_file_holds_the_decoded_pairs_and_is_reused(tmp_path, monkeypatch):
    ds = _cached_set(tmp_path)
    files = sorted(p.suffix for p in (tmp_path / ".srlib_cache").iterdir())
    assert files == [".json", ".u8"]
    for k, (hr_path, _) in enumerate(ds.paths):
        hr, lr = make_lr(load_image(hr_path), 4)
        assert np.array_equal(ds.pair(k)[0], hr) and np.array_equal(ds.pair(k)[1], lr)

    def no_decoding(*args):
        raise AssertionError("the cache file should have been reused")
    monkeypatch.setattr(datasets, "load_image", no_decoding)
    again = PairedPatchDataset(tmp_path, patch_size=96)
    assert np.array_equal(again.pair(2)[0], ds.pair(2)[0])
    assert torch.equal(again[(1, 5)]["hr"], ds[(1, 5)]["hr"])  # the same crop from the same seed
    assert not again.pair(0)[0].flags.writeable  # a view of the mapped file


def test_cache_is_remade_when_an_image_changes(tmp_path):
    ds = _cached_set(tmp_path)
    changed = load_image(ds.paths[0][0])[::-1].copy()  # same size, other pixels
    save_image(ds.paths[0][0], changed)
    again = PairedPatchDataset(tmp_path, patch_size=96)
    assert np.array_equal(again.pair(0)[0], make_lr(changed, 4)[0])
    assert len(list((tmp_path / ".srlib_cache").glob("*.u8"))) == 2


def test_pickled_dataset_carries_no_pixels(tmp_path):
    """What a spawned DataLoader worker receives: the file's name, not a copy of the set."""
    ds = _cached_set(tmp_path)
    ds.pair(0)  # maps the file in this process
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000
    assert np.array_equal(pickle.loads(blob).pair(1)[1], ds.pair(1)[1])


def test_unwritable_cache_folder_names_the_key(tmp_path):
    (tmp_path / ".srlib_cache").write_text("a file where the folder should be")
    with pytest.raises(ConfigError, match=r'"dataset\.cache".*set it to false'):
        _cached_set(tmp_path)
    assert len(PairedPatchDataset(tmp_path, patch_size=96, cache=False)) == 3

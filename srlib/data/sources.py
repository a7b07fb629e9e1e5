"""Catalogue of the training archives (DIV2K, Flickr2K) and the datasets built from them.

Kept as plain data so the download code, the offline error message and the docs all quote
the same URL, md5 and size: a user on an air-gapped machine needs exactly these to fetch
the files by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Archive", "Dataset", "ARCHIVES", "DATASETS", "get_dataset", "archives_for"]


@dataclass(frozen=True)
class Archive:
    """One downloadable file; `hr_subdir` is where its HR images sit once unpacked."""

    name: str  # file name, also the name expected in <root>/downloads/
    url: str
    md5: str
    num_images: int
    hr_subdir: str
    size: int | None = None  # exact bytes when known (lets a resume skip the network)
    approx_size: str = ""  # for humans, in messages

    @property
    def stem(self) -> str:
        """Name without archive suffixes: the folder it is unpacked into."""
        name = self.name
        for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return name


@dataclass(frozen=True)
class Dataset:
    """A training set: the archives whose HR images are cut into sub-images, plus validation."""

    name: str
    train: tuple[str, ...]  # archive names
    valid: tuple[str, ...]
    description: str = ""


_ARCHIVE_LIST = (
    Archive(
        name="DIV2K_train_HR.zip",
        url="https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
        md5="bdc2d9338d4e574fe81bf7d158758658",
        num_images=800,
        hr_subdir="DIV2K_train_HR",
        size=3_530_603_713,
        approx_size="3.5 GB",
    ),
    Archive(
        name="DIV2K_valid_HR.zip",
        url="https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",
        md5="9fcdda83005c5e5997799b69f955ff88",
        num_images=100,
        hr_subdir="DIV2K_valid_HR",
        approx_size="under 0.5 GB",
    ),
    Archive(
        name="Flickr2K.tar",
        url="https://cv.snu.ac.kr/research/EDSR/Flickr2K.tar",
        md5="5d3f39443d5e9489bff8963f8f26cb03",
        num_images=2650,
        hr_subdir="Flickr2K/Flickr2K_HR",
        approx_size="11.6 GB",
    ),
)

ARCHIVES: dict[str, Archive] = {a.name: a for a in _ARCHIVE_LIST}

DATASETS: dict[str, Dataset] = {
    "div2k": Dataset(
        name="div2k",
        train=("DIV2K_train_HR.zip",),
        valid=("DIV2K_valid_HR.zip",),
        description="DIV2K: 800 2K training images (validation: DIV2K 801-900)",
    ),
    "df2k": Dataset(
        name="df2k",
        train=("DIV2K_train_HR.zip", "Flickr2K.tar"),
        valid=("DIV2K_valid_HR.zip",),
        description="DF2K: DIV2K train (800) + Flickr2K (2,650) (validation: DIV2K 801-900)",
    ),
}


def get_dataset(name: str) -> Dataset:
    """Look a dataset up by name, listing the known ones on a typo."""
    try:
        return DATASETS[name.lower()]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise ValueError(f"unknown dataset {name!r}; known datasets: {known}") from None


def archives_for(name: str, split: str = "train") -> list[Archive]:
    """The archives a dataset's `split` ("train" or "valid") needs, in catalogue order."""
    dataset = get_dataset(name)
    if split not in ("train", "valid"):
        raise ValueError(f"split must be 'train' or 'valid', not {split!r}")
    return [ARCHIVES[n] for n in getattr(dataset, split)]

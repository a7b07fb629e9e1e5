"""The decoded training set as one memory-mapped uint8 file beside the images: decoding DIV2K
takes minutes and about 24 GB, so it is done once and shared through the page cache by every
process of a run (and later runs). Named by its sources, scale and `VERSION`, so a change makes a
new file (delete the folder to reclaim space); a damaged one is rebuilt, with a warning."""
import hashlib
import json
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from srlib.config import ConfigError
from srlib.data.io import atomic_path, write_text_atomic

VERSION = 1  # bump whenever the stored pixels would change (make_lr's resize, as_rgb, ...)


def _read_index(index_file: Path, data_file: Path, key: dict) -> dict | None:
    """``key``'s index if the data file has exactly its bytes, else None (warned if damaged)."""
    if not index_file.is_file():
        return None
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
        size = sum(3 * (hh * hw + lh * lw) for _, hh, hw, _, lh, lw in index["layout"])
        if index["key"] != key:
            return None  # made from other images: a new file, this one stays for them
        if data_file.stat().st_size == size:
            return index
    except (OSError, ValueError, KeyError, TypeError):
        pass
    warnings.warn(f"the decode cache {data_file} is damaged (truncated or its index unreadable):"
                  " rebuilding it", stacklevel=3)
    return None


class DecodedCache:
    """``pair(k)``: image k's ``(hr, lr)`` as read-only uint8 HxWx3 views of the mapped file.
    ``decode(k)`` returning None (a corrupt image the dataset may skip) leaves k out; such
    indices are in ``skipped`` and ``pair`` takes the indices that remain, in order."""

    def __init__(self, folder: Path, paths: list[tuple[Path, Path | None]], scale: int,
                 decode: Callable[[int], tuple[np.ndarray, np.ndarray] | None], progress: bool):
        files = [[p.name, p.stat().st_size, p.stat().st_mtime_ns]  # what it is made from
                 for pair in paths for p in pair if p is not None]
        key = {"version": VERSION, "scale": scale, "files": files}
        name = f"x{scale}-{hashlib.sha1(json.dumps(key).encode()).hexdigest()[:12]}"
        self.file, index_file = folder / f"{name}.u8", folder / f"{name}.json"
        index = _read_index(index_file, self.file, key)
        if index is None:
            try:
                index = {"key": key, **self._build(len(paths), decode, progress)}
                write_text_atomic(index_file, json.dumps(index))
            except OSError as err:
                raise ConfigError(f'key "dataset.cache": cannot write the decoded images to '
                                  f"{folder} ({err}); make it writable or set it to false") from err
        self.layout = index["layout"]  # per image: [hr offset, h, w, lr offset, h, w]
        self.skipped = set(index.get("skipped", []))
        self._mapped = None  # opened on first use in each process, never pickled

    def _build(self, count: int, decode, progress: bool) -> dict:
        """Decode every pair (a few threads: PIL releases the GIL) and append it to the file,
        16 at a time, so that memory holds a few images, never the set."""
        layout, skipped, offset = [], [], 0
        with atomic_path(self.file) as tmp, open(tmp, "wb") as out, \
                ThreadPoolExecutor(max_workers=8) as pool, \
                tqdm(total=count, desc=f"decoding into {self.file}", unit="img",
                     disable=not progress) as bar:
            for start in range(0, count, 16):
                chunk = range(start, min(start + 16, count))
                for k, pair in zip(chunk, pool.map(decode, chunk)):
                    bar.update(1)
                    if pair is None:
                        skipped.append(k)
                        continue
                    hr, lr = pair
                    layout.append([offset, *hr.shape[:2], offset + hr.size, *lr.shape[:2]])
                    out.write(np.ascontiguousarray(hr).tobytes())
                    out.write(np.ascontiguousarray(lr).tobytes())
                    offset += hr.size + lr.size
        return {"layout": layout, "skipped": skipped}

    def pair(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._mapped is None:
            self._mapped = np.memmap(self.file, dtype=np.uint8, mode="r")
        hr_at, hh, hw, lr_at, lh, lw = self.layout[k]
        return (self._mapped[hr_at:hr_at + hh * hw * 3].reshape(hh, hw, 3),
                self._mapped[lr_at:lr_at + lh * lw * 3].reshape(lh, lw, 3))

    def __getstate__(self) -> dict:
        """A spawned DataLoader worker maps the file itself, rather than receive a copy."""
        return {**self.__dict__, "_mapped": None}

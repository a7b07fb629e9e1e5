"""The decoded training set as one uint8 file beside the images, memory-mapped. Decoding DIV2K
takes minutes and about 24 GB; done once into this file, it is shared through the operating
system's page cache by every process of a torchrun run (and by later runs), instead of each
process holding its own decoded copy. The file is named by what it was made from (the images,
the scale, `VERSION`), so a change makes a new file; delete the folder to reclaim the space."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from srlib.config import ConfigError
from srlib.data.io import atomic_path, write_text_atomic

VERSION = 1  # bump whenever the stored pixels would change (make_lr's resize, as_rgb, ...)


def _fingerprint(paths: list[tuple[Path, Path | None]], scale: int) -> dict:
    """What the cache was made from: every source file's name, size and modification time."""
    files = [[p.name, p.stat().st_size, p.stat().st_mtime_ns]
             for pair in paths for p in pair if p is not None]
    return {"version": VERSION, "scale": scale, "files": files}


class DecodedCache:
    """``pair(k)``: image k's ``(hr, lr)`` as read-only uint8 HxWx3 views of the mapped file."""

    def __init__(self, folder: Path, paths: list[tuple[Path, Path | None]], scale: int,
                 decode: Callable[[int], tuple[np.ndarray, np.ndarray]], progress: bool = False):
        key = _fingerprint(paths, scale)
        name = f"x{scale}-{hashlib.sha1(json.dumps(key).encode()).hexdigest()[:12]}"
        self.file, index_file = folder / f"{name}.u8", folder / f"{name}.json"
        index = json.loads(index_file.read_text()) if index_file.is_file() else {}
        if index.get("key") != key or not self.file.is_file():
            try:
                index = {"key": key, "layout": self._build(len(paths), decode, progress)}
                write_text_atomic(index_file, json.dumps(index))
            except OSError as err:
                raise ConfigError(f'key "dataset.cache": cannot write the decoded images to '
                                  f"{folder} ({err}); make it writable or set it to false") from err
        self.layout = index["layout"]  # per image: [hr offset, h, w, lr offset, h, w]
        self._mapped = None  # opened on first use in each process, never pickled

    def _build(self, count: int, decode, progress: bool) -> list[list[int]]:
        """Decode every pair (a few threads: PIL releases the GIL) and append it to the file,
        16 at a time, so that memory holds a few images, never the set."""
        layout, offset = [], 0
        with atomic_path(self.file) as tmp, open(tmp, "wb") as out, \
                ThreadPoolExecutor(max_workers=8) as pool, \
                tqdm(total=count, desc=f"decoding into {self.file}", unit="img",
                     disable=not progress) as bar:
            chunks = (range(k, min(k + 16, count)) for k in range(0, count, 16))
            for hr, lr in (pair for chunk in chunks for pair in pool.map(decode, chunk)):
                layout.append([offset, *hr.shape[:2], offset + hr.size, *lr.shape[:2]])
                out.write(np.ascontiguousarray(hr).tobytes())
                out.write(np.ascontiguousarray(lr).tobytes())
                offset += hr.size + lr.size
                bar.update(1)
        return layout

    def pair(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._mapped is None:
            self._mapped = np.memmap(self.file, dtype=np.uint8, mode="r")
        hr_at, hh, hw, lr_at, lh, lw = self.layout[k]
        return (self._mapped[hr_at:hr_at + hh * hw * 3].reshape(hh, hw, 3),
                self._mapped[lr_at:lr_at + lh * lw * 3].reshape(lh, lw, 3))

    def __getstate__(self) -> dict:
        """A spawned DataLoader worker maps the file itself, rather than receive a copy."""
        return {**self.__dict__, "_mapped": None}

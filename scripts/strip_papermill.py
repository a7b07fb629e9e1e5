#!/usr/bin/env python3
"""Remove papermill's traces from executed notebooks, in place, keeping their outputs.

    python scripts/strip_papermill.py notebooks/*.ipynb

scripts/run_pipeline.sh runs it on each notebook that `make notebooks` re-executes in place,
so that the committed notebooks hold outputs but nothing papermill added:
  - the cell tagged `injected-parameters` (it holds the values of `papermill -p`, such as the
    pipeline's `overwrite True`; opened by hand, it would override the parameters cell);
  - the notebook's `metadata.papermill` (paths, parameters, times);
  - every cell's `metadata.papermill` and `metadata.execution` (status and timestamps).
Everything else (sources, outputs, execution counts, tags, kernelspec) is kept, and the file
is written the way nbformat writes it (indent 1, sorted keys), so a second run changes nothing.
Standard library only.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

INJECTED_TAG = "injected-parameters"
CELL_KEYS = ("papermill", "execution")


def strip(nb: dict) -> dict:
    """The notebook ``nb`` (nbformat 4 JSON) without papermill's traces; changed in place."""
    nb.get("metadata", {}).pop("papermill", None)
    cells = []
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {})
        if INJECTED_TAG in meta.get("tags", []):
            continue
        for key in CELL_KEYS:
            meta.pop(key, None)
        cells.append(cell)
    nb["cells"] = cells
    return nb


def dumps(nb: dict) -> str:
    """nbformat's own layout (nbformat.writes), so that a diff shows only what changed."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def strip_file(path: Path) -> bool:
    """Strip ``path`` in place (atomically); True when it changed."""
    text = path.read_text(encoding="utf-8")
    new = dumps(strip(json.loads(text)))
    if new == text:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return True


def main(argv: list[str]) -> int:
    if not argv:
        print(f"usage: {sys.argv[0]} NOTEBOOK.ipynb...", file=sys.stderr)
        return 2
    for name in argv:
        changed = strip_file(Path(name))
        print(f"{name}: {'papermill traces removed' if changed else 'no papermill traces'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

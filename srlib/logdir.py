"""The folder a run owns. One run at a time: a ``flock`` on ``srlib.lock`` for the whole run, which
the kernel releases however the process dies. No run destroys another: an unfinished one resumes,
a finished one stays unless ``--overwrite``, only srlib's files (``OWN``, ``OWN_PATTERNS``) are
removed; a folder with other files, or srlib's names but no lock or srlib last.pt, is refused."""
import contextlib
import fcntl
import fnmatch
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from srlib import checkpoint
from srlib.config import Config, ConfigError

LOCK = "srlib.lock"
OWN = ("config.json", "metrics.jsonl", "last.pt", "best.pt", "scores.json", LOCK,
       "discriminator.pt")  # discriminator.pt: written by runs of srlib-checkpoint-v1
OWN_PATTERNS = ("events.out.tfevents.*", ".*.tmp")


def _own(name: str) -> bool:
    return name in OWN or any(fnmatch.fnmatch(name, p) for p in OWN_PATTERNS)


def _inspect(cfg: Config, overwrite: bool, say: bool) -> tuple[Config, bool]:
    """(config to run, whether srlib's old files go once it is built); refuses others' folders."""
    folder = Path(cfg.logdir)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f'key "logdir": {folder} is a file, not a folder')
    names = sorted(os.listdir(folder)) if folder.is_dir() else []
    if foreign := [n for n in names if not _own(n)]:
        raise ConfigError(f'key "logdir": {folder} holds files srlib did not write '
                          f"({', '.join(foreign[:4])}{', ...' if len(foreign) > 4 else ''}); "
                          "give each run a folder of its own")
    last = folder / "last.pt"
    if LOCK not in names and not all(n.endswith(".tmp") for n in names) \
            and checkpoint.training_state_format(last) is None:
        raise ConfigError(f'key "logdir": {folder} holds {", ".join(names[:4])} but no srlib.lock '
                          "or srlib checkpoint: not a run srlib made; choose another folder")
    if cfg.checkpoint is not None:  # --resume names what to continue
        return cfg, False
    if last.exists() and not overwrite:
        state = checkpoint.load(last)
        if state.get("finished", True):
            raise ConfigError(f'key "logdir": {folder} holds a finished run ({state["iteration"]} '
                              "iterations); set another logdir to keep it, or pass --overwrite "
                              "(train(..., overwrite=True)) to replace it")
        if say:
            print(f"resuming the unfinished run in {os.path.relpath(folder)} from iteration "
                  f"{state['iteration']}", flush=True)
        return replace(cfg, checkpoint=str(last)), False
    return cfg, True


@contextlib.contextmanager
def claim(cfg: Config, overwrite=False, is_main=True) -> Iterator[tuple[Config, bool]]:
    """Hold ``cfg.logdir`` for the block, yielding :func:`_inspect`'s answer; only rank 0 locks."""
    _inspect(cfg, overwrite, say=False)  # before the lock file is made in someone's folder
    if not is_main:
        yield _inspect(cfg, overwrite, say=False)
        return
    folder = Path(cfg.logdir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ConfigError(f'key "logdir": {folder} is in use by another run (PID {holder}); '
                              "wait for it to end, or choose another logdir") from None
        handle.seek(0)
        handle.truncate()
        print(os.getpid(), file=handle, flush=True)
        for leftover in folder.glob(".*.tmp"):  # of a save killed half-way: never a real file
            leftover.unlink(missing_ok=True)
        yield _inspect(cfg, overwrite, say=True)  # again, now that no one else can write here


def clear(logdir) -> None:
    """Remove the files srlib wrote for an earlier run in ``logdir`` (not the lock)."""
    for path in Path(logdir).iterdir():
        if _own(path.name) and path.name != LOCK and path.is_file():
            path.unlink()

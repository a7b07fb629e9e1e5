"""Batches as a pure function of (seed, iteration): lists of ``(index, sample_seed)``, indices
walking a per-epoch permutation, the seed drawing the item's crop and flips. Nothing depends on
the worker count or on earlier batches, so a resumed run (even after SIGKILL) sees the same data."""
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from srlib.data.device_batches import DeviceBatches

_MIX = 1_000_003


class IterationBatchSampler(Sampler):
    """Yields batches for iterations ``start .. total-1``. Under DDP each rank takes every
    ``world_size``-th item of the global batch: together they see the single-process batch."""

    def __init__(self, num_items: int, batch_size: int, seed: int, total: int, start: int = 0,
                 shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.n, self.batch, self.seed, self.total = num_items, batch_size, seed, total
        self.start, self.shuffle, self.rank, self.world = start, shuffle, rank, world_size
        self._perm_epoch, self._perm = -1, torch.arange(num_items)  # kept when not shuffling

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def _order(self, epoch: int) -> torch.Tensor:
        if self.shuffle and epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(self.seed * _MIX + epoch)
            self._perm_epoch, self._perm = epoch, torch.randperm(self.n, generator=gen)
        return self._perm

    def __iter__(self):
        for iteration in range(self.start, self.total):
            ks = range(iteration * self.batch, (iteration + 1) * self.batch)
            items = [(int(self._order(k // self.n)[k % self.n]), (self.seed * _MIX + k) % 2**63)
                     for k in ks]
            yield items[self.rank::self.world]


def make_batches(data: Dataset | DeviceBatches, params, seed: int, total: int, start: int = 0,
                 rank: int = 0, world_size: int = 1):
    """This rank's batches for iterations ``start .. total-1`` (``params``: the config's
    ``dataset.params``): a DataLoader over a dataset, or batches cut on the device."""
    sampler = IterationBatchSampler(len(data), params.batch_size, seed, total, start=start,
                                    shuffle=params.shuffle, rank=rank, world_size=world_size)
    if isinstance(data, DeviceBatches):
        return (data.batch(items) for items in sampler)
    workers = params.num_workers
    return DataLoader(data, batch_sampler=sampler, num_workers=workers,
                      pin_memory=params.pin_memory, persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None)

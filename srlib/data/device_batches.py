"""The training set as uint8 on the training device (DIV2K's sub-images: about 23.9 GB), with
batches cut there, since a CPU loader can fall behind a few-millisecond GPU step. Batches equal
the CPU loader's bit for bit, so exact resume and the DDP batch split work unchanged."""
import numpy as np
import torch
from tqdm import tqdm

from srlib.config import ConfigError
from srlib.data.augment import draw_patch_params
from srlib.data.datasets import PairedPatchDataset


class DeviceBatches:
    """Cuts training batches from a :class:`PairedPatchDataset` held on ``device`` as uint8."""

    def __init__(self, dataset: PairedPatchDataset, device, progress: bool = False):
        self.device = torch.device(device)
        self.scale, self.lr_size, self.augment = dataset.scale, dataset.lr_size, dataset.augment
        self.lr_hw = dataset.lr_hw
        if self.device.type == "cuda":  # refuse, before uploading, a set that leaves no room
            need = sum(3 * h * w * (1 + self.scale**2) for h, w in self.lr_hw)  # uint8 LR + HR
            free, total = torch.cuda.mem_get_info(self.device)
            if need > 0.8 * free:
                raise ConfigError(f'key "dataset.on_device": the training set in {dataset.root} '
                                  f"takes {need / 2**30:.1f} GiB as uint8, but {self.device} has "
                                  f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free; set "
                                  "dataset.on_device to false (CPU workers feed the GPU) or train "
                                  "on a card with more memory")
        self.lr_images, self.hr_images = [], []  # 3xHxW uint8 on the device
        # uint8 -> [0, 1] by table lookup, bit-identical to io.to_float_tensor (divided on the
        # CPU): CUDA divides as a multiply by the reciprocal, which rounds some levels otherwise
        self._levels = (torch.arange(256, dtype=torch.float32) / 255.0).to(self.device)
        for k in tqdm(range(len(dataset)), desc=f"uploading training set to {self.device}",
                      unit="img", disable=not progress):
            hr, lr = dataset.pair(k)
            self.hr_images.append(self._upload(hr))
            self.lr_images.append(self._upload(lr))

    def __len__(self) -> int:
        return len(self.lr_images)

    def _upload(self, image: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 -> contiguous 3xHxW on the device; np.require copies only a read-only
        array (torch cannot wrap those)."""
        t = torch.from_numpy(np.require(image, requirements="W")).permute(2, 0, 1)
        return t.contiguous().to(self.device)

    def batch(self, items: list[tuple[int, int]]) -> dict:
        """``{"lr", "hr"}`` float NCHW in [0, 1] on the device for ``(index, seed)`` items."""
        lr_patches, hr_patches, flips = [], [], []
        s, n = self.scale, self.lr_size
        for k, seed in items:
            y, x, flip = draw_patch_params(self.lr_hw[k], n, self.augment, seed)
            lr_patches.append(self.lr_images[k][:, y:y + n, x:x + n])
            hr_patches.append(self.hr_images[k][:, y * s:(y + n) * s, x * s:(x + n) * s])
            flips.append(flip)
        mask = torch.tensor(flips, dtype=torch.bool).to(self.device, non_blocking=True)
        return {"lr": self._levels[_dihedral(torch.stack(lr_patches), mask).long()],
                "hr": self._levels[_dihedral(torch.stack(hr_patches), mask).long()]}


def _dihedral(batch: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-item hflip, vflip, transpose (in ``augment.dihedral``'s order) where ``mask`` says;
    square patches keep the shape, so one masked select per transform does the batch."""
    for column, flip in enumerate((lambda b: b.flip(-1), lambda b: b.flip(-2),
                                   lambda b: b.transpose(-1, -2))):
        batch = torch.where(mask[:, column].view(-1, 1, 1, 1), flip(batch), batch)
    return batch

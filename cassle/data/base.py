"""Dataset containers shared by every reader in :mod:`cassle.data.datasets`.

Two storage kinds cover all datasets:

* :class:`TensorImageDataset` keeps images in memory as one ``uint8`` tensor
  ``N×C×H×W`` (CIFAR-100 is ~150 MB this way, not a float copy);
* :class:`FileImageDataset` keeps only file paths and decodes lazily.

Both expose the same read-only surface: ``targets`` (LongTensor, ``-1`` when
unlabelled), ``domains`` (LongTensor or ``None``), ``num_classes`` (``0`` when
unlabelled), ``channels``, ``__len__`` and ``get_image(i)`` which returns a
``uint8`` tensor ``C×H×W``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


class ImageDataset:
    """Common base: labels, optional domains and class names."""

    #: True when every image is a tensor in memory (batched augmentation applies).
    in_memory: bool = False

    def __init__(
        self,
        targets: torch.Tensor,
        num_classes: int,
        channels: int,
        domains: torch.Tensor | None = None,
        classes: Sequence[str] | None = None,
        domain_names: Sequence[str] | None = None,
    ) -> None:
        self.targets = torch.as_tensor(targets, dtype=torch.long)
        self.num_classes = int(num_classes)
        self.channels = int(channels)
        self.domains = None if domains is None else torch.as_tensor(domains, dtype=torch.long)
        self.classes = list(classes) if classes is not None else [str(c) for c in range(num_classes)]
        self.domain_names = list(domain_names) if domain_names is not None else None
        if self.domains is not None and len(self.domains) != len(self.targets):
            raise ValueError("domains and targets must have the same length")

    @property
    def labelled(self) -> bool:
        return self.num_classes > 0

    def __len__(self) -> int:
        return len(self.targets)

    def get_image(self, i: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class TensorImageDataset(ImageDataset):
    """Images held in memory as a ``uint8`` tensor ``N×C×H×W``."""

    in_memory = True

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, num_classes: int, **kw) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 N×C×H×W tensor, got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        super().__init__(targets, num_classes, channels=images.shape[1], **kw)
        self.images = images.contiguous()

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def get_image(self, i: int) -> torch.Tensor:
        return self.images[i]


class FileImageDataset(ImageDataset):
    """Images read lazily from files (JPEG/PNG/...), decoded to RGB ``uint8``."""

    def __init__(self, paths: Sequence[str | Path], targets: torch.Tensor, num_classes: int, **kw) -> None:
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} paths but {len(targets)} targets")
        super().__init__(targets, num_classes, channels=3, **kw)
        self.paths = [str(p) for p in paths]

    def get_image(self, i: int) -> torch.Tensor:
        """Image ``i`` decoded to RGB ``uint8`` ``3×H×W``; an unreadable or corrupt file raises
        :class:`~cassle.errors.DatasetError` naming it (in a loader worker too)."""
        return decode_file(self.paths[i])


def decode_file(path: str) -> torch.Tensor:
    """Decode one image file to RGB ``uint8`` ``3×H×W``, or one :class:`~cassle.errors.DatasetError` naming the
    file (torchvision's own error names none)."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    from cassle.errors import DatasetError

    try:
        return decode_image(read_file(path), mode=ImageReadMode.RGB)
    except (RuntimeError, OSError, ValueError) as e:
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise DatasetError(
            f"image {path} cannot be decoded ({detail}): the file is corrupt, truncated or not a JPEG/PNG. "
            "Replace it with a good copy and rerun the same command (it resumes); deleting it changes the task split "
            "instead, so start a new run then"
        ) from None

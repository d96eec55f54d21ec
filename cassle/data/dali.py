"""NVIDIA DALI loaders for folder datasets (``--dali``).

DALI decodes and augments JPEG/PNG files in a pipeline (on the GPU with
``device="mixed"`` decoding, or on the CPU when ``device_id`` is ``None``).
:class:`DaliLoader` wraps a pipeline into a plain Python iterable of torch
tensors with a ``len()``, so Lightning treats it like any loader:

* :func:`build_pretrain_loader` — ``num_views`` asymmetric SSL views, batches
  ``(indexes, [views], targets)`` exactly like the torch training loader.
* :func:`build_eval_loader` — resize (short side ``crop·256/224``) + centre
  crop + normalise, batches ``(images, targets)``.

Both read an explicit file list (``fn.readers.file(files=..., labels=...)``):
for the continual DataModule, the files of the current task. The reader's
label is the file's position in that list; the loader maps it back to the
dataset index (``indexes``) and the class (``targets``), so indexes stay
stable ids for replay. Under DDP each rank reads its shard
(``shard_id``/``num_shards``).

Epochs: the training loader yields exactly ``len(loader)`` full batches per
epoch, never an empty epoch (the DataModule's rule: drop the last partial
batch only when a full one remains; when the shard is smaller than a batch
the batch is the whole shard). Each loader epoch is one reader epoch: the
whole file list is reshuffled (seeded) and split between the shards, the
reader pads every shard to whole batches (so loader epochs and reader
epochs stay aligned), and a leftover partial training batch is read and
dropped, like ``drop_last``. The evaluation loader yields every file exactly
once per pass (the last batch may be smaller).

Augmentations (the per-sample path's family and probabilities):
``random_resized_crop`` (area ``[min_scale, max_scale]``, ratio ``[3/4, 4/3]``),
colour jitter with probability (``color_twist``, per-sample factors; identity
factors where the coin says no; DALI's fixed operation order, contrast
around mid-grey), grayscale (saturation 0), gaussian blur with per-sample
sigma in ``[0.1, 2]``, solarisation (threshold 128), horizontal flip and
normalisation in ``crop_mirror_normalize``. Blur and solarisation use DALI's
pipeline conditionals.

DALI is imported lazily; without it, :func:`require_dali` raises a
:class:`DaliUnavailableError` naming ``pip install 'cassle[dali]'``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from cassle.data.dali_loader import READER, DaliLoader, _to_torch  # noqa: F401  (re-exported)
from cassle.data.transforms import gaussian_kernel_size
from cassle.errors import DaliUnavailableError  # noqa: F401  (re-exported)

#: DALI reader name (used to query the reader's metadata).


def require_dali() -> Any:
    """Import and return ``nvidia.dali``; a clear error when it is missing."""
    try:
        import nvidia.dali as dali  # noqa: F401
        import nvidia.dali.fn  # noqa: F401
    except ImportError as e:
        raise DaliUnavailableError(
            f"--dali needs NVIDIA DALI, which is not importable ({e}): pip install 'cassle[dali]' "
            "(or pip install nvidia-dali-cuda120), or drop --dali to use the torch loaders"
        ) from None
    return dali


def _view_ops(
    images: Any, crop_size: int, mean: Sequence[float], std: Sequence[float], p: dict[str, float], fn: Any, types: Any
) -> Any:
    """The augmentations of one view on decoded ``HWC`` uint8 images (inside a pipeline definition)."""
    images = fn.random_resized_crop(
        images,
        size=[crop_size, crop_size],
        random_area=[float(p["min_scale"]), float(p["max_scale"])],
        random_aspect_ratio=[3.0 / 4.0, 4.0 / 3.0],
        interp_type=types.INTERP_CUBIC,
        antialias=True,
    )
    cj = fn.cast(fn.random.coin_flip(probability=float(p["color_jitter_prob"])), dtype=types.FLOAT)
    gray = fn.cast(fn.random.coin_flip(probability=float(p["grayscale_prob"])), dtype=types.FLOAT)

    def factor(spread: float) -> Any:
        f = fn.random.uniform(range=[max(0.0, 1.0 - spread), 1.0 + spread])
        return f * cj + (1.0 - cj)

    hue = fn.random.uniform(range=[-float(p["hue"]), float(p["hue"])]) * 360.0 * cj
    images = fn.color_twist(
        images,
        brightness=factor(float(p["brightness"])),
        contrast=factor(float(p["contrast"])),
        saturation=factor(float(p["saturation"])) * (1.0 - gray),
        hue=hue,
    )
    if float(p["gaussian_prob"]) > 0:
        if fn.random.coin_flip(probability=float(p["gaussian_prob"]), dtype=types.BOOL):
            images = fn.gaussian_blur(
                images, window_size=gaussian_kernel_size(crop_size), sigma=fn.random.uniform(range=[0.1, 2.0])
            )
    if float(p["solarization_prob"]) > 0:
        if fn.random.coin_flip(probability=float(p["solarization_prob"]), dtype=types.BOOL):
            mask = images >= 128
            images = fn.cast(mask * (255 - images) + (mask ^ True) * images, dtype=types.UINT8)
    flip = fn.random.coin_flip(probability=float(p["horizontal_flip_prob"]))
    return fn.crop_mirror_normalize(
        images,
        dtype=types.FLOAT,
        output_layout="CHW",
        mean=[255.0 * m for m in mean],
        std=[255.0 * s for s in std],
        mirror=flip,
    )


def _reader(files: Sequence[str], shard_id: int, num_shards: int, shuffle: bool, seed: int, fn: Any) -> tuple[Any, Any]:
    """File reader; label = position in ``files``. Shards are padded to whole batches, so epochs align with batches.

    Training (``shuffle``): the whole list is reshuffled after every epoch and then
    sharded (like Lightning's DistributedSampler: a global permutation split
    between ranks, no overlap); the first epoch's order is the (pre-shuffled) list.
    """
    return fn.readers.file(
        files=list(files),
        labels=list(range(len(files))),
        shard_id=shard_id,
        num_shards=num_shards,
        shuffle_after_epoch=shuffle,
        pad_last_batch=True,
        seed=seed,
        name=READER,
    )


def build_pretrain_pipeline(
    files: Sequence[str],
    batch_size: int,
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    view_params: Sequence[dict[str, float]],
    seed: int = 0,
    num_threads: int = 2,
    device_id: int | None = None,
    shard_id: int = 0,
    num_shards: int = 1,
) -> Any:
    """A built DALI pipeline with outputs ``(view_0, ..., view_{V-1}, label)``; label = position in ``files``."""
    require_dali()
    from nvidia.dali import fn, pipeline_def, types

    decode_device = "mixed" if device_id is not None else "cpu"

    @pipeline_def(enable_conditionals=True)
    def pipe() -> Any:
        jpegs, labels = _reader(files, shard_id, num_shards, True, seed, fn)
        images = fn.decoders.image(jpegs, device=decode_device, output_type=types.RGB)
        views = [_view_ops(images, crop_size, mean, std, dict(p), fn, types) for p in view_params]
        return (*views, labels)

    p = pipe(batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=seed + 1000 * shard_id)
    p.build()
    return p


def build_eval_pipeline(
    files: Sequence[str],
    batch_size: int,
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    num_threads: int = 2,
    device_id: int | None = None,
    shard_id: int = 0,
    num_shards: int = 1,
) -> Any:
    """A built DALI pipeline ``(image, label)``: resize short side to ``crop·256/224``, centre crop, normalise."""
    require_dali()
    from nvidia.dali import fn, pipeline_def, types

    decode_device = "mixed" if device_id is not None else "cpu"

    @pipeline_def
    def pipe() -> Any:
        jpegs, labels = _reader(files, shard_id, num_shards, False, 0, fn)
        images = fn.decoders.image(jpegs, device=decode_device, output_type=types.RGB)
        images = fn.resize(
            images, resize_shorter=float(round(crop_size * 256 / 224)), interp_type=types.INTERP_CUBIC, antialias=True
        )
        images = fn.crop_mirror_normalize(
            images,
            dtype=types.FLOAT,
            output_layout="CHW",
            crop=(crop_size, crop_size),
            mean=[255.0 * m for m in mean],
            std=[255.0 * s for s in std],
        )
        return images, labels

    p = pipe(batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=0)
    p.build()
    return p


def shard_range(num_files: int, shard_id: int, num_shards: int) -> tuple[int, int]:
    """Positions ``[start, end)`` of the files that DALI's reader gives shard ``shard_id``."""
    return num_files * shard_id // num_shards, num_files * (shard_id + 1) // num_shards


def _check_lists(files: Sequence[str], targets: torch.Tensor, indexes: torch.Tensor) -> None:
    if len(files) == 0:
        raise ValueError("a DALI loader needs at least one file; the task has no training images")
    if len(files) != len(targets) or len(files) != len(indexes):
        raise ValueError(f"{len(files)} files but {len(targets)} targets and {len(indexes)} indexes")


def pretrain_num_batches(num_files: int, batch_size: int, num_shards: int = 1) -> tuple[int, int]:
    """``(batches per epoch, pipeline batch size)`` of the training loader on each shard.

    Every rank gets the same count (``ceil(num_files / num_shards)`` samples each,
    as Lightning's DistributedSampler), drops the last partial batch only when a
    full one remains, and otherwise makes one batch of the whole shard.
    """
    per_shard = math.ceil(num_files / num_shards)
    if per_shard > batch_size:
        return per_shard // batch_size, batch_size
    return 1, per_shard


def build_pretrain_loader(
    files: Sequence[str],
    targets: torch.Tensor,
    indexes: torch.Tensor,
    batch_size: int,
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    view_params: Sequence[dict[str, float]],
    seed: int = 0,
    num_threads: int = 2,
    device_id: int | None = None,
    shard_id: int = 0,
    num_shards: int = 1,
) -> DaliLoader:
    """The DALI training loader: ``(indexes, [views], targets)`` batches of ``files``.

    ``targets[i]`` / ``indexes[i]`` are the class and dataset index of ``files[i]``.
    """
    targets = torch.as_tensor(targets, dtype=torch.long)
    indexes = torch.as_tensor(indexes, dtype=torch.long)
    _check_lists(files, targets, indexes)
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id must be in [0, {num_shards - 1}], got {shard_id}")
    n_batches, pipe_bs = pretrain_num_batches(len(files), batch_size, num_shards)
    # first epoch in a seeded random order (the reader reshuffles after each epoch); identical on every rank
    perm = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))
    files = [files[int(i)] for i in perm]
    indexes, targets = indexes[perm], targets[perm]
    pipe = build_pretrain_pipeline(
        files,
        pipe_bs,
        crop_size,
        mean,
        std,
        view_params,
        seed=seed,
        num_threads=num_threads,
        device_id=device_id,
        shard_id=shard_id,
        num_shards=num_shards,
    )
    return DaliLoader(pipe, indexes, targets, n_batches, train=True, files=files)


def build_eval_loader(
    files: Sequence[str],
    targets: torch.Tensor,
    batch_size: int,
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    num_threads: int = 2,
    device_id: int | None = None,
    shard_id: int = 0,
    num_shards: int = 1,
) -> DaliLoader:
    """The DALI evaluation loader: ``(images, targets)``, every file of this shard once per pass, in order."""
    targets = torch.as_tensor(targets, dtype=torch.long)
    _check_lists(files, targets, torch.arange(len(files)))
    start, end = shard_range(len(files), shard_id, num_shards)
    n = end - start
    if n == 0:
        raise ValueError(f"shard {shard_id} of {num_shards} has no files ({len(files)} files in all); use fewer shards")
    pipe = build_eval_pipeline(
        files,
        min(batch_size, n),
        crop_size,
        mean,
        std,
        num_threads=num_threads,
        device_id=device_id,
        shard_id=shard_id,
        num_shards=num_shards,
    )
    return DaliLoader(
        pipe,
        torch.arange(len(files)),
        targets,
        math.ceil(n / min(batch_size, n)),
        train=False,
        num_samples=n,
        files=files,
    )

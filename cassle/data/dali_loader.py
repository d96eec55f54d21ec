"""``DaliLoader``: a built DALI pipeline as a plain iterable of torch batches (see :mod:`cassle.data.dali`).

It keeps the reader's epochs aligned with Lightning's (a fixed ``len()``, an abandoned pass skipped), maps the
reader's file positions back to dataset indexes and classes, and turns DALI's decoding failure, whose message
names no file, into one :class:`~cassle.errors.DatasetError` naming the file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch

#: name of the file reader in every pipeline (its metadata gives the epoch size)
READER = "Reader"


def _to_torch(out: Any) -> torch.Tensor:
    """A DALI TensorList (CPU or GPU, uniform shape) as a torch tensor on the same device (a copy,
    on the current CUDA stream for GPU data), with DALI's own converter."""
    from nvidia.dali.plugin.pytorch.torch_utils import to_torch_tensor

    return to_torch_tensor(out.as_tensor(), copy=True)


class DaliLoader:
    """A DALI pipeline as a plain iterable of torch batches with a fixed ``len()``.

    Args:
        pipeline: a built pipeline whose last output is the file position label.
        indexes: dataset index of each file of the pipeline's list.
        targets: class of each file (``-1`` unlabelled).
        num_batches: batches per epoch (``len(self)``).
        train: ``True`` → ``(indexes, [views], targets)``; ``False`` →
            ``(images, targets)`` and the last batch is trimmed to the shard's
            real samples.
        num_samples: samples per epoch of this shard (used when ``train`` is ``False``).
        files: the pipeline's file list, to name the file DALI could not decode (its own error names none).
    """

    def __init__(
        self,
        pipeline: Any,
        indexes: torch.Tensor,
        targets: torch.Tensor,
        num_batches: int,
        train: bool,
        num_samples: int | None = None,
        files: Sequence[str] | None = None,
    ) -> None:
        if num_batches < 1:
            raise ValueError(f"a DALI loader needs at least one batch per epoch, got {num_batches}")
        self.pipeline = pipeline
        self.indexes = torch.as_tensor(indexes, dtype=torch.long)
        self.targets = torch.as_tensor(targets, dtype=torch.long)
        self.num_batches = int(num_batches)
        self.train = train
        self.num_samples = num_samples
        self.files = list(files) if files is not None else []
        self.batch_size = int(pipeline.max_batch_size)
        meta = pipeline.reader_meta(READER)
        shards = max(1, int(meta.get("number_of_shards", 1)))
        #: pipeline runs that make one reader epoch of this shard (shards are padded to whole batches)
        self.runs_per_epoch = math.ceil(int(meta["epoch_size_padded"]) / shards / self.batch_size)
        if self.runs_per_epoch < self.num_batches:
            raise ValueError(
                f"the DALI reader's epoch has {self.runs_per_epoch} batches per shard, fewer than the {self.num_batches} asked for"
            )

        self._left_in_epoch = 0  # reader batches still unread in the current reader epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[Any]:
        # a pass abandoned midway (e.g. limit_train_batches) left reader batches: skip them to realign epochs
        for _ in range(self._left_in_epoch):
            self._run()
        self._left_in_epoch = self.runs_per_epoch
        seen = 0
        for step in range(self.runs_per_epoch):
            outs = self._run()
            self._left_in_epoch -= 1
            if step >= self.num_batches:  # training: the reader's leftover partial batch is dropped
                continue
            pos = _to_torch(outs[-1]).view(-1).long().cpu()
            tensors = [_to_torch(o) for o in outs[:-1]]
            if not self.train:
                keep = self.batch_size if self.num_samples is None else min(self.batch_size, self.num_samples - seen)
                seen += keep
                yield tensors[0][:keep], self.targets[pos[:keep]]
            else:
                yield self.indexes[pos], tensors, self.targets[pos]
        # the reader's epoch is over: the next pass starts a new epoch (reshuffled for training)

    def _run(self) -> Any:
        """One pipeline run; a decoding failure becomes one :class:`~cassle.errors.DatasetError` naming the file."""
        try:
            return self.pipeline.run()
        except RuntimeError as e:
            if "decoder" not in str(e) and "ImageCodec" not in str(e):
                raise
            raise _undecodable(self.files, e) from None


def _undecodable(files: Sequence[str], error: RuntimeError) -> Exception:
    """The error for a DALI decoding failure: the first of ``files`` that does not decode, named (DALI's message
    names no file); DALI's own message when every file decodes elsewhere."""
    from cassle.data.base import decode_file
    from cassle.errors import DatasetError

    for path in files:  # only after a failure: the cost of a scan is paid once, by a run that stops anyway
        try:
            decode_file(path)
        except DatasetError as named:
            return named
    detail = " ".join(str(error).split())[:300]
    return DatasetError(f"DALI could not decode an image of this run ({detail}); rerun without --dali to find the file")

"""The Lightning DataModule of a continual run: dataset → task splits → loaders.

One :class:`ContinualDataModule` serves every task of a run (built from the run's typed
:class:`~cassle.config.DataConfig` / :class:`~cassle.config.AugmentationConfig` /
:class:`~cassle.config.ReplayConfig`, or from a flat dict with :meth:`ContinualDataModule.from_flat`);
the task loop calls :meth:`ContinualDataModule.set_task` before each ``trainer.fit``.

* :meth:`~ContinualDataModule.train_dataloader` — the current task's training samples, ``num_views``
  augmented views each, batches ``(indexes, [views], targets)``; ``indexes`` are positions in the
  underlying training dataset (stable ids for replay buffers). With ``return_raw`` (set for replay
  strategies) or ``online``, a fourth element ``extras`` is a dict: ``raw`` (``uint8`` ``B×C×R×R``
  un-augmented images, see :func:`cassle.data.replay.build_raw_transform`) and ``mb_pass``
  (``LongTensor[B]``, which of the ``--mb_passes`` passes over an online minibatch this is; always 0 offline).
* :meth:`~ContinualDataModule.val_dataloader` — the test samples of the tasks seen so far
  (``0..current``), eval transform, batches ``(images, targets)``.
* :meth:`~ContinualDataModule.eval_dataloader` / :meth:`~ContinualDataModule.joint_eval_dataloader` —
  unshuffled eval-transformed loaders for probes.

Under DDP the training loader shards itself: its :class:`~cassle.data.sampling.EpochShuffleSampler` gives
each rank a disjoint, equal-size share of the epoch's permutation (and, being a ``DistributedSampler``, is
left alone by Lightning); the evaluation loaders are sharded by Lightning.

Faster inputs (the batch reaching ``training_step`` keeps the same structure):

* ``gpu_augment`` (in-memory datasets only): the train loader yields raw ``uint8`` images
  ``(indexes, B×C×H×W, targets[, extras])`` (replay and online streams as above) and
  :meth:`~ContinualDataModule.on_after_batch_transfer` augments them on the batch's device with
  :class:`~cassle.data.batched_augment.BatchedAugment`.
* ``dali`` (folder datasets only): the train loader is a DALI pipeline over the current task's files
  (:mod:`cassle.data.dali`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from cassle.config import AugmentationConfig, DataConfig, ReplayConfig, upgrade_flat
from cassle.data.base import ImageDataset
from cassle.data.eval_loaders import EvalLoadersMixin
from cassle.data.input_paths import InputPathsMixin
from cassle.data.readers.common import IMAGENET_MEAN, IMAGENET_STD
from cassle.data.replay import OnlineBatchSampler, build_raw_transform
from cassle.data.sampling import EpochShuffleSampler, mix_seed
from cassle.data.splits import TaskSplit, make_splits, subsample_train
from cassle.data.subsets import AugmentedSubset, EvalSubset  # noqa: F401  (re-exported)
from cassle.data.transforms import build_eval_transform, build_multiview_transform


def resolve_mean_std(data: DataConfig) -> tuple[Sequence[float], Sequence[float]]:
    """Normalisation statistics: ``data.mean`` / ``data.std`` if both are given, else the dataset's, else
    ImageNet's."""
    if isinstance(data, Mapping):
        raise TypeError("resolve_mean_std takes a DataConfig: DataConfig.from_flat(upgrade_flat(cfg)) for a flat dict")
    if data.mean is not None and data.std is not None:
        return tuple(data.mean), tuple(data.std)
    from cassle.data.datasets import DATASETS

    info = DATASETS.get(data.dataset)
    if info is not None:
        return tuple(info.mean), tuple(info.std)
    return IMAGENET_MEAN, IMAGENET_STD


class ContinualDataModule(InputPathsMixin, EvalLoadersMixin, L.LightningDataModule):
    """Dataset, task split and loaders of a continual run.

    Args:
        data: :class:`~cassle.config.DataConfig` (``data_cfg``): ``dataset``, ``data_dir``,
            ``num_tasks``, ``split_strategy``, ``seed``, ``batch_size``, ``num_workers``,
            ``crop_size`` (``None``: the dataset's image size), ``no_labels``, ``num_views``,
            ``return_raw``, ``domain_order`` (domain ids or names), ``train_fraction`` (keep a
            seeded, class-stratified fraction of every task's training samples, for SSL training
            and the probes' training features alike; the test split is untouched), ``mean`` /
            ``std`` overriding the dataset's, and ``gpu_augment`` / ``dali`` choosing the
            training input path.
        augmentation: :class:`~cassle.config.AugmentationConfig` (``aug_cfg``) of the training
            views, one value shared by every view or one per view (``None``: the defaults).
        replay: :class:`~cassle.config.ReplayConfig` (``replay_cfg``): ``online`` and
            ``mb_passes`` of the training stream (``None``: the defaults).
        train_dataset: use this dataset instead of loading ``data.dataset``.
        test_dataset: the matching test set (``None``: no test set, unless
            ``train_dataset`` is also ``None``, in which case it is loaded).

    A flat configuration dict (a parsed command line, an ``args.json``) goes through :meth:`from_flat`.

    The dataset is loaded and split lazily, on first use (``setup`` or any
    property), so construction is cheap.
    """

    def __init__(
        self,
        data: DataConfig,
        augmentation: AugmentationConfig | None = None,
        replay: ReplayConfig | None = None,
        train_dataset: ImageDataset | None = None,
        test_dataset: ImageDataset | None = None,
    ) -> None:
        if not isinstance(data, DataConfig):  # an old call site's flat dict fails here, loudly
            raise TypeError(
                f"ContinualDataModule takes a DataConfig, not a {type(data).__name__}: build it from a flat "
                "configuration dict with ContinualDataModule.from_flat(cfg)"
            )
        super().__init__()
        #: the typed settings (defaults: the command line's, cassle.config)
        self.data_cfg: DataConfig = data
        self.aug_cfg: AugmentationConfig = augmentation if augmentation is not None else AugmentationConfig()
        self.replay_cfg: ReplayConfig = replay if replay is not None else ReplayConfig()
        self.batch_size = self.data_cfg.batch_size
        self.num_workers = self.data_cfg.num_workers
        self.seed = self.data_cfg.seed
        self.num_views = self.data_cfg.num_views
        self._train_dataset = train_dataset
        self._test_dataset = test_dataset
        self._split: TaskSplit | None = None
        self._current_task = 0
        self._train_targets: torch.Tensor | None = None
        self._test_targets: torch.Tensor | None = None
        self.gpu_augment = self.data_cfg.gpu_augment
        self.dali = self.data_cfg.dali
        self._batched_augment: Any | None = None

    @classmethod
    def from_flat(
        cls,
        cfg: Mapping[str, Any],
        train_dataset: ImageDataset | None = None,
        test_dataset: ImageDataset | None = None,
    ) -> ContinualDataModule:
        """The data module of a flat configuration (a parsed command line, an ``args.json`` of any version, a
        test's dict): its data, augmentation and replay configs, missing keys at their defaults."""
        flat = upgrade_flat(cfg)
        return cls(
            DataConfig.from_flat(flat),
            AugmentationConfig.from_flat(flat),
            ReplayConfig.from_flat(flat),
            train_dataset=train_dataset,
            test_dataset=test_dataset,
        )

    # ------------------------------------------------------------------ setup
    def _dataset_info(self) -> Any:
        from cassle.data.datasets import DATASETS

        return DATASETS.get(self.data_cfg.dataset)

    def _ensure_setup(self) -> None:
        if self._split is not None:
            return
        if self._train_dataset is None:
            from cassle.data.datasets import load_dataset

            name, data_dir = self.data_cfg.dataset, self.data_cfg.data_dir
            no_labels = self.data_cfg.no_labels
            self._train_dataset = load_dataset(name, data_dir, train=True, no_labels=no_labels)
            self._test_dataset = load_dataset(name, data_dir, train=False, no_labels=no_labels)
        train, test = self._train_dataset, self._test_dataset
        assert train is not None
        unlabelled = self.data_cfg.no_labels or not train.labelled
        self._labelled = not unlabelled
        self._train_targets = torch.full_like(train.targets, -1) if unlabelled else train.targets
        if test is not None:
            self._test_targets = torch.full_like(test.targets, -1) if unlabelled else test.targets
        self._split = make_splits(
            self._train_targets,
            self._test_targets,
            num_tasks=self.data_cfg.num_tasks,
            strategy=self.data_cfg.split_strategy,
            seed=self.seed,
            train_domains=train.domains,
            test_domains=None if test is None else test.domains,
            domain_order=self._resolve_domain_order(train),
        )
        fraction = self.data_cfg.train_fraction
        if fraction is not None and float(fraction) != 1.0:
            self._split = subsample_train(self._split, self._train_targets, float(fraction), self.seed)

    def _resolve_domain_order(self, train: ImageDataset) -> list[int] | None:
        order = [o.strip() for o in self.data_cfg.domain_order or () if o.strip()]  # names or ids, as strings
        if not order:
            return None
        out: list[int] = []
        names = train.domain_names or []
        for o in order:
            if not o.lstrip("-").isdigit():
                if o not in names:
                    raise ValueError(f"domain_order names domain {o!r}, but the dataset's domains are {names}")
                out.append(names.index(o))
            else:
                out.append(int(o))
        return out

    def setup(self, stage: str | None = None) -> None:
        """Load the datasets (if not given), compute the task split and check the input path."""
        self._ensure_setup()
        if self.gpu_augment or self.dali:
            self.check_input_path()
        if self.dali:
            from cassle.data.dali import require_dali

            require_dali()

    # ------------------------------------------------------------ properties
    @property
    def train_dataset(self) -> ImageDataset:
        """The full training dataset."""
        self._ensure_setup()
        assert self._train_dataset is not None
        return self._train_dataset

    @property
    def test_dataset(self) -> ImageDataset | None:
        """The full test dataset, or ``None`` when there is none."""
        self._ensure_setup()
        return self._test_dataset

    @property
    def split(self) -> TaskSplit:
        """The :class:`~cassle.data.splits.TaskSplit` of this run."""
        self._ensure_setup()
        assert self._split is not None
        return self._split

    @property
    def num_tasks(self) -> int:
        return self.split.num_tasks

    @property
    def num_classes(self) -> int:
        """Number of classes; ``0`` when unlabelled (no classifier head, probes skipped)."""
        self._ensure_setup()
        return self.train_dataset.num_classes if self._labelled else 0

    @property
    def task_classes(self) -> list[list[int]]:
        return self.split.task_classes

    @property
    def current_task(self) -> int:
        return self._current_task

    @property
    def has_test(self) -> bool:
        """Whether a test set exists."""
        return self.test_dataset is not None

    def set_task(self, task: int) -> None:
        """Select the task served by :meth:`train_dataloader` / :meth:`val_dataloader`."""
        if not isinstance(task, int) or isinstance(task, bool) or not 0 <= task < self.num_tasks:
            raise ValueError(f"task must be an int in [0, {self.num_tasks - 1}], got {task!r}")
        self._current_task = task

    # ------------------------------------------------------------ transforms
    def _mean_std(self) -> tuple[Sequence[float], Sequence[float]]:
        return resolve_mean_std(self.data_cfg)

    def _image_size(self) -> int | None:
        size = getattr(self.train_dataset, "image_size", None)
        if size is None:
            info = self._dataset_info()
            size = None if info is None else info.image_size
        return None if size is None else int(size)

    def _crop_size(self) -> int:
        crop = self.data_cfg.crop_size
        if crop is None:
            crop = self._image_size() or 224
        return int(crop)

    def train_transform(self) -> Callable[[torch.Tensor], list[torch.Tensor]]:
        """The ``num_views``-view augmentation of the configuration."""
        mean, std = self._mean_std()
        return build_multiview_transform(self.aug_cfg, self._crop_size(), self.num_views, mean, std)

    def _view_params(self) -> list[dict[str, float]]:
        from cassle.data.transforms import per_view_values

        return per_view_values(self.aug_cfg, self.num_views)

    def eval_transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Deterministic resize / centre-crop + normalise."""
        mean, std = self._mean_std()
        return build_eval_transform(self._crop_size(), mean, std, self._image_size())

    # --------------------------------------------------------------- loaders
    def _world_size(self) -> int:
        trainer = getattr(self, "trainer", None)
        return max(1, int(getattr(trainer, "world_size", 1) or 1)) if trainer is not None else 1

    @staticmethod
    def _per_rank(num_samples: int, world_size: int) -> int:
        """Samples each of ``world_size`` ranks trains on per epoch (:class:`EpochShuffleSampler`'s shards)."""
        return max(1, num_samples // world_size) if num_samples else 0

    def _drop_last(self, num_samples: int, world_size: int = 1) -> bool:
        """Drop the last partial batch only when a full batch remains (never an empty epoch)."""
        return self._per_rank(num_samples, world_size) > self.batch_size

    def steps_per_epoch(self, task: int | None = None, world_size: int = 1) -> int:
        """Number of training batches per epoch of ``task`` (default: current) on each of ``world_size`` devices."""
        task = self._current_task if task is None else task
        if not 0 <= task < self.num_tasks:
            raise ValueError(f"task must be in [0, {self.num_tasks - 1}], got {task}")
        online, mb_passes = self.replay_cfg.online, self.replay_cfg.mb_passes
        if online:
            return len(
                OnlineBatchSampler(len(self.split.train_indices[task]), self.batch_size, mb_passes, 0, 0, world_size)
            )
        n = self._per_rank(len(self.split.train_indices[task]), world_size)
        return n // self.batch_size if self._drop_last(n) else max(1, math.ceil(n / self.batch_size))

    def _global_rank(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(getattr(trainer, "global_rank", 0) or 0) if trainer is not None else 0

    def resume_at(self, epoch: int) -> None:
        """The next fit starts at ``epoch`` (a resumed task; 0 otherwise): Lightning builds the first loader
        iterator of a fit before it restores its epoch counter, so the first epoch's order is keyed on this."""
        self._first_epoch = int(epoch)

    def _fit_epoch(self) -> int:
        """The epoch the attached trainer is about to train: its fit loop's counter, at least the epoch the
        fit resumes at (:meth:`resume_at`)."""
        trainer = getattr(self, "trainer", None)
        loop = getattr(trainer, "fit_loop", None) if trainer is not None else None
        processed = int(loop.epoch_progress.current.processed) if loop is not None else 0
        return max(processed, getattr(self, "_first_epoch", 0))

    def start_epoch(self, epoch: int) -> None:
        """Called by the task loop before every training epoch: the batched augmentation (``--gpu_augment``)
        restarts from ``(seed, task, rank, epoch)``, so an epoch's draws do not depend on the epochs before
        (a resumed run repeats them exactly)."""
        if self.gpu_augment:
            self.batched_augment.reseed(mix_seed(self.seed, self._current_task, self._global_rank(), epoch))

    def train_dataloader(self) -> Any:
        """The current task's training samples with ``num_views`` augmented views.

        With ``gpu_augment`` the loader yields raw ``uint8`` images (augmented in
        :meth:`on_after_batch_transfer`); with ``dali`` it is a
        :class:`~cassle.data.dali.DaliLoader`. Offline: shuffled epochs. ``online``: an
        :class:`~cassle.data.replay.OnlineBatchSampler` stream (order from ``seed + task``)
        repeating each minibatch ``mb_passes`` times.
        """
        task = self._current_task
        indices = self.split.train_indices[task]
        assert self._train_targets is not None
        online, return_raw, mb_passes = self.replay_cfg.online, self.data_cfg.return_raw, self.replay_cfg.mb_passes
        if self.gpu_augment or self.dali:
            self.check_input_path()
        if self.dali:
            return self._dali_train_loader(task, indices)
        if self.gpu_augment:
            self.start_epoch(0)
        raw_transform = build_raw_transform(self._crop_size(), self._image_size()) if return_raw else None
        ds = AugmentedSubset(
            self.train_dataset,
            indices,
            None if self.gpu_augment else self.train_transform(),
            self._train_targets,
            raw_transform=raw_transform,
            extras=online,
            seed=mix_seed(self.seed, task, self._global_rank()),
        )
        if online:
            trainer = getattr(self, "trainer", None)
            rank = int(getattr(trainer, "global_rank", 0) or 0) if trainer is not None else 0
            sampler = OnlineBatchSampler(
                len(ds), self.batch_size, mb_passes, self.seed + task, rank, self._world_size()
            )
            return DataLoader(
                ds,
                batch_sampler=sampler,
                generator=torch.Generator().manual_seed(mix_seed(self.seed, task, 2)),  # workers' base seed
                num_workers=self.num_workers,
                persistent_workers=self.num_workers > 0,
                pin_memory=torch.cuda.is_available(),
            )
        # the order of each epoch drawn from (seed, task, epoch) alone, this rank's shard of it under DDP
        # (a DistributedSampler: Lightning keeps it)
        sampler = EpochShuffleSampler(
            len(ds), mix_seed(self.seed, task), self._fit_epoch, self._global_rank(), self._world_size()
        )
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            # the loader draws its workers' base seed from here, not from the global RNG (whose draws
            # would then depend on when Lightning creates the iterator: earlier in a resumed fit)
            generator=torch.Generator().manual_seed(mix_seed(self.seed, task, 2)),
            drop_last=self._drop_last(len(ds), self._world_size()),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

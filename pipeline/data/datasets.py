"""Videos of a feature folder paired with their :class:`Supervision`, as per-snippet targets, and padded batches.

Supervision lives in seconds; here it becomes snippet targets through the features' :class:`FeatureGeometry` (the
only seconds <-> snippet mapping), one array per target kind of the registry (:mod:`~clicktal.pipeline.data.targets`,
which lists them). A :class:`VideoItem` holds one whole video, or one sample of it drawn by the temporal sampling
stage (:mod:`clicktal.pipeline.data.sampling`, which moves every target with the features); :func:`collate` pads a
list of them into a :class:`Batch` with masks. Items and batches carry their targets in ``targets`` (kind ->
array) and nowhere else. A dataset builds the kinds it is told to (a run's: the kinds its method declares, ``Method.targets``;
default: ``DEFAULT_KINDS``), ``frames`` with ``data.labels.frame_targets``, the kinds they require, and nothing
else.

Which labels a run trains from is :class:`~clicktal.pipeline.data.labels.LabelConfig` (``data.labels``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.annotations import GroundTruth, load_ground_truth
from clicktal.pipeline.data.config import DataConfig
from clicktal.pipeline.data.cache import FeatureSource, SynthSource
from clicktal.pipeline.data.formats import open_features
from clicktal.pipeline.data.contract import FeatureContract, source_contract
from clicktal.pipeline.data.labels import LabelSet, training_supervision
from clicktal.pipeline.data.normalize import Normalization, fit_normalization, normalized
from clicktal.pipeline.data.provenance import check_sources
from clicktal.pipeline.data.sampling import SampleGrid, Sampler, resample_features, whole_grid
from clicktal.pipeline.data.supervision import Supervision
from clicktal.pipeline.data.targets import (DEFAULT_KINDS, build_targets, frame_labels, pad, segment_snippets,
                                            target_kind, with_requirements)

# the keywords the first Batch took, one per target kind or row mask; the constructor still accepts them
NAMED_TARGETS = {"video_labels": "video_labels", "action_targets": "actions", "anchor_mask": "anchors",
                 "background_mask": "background", "click_targets": "clicks", "segment_targets": "segments",
                 "boundary_targets": "boundaries", "frame_targets": "frames", "truth_targets": "truth"}
NAMED_MASKS = {"action_mask": "actions", "segment_mask": "segments", "boundary_mask": "boundaries",
               "frame_mask": "frames"}


@dataclass(eq=False)
class VideoItem:
    """One video, or one sample of it (``grid`` says which native snippets it stands for; default: the whole
    video): its features ``[T, D]`` and ``targets`` (kind -> array on the sample's grid; see
    :mod:`~clicktal.pipeline.data.targets`)."""

    video_id: str
    features: np.ndarray
    geometry: FeatureGeometry  # the native grid of the video's features
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    grid: SampleGrid | None = None

    def __post_init__(self) -> None:
        self.targets = dict(self.targets)
        if self.grid is None:
            self.grid = whole_grid(self.geometry, self.length)

    @property
    def length(self) -> int:
        return int(self.features.shape[0])

    def sample(self, positions: np.ndarray) -> "VideoItem":
        """This (whole) video at native snippet ``positions`` ``[L]`` (:meth:`on_grid`)."""
        return self.on_grid(SampleGrid(self.geometry, np.asarray(positions, np.float64), self.length))

    def on_grid(self, grid: SampleGrid) -> "VideoItem":
        """This (whole) video on the sample grid ``grid``: features interpolated, every target kind moved as its
        kind says (:mod:`~clicktal.pipeline.data.sampling`)."""
        moved = {name: target_kind(name).moved(self.targets, grid) for name in self.targets}
        return VideoItem(self.video_id, resample_features(self.features, grid), geometry=self.geometry, grid=grid,
                         targets=moved)

    def action_content(self, positions: np.ndarray) -> tuple[float | None, int]:
        """(action fraction, majority class) of the native snippets ``positions``: over their frames when the video
        has frame labels, else over the snippets its boundaries label; ``(None, -1)`` with neither; class -1 for a
        stretch without action."""
        idx = np.asarray(positions, np.int64)
        frames, boundaries = self.targets.get("frames"), self.targets.get("boundaries")
        if frames is not None:
            f = self.geometry.frames_per_snippet
            labels = frames[(idx[:, None] * f + np.arange(f)).reshape(-1), 1:]
            counts = labels.sum(axis=0, dtype=np.int64)
            fraction = float(labels.any(axis=1).mean())
        elif boundaries is not None and boundaries.any():
            rows = boundaries[idx]
            counts, fraction = rows.sum(axis=0), float((rows.sum(axis=1) > 0).mean())
        else:
            return None, -1
        return fraction, int(counts.argmax()) if counts.any() else -1




@dataclass
class TrainingContext:
    """What a model's training hook may use: the training videos one at a time, whole (no sampling), the device."""

    iter_videos: Callable[[], Iterator[VideoItem]]
    device: torch.device


@dataclass(init=False, eq=False)
class Batch:
    """Padded samples. ``features [B, T, D]``, ``mask [B, T]`` (True on real snippets), ``offsets [B]`` (the first
    native snippet of each crop or window; -1 for other grids), ``lengths [B]``, ``grids``: each sample's
    :class:`SampleGrid`; ``targets``: kind -> tensor (``[B, C]`` per video, ``[B, T, ...]`` per snippet, ``[B, F,
    ...]`` per frame; frames each row a distribution over background and the classes of the instances holding it)
    for the kinds every sample has; ``masks``: kind -> ``[B, T]`` (or ``[B, F]``) the rows holding a label, for the
    kinds with a row mask.

    A kind with a row mask and no mask given gets the rows of its tensor holding a label. The constructor also takes
    the first Batch's keywords (``video_labels=``, ``action_targets=``, ``action_mask=``, ...: ``NAMED_TARGETS``,
    ``NAMED_MASKS``) and stores each as its kind; a batch has no attributes of those names."""

    video_ids: list[str]
    features: torch.Tensor
    mask: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor
    grids: list[SampleGrid] | None
    targets: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]

    def __init__(self, video_ids: list[str], features: torch.Tensor, mask: torch.Tensor, *, offsets: torch.Tensor,
                 lengths: torch.Tensor, grids: list[SampleGrid] | None = None,
                 targets: Mapping[str, torch.Tensor] | None = None, masks: Mapping[str, torch.Tensor] | None = None,
                 **named: torch.Tensor | None):
        unknown = sorted(set(named) - set(NAMED_TARGETS) - set(NAMED_MASKS))
        if unknown:
            raise TypeError(f"Batch got unexpected keyword(s) {', '.join(unknown)}")
        self.video_ids, self.features, self.mask = video_ids, features, mask
        self.offsets, self.lengths, self.grids = offsets, lengths, grids
        self.targets, self.masks = dict(targets or {}), dict(masks or {})
        for name, value in named.items():
            if value is not None:
                (self.targets if name in NAMED_TARGETS else self.masks)[{**NAMED_TARGETS, **NAMED_MASKS}[name]] = value
        for name, values in self.targets.items():
            if name not in self.masks and target_kind(name).row_mask:
                self.masks[name] = values.sum(-1) > 0

    def to(self, device: torch.device | str) -> "Batch":
        move = lambda v: v.to(device) if isinstance(v, torch.Tensor) else v
        return Batch(self.video_ids, move(self.features), move(self.mask), offsets=move(self.offsets),
                     lengths=move(self.lengths), grids=self.grids,
                     targets={k: move(v) for k, v in self.targets.items()},
                     masks={k: move(v) for k, v in self.masks.items()})




def make_item(video_id: str, features: np.ndarray, geometry: FeatureGeometry, supervision: Supervision,
              classes: Sequence[str], *, with_frame_labels: bool = False, kinds: Iterable[str] | None = None
              ) -> VideoItem:
    """Per-snippet targets of one video from its :class:`Supervision` (seconds -> snippets via ``geometry``): the
    target kinds ``kinds`` (default: ``DEFAULT_KINDS``, with ``frames`` when ``with_frame_labels``) and the kinds
    they require."""
    kinds = requested_kinds(kinds, frames=with_frame_labels)
    targets = build_targets(video_id, supervision, geometry, int(features.shape[0]), classes, kinds)
    return VideoItem(video_id, features, geometry=geometry, targets=targets)


def requested_kinds(kinds: Iterable[str] | None, *, frames: bool = False) -> tuple[str, ...]:
    """``kinds`` (checked against the registry), or the default ones (with ``frames`` when asked for)."""
    if kinds is None:
        return DEFAULT_KINDS + (("frames",) if frames else ())
    kinds = tuple(kinds)
    for name in kinds:
        target_kind(name)
    return kinds + (("frames",) if frames and "frames" not in kinds else ())


class VideoDataset:
    """The videos of ``supervision`` found in ``source``, as :class:`VideoItem` (whole videos).

    ``preload`` copies the features into memory (fast batches); otherwise they stay memory-mapped. Each item
    carries the target kinds ``kinds`` (default: ``DEFAULT_KINDS``, with ``frames`` when ``frame_labels``) and the
    kinds they require, and no other.
    """

    def __init__(self, source: FeatureSource, supervision: dict[str, Supervision], classes: Sequence[str], *,
                 preload: bool = True, video_ids: Iterable[str] | None = None, frame_labels: bool = False,
                 kinds: Iterable[str] | None = None):
        available = set(source.ids())
        wanted = sorted(video_ids if video_ids is not None else supervision)
        missing = [v for v in wanted if v not in available]
        if missing:
            raise FileNotFoundError(f"{len(missing)} videos have no features in {getattr(source, 'root', source)}: "
                                    f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        self.source = source
        self.supervision = supervision
        self.classes = list(classes)
        self.ids = wanted
        self.preload = preload
        self.kinds = requested_kinds(kinds, frames=frame_labels)
        self._cache: dict[str, VideoItem] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def item(self, video_id: str) -> VideoItem:
        if video_id in self._cache:
            return self._cache[video_id]
        feats, meta = self.source.load(video_id)
        if self.preload:
            feats = np.array(feats, dtype=np.float32)
        item = make_item(video_id, feats, meta.geometry, self.supervision[video_id], self.classes, kinds=self.kinds)
        if self.preload:
            self._cache[video_id] = item
        return item

    def __getitem__(self, i: int) -> VideoItem:
        return self.item(self.ids[i])

    def __iter__(self):
        for vid in self.ids:
            yield self.item(vid)

    @property
    def feature_dim(self) -> int:
        return int(self[0].features.shape[1]) if self.ids else 0


def collate(items: Sequence[VideoItem]) -> Batch:
    """Pad ``items`` (whole videos or samples) to the longest; the target kinds every item has, each collated as
    its kind says (a kind some items lack is left out)."""
    L = max(it.length for it in items)
    targets, masks = {}, {}
    for name in items[0].targets:
        if all(name in it.targets for it in items):
            targets[name], mask = target_kind(name).collate([it.targets[name] for it in items], L)
            if mask is not None:
                masks[name] = mask
    return Batch([it.video_id for it in items], torch.from_numpy(pad([it.features for it in items], L, np.float32)),
                 torch.from_numpy(pad([np.ones(it.length, bool) for it in items], L, bool)),
                 offsets=torch.tensor([it.grid.offset for it in items], dtype=torch.long),
                 lengths=torch.tensor([it.length for it in items], dtype=torch.long), grids=[it.grid for it in items],
                 targets=targets, masks=masks)


def sample_batch(dataset: VideoDataset, batch_size: int, rng: np.random.Generator, sampler: Sampler, *,
                 iteration: int = 0) -> Batch:
    """One training batch of iteration ``iteration``: ``sampler``'s training samples of ``batch_size`` videos (or
    windows), padded."""
    return collate(sampler.train_items(dataset, batch_size, rng, iteration=iteration))


def batch_rng(seed: int, iteration: int) -> np.random.Generator:
    """The generator for one training iteration's batch: a pure function of (seed, iteration), so that a resumed
    run draws exactly the batches an uninterrupted one does."""
    return np.random.default_rng([int(seed), int(iteration), 0x5F5E])


# ---------------------------------------------------------------------------------------------------- labels


def split_holdout(video_ids: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out) split of the training subset; ``fraction`` 0 holds nothing out."""
    ids = sorted(video_ids)
    if fraction <= 0:
        return ids, []
    if not fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng([seed, 0x7A1])
    n_val = max(1, int(round(fraction * len(ids))))
    val = set(rng.choice(ids, size=n_val, replace=False).tolist())
    return [v for v in ids if v not in val], sorted(val)


def resolve_ground_truth(cfg: DataConfig, source: FeatureSource) -> GroundTruth:
    """``cfg.ground_truth``, or the synthesizer's ``annotations.json`` beside the features, or the ground truth of a
    W-TALC release's annotation arrays."""
    if cfg.ground_truth:
        return load_ground_truth(cfg.ground_truth)
    if isinstance(source, SynthSource):
        return load_ground_truth(source.annotations_path)
    if callable(getattr(source, "ground_truth", None)):
        return source.ground_truth()
    raise ValueError("data.ground_truth is empty and the features carry no ground truth (the synthesizer's folder "
                     "and a W-TALC release do)")


def open_data_features(cfg: DataConfig) -> FeatureSource:
    """The feature source ``cfg`` names, read in its layout."""
    if not cfg.features:
        raise ValueError("data.features is empty: give a feature folder (config or --features)")
    return open_features(Path(os.path.expanduser(cfg.features)), format=cfg.feature_format,
                         layout=cfg.feature_layout, annotations=cfg.ground_truth or None)


@dataclass
class DataBundle:
    """Everything a run reads: the ground truth, class list, the training / held-out / test datasets, the feature
    contract every one of their videos shares, the labels read for training, and the ground-truth videos of each
    subset that have no features (left out of training; scored as misses in test mAP)."""

    gt: GroundTruth
    classes: list[str]
    source: FeatureSource
    train: VideoDataset
    val: VideoDataset | None
    test_ids: list[str]
    contract: FeatureContract
    labels: LabelSet
    without_features: dict[str, list[str]] = field(default_factory=dict)
    changed_sources: dict[str, str] = field(default_factory=dict)
    normalization: Normalization = field(default_factory=Normalization)

    def missing_summary(self, where: str) -> str | None:
        """One line counting and naming the ground-truth videos without features in ``where``, or None."""
        parts = [f"{len(ids)} of the {len(self.gt.subset(subset))} {subset!r} videos "
                 f"({', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''})"
                 for subset, ids in self.without_features.items() if ids]
        if not parts:
            return None
        return (f"{where}: no features for {'; '.join(parts)}: left out of training, and scored as "
                f"misses in test mAP; the lists are in run_meta.json and results.json")


def load_data(cfg: DataConfig, *, seed: int, kinds: Iterable[str] | None = None,
              contract: FeatureContract | None = None, normalization: Normalization | None = None,
              note=None) -> DataBundle:
    """Open the features and labels of ``cfg``. Test videos are listed, never given labels here. The training and
    held-out datasets build the target kinds ``kinds`` (a run's method's; default ``DEFAULT_KINDS``), with what
    ``cfg`` itself reads: ``frames`` with ``labels.frame_targets``, and ``boundaries`` when the training windows are
    chosen by their action content and there are no frames to measure it on. Every video used
    must share one feature contract, and ``contract`` (a trained run's) when given; an error names the video and
    the field that differs. Before any training, every video used is checked: its features finite (test videos
    too: a NaN found after training would waste it) and made from the source file still at its path
    (:func:`~clicktal.pipeline.data.provenance.check_sources`). A subset whose every video lacks features is
    refused; ground-truth videos without features are listed in ``without_features`` and ``note`` says so.
    ``source`` and the datasets give the features normalised as ``cfg.normalize`` asks, with the statistics of
    the training videos (held-out ones excluded), or with ``normalization`` (a trained run's) when given."""
    source = open_data_features(cfg)
    problems = source.problems()
    if problems and note is not None:
        note(f"{cfg.features}: not read: " + "; ".join(problems[:3])
             + (f"; and {len(problems) - 3} more (FeatureSource.problems())" if len(problems) > 3 else ""))
    gt = resolve_ground_truth(cfg, source)
    classes = gt.classes()
    available = set(source.ids())
    without: dict[str, list[str]] = {}
    kept: dict[str, list[str]] = {}
    for subset in dict.fromkeys((cfg.train_subset, cfg.test_subset)):
        listed = sorted(gt.subset(subset))
        kept[subset] = [v for v in listed if v in available]
        without[subset] = [v for v in listed if v not in available]
        if listed and not kept[subset]:
            raise ValueError(f"no video of subset {subset!r} has features in {cfg.features} (the ground truth "
                             f"lists {len(listed)}, e.g. {listed[0]!r}; the folder holds {len(available)} "
                             f"video(s))")
    train_ids, test_ids = kept[cfg.train_subset], kept[cfg.test_subset]
    if not train_ids:
        raise ValueError(f"no video of subset {cfg.train_subset!r} has features in {cfg.features}")
    test_only = [v for v in test_ids if v not in set(train_ids)]
    used = train_ids + test_only
    metas = {v: source.meta(v) for v in used}
    found = source_contract(source, used)
    if contract is not None:
        contract.check(found, f"{cfg.features}")
    changed = check_sources(metas, accept=cfg.accept_changed_sources, where=str(cfg.features), note=note)
    # refuses NaN / inf naming the file; preloaded training videos are checked as the datasets load them below
    for v in test_only if cfg.preload else used:
        source.load(v)
    labels = training_supervision(gt, cfg.train_subset, cfg.labels, seed=seed, geometry=found.geometry,
                                  per_video={v: m.geometry for v, m in metas.items()} if found.per_video_geometry
                                  else None)
    sup = labels.supervision
    train_ids, val_ids = split_holdout(train_ids, cfg.val_fraction, seed)
    norm = normalization if normalization is not None else fit_normalization(source, train_ids, cfg.normalize)
    source = normalized(source, norm)
    kinds = requested_kinds(kinds, frames=cfg.labels.frame_targets)
    windows = cfg.sampling.train
    by_content = windows.kind == "windows" and (windows.min_action_fraction > 0 or windows.balance)
    if by_content and not {"frames", "boundaries"} & set(with_requirements(kinds)):
        kinds += ("boundaries",)  # VideoItem.action_content measures a window on them
    kw = dict(preload=cfg.preload, kinds=kinds)
    train = VideoDataset(source, sup, classes, video_ids=train_ids, **kw)
    # held-out videos keep their labels (validation loss); their boundaries stay in ``gt`` (validation mAP)
    val = VideoDataset(source, sup, classes, video_ids=val_ids, **kw) if val_ids else None
    bundle = DataBundle(gt, classes, source, train, val, test_ids, found, labels,
                        {k: v for k, v in without.items() if v}, changed, norm)
    summary = bundle.missing_summary(str(cfg.features))
    if summary and note is not None:
        note(summary)
    return bundle


# what label_counts reports, per target kind
_COUNTED = {"labelled_snippets": "actions", "anchors": "anchors", "background_clicks": "background",
            "segment_snippets": "segments", "boundary_snippets": "boundaries"}


def label_counts(dataset: VideoDataset) -> dict[str, int]:
    """How much supervision a dataset carries, in snippets (for run logs): the videos, their snippets, and the
    snippets each of the kinds of ``_COUNTED`` that the dataset builds labels."""
    built = with_requirements(dataset.kinds)
    counted = {key: kind for key, kind in _COUNTED.items() if kind in built}
    out = {"videos": len(dataset), "snippets": 0, **dict.fromkeys(counted, 0)}
    rows = lambda it, kind: 0 if kind not in it.targets else int(it.targets[kind].reshape(it.length, -1).any(1).sum())
    for it in dataset:
        out["snippets"] += it.length
        for key, kind in counted.items():
            out[key] += rows(it, kind)
    return out


__all__ = ["DataConfig", "VideoItem", "TrainingContext", "Batch", "VideoDataset", "DataBundle", "make_item",
           "requested_kinds", "collate", "sample_batch", "batch_rng", "split_holdout", "load_data",
           "open_data_features", "segment_snippets", "frame_labels", "label_counts", "NAMED_TARGETS", "NAMED_MASKS"]

"""Videos of a feature folder paired with their :class:`Supervision`, as per-snippet targets, and padded batches.

Supervision lives in seconds; here it becomes snippet targets through the features' :class:`FeatureGeometry` (the
only seconds <-> snippet mapping). A :class:`VideoItem` holds one whole video, or one sample of it drawn by the
temporal sampling stage (:mod:`clicktal.pipeline.data.sampling`, which moves every target with the features);
:func:`collate` pads a list of them into a :class:`Batch` with masks.

Targets are kept per kind, so that every cheap-label method can share the engine ([T] for one video, [B, T] in a
batch):

* ``click_targets [T, C]``: action clicks per snippet and class (counts); ``anchor_mask``: snippets holding one
  (the anchors SF-Net's mining expands);
* ``segment_targets [T, C]``: labelled segments (Ding et al.), multi-hot on the snippets whose centre they hold;
* ``boundary_targets [T, C]``: full boundaries, likewise;
* ``action_targets [T, C]`` with ``action_mask``: all of these together, each labelled row a distribution over the
  classes (two clicks of different classes on one snippet share it): what SF-Net's frame loss reads;
* ``background_mask [T]``: snippets holding a background click (BackTAL);
* ``video_labels [C]``: the video-level multi-hot labels;
* ``frame_labels [T * f, C + 1]`` (with ``data.labels.frame_targets``): multi-hot per frame of the resampled video,
  column ``c + 1`` for every instance of class ``c`` holding the frame (overlapping instances all count: every
  CliffDiving instance of THUMOS14 lies inside a Diving one), column 0 for background; a batch holds them as
  ``frame_targets [B, F, C + 1]``, each frame's row divided by its sum (a distribution, for the frame-wise softmax
  cross-entropy of the models that predict frames).

On a resized sampling grid, clicks (``click_targets``, ``anchor_mask``, ``background_mask``) mark the nearest grid
element only, and dense labels (segments, boundaries) every element they cover.

Which labels a run trains from is :class:`~clicktal.pipeline.data.labels.LabelConfig` (``data.labels``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.annotations import GroundTruth, Segment, load_ground_truth
from clicktal.pipeline.data.config import DataConfig
from clicktal.pipeline.data.cache import FeatureSource, SynthSource
from clicktal.pipeline.data.formats import open_features
from clicktal.pipeline.data.contract import FeatureContract, source_contract
from clicktal.pipeline.data.labels import LabelSet, training_supervision
from clicktal.pipeline.data.normalize import Normalization, fit_normalization, normalized
from clicktal.pipeline.data.provenance import check_sources
from clicktal.pipeline.data.sampling import (SampleGrid, Sampler, resample_features,
                                             resample_points, resample_targets, whole_grid)
from clicktal.pipeline.data.supervision import Supervision


@dataclass
class VideoItem:
    """One video, or one sample of it (``grid`` says which native snippets it stands for; see the module
    docstring for the targets)."""

    video_id: str
    features: np.ndarray
    video_labels: np.ndarray
    action_targets: np.ndarray
    action_mask: np.ndarray
    anchor_mask: np.ndarray
    background_mask: np.ndarray
    geometry: FeatureGeometry  # the native grid of the video's features
    click_targets: np.ndarray | None = None
    segment_targets: np.ndarray | None = None
    boundary_targets: np.ndarray | None = None
    frame_labels: np.ndarray | None = None
    grid: SampleGrid | None = None
    truth_targets: np.ndarray | None = None  # [T, C] ground-truth snippets, diagnostics only (never a loss)

    def __post_init__(self) -> None:
        T, C = self.features.shape[0], self.video_labels.shape[0]
        for name in ("click_targets", "segment_targets", "boundary_targets"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros((T, C), np.float32))
        if self.grid is None:
            self.grid = whole_grid(self.geometry, T)

    @classmethod
    def unlabelled(cls, features: np.ndarray, geometry: FeatureGeometry, num_classes: int) -> "VideoItem":
        """A video without labels (inference): its features on its grid, every target empty."""
        T = int(features.shape[0])
        return cls("", features, np.zeros(num_classes, np.float32), np.zeros((T, num_classes), np.float32),
                   np.zeros(T, bool), np.zeros(T, bool), np.zeros(T, bool), geometry)

    @property
    def length(self) -> int:
        return int(self.features.shape[0])

    def sample(self, positions: np.ndarray) -> "VideoItem":
        """This (whole) video at native snippet ``positions`` ``[L]``: features interpolated, targets moved with
        them (:mod:`~clicktal.pipeline.data.sampling`)."""
        grid = SampleGrid(self.geometry, np.asarray(positions, np.float64), self.length)
        moved = {k: resample_targets(getattr(self, k), grid) for k in ("segment_targets", "boundary_targets")}
        moved.update({k: resample_points(getattr(self, k), grid) for k in
                      ("anchor_mask", "background_mask", "click_targets")})
        if self.truth_targets is not None:
            moved["truth_targets"] = resample_targets(self.truth_targets, grid)
        # a snippet labelled by clicks alone moves as a point, one labelled by a segment or boundary as a span
        point = (self.anchor_mask & ~(self.segment_targets.any(axis=1) | self.boundary_targets.any(axis=1)))[:, None]
        targets = np.maximum(resample_points(np.where(point, self.action_targets, 0), grid),
                             resample_targets(np.where(point, 0, self.action_targets), grid))
        labelled = targets.sum(axis=1) > 0
        targets[labelled] /= targets[labelled].sum(axis=1, keepdims=True)
        moved["action_targets"], moved["action_mask"] = targets, labelled
        frames = None
        if self.frame_labels is not None:
            frames = self.frame_labels[grid.frame_positions(self.geometry.frames_per_snippet)]
        return replace(self, features=resample_features(self.features, grid), frame_labels=frames, grid=grid,
                       **moved)

    def action_content(self, positions: np.ndarray) -> tuple[float | None, int]:
        """(action fraction, majority class) of the native snippets ``positions``: over their frames when the video
        has frame labels, else over the snippets its boundaries label; ``(None, -1)`` with neither; class -1 for a
        stretch without action."""
        idx = np.asarray(positions, np.int64)
        if self.frame_labels is not None:
            f = self.geometry.frames_per_snippet
            labels = self.frame_labels[(idx[:, None] * f + np.arange(f)).reshape(-1), 1:]
            counts = labels.sum(axis=0, dtype=np.int64)
            fraction = float(labels.any(axis=1).mean())
        elif self.boundary_targets.any():
            rows = self.boundary_targets[idx]
            counts, fraction = rows.sum(axis=0), float((rows.sum(axis=1) > 0).mean())
        else:
            return None, -1
        return fraction, int(counts.argmax()) if counts.any() else -1


@dataclass
class TrainingContext:
    """What a model's training hook may use: the training videos one at a time, whole (no sampling), the device."""

    iter_videos: Callable[[], Iterator[VideoItem]]
    device: torch.device


@dataclass
class Batch:
    """Padded samples. ``features [B, T, D]``, ``mask [B, T]`` (True on real snippets), ``video_labels [B, C]``,
    ``action_targets [B, T, C]``, ``action_mask``/``anchor_mask``/``background_mask [B, T]``, ``offsets [B]`` (the
    first native snippet of each crop or window; -1 for other grids), ``lengths [B]``; per kind
    ``click_targets``/``segment_targets``/``boundary_targets [B, T, C]`` with ``segment_mask``/``boundary_mask
    [B, T]``; ``frame_targets [B, F, C + 1]`` (each frame's row a distribution over background and the classes
    of the instances holding it) with ``frame_mask [B, F]`` when the run asks for frame targets; ``grids``: each
    sample's :class:`SampleGrid`; ``truth_targets [B, T, C]``: the ground truth's snippets
    when every sample has them, for diagnostics (the mining precision), never for a loss."""

    video_ids: list[str]
    features: torch.Tensor
    mask: torch.Tensor
    video_labels: torch.Tensor
    action_targets: torch.Tensor
    action_mask: torch.Tensor
    anchor_mask: torch.Tensor
    background_mask: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor
    click_targets: torch.Tensor | None = None
    segment_targets: torch.Tensor | None = None
    segment_mask: torch.Tensor | None = None
    boundary_targets: torch.Tensor | None = None
    boundary_mask: torch.Tensor | None = None
    frame_targets: torch.Tensor | None = None
    frame_mask: torch.Tensor | None = None
    grids: list[SampleGrid] | None = None
    truth_targets: torch.Tensor | None = None  # [B, T, C] the ground truth's snippets, for diagnostics only

    def to(self, device: torch.device | str) -> "Batch":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return Batch(**moved)


def segment_snippets(geometry: FeatureGeometry, start_s: float, end_s: float, num_snippets: int) -> np.ndarray:
    """Indices of the snippets whose centre lies in ``[start_s, end_s]``; the snippet holding the segment's middle
    when no centre does (an instance shorter than a snippet still labels one)."""
    centres = geometry.centre_s(np.arange(num_snippets))
    idx = np.flatnonzero((centres >= start_s) & (centres <= end_s))
    if idx.size == 0:
        idx = np.array([geometry.index_of((start_s + end_s) / 2, num_snippets)])
    return idx


def _segment_targets(segments: Iterable[Segment], geometry: FeatureGeometry, index: dict[str, int], T: int
                     ) -> np.ndarray:
    out = np.zeros((T, len(index)), np.float32)
    for seg in segments:
        if seg.label in index:
            out[segment_snippets(geometry, seg.start_s, seg.end_s, T), index[seg.label]] = 1.0
    return out


def frame_labels(segments: Iterable[Segment], geometry: FeatureGeometry, index: dict[str, int], T: int
                 ) -> np.ndarray:
    """``[T * f, C + 1]`` uint8 multi-hot, per frame of the resampled video (``f`` frames per snippet): column
    ``c + 1`` set for every instance of class ``c`` holding the frame's centre (all of them where instances
    overlap), column 0 (background) where none does."""
    centres = geometry.frames().centre_s(np.arange(T * geometry.frames_per_snippet))
    out = np.zeros((len(centres), len(index) + 1), np.uint8)
    for seg in segments:
        if seg.label in index:
            out[(centres >= seg.start_s) & (centres <= seg.end_s), index[seg.label] + 1] = 1
    out[:, 0] = ~out[:, 1:].any(axis=1)
    return out


def make_item(video_id: str, features: np.ndarray, geometry: FeatureGeometry, supervision: Supervision,
              classes: Sequence[str], *, with_frame_labels: bool = False) -> VideoItem:
    """Per-snippet targets of one video from its :class:`Supervision` (seconds -> snippets via ``geometry``)."""
    T, C = int(features.shape[0]), len(classes)
    index = {c: i for i, c in enumerate(classes)}
    clicks = np.zeros((T, C), np.float32)
    background = np.zeros(T, bool)
    video_labels = np.zeros(C, np.float32)
    for label in supervision.video_labels:
        if label in index:
            video_labels[index[label]] = 1.0
    for click in supervision.action_clicks:
        if click.label in index:
            clicks[geometry.index_of(click.time_s, T), index[click.label]] += 1.0
    segments = _segment_targets(supervision.labelled_segments, geometry, index, T)
    boundaries = _segment_targets(supervision.boundaries or (), geometry, index, T)
    for t_s in supervision.background_clicks:
        background[geometry.index_of(t_s, T)] = True
    targets = np.maximum(clicks, np.maximum(segments, boundaries))
    labelled = targets.sum(axis=1) > 0
    targets[labelled] /= targets[labelled].sum(axis=1, keepdims=True)
    frames = None
    if with_frame_labels:
        if supervision.boundaries is None:
            raise ValueError(f"video {video_id}: frame targets need the boundaries (data.labels.boundaries: true)")
        frames = frame_labels(supervision.boundaries, geometry, index, T)
    truth = None if supervision.truth is None else _segment_targets(supervision.truth, geometry, index, T)
    return VideoItem(video_id, features, video_labels, targets, labelled, clicks.sum(axis=1) > 0, background,
                     geometry, clicks, segments, boundaries, frames, truth_targets=truth)


class VideoDataset:
    """The videos of ``supervision`` found in ``source``, as :class:`VideoItem` (whole videos).

    ``preload`` copies the features into memory (fast batches); otherwise they stay memory-mapped.
    """

    def __init__(self, source: FeatureSource, supervision: dict[str, Supervision], classes: Sequence[str], *,
                 preload: bool = True, video_ids: Iterable[str] | None = None, frame_labels: bool = False):
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
        self.frame_labels = frame_labels
        self._cache: dict[str, VideoItem] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def item(self, video_id: str) -> VideoItem:
        if video_id in self._cache:
            return self._cache[video_id]
        feats, meta = self.source.load(video_id)
        if self.preload:
            feats = np.array(feats, dtype=np.float32)
        item = make_item(video_id, feats, meta.geometry, self.supervision[video_id], self.classes,
                         with_frame_labels=self.frame_labels)
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


def _pad(arrays: Sequence[np.ndarray], length: int, dtype) -> np.ndarray:
    out = np.zeros((len(arrays), length) + arrays[0].shape[1:], dtype)
    for b, a in enumerate(arrays):
        out[b, : len(a)] = a
    return out


def collate(items: Sequence[VideoItem]) -> Batch:
    """Pad ``items`` (whole videos or samples) to the longest; frame targets when every item has frame labels."""
    L = max(it.length for it in items)
    t = lambda name, dtype=np.float32: torch.from_numpy(_pad([getattr(it, name) for it in items], L, dtype))
    mask = _pad([np.ones(it.length, bool) for it in items], L, bool)
    frame_targets = frame_mask = None
    if all(it.frame_labels is not None for it in items):
        F = max(len(it.frame_labels) for it in items)
        frames = torch.from_numpy(_pad([it.frame_labels for it in items], F, np.float32))
        frame_mask = frames.sum(-1) > 0
        frame_targets = frames / frames.sum(-1, keepdim=True).clamp_min(1.0)
    segment_targets, boundary_targets = t("segment_targets"), t("boundary_targets")
    return Batch(
        video_ids=[it.video_id for it in items], features=t("features"), mask=torch.from_numpy(mask),
        video_labels=torch.from_numpy(np.stack([it.video_labels for it in items])),
        action_targets=t("action_targets"), action_mask=t("action_mask", bool), anchor_mask=t("anchor_mask", bool),
        background_mask=t("background_mask", bool),
        offsets=torch.tensor([it.grid.offset for it in items], dtype=torch.long),
        lengths=torch.tensor([it.length for it in items], dtype=torch.long),
        click_targets=t("click_targets"), segment_targets=segment_targets, segment_mask=segment_targets.sum(-1) > 0,
        boundary_targets=boundary_targets, boundary_mask=boundary_targets.sum(-1) > 0,
        frame_targets=frame_targets, frame_mask=frame_mask, grids=[it.grid for it in items],
        truth_targets=t("truth_targets") if all(it.truth_targets is not None for it in items) else None,
    )


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


def load_data(cfg: DataConfig, *, seed: int, contract: FeatureContract | None = None,
              normalization: Normalization | None = None, note=None) -> DataBundle:
    """Open the features and labels of ``cfg``. Test videos are listed, never given labels here. Every video used
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
    kw = dict(preload=cfg.preload, frame_labels=cfg.labels.frame_targets)
    train = VideoDataset(source, sup, classes, video_ids=train_ids, **kw)
    # held-out videos keep their labels (validation loss); their boundaries stay in ``gt`` (validation mAP)
    val = VideoDataset(source, sup, classes, video_ids=val_ids, **kw) if val_ids else None
    bundle = DataBundle(gt, classes, source, train, val, test_ids, found, labels,
                        {k: v for k, v in without.items() if v}, changed, norm)
    summary = bundle.missing_summary(str(cfg.features))
    if summary and note is not None:
        note(summary)
    return bundle


def label_counts(dataset: VideoDataset) -> dict[str, int]:
    """How much supervision a dataset carries, in snippets (for run logs)."""
    out = {"videos": len(dataset), "snippets": 0, "labelled_snippets": 0, "anchors": 0, "background_clicks": 0,
           "segment_snippets": 0, "boundary_snippets": 0}
    for it in dataset:
        out["snippets"] += it.length
        out["labelled_snippets"] += int(it.action_mask.sum())
        out["anchors"] += int(it.anchor_mask.sum())
        out["background_clicks"] += int(it.background_mask.sum())
        out["segment_snippets"] += int(it.segment_targets.any(axis=1).sum())
        out["boundary_snippets"] += int(it.boundary_targets.any(axis=1).sum())
    return out


__all__ = ["DataConfig", "VideoItem", "TrainingContext", "Batch", "VideoDataset", "DataBundle", "make_item",
           "collate", "sample_batch", "batch_rng", "split_holdout", "load_data", "open_data_features", "segment_snippets", "frame_labels",
           "label_counts"]

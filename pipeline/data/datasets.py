"""Videos of a feature folder paired with their :class:`Supervision`, as per-snippet targets, and padded batches.

Supervision lives in seconds; here it becomes snippet targets through the features' :class:`FeatureGeometry` (the
only seconds <-> snippet mapping). A :class:`VideoItem` holds one whole video; :func:`collate` pads a list of them
into a :class:`Batch` (optionally after a random crop to a maximum length, as SF-Net's code does) with masks.

Targets are kept general so that every cheap-label method can share the engine:

* ``action_targets [T, C]`` with ``action_mask [T]``: labelled action snippets (clicks, labelled segments, full
  boundaries), each row a distribution over the classes (two clicks of different classes on one snippet share it);
* ``anchor_mask [T]``: the snippets that hold an action click (the anchors SF-Net's mining expands);
* ``background_mask [T]``: snippets that hold a background click (BackTAL);
* ``video_labels [C]``: the video-level multi-hot labels.

Click sources (:class:`ClickConfig`): one of the human annotators chosen at random per video (SF-Net, Appendix A.3),
one fixed annotator, clicks simulated from the ground truth (uniform within an instance, Gaussian near its centre),
none (video labels only: weak supervision), or the full boundaries ("Full" in SF-Net's Table 3).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal, Sequence

import numpy as np
import torch

from clicktal.pipeline.data.annotations import ActionClick, GroundTruth, load_ground_truth, read_action_clicks
from clicktal.pipeline.data.cache import FeatureSource, SynthSource, open_features
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.supervision import Supervision, build_supervision, simulate_action_clicks

ClickSourceName = Literal["random_annotator", "annotator", "uniform", "gaussian", "none", "boundaries"]


@dataclass
class ClickConfig:
    """Where the training labels come from.

    ``random_annotator``: for every video one of ``files`` (one per human annotator) chosen at random (seeded), as
    SF-Net does; ``annotator``: always ``files[annotator]``; ``uniform`` / ``gaussian``: one simulated click per
    ground-truth instance (SF-Net Table 2's "TS" / "TS in GT"); ``none``: video-level labels only; ``boundaries``:
    every action snippet labelled from the ground truth (full supervision). ``seed`` None uses the run's seed.
    """

    source: ClickSourceName = "random_annotator"
    files: list[str] = field(default_factory=list)
    annotator: int = 0
    gaussian_sigma_fraction: float = 1 / 6
    seed: int | None = None


@dataclass
class DataConfig:
    """Features, labels and the train/test subsets.

    ``features``: a feature cache or a synthesizer output folder (``tools/train_localizer.py --features`` overrides
    it). ``ground_truth``: ActivityNet-schema file; empty means the synthesizer's ``annotations.json``.
    ``max_length``: random crop (snippets) of longer training videos; None trains on whole videos (the paper).
    ``val_fraction``: share of the training subset held out for validation (never the test subset).
    Relative paths are taken from the current directory.
    """

    features: str = ""
    ground_truth: str = ""
    train_subset: str = "validation"
    test_subset: str = "test"
    ambiguous: str = ""  # THUMOS14's ambiguous test segments, used by evaluation when given
    clicks: ClickConfig = field(default_factory=ClickConfig)
    max_length: int | None = None
    val_fraction: float = 0.0
    preload: bool = True


@dataclass
class VideoItem:
    """One whole video: ``features [T, D]`` and its per-snippet targets (see the module docstring)."""

    video_id: str
    features: np.ndarray
    video_labels: np.ndarray
    action_targets: np.ndarray
    action_mask: np.ndarray
    anchor_mask: np.ndarray
    background_mask: np.ndarray
    geometry: FeatureGeometry

    @property
    def length(self) -> int:
        return int(self.features.shape[0])


@dataclass
class Batch:
    """Padded videos. ``features [B, T, D]``, ``mask [B, T]`` (True on real snippets), ``video_labels [B, C]``,
    ``action_targets [B, T, C]``, ``action_mask``/``anchor_mask``/``background_mask [B, T]``, ``offsets [B]`` (the
    first snippet of each crop in its video) and ``lengths [B]``."""

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

    def to(self, device: torch.device | str) -> "Batch":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return Batch(**moved)


@dataclass
class TrainingContext:
    """What a model's training hook may use: the training videos one at a time, whole (no crop), and the device."""

    iter_videos: Callable[[], Iterator[VideoItem]]
    device: torch.device



def segment_snippets(geometry: FeatureGeometry, start_s: float, end_s: float, num_snippets: int) -> np.ndarray:
    """Indices of the snippets whose centre lies in ``[start_s, end_s]``; the snippet holding the segment's middle
    when no centre does (an instance shorter than a snippet still labels one)."""
    centres = geometry.centre_s(np.arange(num_snippets))
    idx = np.flatnonzero((centres >= start_s) & (centres <= end_s))
    if idx.size == 0:
        idx = np.array([geometry.index_of((start_s + end_s) / 2, num_snippets)])
    return idx


def make_item(video_id: str, features: np.ndarray, geometry: FeatureGeometry, supervision: Supervision,
              classes: Sequence[str]) -> VideoItem:
    """Per-snippet targets of one video from its :class:`Supervision` (seconds -> snippets via ``geometry``)."""
    T, C = int(features.shape[0]), len(classes)
    index = {c: i for i, c in enumerate(classes)}
    targets = np.zeros((T, C), np.float32)
    anchors = np.zeros(T, bool)
    background = np.zeros(T, bool)
    video_labels = np.zeros(C, np.float32)
    for label in supervision.video_labels:
        if label in index:
            video_labels[index[label]] = 1.0
    for click in supervision.action_clicks:
        if click.label not in index:
            continue
        t = geometry.index_of(click.time_s, T)
        targets[t, index[click.label]] += 1.0
        anchors[t] = True
    segments = list(supervision.labelled_segments) + list(supervision.boundaries or ())
    for seg in segments:
        if seg.label not in index:
            continue
        idx = segment_snippets(geometry, seg.start_s, seg.end_s, T)
        targets[idx, index[seg.label]] = np.maximum(targets[idx, index[seg.label]], 1.0)
    for t_s in supervision.background_clicks:
        background[geometry.index_of(t_s, T)] = True
    labelled = targets.sum(axis=1) > 0
    targets[labelled] /= targets[labelled].sum(axis=1, keepdims=True)
    return VideoItem(video_id, features, video_labels, targets, labelled, anchors, background, geometry)


class VideoDataset:
    """The videos of ``supervision`` found in ``source``, as :class:`VideoItem` (whole videos).

    ``preload`` copies the features into memory (fast batches); otherwise they stay memory-mapped.
    """

    def __init__(self, source: FeatureSource, supervision: dict[str, Supervision], classes: Sequence[str], *,
                 preload: bool = True, video_ids: Iterable[str] | None = None):
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
        self._cache: dict[str, VideoItem] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def item(self, video_id: str) -> VideoItem:
        if video_id in self._cache:
            return self._cache[video_id]
        feats, meta = self.source.load(video_id)
        if self.preload:
            feats = np.array(feats, dtype=np.float32)
        item = make_item(video_id, feats, meta.geometry, self.supervision[video_id], self.classes)
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


def collate(items: Sequence[VideoItem], *, max_length: int | None = None,
            rng: np.random.Generator | None = None) -> Batch:
    """Pad ``items`` to the longest (after cropping videos longer than ``max_length`` at a random start drawn from
    ``rng``; the first ``max_length`` snippets when ``rng`` is None)."""
    crops = []
    for it in items:
        T = it.length
        start = 0
        if max_length is not None and T > max_length:
            start = int(rng.integers(0, T - max_length + 1)) if rng is not None else 0
            T = max_length
        crops.append((start, T))
    B, L = len(items), max(t for _, t in crops)
    D, C = items[0].features.shape[1], items[0].video_labels.shape[0]
    feats = np.zeros((B, L, D), np.float32)
    mask = np.zeros((B, L), bool)
    targets = np.zeros((B, L, C), np.float32)
    amask, anchors, bg = (np.zeros((B, L), bool) for _ in range(3))
    for b, (it, (s, T)) in enumerate(zip(items, crops)):
        sl = slice(s, s + T)
        feats[b, :T] = it.features[sl]
        mask[b, :T] = True
        targets[b, :T] = it.action_targets[sl]
        amask[b, :T] = it.action_mask[sl]
        anchors[b, :T] = it.anchor_mask[sl]
        bg[b, :T] = it.background_mask[sl]
    return Batch(
        video_ids=[it.video_id for it in items],
        features=torch.from_numpy(feats), mask=torch.from_numpy(mask),
        video_labels=torch.from_numpy(np.stack([it.video_labels for it in items])),
        action_targets=torch.from_numpy(targets), action_mask=torch.from_numpy(amask),
        anchor_mask=torch.from_numpy(anchors), background_mask=torch.from_numpy(bg),
        offsets=torch.tensor([s for s, _ in crops], dtype=torch.long),
        lengths=torch.tensor([t for _, t in crops], dtype=torch.long),
    )


def sample_batch(dataset: VideoDataset, batch_size: int, rng: np.random.Generator, *,
                 max_length: int | None = None) -> Batch:
    """``batch_size`` distinct videos drawn at random (all of them when fewer), cropped and padded."""
    n = len(dataset)
    picks = rng.choice(n, size=min(batch_size, n), replace=False)
    return collate([dataset[int(i)] for i in picks], max_length=max_length, rng=rng)


def batch_rng(seed: int, iteration: int) -> np.random.Generator:
    """The generator for one training iteration's batch: a pure function of (seed, iteration), so that a resumed
    run draws exactly the batches an uninterrupted one does."""
    return np.random.default_rng([int(seed), int(iteration), 0x5F5E])


# ---------------------------------------------------------------------------------------------------- labels


def choose_action_clicks(gt: GroundTruth, subset: str, cfg: ClickConfig, seed: int
                         ) -> dict[str, tuple[ActionClick, ...]]:
    """Action clicks per video of ``subset`` from the configured source (empty for ``none``/``boundaries``)."""
    videos = gt.subset(subset)
    rng = np.random.default_rng([seed if cfg.seed is None else cfg.seed, 0xC11C])
    if cfg.source in ("none", "boundaries"):
        return {}
    if cfg.source in ("uniform", "gaussian"):
        return {vid: simulate_action_clicks(videos[vid], rng, mode=cfg.source,
                                            sigma_fraction=cfg.gaussian_sigma_fraction) for vid in sorted(videos)}
    if not cfg.files:
        raise ValueError(f"click source {cfg.source!r} needs data.clicks.files (one per annotator)")
    per_file = [read_action_clicks(f, gt)[0] for f in cfg.files]
    if cfg.source == "annotator":
        if not 0 <= cfg.annotator < len(per_file):
            raise ValueError(f"data.clicks.annotator {cfg.annotator} is not an index into {len(per_file)} files")
        chosen = per_file[cfg.annotator]
        return {vid: tuple(chosen.get(vid, ())) for vid in sorted(videos)}
    # random_annotator: one annotator per video, drawn in sorted video order so a seed reproduces the draw
    picks = rng.integers(0, len(per_file), size=len(videos))
    return {vid: tuple(per_file[int(k)].get(vid, ())) for vid, k in zip(sorted(videos), picks)}


def training_supervision(gt: GroundTruth, subset: str, cfg: ClickConfig, seed: int) -> dict[str, Supervision]:
    """:class:`Supervision` for every video of ``subset``: video labels plus the configured clicks/boundaries."""
    clicks = choose_action_clicks(gt, subset, cfg, seed)
    sup = build_supervision(gt, subset=subset, action_clicks={k: list(v) for k, v in clicks.items()},
                            with_boundaries=cfg.source == "boundaries")
    return sup


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
    """``cfg.ground_truth``, or the synthesizer's ``annotations.json`` beside the features."""
    if cfg.ground_truth:
        return load_ground_truth(cfg.ground_truth)
    if isinstance(source, SynthSource):
        return load_ground_truth(source.annotations_path)
    raise ValueError("data.ground_truth is empty and the features are not a synthesizer folder holding one")


@dataclass
class DataBundle:
    """Everything a run reads: the ground truth, class list, and the training / held-out / test datasets."""

    gt: GroundTruth
    classes: list[str]
    source: FeatureSource
    train: VideoDataset
    val: VideoDataset | None
    test_ids: list[str]


def load_data(cfg: DataConfig, *, seed: int) -> DataBundle:
    """Open the features and labels of ``cfg``. Test videos are listed, never given labels here."""
    if not cfg.features:
        raise ValueError("data.features is empty: give a feature folder (config or --features)")
    source = open_features(Path(os.path.expanduser(cfg.features)))
    gt = resolve_ground_truth(cfg, source)
    classes = gt.classes()
    sup = training_supervision(gt, cfg.train_subset, cfg.clicks, seed)
    available = set(source.ids())
    train_ids = [v for v in sorted(sup) if v in available]
    if not train_ids:
        raise ValueError(f"no video of subset {cfg.train_subset!r} has features in {cfg.features}")
    train_ids, val_ids = split_holdout(train_ids, cfg.val_fraction, seed)
    train = VideoDataset(source, sup, classes, preload=cfg.preload, video_ids=train_ids)
    val = None
    if val_ids:
        # held-out videos keep their clicks (validation loss); their boundaries stay in ``gt`` (validation mAP)
        val = VideoDataset(source, sup, classes, preload=cfg.preload, video_ids=val_ids)
    test_ids = [v for v in sorted(gt.subset(cfg.test_subset)) if v in available]
    return DataBundle(gt, classes, source, train, val, test_ids)


def label_counts(dataset: VideoDataset) -> dict[str, int]:
    """How much supervision a dataset carries (for run logs)."""
    out = {"videos": len(dataset), "snippets": 0, "labelled_snippets": 0, "anchors": 0, "background_clicks": 0}
    for it in dataset:
        out["snippets"] += it.length
        out["labelled_snippets"] += int(it.action_mask.sum())
        out["anchors"] += int(it.anchor_mask.sum())
        out["background_clicks"] += int(it.background_mask.sum())
    return out


__all__ = ["ClickConfig", "DataConfig", "VideoItem", "Batch", "VideoDataset", "DataBundle", "make_item", "collate",
           "sample_batch", "batch_rng", "choose_action_clicks", "training_supervision", "split_holdout",
           "load_data", "segment_snippets", "label_counts"]

"""The temporal sampling stage between the dataset and the model, shared by training, validation and inference.

Kinds (:class:`SamplerConfig`):

* ``whole``: the whole video (SF-Net's paper);
* ``crop(length, alternate_length)``: training takes a random window of at most ``length`` snippets (SF-Net's code:
  750), or of ``alternate_length`` at the even iterations after the first when it is set (SF-Net's main.py
  alternates 750 and 2800 on THUMOS14: ``t_max``, ``t_max_ctc``); inference tiles the video with consecutive windows
  of ``length``;
* ``resize(length)``: features and targets linearly resampled to exactly ``length`` snippets; element ``j`` stands for native position ``j (T - 1) / (length - 1)``
  (corners aligned, so the first and last elements are the first and last snippets and the grid stays uniform);
* ``segments(count, random|uniform)``: the video cut into ``count`` equal parts and one snippet drawn from each
  (``random``) or its middle one (``uniform``);
* ``windows(length, stride, min_action_fraction, balance)``: sliding windows of ``length`` snippets; training
  keeps those whose action fraction (of frames when frame targets exist, else of snippets labelled by boundaries)
  is at least ``min_action_fraction`` and, with ``balance``, draws them with probability inversely proportional to
  the number of kept windows of their majority class, so that every class is drawn equally often; inference tiles
  the whole video with windows ``stride`` apart (non-overlapping by default) and averages where they overlap.

Every sample carries its :class:`SampleGrid`: the native snippet position each element stands for (and, when the
positions are evenly spaced, a :class:`FeatureGeometry` of its own, possibly with a fractional stride). Targets move
with the features, each as its kind says (:mod:`~clicktal.pipeline.data.targets`; inference moves none): at
whole-number positions they are indexed exactly; on a resized grid each element takes the labels of its nearest
native snippet and every labelled native snippet also lands on its nearest element, so a click is never lost by
downsampling. :func:`to_native` maps model outputs of any sampler back onto the native
snippet grid (or the native frames) before post-processing, so detections are always in seconds of the video.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

from clicktal.pipeline.core.geometry import FeatureGeometry, interpolate_rows

if TYPE_CHECKING:
    from clicktal.pipeline.data.datasets import VideoItem

SamplerKind = Literal["whole", "crop", "resize", "segments", "windows"]
# the fields each kind reads; any other field set away from its default is an error at load time
_FIELDS = {"whole": set(), "crop": {"length", "alternate_length"}, "resize": {"length"}, "segments": {"count", "mode"},
           "windows": {"length", "stride", "min_action_fraction", "balance"}}


@dataclass
class SamplerConfig:
    """One sampler; see the module docstring for each ``kind``. Lengths and strides are in snippets."""

    kind: SamplerKind = "whole"
    length: int | None = None
    alternate_length: int | None = None
    count: int | None = None
    mode: Literal["random", "uniform"] = "random"
    stride: int | None = None
    min_action_fraction: float = 0.0
    balance: bool = False

    def __post_init__(self) -> None:
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name != "kind"}
        stray = sorted(k for k, v in defaults.items() if getattr(self, k) != v and k not in _FIELDS[self.kind])
        if stray:
            raise ValueError(f"sampler {self.kind!r} does not use {', '.join(stray)} "
                             f"(it reads: {', '.join(sorted(_FIELDS[self.kind])) or 'nothing'})")
        if self.kind in ("crop", "resize", "windows") and (self.length is None or self.length < 1):
            raise ValueError(f"sampler {self.kind!r} needs length >= 1, got {self.length}")
        if self.alternate_length is not None and self.alternate_length < 1:
            raise ValueError(f"sampler 'crop' needs alternate_length >= 1, got {self.alternate_length}")
        if self.kind == "segments" and (self.count is None or self.count < 1):
            raise ValueError(f"sampler 'segments' needs count >= 1, got {self.count}")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"windows stride must be >= 1, got {self.stride}")
        if not 0 <= self.min_action_fraction <= 1:
            raise ValueError(f"min_action_fraction must be in [0, 1], got {self.min_action_fraction}")


@dataclass
class SamplingConfig:
    """``train`` draws the training batches; ``inference`` makes the deterministic samples of validation and
    inference (``segments`` there must be ``uniform``; windows tile the video, so they keep every window)."""

    train: SamplerConfig = field(default_factory=SamplerConfig)
    inference: SamplerConfig = field(default_factory=SamplerConfig)

    def __post_init__(self) -> None:
        inf = self.inference
        if inf.kind == "segments" and inf.mode != "uniform":
            raise ValueError("sampling.inference: segments must be 'uniform' (inference is deterministic)")
        if inf.kind == "windows" and (inf.min_action_fraction or inf.balance):
            raise ValueError("sampling.inference: windows tile the whole video; min_action_fraction and balance "
                             "are training options")


@dataclass(frozen=True)
class SampleGrid:
    """Which native snippet position each element of a sample stands for.

    ``positions [L]`` (float; whole numbers except on a resized grid) on the native grid ``native`` of a video
    with ``num_native`` snippets."""

    native: FeatureGeometry
    positions: np.ndarray
    num_native: int

    @property
    def integral(self) -> bool:
        return bool(np.all(self.positions == np.round(self.positions)))

    @property
    def geometry(self) -> FeatureGeometry | None:
        """The sample's own grid when its positions are evenly spaced (stride may be fractional), else None."""
        p = self.positions
        if p.size == 1:
            return self.native.regrid(float(p[0]), 1.0)
        steps = np.diff(p)
        if steps[0] <= 0 or not np.allclose(steps, steps[0], rtol=0, atol=1e-9):
            return None
        return self.native.regrid(float(p[0]), float(steps[0]))

    @property
    def offset(self) -> int:
        """The first native snippet of a contiguous sample (a crop or a window); -1 for other grids."""
        p = self.positions
        contiguous = self.integral and (p.size == 1 or np.all(np.diff(p) == 1))
        return int(p[0]) if contiguous else -1

    def frame_positions(self, frames_per_snippet: int) -> np.ndarray:
        """``[L * f]`` native frame index of each frame of the sample (whole-number positions only)."""
        if not self.integral:
            raise ValueError("per-frame outputs and targets need a sampler on whole native snippets "
                             "(whole, crop, segments or windows), not resize")
        f = int(frames_per_snippet)
        return (self.positions.astype(np.int64)[:, None] * f + np.arange(f)).reshape(-1)


def whole_grid(geometry: FeatureGeometry, num_snippets: int) -> SampleGrid:
    return SampleGrid(geometry, np.arange(num_snippets, dtype=np.float64), num_snippets)


# ------------------------------------------------------------------------------------------------ moving arrays


def resample_features(features: np.ndarray, grid: SampleGrid) -> np.ndarray:
    """``[T, D]`` -> ``[L, D]`` float32: exact rows at whole positions, linear interpolation between them."""
    p = grid.positions
    if grid.integral:
        return np.asarray(features[p.astype(np.int64)], dtype=np.float32)
    return interpolate_rows(features, p, dtype=np.float32)


def resample_targets(targets: np.ndarray, grid: SampleGrid) -> np.ndarray:
    """``[T, ...]`` labels -> ``[L, ...]``: exact at whole positions; on a resized grid the union (max) of the
    nearest native snippet's labels and of every native snippet whose nearest element this is (no label is lost
    by downsampling, and a dense labelled span stays dense when upsampling)."""
    p = grid.positions
    if grid.integral:
        return targets[p.astype(np.int64)].copy()
    nearest_native = targets[np.clip(np.round(p).astype(np.int64), 0, grid.num_native - 1)]
    return np.maximum(nearest_native, resample_points(targets, grid))


def resample_points(targets: np.ndarray, grid: SampleGrid) -> np.ndarray:
    """``[T, ...]`` point labels (clicks) -> ``[L, ...]``: each labelled native snippet marks the one grid element
    nearest to it (a click stays one element on an upsampled grid, as it is one frame of the video, and no click is
    lost by downsampling); exact at whole positions. A native snippet farther than half a step from every element
    (outside a crop) marks none."""
    p = grid.positions
    if grid.integral:
        return targets[p.astype(np.int64)].copy()
    out = np.zeros((len(p),) + targets.shape[1:], targets.dtype)
    labelled = np.flatnonzero(targets.reshape(len(targets), -1).any(axis=1))
    if labelled.size:
        nearest = np.abs(p[None, :] - labelled[:, None]).argmin(axis=1)
        half_step = (float(np.diff(p).max()) if len(p) > 1 else 1.0) / 2
        inside = np.abs(p[nearest] - labelled) <= half_step + 1e-9
        np.maximum.at(out, nearest[inside], targets[labelled[inside]])
    return out


def to_native(grids: Sequence[SampleGrid], values: Sequence[np.ndarray], *, frames_per_snippet: int | None = None
              ) -> np.ndarray:
    """Model outputs of one video's samples mapped back onto its native grid.

    ``values[i]`` is ``[L_i, ...]`` for outputs per element, or ``[L_i * f, ...]`` per frame with
    ``frames_per_snippet`` ``f``. Returns ``[T, ...]`` (or ``[T * f, ...]``): where samples overlap their values are
    averaged, and native positions between samples (a resized or segment grid) are linearly interpolated, constant
    beyond the first and last."""
    if not grids:
        raise ValueError("no samples to map back")
    num = grids[0].num_native * (frames_per_snippet or 1)
    if frames_per_snippet:
        pos = np.concatenate([g.frame_positions(frames_per_snippet) for g in grids]).astype(np.float64)
    else:
        pos = np.concatenate([g.positions for g in grids])
    vals = np.concatenate([np.asarray(v, dtype=np.float64) for v in values])
    if vals.shape[0] != pos.shape[0]:
        raise ValueError(f"{vals.shape[0]} output rows for {pos.shape[0]} sampled positions")
    flat = vals.reshape(len(vals), -1)
    uniq, inverse = np.unique(pos, return_inverse=True)
    summed = np.zeros((len(uniq), flat.shape[1]))
    np.add.at(summed, inverse, flat)
    mean = summed / np.bincount(inverse, minlength=len(uniq))[:, None]
    target = np.arange(num, dtype=np.float64)
    if len(uniq) == num:  # every native position was sampled: no interpolation at all
        out = mean
    else:
        out = np.stack([np.interp(target, uniq, mean[:, c]) for c in range(flat.shape[1])], axis=1)
    return out.reshape((num,) + vals.shape[1:])


# ------------------------------------------------------------------------------------------------ samplers


def _segment_positions(T: int, count: int, rng: np.random.Generator | None) -> np.ndarray:
    edges = np.linspace(0.0, T, count + 1)
    u = rng.random(count) if rng is not None else np.full(count, 0.5)
    return np.minimum(np.floor(edges[:-1] + u * (edges[1:] - edges[:-1])), T - 1)


def _resize_positions(T: int, length: int) -> np.ndarray:
    return np.linspace(0.0, T - 1, length) if length > 1 else np.zeros(1)


def _tiles(T: int, length: int, stride: int) -> list[np.ndarray]:
    starts = list(range(0, max(T - length, 0) + 1, stride))
    if starts[-1] + length < T:  # the last tile reaches the end of the video
        starts.append(T - length)
    return [np.arange(s, min(s + length, T), dtype=np.float64) for s in starts]


class Sampler:
    """Draws training samples and makes inference samples of :class:`VideoItem` s under a :class:`SamplingConfig`.

    Training draws depend only on the generator passed in (the engine's per-iteration ``batch_rng``), so a resumed
    run draws exactly the batches of an uninterrupted one."""

    def __init__(self, config: SamplingConfig | None = None):
        self.config = config or SamplingConfig()
        self._windows: dict[int, tuple[list[tuple[str, int]], np.ndarray]] = {}

    # -------------------------------------------------------------------------------- training
    def train_items(self, dataset, batch_size: int, rng: np.random.Generator, *, iteration: int = 0
                    ) -> list["VideoItem"]:
        """``batch_size`` samples (at most one per video, except windows) for training iteration ``iteration``."""
        cfg = self.config.train
        if cfg.kind == "windows":
            return self._train_windows(dataset, batch_size, rng)
        n = len(dataset)
        picks = rng.choice(n, size=min(batch_size, n), replace=False)
        return [self.train_sample(dataset[int(i)], rng, iteration=iteration) for i in picks]

    def crop_length(self, iteration: int) -> int | None:
        """The training crop of ``iteration``: ``alternate_length`` at even iterations > 0 when set (main.py:
        ``if itr % 2 == 0 and itr > 0: dataset.t_max = t_max_ctc``), else ``length``."""
        cfg = self.config.train
        alternate = cfg.alternate_length is not None and iteration > 0 and iteration % 2 == 0
        return cfg.alternate_length if alternate else cfg.length

    def train_sample(self, item: "VideoItem", rng: np.random.Generator, *, iteration: int = 0) -> "VideoItem":
        cfg, T = self.config.train, item.length
        length = self.crop_length(iteration)
        if cfg.kind == "crop" and T > length:
            start = int(rng.integers(0, T - length + 1))
            return item.sample(np.arange(start, start + length, dtype=np.float64))
        if cfg.kind == "resize":
            return item.sample(_resize_positions(T, cfg.length))
        if cfg.kind == "segments":
            return item.sample(_segment_positions(T, cfg.count, rng if cfg.mode == "random" else None))
        return item

    def _train_windows(self, dataset, batch_size: int, rng: np.random.Generator) -> list["VideoItem"]:
        windows, prob = self.window_index(dataset)
        size = batch_size if self.config.train.balance else min(batch_size, len(windows))
        picks = rng.choice(len(windows), size=size, replace=self.config.train.balance, p=prob)
        length = self.config.train.length
        out = []
        for k in picks:
            vid, start = windows[int(k)]
            item = dataset.item(vid)
            out.append(item.sample(np.arange(start, min(start + length, item.length), dtype=np.float64)))
        return out

    def window_index(self, dataset) -> tuple[list[tuple[str, int]], np.ndarray | None]:
        """The training windows ``(video, first snippet)`` kept by ``min_action_fraction`` and, with ``balance``,
        the probability of drawing each (built once per dataset)."""
        key = id(dataset)
        if key not in self._windows:
            cfg = self.config.train
            kept, classes = [], []
            for item in dataset:
                for grid_pos in _tiles(item.length, cfg.length, cfg.stride or cfg.length):
                    fraction, majority = item.action_content(grid_pos)
                    if fraction is None and (cfg.min_action_fraction > 0 or cfg.balance):
                        raise ValueError(f"video {item.video_id}: windows with min_action_fraction or balance need "
                                         f"action boundaries or frame targets (data.labels.boundaries)")
                    if fraction is None or fraction >= cfg.min_action_fraction:
                        kept.append((item.video_id, int(grid_pos[0])))
                        classes.append(majority)
            if not kept:
                raise ValueError(f"no training window has an action fraction >= {cfg.min_action_fraction}")
            prob = None
            if cfg.balance:
                _, inverse, counts = np.unique(np.asarray(classes), return_inverse=True, return_counts=True)
                prob = 1.0 / counts[inverse]
                prob = prob / prob.sum()
            self._windows[key] = (kept, prob)
        return self._windows[key]

    # -------------------------------------------------------------------------------- inference
    def inference_grids(self, geometry: FeatureGeometry, num_snippets: int) -> list[SampleGrid]:
        """The grids of the deterministic samples that together cover a video of ``num_snippets`` snippets on
        ``geometry`` (validation and inference)."""
        cfg, T = self.config.inference, num_snippets
        if cfg.kind in ("crop", "windows"):
            positions = _tiles(T, cfg.length, cfg.stride or cfg.length)
        elif cfg.kind == "resize":
            positions = [_resize_positions(T, cfg.length)]
        elif cfg.kind == "segments":
            positions = [_segment_positions(T, cfg.count, None)]
        else:
            return [whole_grid(geometry, T)]
        return [SampleGrid(geometry, p, T) for p in positions]

    def inference_samples(self, item: "VideoItem") -> list["VideoItem"]:
        """The deterministic samples that together cover ``item`` (:meth:`inference_grids`), targets moved with
        the features; the whole video is ``item`` itself."""
        if self.config.inference.kind == "whole":
            return [item]
        return [item.on_grid(g) for g in self.inference_grids(item.geometry, item.length)]


__all__ = ["SamplerConfig", "SamplingConfig", "SampleGrid", "Sampler", "whole_grid", "resample_features",
           "resample_targets", "resample_points", "to_native"]

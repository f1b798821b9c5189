"""The one place that maps seconds to snippet indices and back.

Snippet ``i`` covers frames ``[origin + i * stride, origin + i * stride + window)`` of the video resampled to ``fps``;
the time a snippet's score belongs to is its centre. Every stage works in seconds at its boundaries and converts here.

Features as extracted have an integer ``window`` and ``stride`` and ``origin`` 0. A sample drawn by the temporal
sampling stage (:mod:`clicktal.pipeline.data.sampling`) has a grid of its own: a crop starts at a later ``origin``,
a resize to a fixed length has a fractional ``stride`` (e.g. 16 x 1499 / 749 frames), and ``window`` grows with it
so that every element's centre stays the centre of the native position it stands for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _plain(x: float) -> float | int:
    """An integral float as an int, so sidecars keep writing ``"stride": 16``."""
    return int(x) if float(x).is_integer() else float(x)


def interpolate_rows(values: np.ndarray, positions: np.ndarray, *, dtype=None) -> np.ndarray:
    """``values [N, ...]`` at fractional row ``positions [L]`` (in ``[0, N - 1]``): linear between the two
    neighbouring rows, exact at whole positions. ``dtype`` (e.g. float32) is the dtype both the rows and the
    weights are computed in; None keeps the rows' and weighs in float64."""
    lo = np.floor(positions).astype(np.int64)
    hi = np.minimum(lo + 1, len(values) - 1)
    w = (positions - lo).reshape((-1,) + (1,) * (np.ndim(values) - 1))
    if dtype is not None:
        w = w.astype(dtype)
    return np.asarray(values[lo], dtype) * (1 - w) + np.asarray(values[hi], dtype) * w


def interpolate(values: np.ndarray, src: "FeatureGeometry", dst: "FeatureGeometry", num: int, *,
                valid: int | None = None, dtype=None) -> np.ndarray:
    """``values [N, ...]`` given on grid ``src`` -> ``[num, ...]`` on grid ``dst``: each element of ``dst`` takes
    the linear interpolation of the ``src`` rows around its centre, clamped to the first and the last valid row
    (``valid``, default ``N``; the rows past it are padding), so that values past the outer centres repeat the end
    value. The one snippet-to-grid interpolation: grouping on frames and upsampling a model's outputs
    (:func:`clicktal.models.blocks.upsample_to_frames`, the same positions in torch) read these positions."""
    last = (len(values) if valid is None else valid) - 1
    return interpolate_rows(values, np.clip(src.positions_of(dst, num), 0, max(last, 0)), dtype=dtype)


@dataclass(frozen=True)
class FeatureGeometry:
    fps: float = 25.0
    window: float = 16
    stride: float = 16
    origin: float = 0.0  # frame where snippet 0 starts

    def __post_init__(self) -> None:
        if not (self.fps > 0 and self.window > 0 and self.stride > 0 and math.isfinite(self.origin)):
            raise ValueError(f"FeatureGeometry needs positive fps, window and stride and a finite origin, got {self}")

    @property
    def seconds_per_snippet(self) -> float:
        """Time between consecutive snippet starts."""
        return self.stride / self.fps

    @property
    def frames_per_snippet(self) -> int:
        """``stride`` as a whole number of frames (what per-frame models and frame-resolution grouping need)."""
        if not float(self.stride).is_integer():
            raise ValueError(f"a grid with a fractional stride ({self.stride} frames) has no whole frames per snippet")
        return int(self.stride)

    def snippet_count(self, duration_s: float) -> int:
        """Snippets for a video of ``duration_s`` seconds; the last partial snippet is kept (padded), not dropped."""
        frames = duration_s * self.fps - self.origin
        # 1e-9 absorbs float error in durations such as 18.16 s * 25 fps
        return max(1, math.ceil(frames / self.stride - 1e-9))

    def index_of(self, seconds, num_snippets: int | None = None):
        """Snippet whose stride span ``[i*stride, (i+1)*stride)`` holds ``seconds`` (scalar or array).

        With ``num_snippets`` the index is clipped into ``[0, num_snippets - 1]`` (a click on the last frame of a
        video belongs to the last snippet).
        """
        frames = np.asarray(seconds, dtype=np.float64) * self.fps - self.origin
        idx = np.floor(frames / self.stride + 1e-9).astype(np.int64)
        if num_snippets is not None:
            idx = np.clip(idx, 0, num_snippets - 1)
        return int(idx) if idx.ndim == 0 else idx

    def start_s(self, index):
        """Start time of snippet(s) ``index``."""
        return (self.origin + np.asarray(index, dtype=np.float64) * self.stride) / self.fps

    def end_s(self, index):
        """End time of the span snippet(s) ``index`` stand for (one stride, so consecutive snippets tile time)."""
        return self.start_s(np.asarray(index, dtype=np.float64) + 1)

    def centre_s(self, index):
        """Centre of the frames snippet(s) ``index`` see: the time its score belongs to."""
        return (self.origin + np.asarray(index, dtype=np.float64) * self.stride + self.window / 2) / self.fps

    def span_to_seconds(self, first, last_exclusive):
        """Seconds covered by snippets ``[first, last_exclusive)``: ``(start_s, end_s)``."""
        return self.start_s(first), self.start_s(last_exclusive)

    def span_inside(self, start_s: float, end_s: float) -> tuple[int, int]:
        """Snippets ``[first, last_exclusive)`` whose whole stride span lies inside ``[start_s, end_s]`` (empty,
        ``last_exclusive <= first``, when the interval holds no whole span)."""
        frames = (np.array([start_s, end_s], dtype=np.float64) * self.fps - self.origin) / self.stride
        return int(np.ceil(frames[0] - 1e-9)), int(np.floor(frames[1] + 1e-9))

    def segment_to_span(self, start_s: float, end_s: float, num_snippets: int | None = None) -> tuple[int, int]:
        """Snippets ``[first, last_exclusive)`` whose spans overlap ``[start_s, end_s]`` (at least one)."""
        first = self.index_of(start_s, num_snippets)
        last = self.index_of(end_s, num_snippets)
        return int(first), int(max(last, first)) + 1

    def positions_of(self, other: "FeatureGeometry", num: int) -> np.ndarray:
        """``[num]`` fractional indices on this grid of the centres of ``other``'s elements ``0..num-1`` (same video,
        same fps): element ``j`` of ``other`` sits at position ``p`` here when its centre is this grid's centre of
        ``p``. Computed in frames, so that two grids with one origin give exact positions."""
        if other.fps != self.fps:
            raise ValueError(f"grids of different fps ({other.fps} and {self.fps}) are not one video's")
        centres = other.origin + np.arange(num, dtype=np.float64) * other.stride + other.window / 2
        return (centres - self.origin - self.window / 2) / self.stride

    def regrid(self, first: float, step: float) -> "FeatureGeometry":
        """The grid whose element ``j`` stands for native snippet position ``first + j * step`` (a crop: ``step``
        1; a resize: ``step`` (T - 1) / (L - 1)). Each element's span is ``step`` native spans wide and centred on
        the native span of its position, and its centre is that position's centre."""
        stride = self.stride * step
        origin = self.origin + first * self.stride - (stride - self.stride) / 2
        return FeatureGeometry(self.fps, self.window + stride - self.stride, stride, origin)

    def frames(self) -> "FeatureGeometry":
        """The grid of single frames of the same video (what a model predicting per frame outputs on)."""
        return FeatureGeometry(self.fps, 1, 1, self.origin)

    def to_dict(self) -> dict:
        d = {"fps": _plain(self.fps), "window": _plain(self.window), "stride": _plain(self.stride)}
        if self.origin:
            d["origin"] = _plain(self.origin)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureGeometry":
        return cls(fps=float(d["fps"]), window=_plain(float(d["window"])), stride=_plain(float(d["stride"])),
                   origin=float(d.get("origin", 0.0)))

"""The one place that maps seconds to snippet indices and back.

Snippet ``i`` covers frames ``[i * stride, i * stride + window)`` of the video resampled to ``fps``; the time a
snippet's score belongs to is its centre. Every stage works in seconds at its boundaries and converts here.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureGeometry:
    fps: float = 25.0
    window: int = 16
    stride: int = 16

    def __post_init__(self) -> None:
        if not (self.fps > 0 and self.window > 0 and self.stride > 0):
            raise ValueError(f"FeatureGeometry needs positive fps, window and stride, got {self}")

    @property
    def seconds_per_snippet(self) -> float:
        """Time between consecutive snippet starts."""
        return self.stride / self.fps

    def snippet_count(self, duration_s: float) -> int:
        """Snippets for a video of ``duration_s`` seconds; the last partial snippet is kept (padded), not dropped."""
        frames = duration_s * self.fps
        # 1e-9 absorbs float error in durations such as 18.16 s * 25 fps
        return max(1, math.ceil(frames / self.stride - 1e-9))

    def index_of(self, seconds, num_snippets: int | None = None):
        """Snippet whose stride span ``[i*stride, (i+1)*stride)`` holds ``seconds`` (scalar or array).

        With ``num_snippets`` the index is clipped into ``[0, num_snippets - 1]`` (a click on the last frame of a
        video belongs to the last snippet).
        """
        idx = np.floor(np.asarray(seconds, dtype=np.float64) * self.fps / self.stride + 1e-9).astype(np.int64)
        if num_snippets is not None:
            idx = np.clip(idx, 0, num_snippets - 1)
        return int(idx) if idx.ndim == 0 else idx

    def start_s(self, index):
        """Start time of snippet(s) ``index``."""
        return np.asarray(index, dtype=np.float64) * self.stride / self.fps

    def end_s(self, index):
        """End time of the span snippet(s) ``index`` stand for (one stride, so consecutive snippets tile time)."""
        return (np.asarray(index, dtype=np.float64) + 1) * self.stride / self.fps

    def centre_s(self, index):
        """Centre of the frames snippet(s) ``index`` see: the time its score belongs to."""
        return (np.asarray(index, dtype=np.float64) * self.stride + self.window / 2) / self.fps

    def span_to_seconds(self, first, last_exclusive):
        """Seconds covered by snippets ``[first, last_exclusive)``: ``(start_s, end_s)``."""
        return self.start_s(first), self.start_s(last_exclusive)

    def segment_to_span(self, start_s: float, end_s: float, num_snippets: int | None = None) -> tuple[int, int]:
        """Snippets ``[first, last_exclusive)`` whose spans overlap ``[start_s, end_s]`` (at least one)."""
        first = self.index_of(start_s, num_snippets)
        last = self.index_of(end_s, num_snippets)
        return int(first), int(max(last, first)) + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureGeometry":
        return cls(fps=float(d["fps"]), window=int(d["window"]), stride=int(d["stride"]))

"""The feature normalisation stage a run owns (``data.normalize``).

``standardize``: every dimension shifted and scaled by its mean and standard deviation over the snippets of the
run's training videos (held-out ones excluded), computed once when training starts. The statistics are recorded in
the run (``run_meta.json`` and the checkpoint's metadata) and the same transform is applied wherever the run reads
features: training batches, validation, test inference, ``infer`` and ``detect`` on new features.
``none``: the features as stored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

import numpy as np

from clicktal.pipeline.data.cache import FeatureMeta, FeatureSource

NormalizeKind = Literal["none", "standardize"]
KINDS = ("none", "standardize")
# a dimension this flat over the training set (a dead ReLU unit) is centred, not scaled by 1 / ~0
MIN_STD = 1e-6


@dataclass(frozen=True, eq=False)
class Normalization:
    """``kind`` and, for ``standardize``, the per-dimension ``mean`` and ``std`` ``[D]`` (float64) with the number
    of ``videos`` and ``snippets`` they were computed on."""

    kind: NormalizeKind = "none"
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    videos: int = 0
    snippets: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"normalize: {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "standardize":
            if self.mean is None or self.std is None or self.mean.shape != self.std.shape or self.mean.ndim != 1:
                raise ValueError("normalize: standardize needs a mean and a std of one [D] shape")
            if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all() and (self.std > 0).all()):
                raise ValueError("normalize: the statistics must be finite with a positive std")

    @property
    def active(self) -> bool:
        return self.kind != "none"

    def apply(self, features: np.ndarray, where: str = "features") -> np.ndarray:
        """``[T, D]`` -> ``[T, D]`` float32 (the input itself for ``none``)."""
        if not self.active:
            return features
        if features.ndim != 2 or features.shape[1] != self.mean.shape[0]:
            raise ValueError(f"{where}: {features.shape[-1]}-d features, the run's normalisation is "
                             f"{self.mean.shape[0]}-d")
        return ((features - self.mean) / self.std).astype(np.float32)

    def same_as(self, other: "Normalization") -> bool:
        if self.kind != other.kind:
            return False
        return not self.active or (np.array_equal(self.mean, other.mean) and np.array_equal(self.std, other.std))

    def to_dict(self) -> dict:
        out: dict = {"kind": self.kind}
        if self.active:
            out.update(videos=self.videos, snippets=self.snippets, mean=self.mean.tolist(), std=self.std.tolist())
        return out

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "the run") -> "Normalization":
        """From :meth:`to_dict`; ``None`` (a run from before the stage existed) is ``none``."""
        if not d:
            return cls()
        try:
            kind = d["kind"]
            if kind == "none":
                return cls()
            return cls(kind, np.asarray(d["mean"], np.float64), np.asarray(d["std"], np.float64),
                       int(d.get("videos", 0)), int(d.get("snippets", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: unreadable feature normalisation ({e})") from None


def fit_normalization(source: FeatureSource, video_ids: Iterable[str], kind: NormalizeKind) -> Normalization:
    """The statistics of ``kind`` over every snippet of ``video_ids`` (one pass, float64 sums)."""
    if kind not in KINDS:
        raise ValueError(f"normalize: {kind!r} is not one of {', '.join(KINDS)}")
    if kind == "none":
        return Normalization()
    total = squares = None
    n = videos = 0
    for vid in video_ids:
        x = np.asarray(source.load(vid)[0], np.float64)
        total = x.sum(0) if total is None else total + x.sum(0)
        squares = (x * x).sum(0) if squares is None else squares + (x * x).sum(0)
        n, videos = n + x.shape[0], videos + 1
    if not n:
        raise ValueError("normalize: no training snippets to compute the statistics on")
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean * mean, 0.0))
    return Normalization(kind, mean, np.where(std < MIN_STD, 1.0, std), videos, n)


class NormalizedSource(FeatureSource):
    """``source`` with ``normalization`` applied to every array it loads (metadata unchanged)."""

    def __init__(self, source: FeatureSource, normalization: Normalization):
        self.source, self.normalization = source, normalization
        self.root = getattr(source, "root", None)
        self.per_video_geometry = source.per_video_geometry

    def ids(self) -> list[str]:
        return self.source.ids()

    def meta(self, video_id: str) -> FeatureMeta:
        return self.source.meta(video_id)

    def load(self, video_id: str) -> tuple[np.ndarray, FeatureMeta]:
        features, meta = self.source.load(video_id)
        return self.normalization.apply(features, f"video {video_id}"), meta


def normalized(source: FeatureSource, normalization: Normalization) -> FeatureSource:
    """``source`` as a run with ``normalization`` reads it: wrapped once (a source already normalised the same way
    is returned as it is; one normalised otherwise is refused rather than transformed twice)."""
    if isinstance(source, NormalizedSource):
        if source.normalization.same_as(normalization):
            return source
        raise ValueError("features already normalised with other statistics than the run's")
    return NormalizedSource(source, normalization) if normalization.active else source


__all__ = ["KINDS", "NormalizeKind", "Normalization", "NormalizedSource", "fit_normalization", "normalized"]

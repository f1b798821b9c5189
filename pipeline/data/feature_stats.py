"""How a feature set behaves, in numbers that real and synthetic features can be compared on: how alike snippets
are, how far an action moves a snippet from its video's background and in which direction, how smooth features are
in time, and how their values are spread. ``benchmarks/world_stats.py`` prints them side by side; docs/world.md
says what they showed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clicktal.pipeline.data.annotations import GroundTruth
from clicktal.pipeline.data.cache import FeatureSource

# name -> what it measures (the table's rows, in order)
STATISTICS = {
    "pair_cosine": "cosine of random snippet pairs",
    "act_bg_cosine": "cosine of action mean and background mean",
    "shift_ratio": "‖mean_act − mean_bg‖ / ‖mean_bg‖",
    "shift_along_bg": "mean_bg · (mean_act − mean_bg) / ‖mean_bg‖²",
    "mean_over_std": "per-dimension mean / std (median)",
    "lag1_autocorr": "lag-1 autocorrelation of centred snippets",
    "near_zero": "share of values < 0.01",
}
PAIRS = 400  # random snippet pairs per video
NEAR_ZERO = 0.01


def action_mask(segments, centres_s: np.ndarray) -> np.ndarray:
    """``[T]`` True where a snippet's centre lies inside any of ``segments`` (start_s, end_s)."""
    inside = np.zeros(len(centres_s), bool)
    for s in segments:
        inside |= (centres_s >= s.start_s) & (centres_s <= s.end_s)
    return inside


def video_statistics(features: np.ndarray, action: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """:data:`STATISTICS` of one video's ``features [T, D]`` with its ``action [T]`` mask (the action / background
    statistics are NaN when either part is empty; the pair cosine when T < 2)."""
    x = np.asarray(features, np.float64)
    T = len(x)
    out = dict.fromkeys(STATISTICS, float("nan"))
    norms = np.linalg.norm(x, axis=1)
    if T >= 2:
        rng = np.random.default_rng(seed)
        i, j = rng.integers(0, T, PAIRS), rng.integers(0, T, PAIRS)
        keep = (i != j) & (norms[i] > 0) & (norms[j] > 0)
        if keep.any():
            i, j = i[keep], j[keep]
            out["pair_cosine"] = float(np.median(np.sum(x[i] * x[j], axis=1) / (norms[i] * norms[j])))
        centred = x - x.mean(axis=0)
        denom = float(np.sum(centred * centred))
        if denom > 0:
            out["lag1_autocorr"] = float(np.sum(centred[1:] * centred[:-1]) / denom)
    if action.any() and (~action).any():
        act, bg = x[action].mean(axis=0), x[~action].mean(axis=0)
        shift, bg_norm = act - bg, np.linalg.norm(bg)
        out["act_bg_cosine"] = float(act @ bg / (np.linalg.norm(act) * bg_norm))
        out["shift_ratio"] = float(np.linalg.norm(shift) / bg_norm)
        out["shift_along_bg"] = float(bg @ shift / bg_norm**2)
    std = x.std(axis=0)
    if (std > 0).any():
        out["mean_over_std"] = float(np.median(x.mean(axis=0)[std > 0] / std[std > 0]))
    out["near_zero"] = float(np.mean(x < NEAR_ZERO))
    return out


@dataclass
class FeatureStatistics:
    """Per-video statistics of a feature set and their medians over its videos (NaNs left out)."""

    per_video: dict[str, dict[str, float]]

    @property
    def median(self) -> dict[str, float]:
        out = {}
        for name in STATISTICS:
            values = [v[name] for v in self.per_video.values() if np.isfinite(v[name])]
            out[name] = float(np.median(values)) if values else float("nan")
        return out


def feature_statistics(source: FeatureSource, gt: GroundTruth, *, stream: str = "rgb", videos=None,
                       max_videos: int | None = None) -> FeatureStatistics:
    """:func:`video_statistics` of the ``stream`` columns of every video of ``source`` that ``gt`` annotates (or of
    ``videos``; the first ``max_videos`` in sorted order), actions where the ground truth puts them."""
    ids = sorted(videos if videos is not None else set(source.ids()) & set(gt.videos))
    if max_videos:
        ids = ids[:max_videos]
    per_video = {}
    for vid in ids:
        features, meta = source.load(vid)
        if stream not in meta.streams:
            raise ValueError(f"video {vid}: no stream {stream!r} (has {', '.join(meta.streams)})")
        lo, hi = meta.streams[stream]
        centres = meta.geometry.centre_s(np.arange(len(features)))
        per_video[vid] = video_statistics(features[:, lo:hi], action_mask(gt.videos[vid].segments, centres))
    return FeatureStatistics(per_video)


__all__ = ["STATISTICS", "video_statistics", "feature_statistics", "FeatureStatistics", "action_mask"]

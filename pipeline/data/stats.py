"""Annotation statistics: SF-Net's Table 1 (clicks per annotator against ground-truth instances) and the checks
that tell how much cheap labels can be trusted (clicks outside any instance, background clicks inside actions)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clicktal.pipeline.data.annotations import ActionClick, GroundTruth


@dataclass(frozen=True)
class ClickStats:
    source: str
    clicks: int
    instances: int  # ground-truth instances of the videos the statistics cover
    outside: int  # clicks inside no instance (action clicks) / inside an instance (background clicks)
    instances_hit: int  # instances holding at least one click of their own class (action clicks only)

    @property
    def outside_fraction(self) -> float:
        return self.outside / self.clicks if self.clicks else 0.0


def _covered_videos(gt: GroundTruth, clicked: set[str], subset: str | None):
    """The videos of ``subset``, or by default of every subset holding a clicked video (click files cover the
    training subset only, so instances are counted there, as SF-Net's Table 1 does)."""
    subsets = {subset} if subset else {gt.videos[v].subset for v in clicked if v in gt.videos}
    return {k: v for k, v in gt.videos.items() if v.subset in subsets}


def _inside_any(times: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``[N]`` bool: time ``n`` lies in some ``[starts[k], ends[k]]``."""
    if not len(starts):
        return np.zeros(len(times), dtype=bool)
    return ((times[:, None] >= starts[None]) & (times[:, None] <= ends[None])).any(axis=1)


def action_click_stats(gt: GroundTruth, clicks: dict[str, list[ActionClick]], source: str,
                       subset: str | None = None) -> ClickStats:
    """Clicks against instances; ``outside`` counts clicks in no instance of their own class."""
    videos = _covered_videos(gt, set(clicks), subset)
    total = outside = hit = instances = 0
    for vid, video in videos.items():
        instances += len(video.segments)
        vclicks = clicks.get(vid, [])
        total += len(vclicks)
        for label in {c.label for c in vclicks} | video.labels:
            segs = [s for s in video.segments if s.label == label]
            starts = np.array([s.start_s for s in segs])
            ends = np.array([s.end_s for s in segs])
            times = np.array([c.time_s for c in vclicks if c.label == label])
            outside += int((~_inside_any(times, starts, ends)).sum())
            if len(times) and len(segs):
                hit += int(((times[None] >= starts[:, None]) & (times[None] <= ends[:, None])).any(axis=1).sum())
    return ClickStats(source, total, instances, outside, hit)


def background_click_stats(gt: GroundTruth, clicks: dict[str, list[float]], source: str,
                           subset: str | None = None) -> ClickStats:
    """Background clicks against instances; ``outside`` counts clicks that fall inside an action instance."""
    videos = _covered_videos(gt, set(clicks), subset)
    total = inside = instances = 0
    for vid, video in videos.items():
        instances += len(video.segments)
        times = np.asarray(clicks.get(vid, []), dtype=np.float64)
        total += len(times)
        starts = np.array([s.start_s for s in video.segments])
        ends = np.array([s.end_s for s in video.segments])
        inside += int(_inside_any(times, starts, ends).sum())
    return ClickStats(source, total, instances, inside, 0)

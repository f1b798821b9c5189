"""Annotation statistics: SF-Net's Table 1 (clicks per annotator against ground-truth instances) and the checks
that tell how much cheap labels can be trusted (clicks outside any instance, background clicks inside actions)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from clicktal.pipeline.data.annotations import ActionClick, GroundTruth, Segment


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


def instance_hits(times: Sequence[float], instances: Sequence[Segment],
                  labels: Sequence[str] | None = None) -> np.ndarray:
    """``[N, K]`` bool: time ``n`` lies in ``[start, end]`` of instance ``k`` (and, with ``labels``, the instance is
    of class ``labels[n]``)."""
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    starts = np.array([s.start_s for s in instances], dtype=np.float64)
    ends = np.array([s.end_s for s in instances], dtype=np.float64)
    hits = (times[:, None] >= starts[None]) & (times[:, None] <= ends[None])
    if labels is not None:
        hits &= np.asarray(list(labels), dtype=object)[:, None] == np.array([s.label for s in instances],
                                                                                dtype=object)[None]
    return hits


def inside_instances(times: Sequence[float], instances: Sequence[Segment],
                     labels: Sequence[str] | None = None) -> np.ndarray:
    """``[N]`` bool: time ``n`` lies in some instance (of class ``labels[n]`` when ``labels`` is given)."""
    return instance_hits(times, instances, labels).any(axis=1)


def action_click_stats(gt: GroundTruth, clicks: dict[str, list[ActionClick]], source: str,
                       subset: str | None = None) -> ClickStats:
    """Clicks against instances; ``outside`` counts clicks in no instance of their own class."""
    videos = _covered_videos(gt, set(clicks), subset)
    total = outside = hit = instances = 0
    for vid, video in videos.items():
        instances += len(video.segments)
        vclicks = clicks.get(vid, [])
        total += len(vclicks)
        hits = instance_hits([c.time_s for c in vclicks], video.segments, [c.label for c in vclicks])
        outside += int((~hits.any(axis=1)).sum())
        hit += int(hits.any(axis=0).sum())
    return ClickStats(source, total, instances, outside, hit)


def background_click_stats(gt: GroundTruth, clicks: dict[str, list[float]], source: str,
                           subset: str | None = None) -> ClickStats:
    """Background clicks against instances; ``outside`` counts clicks that fall inside an action instance."""
    videos = _covered_videos(gt, set(clicks), subset)
    total = inside = instances = 0
    for vid, video in videos.items():
        instances += len(video.segments)
        times = clicks.get(vid, [])
        total += len(times)
        inside += int(inside_instances(times, video.segments).sum())
    return ClickStats(source, total, instances, inside, 0)

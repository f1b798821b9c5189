"""One :class:`Supervision` record per video — the only thing models read of the labels — and seeded simulators of
cheap labels from full boundaries.

Simulators (all take a ``numpy.random.Generator``, so a seed reproduces them):
* action clicks, ``uniform`` within each instance (SF-Net Table 2 "TS") or ``gaussian`` near its centre
  ("TS in GT"; the paper does not give the spread: ``sigma_fraction`` of the instance length, default 1/6 so that
  the instance holds ±3 sigma, draws clipped to the instance);
* background clicks, one uniform click per background gap (BackTAL Sec. 4.2: annotators click one frame of each
  background segment, and its Fig. 7 shows the positions are close to uniform);
* labelled sub-segments, one or two per instance (Ding et al. Sec. 3: a video is cut into 16-frame segments;
  "one-segment" labels one segment inside each instance, "two-segment" labels two, and everything between them
  counts as labelled). Segments are snippets of the given :class:`FeatureGeometry`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from clicktal.pipeline.data.annotations import ActionClick, GroundTruth, Segment, VideoAnnotation
from clicktal.pipeline.core.geometry import FeatureGeometry


@dataclass(frozen=True)
class Supervision:
    """What a model may learn from for one video; any subset is filled. Times in seconds."""

    video_id: str
    duration_s: float
    video_labels: frozenset[str] = frozenset()
    action_clicks: tuple[ActionClick, ...] = ()
    background_clicks: tuple[float, ...] = ()
    labelled_segments: tuple[Segment, ...] = ()
    boundaries: tuple[Segment, ...] | None = None  # full supervision; None when not given
    # the ground truth, for diagnostics only (how precise mined labels are); no loss may read it
    truth: tuple[Segment, ...] | None = None

    @classmethod
    def from_ground_truth(cls, video: VideoAnnotation, *, with_boundaries: bool = False,
                          with_video_labels: bool = True) -> "Supervision":
        """Video-level labels (unless ``with_video_labels`` is False) and, optionally, the full boundaries of an
        annotated video."""
        return cls(video.video_id, video.duration_s, video.labels if with_video_labels else frozenset(),
                   boundaries=video.segments if with_boundaries else None, truth=video.segments)


def _instance_bounds(video: VideoAnnotation) -> tuple[np.ndarray, np.ndarray]:
    starts = np.array([s.start_s for s in video.segments], dtype=np.float64)
    ends = np.array([s.end_s for s in video.segments], dtype=np.float64)
    return starts, ends


def simulate_action_clicks(video: VideoAnnotation, rng: np.random.Generator, *,
                           mode: Literal["uniform", "gaussian"] = "uniform",
                           sigma_fraction: float = 1 / 6) -> tuple[ActionClick, ...]:
    """One click per instance: uniform in ``[start, end]`` or Gaussian around its centre."""
    if not video.segments:
        return ()
    starts, ends = _instance_bounds(video)
    if mode == "uniform":
        times = rng.uniform(starts, ends)
    elif mode == "gaussian":
        times = np.clip(rng.normal((starts + ends) / 2, sigma_fraction * (ends - starts)), starts, ends)
    else:
        raise ValueError(f"unknown click simulation mode {mode!r} (uniform, gaussian)")
    clicks = [ActionClick(float(t), s.label) for t, s in zip(times, video.segments)]
    return tuple(sorted(clicks, key=lambda c: c.time_s))


def background_gaps(video: VideoAnnotation, *, min_gap_s: float = 0.0) -> list[tuple[float, float]]:
    """Stretches of ``[0, duration]`` covered by no instance, longer than ``min_gap_s``."""
    gaps, cursor = [], 0.0
    for s in sorted(video.segments, key=lambda x: x.start_s):
        if s.start_s - cursor > min_gap_s:
            gaps.append((cursor, s.start_s))
        cursor = max(cursor, s.end_s)
    if video.duration_s - cursor > min_gap_s:
        gaps.append((cursor, video.duration_s))
    return gaps


def simulate_background_clicks(video: VideoAnnotation, rng: np.random.Generator, *,
                               min_gap_s: float = 0.0) -> tuple[float, ...]:
    """One uniform click in each background gap (longer than ``min_gap_s``)."""
    gaps = background_gaps(video, min_gap_s=min_gap_s)
    if not gaps:
        return ()
    lo, hi = np.array(gaps).T
    return tuple(float(t) for t in rng.uniform(lo, hi))


def simulate_labelled_segments(video: VideoAnnotation, rng: np.random.Generator, geometry: FeatureGeometry, *,
                               per_instance: Literal[1, 2] = 1) -> tuple[Segment, ...]:
    """Ding et al.'s one-/two-segment labels: snippets of ``geometry`` inside each instance.

    ``per_instance=1`` labels one random snippet inside the instance; ``2`` draws two and labels the whole span
    from the first to the second. An instance shorter than a snippet gets the snippet holding its centre.
    """
    if per_instance not in (1, 2):
        raise ValueError(f"per_instance must be 1 or 2, got {per_instance}")
    out = []
    for seg in video.segments:
        first, end = geometry.span_inside(seg.start_s, seg.end_s)
        last = end - 1  # the last snippet ending inside
        if last < first:
            first = last = geometry.index_of((seg.start_s + seg.end_s) / 2)
        picks = np.sort(rng.integers(first, last + 1, size=per_instance))
        start, end = geometry.span_to_seconds(picks[0], picks[-1] + 1)
        # the extent, not the stated duration: some files state too short a duration (instances run past it)
        out.append(Segment(float(start), float(min(end, video.extent_s)), seg.label))
    return tuple(out)


def build_supervision(gt: GroundTruth, *, subset: str | None = None,
                      action_clicks: dict[str, list[ActionClick]] | None = None,
                      background_clicks: dict[str, list[float]] | None = None,
                      labelled_segments: dict[str, list[Segment]] | None = None,
                      with_boundaries: bool = False, with_video_labels: bool = True) -> dict[str, Supervision]:
    """Supervision records for the videos of ``subset``: video labels from the ground truth (unless
    ``with_video_labels`` is False) plus the given clicks and labelled segments, and optionally the boundaries."""
    out = {}
    for vid, video in gt.subset(subset).items():
        sup = Supervision.from_ground_truth(video, with_boundaries=with_boundaries,
                                            with_video_labels=with_video_labels)
        out[vid] = replace(
            sup,
            action_clicks=tuple((action_clicks or {}).get(vid, ())),
            background_clicks=tuple((background_clicks or {}).get(vid, ())),
            labelled_segments=tuple((labelled_segments or {}).get(vid, ())),
        )
    return out

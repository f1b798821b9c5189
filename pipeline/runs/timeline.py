"""Timeline pictures of one video's detections, drawn by ``clicktal-detect``, the demo and ``clicktal-report``.

Two panels share the time axis (seconds). Above: the per-snippet score of each class drawn below (the curve the
detections were grouped from). Below, one lane each: the ground truth of every class that has some (grey bars,
the lane named ``truth: <class>``), then the ``top`` best detections, best first (bars in their class's colour, the
lane named ``<class> #<rank>``, the detection's score at its end). A detection that matches a ground-truth
instance of its class as the mAP counts it (tIoU >= ``match_tiou``; best score first, each instance matched once)
has a black edge and ``✓ tIoU 0.62`` beside its score; one that overlaps an instance of its class without matching
it shows that tIoU alone. The title says ``top N of M`` when detections were left out, and a caption says what a
detection's score is in terms of the curve (from the run's post-processing when given): a segment score plus a
weighted video-level score is not on the curve's scale.
"""
from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from clicktal.pipeline.core.files import atomic_write
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.core.postprocess import PostprocessConfig
from clicktal.pipeline.data.annotations import Segment
from clicktal.pipeline.data.detections import Detection
from clicktal.pipeline.evaluation.detection import segment_iou

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MATCH_TIOU = 0.5  # the tIoU a detection needs to count as matching a ground-truth instance (mAP@0.5's rule)


@dataclass(frozen=True)
class Lane:
    """One detection lane: the detection, its best tIoU with a ground-truth instance of its class (0 when it
    overlaps none) and whether it matched one."""

    detection: Detection
    tiou: float
    matched: bool


@dataclass(frozen=True)
class TimelineSummary:
    """What a timeline shows: the classes with a curve, the detection lanes (best first), how many detections the
    video has, the ground-truth lane names and the caption explaining the scores."""

    classes: list[str]
    lanes: list[Lane]
    total: int
    truth_lanes: list[str]
    caption: str

    @property
    def title_suffix(self) -> str:
        """``top N of M detections`` when lanes were capped, else ``M detections``."""
        if len(self.lanes) < self.total:
            return f"top {len(self.lanes)} of {self.total} detections"
        return f"{self.total} detection{'s' if self.total != 1 else ''}"


def match_detections(detections: Sequence[Detection], truth: Sequence[Segment], *, tiou: float = MATCH_TIOU
                     ) -> list[tuple[float, bool]]:
    """For each of ``detections`` (one video's), in the given order: the tIoU shown for it and whether it matches
    a ground-truth segment of its class in ``truth``. Per class, detections by descending score each take the
    unmatched instance they overlap most when that tIoU is ``>= tiou`` (the mAP's greedy rule at one threshold);
    the tIoU is the matched instance's, or for a detection left unmatched its best with any instance of its class
    (0 when it overlaps none)."""
    out = [(0.0, False)] * len(detections)
    for label in {d.label for d in detections}:
        idx = [i for i, d in enumerate(detections) if d.label == label]
        gt = np.array([[s.start_s, s.end_s] for s in truth if s.label == label], dtype=np.float64).reshape(-1, 2)
        if not len(gt):
            continue
        seg = np.array([[detections[i].start_s, detections[i].end_s] for i in idx], dtype=np.float64)
        overlap = np.nan_to_num(segment_iou(seg, gt))  # [D, G]; 0/0 (two empty segments) is no overlap here
        taken = np.zeros(len(gt), dtype=bool)
        for row in sorted(range(len(idx)), key=lambda r: -detections[idx[r]].score):
            free = np.where(taken, -1.0, overlap[row])
            best = int(np.argmax(free))
            matched = bool(free[best] >= tiou and free[best] > 0)
            taken[best] |= matched
            out[idx[row]] = (float(free[best] if matched else overlap[row].max()), matched)
    return out


def describe_score(post: PostprocessConfig | None) -> str:
    """One line saying what a detection's score is, in terms of the curve drawn above it; without ``post`` (the
    recipe is unknown) a warning that it need not be on the curve's scale."""
    if post is None:
        return "bar number: the detection's score from its post-processing (not necessarily on the curve's scale)"
    curve = "its class's curve" + (" (interpolated to frames)" if post.resolution == "frame" else "")
    part = {"mean": f"mean of {curve} inside the segment",
            "max": f"highest value of {curve} inside the segment",
            "outer_inner": f"mean of {curve} inside the segment minus its mean over {post.inflation:g} x the "
                           f"segment's length on each side"}[post.scoring]
    if post.video_weight:
        video = (f"mean of the class's top 1/{post.video_topk_divisor} curve values" if post.video_score == "topk_mean"
                 else "the model's video-level score of the class")
        part += f" + {post.video_weight:g} x the video score ({video}); so it can exceed the curve"
    if post.nms == "soft":
        part += "; Soft-NMS lowered the scores of overlapping detections"
    return f"bar number: detection score = {part}"


def timeline_figure(video: str, scores: np.ndarray | None, grid: FeatureGeometry | None, classes: Sequence[str],
                    detections: Sequence[Detection], *, truth: Sequence[Segment] = (),
                    duration_s: float | None = None, top: int = 10, post: PostprocessConfig | None = None,
                    match_tiou: float = MATCH_TIOU) -> tuple[Figure, TimelineSummary]:
    """The timeline figure of ``video`` (see the module) and what it shows. ``scores [T, C]`` on ``grid`` (one row
    per snippet or frame, columns in ``classes`` order) are the curves; with ``scores`` None only the lanes are
    drawn. ``post``: the post-processing that made ``detections``, to explain their scores. The caller closes the
    figure (``matplotlib.pyplot.close``)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    order = list(classes)
    ranked = sorted(detections, key=lambda d: -d.score)
    matches = match_detections(ranked, truth, tiou=match_tiou)
    lanes = [Lane(d, t, m) for d, (t, m) in zip(ranked[:top], matches[:top])]
    truth_classes = sorted({s.label for s in truth}, key=_rank(order))
    shown = sorted({lane.detection.label for lane in lanes} | set(truth_classes), key=_rank(order))
    caption = describe_score(post) + f"; ✓: matches a ground-truth instance of its class at tIoU >= {match_tiou:g}"
    summary = TimelineSummary(shown, lanes, len(detections), [f"truth: {c}" for c in truth_classes], caption)

    n_rows = len(lanes) + len(truth_classes)
    lane_height = 0.8 + 0.28 * max(n_rows, 1)
    if scores is None:
        fig, bars = plt.subplots(1, 1, figsize=(10, 1.4 + lane_height))
        ax = None
    else:
        fig, (ax, bars) = plt.subplots(2, 1, figsize=(10, 3.6 + lane_height), sharex=True,
                                       height_ratios=[2.8, lane_height])
    colours = {c: plt.cm.tab10(i % 10) for i, c in enumerate(shown)}
    if ax is not None and grid is not None:
        t = grid.centre_s(np.arange(scores.shape[0]))
        for c in (c for c in shown if c in order):  # a truth class the model lacks has no curve
            ax.plot(t, scores[:, order.index(c)], color=colours[c], lw=1.2, label=c)
        ax.set_ylabel("class score\nper snippet")
        if shown:
            ax.legend(loc="upper right", fontsize=8)
    (ax or bars).set_title(f"{video}: {summary.title_suffix}", fontsize=10)

    end = duration_s or _extent(scores, grid, detections, truth)
    labels = []
    for rank, lane in enumerate(lanes):  # best on top
        d, y = lane.detection, n_rows - 1 - rank
        bars.barh(y, d.end_s - d.start_s, left=d.start_s, height=0.7, color=colours[d.label],
                  edgecolor="black" if lane.matched else "none", linewidth=1.5)
        note = f"  ✓ tIoU {lane.tiou:.2f}" if lane.matched else (f"  tIoU {lane.tiou:.2f}" if lane.tiou > 0 else "")
        if d.end_s < 0.8 * end:
            bars.text(d.end_s, y, f" {d.score:.2f}{note}", va="center", ha="left", fontsize=7)
        else:  # near the right edge the text goes left of the bar, inside the picture
            bars.text(d.start_s, y, f"{d.score:.2f}{note} ", va="center", ha="right", fontsize=7)
        labels.append((y, f"{d.label} #{rank + 1}"))
    for row, c in enumerate(truth_classes):
        y = len(truth_classes) - 1 - row
        for s in truth:
            if s.label == c:
                bars.barh(y, s.end_s - s.start_s, left=s.start_s, height=0.7, color="0.6",
                          edgecolor=colours[c], linewidth=1.5)
        labels.append((y, f"truth: {c}"))
    if labels:
        ys, names = zip(*labels)
        bars.set_yticks(list(ys), list(names), fontsize=7)
    else:
        bars.set_yticks([])
    bars.set_ylim(-0.6, max(n_rows, 1) - 0.4)
    bars.set_xlim(0, end)
    bars.set_xlabel("time (s)")
    fig.text(0.01, 0.005, caption, fontsize=7, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig, summary


def plot_timeline(path: str | os.PathLike, video: str, scores: np.ndarray | None, grid: FeatureGeometry | None,
                  classes: Sequence[str], detections: Sequence[Detection], *, truth: Sequence[Segment] = (),
                  duration_s: float | None = None, top: int = 10, post: PostprocessConfig | None = None,
                  match_tiou: float = MATCH_TIOU) -> TimelineSummary:
    """Write :func:`timeline_figure`'s picture of ``video`` as a PNG at ``path`` (atomically); returns what it
    shows."""
    fig, summary = timeline_figure(video, scores, grid, classes, detections, truth=truth, duration_s=duration_s,
                                   top=top, post=post, match_tiou=match_tiou)
    data = figure_png(fig)
    atomic_write(path, lambda f: f.write(data))
    return summary


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _rank(order: list[str]):
    """Sort key: a class's position in ``order``; classes outside it after those, by name."""
    return lambda c: (order.index(c), "") if c in order else (len(order), c)


def _extent(scores: np.ndarray | None, grid: FeatureGeometry | None, detections: Sequence[Detection],
            truth: Sequence[Segment]) -> float:
    """The time axis's end when the duration is unknown: the last scored snippet, detection or instance."""
    ends = [d.end_s for d in detections] + [s.end_s for s in truth]
    if scores is not None and grid is not None and scores.shape[0]:
        ends.append(float(grid.end_s(scores.shape[0] - 1)))
    return max(ends, default=1.0) or 1.0


__all__ = ["MATCH_TIOU", "Lane", "TimelineSummary", "match_detections", "describe_score", "timeline_figure",
           "plot_timeline", "figure_png"]

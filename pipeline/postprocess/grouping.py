"""Frame scores -> scored, labelled segments: multi-threshold grouping, segment scoring, class-wise NMS.

Models call :func:`detect_segments` with per-snippet class scores already combined the way their method wants
(SF-Net: class score + actionness; BackTAL: the min-max normalised class activation sequence) and a
:class:`PostprocessConfig`; each paper's own recipe is a named preset in :data:`PRESETS`. All seconds <-> snippet
mapping goes through :class:`~clicktal.pipeline.core.geometry.FeatureGeometry`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from clicktal.pipeline.data.detections import Detection
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.core.registry import Registry

Scoring = Literal["mean", "max", "outer_inner"]
NmsKind = Literal["none", "hard", "soft"]
Resolution = Literal["snippet", "frame"]
ThresholdReference = Literal["absolute", "mean", "range"]
VideoScore = Literal["given", "topk_mean"]


@dataclass(frozen=True)
class PostprocessConfig:
    """How frame scores become detections. Field groups follow the pipeline order.

    Classes: with ``class_threshold`` only classes whose video score is ``>=`` it are localised; with
    ``class_ratio`` only those whose video score is positive and ``>`` ratio x the video's best class score. The
    video scores are those the model gives (``video_score="given"``) or ``topk_mean``: per class, the mean of its
    ``max(L // video_topk_divisor, 1)`` highest scores over the video's ``L`` samples (SF-Net's code's rule, computed
    here on the stitched native-grid scores, so a tiled inference gets one video score, not the best tile's).

    Grouping: ``resolution="frame"`` first interpolates the snippet scores linearly (between snippet centres) to one
    score per frame of the resampled video, so boundaries land on frames instead of snippet edges. For each of
    ``thresholds`` a run of consecutive samples with score ``>=`` threshold (``>`` when ``strict``) is a segment;
    ``threshold_reference`` says what a threshold is relative to: ``absolute`` (the score itself), ``mean`` (a
    multiple of the class's mean score over the video) or ``range`` (a fraction of the way from the class's minimum
    to its maximum over the video: 0.5 is W-TALC's half-range threshold). Runs of the
    class-agnostic ``actionness`` signal at ``actionness_thresholds`` are proposals for every localised class too.
    Runs shorter than ``min_snippets`` snippets are dropped; a segment found at several thresholds is kept once.

    Scoring: ``mean`` or ``max`` of the class score inside, or ``outer_inner``: mean inside minus mean over the
    ``inflation`` x length samples (rounded up) on each side, clipped to the video, 0 when that region is empty
    (AutoLoc's outer-inner contrast). ``video_weight`` x the video-level class score is added to any of them.

    NMS, per class: ``hard`` drops segments with tIoU ``>= nms_tiou`` with a better one; ``soft`` is Gaussian
    Soft-NMS (score x exp(-tIoU^2 / ``soft_sigma``), dropped below ``soft_floor``). ``top_k`` caps the detections
    per video after NMS. ``nms_tiou_offset`` ties the NMS threshold to the evaluation's: a run's evaluation then
    groups once per evaluation tIoU ``t`` with NMS at ``t + nms_tiou_offset`` (:meth:`at_evaluation_tiou`), and
    ``nms_tiou`` is what detection without an evaluation threshold (``tools/detect.py``) uses.
    """

    class_threshold: float | None = None
    class_ratio: float | None = None
    video_score: VideoScore = "given"
    video_topk_divisor: int = 12
    resolution: Resolution = "snippet"
    thresholds: tuple[float, ...] = (0.5,)
    threshold_reference: ThresholdReference = "absolute"
    strict: bool = False
    actionness_thresholds: tuple[float, ...] = ()
    min_snippets: int = 1
    scoring: Scoring = "mean"
    inflation: float = 0.25
    video_weight: float = 0.0
    nms: NmsKind = "hard"
    nms_tiou: float = 0.5
    soft_sigma: float = 0.5
    soft_floor: float = 0.001
    top_k: int | None = None
    nms_tiou_offset: float | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.thresholds or self.actionness_thresholds, "needs thresholds or actionness_thresholds"),
            (self.scoring in ("mean", "max", "outer_inner"), f"unknown scoring {self.scoring!r}"),
            (self.nms in ("none", "hard", "soft"), f"unknown nms {self.nms!r}"),
            (self.resolution in ("snippet", "frame"), f"unknown resolution {self.resolution!r}"),
            (self.threshold_reference in ("absolute", "mean", "range"),
             f"unknown threshold_reference {self.threshold_reference!r}"),
            (self.min_snippets >= 1, f"min_snippets must be >= 1, got {self.min_snippets}"),
            (self.video_score in ("given", "topk_mean"), f"unknown video_score {self.video_score!r}"),
            (self.video_topk_divisor >= 1, f"video_topk_divisor must be >= 1, got {self.video_topk_divisor}"),
            (self.inflation >= 0, f"inflation must be >= 0, got {self.inflation}"),
            (0 < self.nms_tiou <= 1, f"nms_tiou must be in (0, 1], got {self.nms_tiou}"),
            (self.soft_sigma > 0, f"soft_sigma must be > 0, got {self.soft_sigma}"),
            (self.top_k is None or self.top_k >= 1, f"top_k must be >= 1, got {self.top_k}"),
            (self.nms_tiou_offset is None or self.nms == "hard",
             "nms_tiou_offset needs nms: hard (set nms_tiou_offset: null with another nms)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"PostprocessConfig: {message}")

    @property
    def needs_video_scores(self) -> bool:
        """Whether the model must pass ``video_scores`` (a ``topk_mean`` recipe computes its own)."""
        return self.video_score == "given" and self.uses_video_scores

    @property
    def uses_video_scores(self) -> bool:
        return self.video_weight != 0 or self.class_threshold is not None or self.class_ratio is not None

    def at_evaluation_tiou(self, tiou: float) -> "PostprocessConfig":
        """The recipe for an evaluation at ``tiou``: NMS at ``tiou + nms_tiou_offset`` (itself without an offset).
        An NMS threshold of 0 or below (FSN's rule at tIoU 0.1) suppresses any overlap but keeps disjoint segments."""
        if self.nms_tiou_offset is None:
            return self
        return replace(self, nms_tiou=min(max(float(tiou) + self.nms_tiou_offset, 1e-9), 1.0), nms_tiou_offset=None)


PRESETS: Registry[PostprocessConfig] = Registry("post-processing preset")

# SF-Net (Ma et al., ECCV 2020), paper Sec. 3.4: for each predicted class, an interval where class score +
# actionness exceeds the threshold at every frame is a segment; its confidence is the highest frame score inside.
# The paper gives no threshold value, class rule or minimum length; those come from github Flowerfan/SF-Net:
# eval.py generate_segment (threshold = mean of the combined score over the video with main.py
# threshold_type='mean' and options.py --adjust-mean 1, compared with '>'; classes with cs > max(cs) / 1.5 and
# cs > 0, cs the mean of the top max(T // 12, 1) class scores, which the model passes as video_scores; segments of
# >= 2 snippets; no NMS). The model combines the scores: the paper sums class score and actionness, the code weights
# actionness by options.py --actionness-weight 2.0.
PRESETS.register("sfnet")(PostprocessConfig(
    class_ratio=1 / 1.5, thresholds=(1.0,), threshold_reference="mean", strict=True, min_snippets=2,
    scoring="max", nms="none"))
# The code's variant (eval.py generate_segment): aggr_score = max(score inside) + cs[i], the video-level score.
PRESETS.register("sfnet_code")(PostprocessConfig(
    class_ratio=1 / 1.5, thresholds=(1.0,), threshold_reference="mean", strict=True, min_snippets=2,
    scoring="max", video_weight=1.0, nms="none"))
# The code's other evaluator, detectionMAP.py getLocMAP (inherited from W-TALC): half-range threshold
# max - (max - min) * 0.5 per class and video, classes with cs > max(cs) / 2 and cs > 0 (cs the mean of the top
# T // 8 activations, which the model passes as video_scores), max + cs, segments of >= 2 snippets, no NMS; its
# filter_segments drops detections overlapping the THUMOS14 ambiguous segments: the evaluator's ``ambiguous`` option.
PRESETS.register("sfnet_code_half_range")(PostprocessConfig(
    class_ratio=1 / 2, thresholds=(0.5,), threshold_reference="range", strict=True, min_snippets=2,
    scoring="max", video_weight=1.0, nms="none"))

# BackTAL (Yang et al., TPAMI 2021): Sec. 4.1 sets tau_cls = 0.25 and adopts "the same inference paradigm with
# BaS-Net"; Sec. 3.5 thresholds the class activation sequence of the confident classes and scores each instance by
# AutoLoc's outer-inner contrast. The paper states neither the thresholds, the inflation, the weight of the video
# score nor NMS; github VividLe/BackTAL experiments/THUMOS14.yaml does: ACT_THRESH 0:0.025:0.25 (exclusive),
# OUTER_LAMBDA 0.25, CONF_GAMMA 0.2 (score = inner - outer + 0.2 x video score, as BaS-Net's get_proposal_oic
# gamma=0.2), NMS_THRESHOLD 0.55; lib/post_process/functions.py adds (for THUMOS14) proposals from the min-max
# normalised feature magnitudes at 0.3:0.075:0.8 (the model passes them as ``actionness``), groups the CAS resized
# to the frame count, and keeps positions with score >= th and > 0 (hence strict: identical at th = 0, elsewhere up
# to exact ties).
# Left out on purpose: the code's outer region is one frame short on the right and reads the thresholded CAS, and
# its NMS adds 1 (second) to every length; here the outer region is symmetric and NMS uses plain tIoU.
PRESETS.register("backtal")(PostprocessConfig(
    class_threshold=0.25, resolution="frame", thresholds=tuple(round(0.025 * i, 3) for i in range(10)),
    strict=True, actionness_thresholds=tuple(round(0.3 + 0.075 * i, 3) for i in range(7)),
    scoring="outer_inner", inflation=0.25, video_weight=0.2, nms="hard", nms_tiou=0.55))

# Segment-level supervision (Ding et al.), Sec. 4.7: classes with s_a < 0 are dropped (class_threshold 0 on the
# top-k mean of C_a, which the model passes as video_scores), then C_a is thresholded along time. The paper names no
# threshold, segment score or NMS; it follows W-TALC [8] ("as in [8]"), whose evaluation is the half-range
# threshold with max + video score and no NMS (as SF-Net's detectionMAP.py inherits it, the sfnet_code_half_range
# preset). Segments of >= 2 snippets as there.
PRESETS.register("segment")(PostprocessConfig(
    class_threshold=0.0, thresholds=(0.5,), threshold_reference="range", strict=True, min_snippets=2,
    scoring="max", video_weight=1.0, nms="none"))

# FSN (Yang et al., "Exploring Frame Segmentation Networks for Temporal Action Localization"). What the paper states:
# the network's scores are upsampled to frames (Sec. 3.3: frame resolution), thresholds "uniformly selected from 0 to
# 1 with an interval of 0.1" on the frame "classification scores" with adjacent frames grouped (Sec. 3.5), and NMS
# "0.1 lower than the IoU threshold used during the evaluation" (Sec. 4.2), so a run evaluates once per tIoU
# (nms_tiou_offset; 0.4, the rule at the mAP@0.5 the paper headlines, where no evaluation tIoU exists). It gives no
# class rule, segment score or minimum length, says nothing of the background column, and we found no public code.
#
# ``fsn_literal``: that text read word for word, with our first choices where it is silent (every class grouped in
# every video, segment score = mean softmax inside, 0.0 and 1.0 kept as thresholds with >=, no minimum length).
PRESETS.register("fsn_literal")(PostprocessConfig(
    resolution="frame", thresholds=tuple(round(0.1 * i, 1) for i in range(11)), scoring="mean",
    nms="hard", nms_tiou=0.4, nms_tiou_offset=-0.1))
# ``fsn``: our choices where the paper is silent, each measured on held-out training videos (benchmarks/fsn_recipe.py,
# docs/fsn.md): the "classification score" thresholded is the frame's action probability 1 - P(background) (the
# model passes it as ``actionness``; FSN is the only method here with a background class, and inside ground truth
# P(bg) is far lower than any one class's probability is high), runs at 0.1:0.1:0.9 (0 gives the whole video, 1 only
# saturated frames) labelled with every class (a class rule, SF-Net's code's top-L/12 mean > best / 1.5, lost 2.2
# AVG held out on every seed: 40.3 against 42.5), runs of >= 10 frames (0.4 s at 25 fps), segment score AutoLoc's
# outer-inner contrast of the class probability (inflation 0.25) + the video score, the class's top-L/12 mean
# probability (a short nested fragment of a long action no longer ranks first), NMS at tIoU - 0.1 as the paper.
PRESETS.register("fsn")(PostprocessConfig(
    video_score="topk_mean", video_topk_divisor=12, resolution="frame", thresholds=(),
    actionness_thresholds=tuple(round(0.1 * i, 1) for i in range(1, 10)), min_snippets=10, scoring="outer_inner",
    inflation=0.25, video_weight=1.0, nms="hard", nms_tiou=0.4, nms_tiou_offset=-0.1))
# ``wfsn``: WFSN has no background class, so its signal is each class's own sequence; "other details are the same
# as strongly supervised FSN" (Sec. 3.5). Our choices (measured as above): the model passes the frame logits
# (``frame_signal: logits``), thresholded at 0.1:0.1:0.9 of each kept class's range over the video (a softmax over
# classes of an untrained background is not a probability of action), the class rule on the model's video score
# (Eq. 3's pooled softmax) > best / 1.5, runs of >= 10 frames, outer-inner contrast + video score, NMS at tIoU - 0.1.
PRESETS.register("wfsn")(PostprocessConfig(
    class_ratio=1 / 1.5, resolution="frame", thresholds=tuple(round(0.1 * i, 1) for i in range(1, 10)),
    threshold_reference="range", min_snippets=10, scoring="outer_inner", inflation=0.25, video_weight=1.0,
    nms="hard", nms_tiou=0.4, nms_tiou_offset=-0.1))


# The Kinetics baseline (models/kinetics.py, not a paper's method; our choices): classes whose video-averaged Kinetics
# probability is at least 0.1, runs of per-snippet probability at 0.1:0.1:0.9 at frame resolution, mean inside plus
# the video score (a confident video class ranks its segments first), class-wise NMS at 0.5.
PRESETS.register("kinetics")(PostprocessConfig(
    class_threshold=0.1, resolution="frame", thresholds=tuple(round(0.1 * i, 1) for i in range(1, 10)),
    scoring="mean", video_weight=1.0, nms="hard", nms_tiou=0.5))


def detect_segments(scores: np.ndarray, geometry: FeatureGeometry, classes: Sequence[str], video: str,
                    config: PostprocessConfig, *, video_scores: np.ndarray | None = None,
                    actionness: np.ndarray | None = None, class_mask: np.ndarray | None = None,
                    duration_s: float | None = None) -> list[Detection]:
    """Detections of one video, best first.

    Args:
        scores: ``[T, C]`` per-snippet class scores, columns in ``classes`` order.
        geometry: the geometry of the features the scores were computed from.
        classes: ``C`` label names.
        video: the video id written into each detection.
        config: the recipe; see :data:`PRESETS`.
        video_scores: ``[C]`` video-level class scores; required when ``config.needs_video_scores``.
        actionness: ``[T]`` class-agnostic signal grouped at ``config.actionness_thresholds``.
        class_mask: ``[C]`` bool, the classes to localise (anded with the config's class rule).
        duration_s: clip segment ends to the video's duration (the last snippet is padded past it).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(classes):
        raise ValueError(f"scores must be [T, {len(classes)}] (one column per class), got {scores.shape}")
    num_snippets = scores.shape[0]
    if config.video_score == "topk_mean" and num_snippets:
        k = max(num_snippets // config.video_topk_divisor, 1)
        video_scores = np.sort(scores, axis=0)[-k:].mean(0)
    selected = _select_classes(config, len(classes), video_scores, class_mask)
    if num_snippets == 0 or selected.size == 0:
        return []
    if config.actionness_thresholds:
        if actionness is None:
            raise ValueError("config.actionness_thresholds is set but no actionness was given")
        actionness = np.asarray(actionness, dtype=np.float64).reshape(-1)
        if actionness.shape[0] != num_snippets:
            raise ValueError(f"actionness must be [{num_snippets}], got {actionness.shape}")

    per_snippet = geometry.frames_per_snippet if config.resolution == "frame" else 1
    signal = scores[:, selected]
    if per_snippet > 1:
        signal = _upsample(signal, geometry, per_snippet)
        if config.actionness_thresholds:
            actionness = _upsample(actionness[:, None], geometry, per_snippet)[:, 0]

    segments = np.stack(_group(signal, actionness, config), axis=1)  # [N, 3]: class, start, end
    segments = segments[segments[:, 2] - segments[:, 1] >= config.min_snippets * per_snippet]
    if segments.size == 0:
        return []
    # a run found at several thresholds is one segment
    cls, start, end = np.unique(segments, axis=0).T

    seg_scores = _segment_scores(signal, cls, start, end, config.scoring, config.inflation)
    if config.video_weight:
        seg_scores = seg_scores + config.video_weight * np.asarray(video_scores, dtype=np.float64)[selected][cls]
    start_s, end_s = geometry.span_to_seconds(start / per_snippet, end / per_snippet)
    if duration_s is not None:
        start_s, end_s = np.minimum(start_s, duration_s), np.minimum(end_s, duration_s)

    keep, seg_scores = _classwise_nms(start_s, end_s, seg_scores, cls, config)
    return [Detection(video, classes[selected[c]], float(s), float(e), float(sc))
            for c, s, e, sc in zip(cls[keep], start_s[keep], end_s[keep], seg_scores)]


def _select_classes(config: PostprocessConfig, num_classes: int, video_scores: np.ndarray | None,
                    class_mask: np.ndarray | None) -> np.ndarray:
    """Indices of the classes to localise."""
    keep = np.ones(num_classes, bool)
    if class_mask is not None:
        class_mask = np.asarray(class_mask, dtype=bool)
        if class_mask.shape != (num_classes,):
            raise ValueError(f"class_mask must be [{num_classes}], got {class_mask.shape}")
        keep &= class_mask
    if config.uses_video_scores:
        if video_scores is None:
            raise ValueError("this config needs video_scores (video_weight, class_threshold or class_ratio is set)")
        video_scores = np.asarray(video_scores, dtype=np.float64)
        if video_scores.shape != (num_classes,):
            raise ValueError(f"video_scores must be [{num_classes}], got {video_scores.shape}")
        if config.class_threshold is not None:
            keep &= video_scores >= config.class_threshold
        if config.class_ratio is not None:
            keep &= (video_scores > config.class_ratio * video_scores.max()) & (video_scores > 0)
    return np.flatnonzero(keep)


def _upsample(x: np.ndarray, geometry: FeatureGeometry, per_snippet: int) -> np.ndarray:
    """``[T, D]`` snippet values -> ``[T * per_snippet, D]``, linear between snippet centres, constant past the
    first and last centre (like cv2.resize / bilinear upsampling, which BackTAL and FSN use)."""
    num = x.shape[0]
    centres = geometry.centre_s(np.arange(num))
    sample_times = geometry.start_s((np.arange(num * per_snippet) + 0.5) / per_snippet)
    pos = np.interp(sample_times, centres, np.arange(num, dtype=np.float64))
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, num - 1)
    w = (pos - lo)[:, None]
    return x[lo] * (1 - w) + x[hi] * w


def find_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of True along the last axis of ``mask`` ``[R, L]``: ``(row, start, end_exclusive)``, each ``[N]``,
    ordered by row then start."""
    mask = np.asarray(mask, dtype=bool)
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    # np.nonzero walks row-major, so the k-th rising edge of a row pairs with its k-th falling edge
    row, start = np.nonzero(edges == 1)
    _, end = np.nonzero(edges == -1)
    return row, start, end


def _group(signal: np.ndarray, actionness: np.ndarray | None, config: PostprocessConfig
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate segments ``(class, start, end_exclusive)`` in samples of ``signal`` ``[L, C]``."""
    num_classes = signal.shape[1]
    compare = np.greater if config.strict else np.greater_equal
    parts = []
    if config.thresholds:
        thr = np.asarray(config.thresholds, dtype=np.float64)[:, None]  # [K, 1]
        if config.threshold_reference == "mean":
            thr = thr * signal.mean(axis=0)[None, :]  # [K, C]
        elif config.threshold_reference == "range":
            low, high = signal.min(axis=0)[None, :], signal.max(axis=0)[None, :]
            thr = low + thr * (high - low)  # [K, C]
        mask = compare(signal.T[None, :, :], thr[:, :, None])  # [K, C, L]
        row, start, end = find_runs(mask.reshape(-1, signal.shape[0]))
        parts.append((row % num_classes, start, end))
    if config.actionness_thresholds:
        thr = np.asarray(config.actionness_thresholds, dtype=np.float64)[:, None]
        _, start, end = find_runs(compare(actionness[None, :], thr))
        # class-agnostic proposals stand for every localised class
        parts.append((np.repeat(np.arange(num_classes), start.size), np.tile(start, num_classes),
                      np.tile(end, num_classes)))
    return tuple(np.concatenate(p).astype(np.int64) for p in zip(*parts))


def _segment_scores(signal: np.ndarray, cls: np.ndarray, start: np.ndarray, end: np.ndarray, scoring: Scoring,
                    inflation: float) -> np.ndarray:
    """``[N]`` scores of segments ``[start, end)`` of columns ``cls`` of ``signal`` ``[L, C]``."""
    length = signal.shape[0]
    if scoring == "max":
        # maximum.reduceat over [start, end) pairs of the column-major signal; the sentinel keeps end indices valid
        flat = np.append(signal.T.ravel(), 0.0)
        base = cls * length
        return np.maximum.reduceat(flat, np.stack([base + start, base + end], 1).ravel())[::2]
    csum = np.zeros((length + 1, signal.shape[1]))
    np.cumsum(signal, axis=0, out=csum[1:])
    inner = (csum[end, cls] - csum[start, cls]) / (end - start)
    if scoring == "mean":
        return inner
    # 1e-9: 0.25 * 4 must give 1 sample, not 2 after float error
    pad = np.ceil(inflation * (end - start) - 1e-9).astype(np.int64)
    left, right = np.maximum(start - pad, 0), np.minimum(end + pad, length)
    outer_sum = (csum[start, cls] - csum[left, cls]) + (csum[right, cls] - csum[end, cls])
    outer_len = (start - left) + (right - end)
    outer = np.divide(outer_sum, outer_len, out=np.zeros_like(outer_sum), where=outer_len > 0)
    return inner - outer


def pairwise_tiou(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """``[N, N]`` temporal IoU of segments ``[start, end]`` (0 where both are empty)."""
    inter = np.clip(np.minimum(end[:, None], end[None, :]) - np.maximum(start[:, None], start[None, :]), 0, None)
    length = end - start
    union = length[:, None] + length[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(start: np.ndarray, end: np.ndarray, scores: np.ndarray, tiou: float, top_k: int | None = None
        ) -> np.ndarray:
    """Greedy hard NMS of one class: indices kept, best first. Score ties keep the earlier segment."""
    order = np.argsort(-scores, kind="stable")
    overlap = pairwise_tiou(start[order], end[order]) >= tiou
    suppressed = np.zeros(order.size, bool)
    keep = []
    for i in range(order.size):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) == top_k:
            break
        suppressed |= overlap[i]
    return order[np.asarray(keep, dtype=np.int64)]


def soft_nms(start: np.ndarray, end: np.ndarray, scores: np.ndarray, sigma: float, floor: float,
             top_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian Soft-NMS of one class (Bodla et al. 2017; ActionFormer's method 2): ``(indices, decayed
    scores)``, best first. Segments whose score decays below ``floor`` are dropped."""
    overlap = pairwise_tiou(start, end)
    current = np.asarray(scores, dtype=np.float64).copy()
    alive = current >= floor
    keep, kept = [], []
    while alive.any() and len(keep) != top_k:
        live = np.flatnonzero(alive)
        i = live[np.argmax(current[live])]
        keep.append(i)
        kept.append(current[i])
        alive[i] = False
        live = np.flatnonzero(alive)
        current[live] *= np.exp(-overlap[i, live] ** 2 / sigma)
        alive[live] = current[live] >= floor
    return np.asarray(keep, dtype=np.int64), np.asarray(kept, dtype=np.float64)


def _classwise_nms(start: np.ndarray, end: np.ndarray, scores: np.ndarray, cls: np.ndarray,
                   config: PostprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, scores)`` of the segments kept, best first, at most ``config.top_k``."""
    if config.nms == "none":
        keep, kept = np.arange(scores.size), scores
    else:
        keeps, kepts = [], []
        for c in np.unique(cls):
            idx = np.flatnonzero(cls == c)
            if config.nms == "hard":
                k = nms(start[idx], end[idx], scores[idx], config.nms_tiou, config.top_k)
                keeps.append(idx[k])
                kepts.append(scores[idx[k]])
            else:
                k, s = soft_nms(start[idx], end[idx], scores[idx], config.soft_sigma, config.soft_floor,
                                config.top_k)
                keeps.append(idx[k])
                kepts.append(s)
        keep, kept = np.concatenate(keeps), np.concatenate(kepts)
    order = np.argsort(-kept, kind="stable")[:config.top_k]
    return keep[order], kept[order]


"""Frame scores -> scored, labelled segments: multi-threshold grouping, segment scoring, class-wise NMS.

The generic mechanisms only: models call :func:`detect_segments` with per-snippet class scores already combined
the way their method wants and a :class:`~clicktal.pipeline.core.postprocess.PostprocessConfig` (the recipe, in
``pipeline/core/postprocess.py``); each method declares its paper's recipes as named presets beside its own config,
registered in :data:`PRESETS`. All seconds <-> snippet mapping goes through
:class:`~clicktal.pipeline.core.geometry.FeatureGeometry`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clicktal.pipeline.core.geometry import FeatureGeometry, interpolate
from clicktal.pipeline.core.postprocess import PRESETS, PostprocessConfig, Scoring
from clicktal.pipeline.data.detections import Detection

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
    first and last centre (like cv2.resize / bilinear upsampling, as methods resizing a score map to frames do)."""
    step = geometry.stride / per_snippet
    return interpolate(x, geometry, FeatureGeometry(geometry.fps, step, step, geometry.origin), x.shape[0] * per_snippet)


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


__all__ = ["PRESETS", "PostprocessConfig", "detect_segments", "find_runs", "nms", "pairwise_tiou", "soft_nms"]

"""Detection mAP equal to the official ActivityNet evaluator, the THUMOS14 ambiguous option, and frame-level mAP.

:func:`evaluate_detections` reproduces ``compute_average_precision_detection`` of github activitynet/ActivityNet
``Evaluation/eval_detection.py`` (with ``interpolated_prec_rec`` and ``segment_iou`` of ``Evaluation/utils.py``):

* classes are the labels of the ground truth in the subset; a class without detections has AP 0;
* each class's detections, in input order (results JSON order), are ranked by ``score.argsort()[::-1]``, the
  official call, so score ties break exactly as there;
* a detection on a video without ground truth of its class is a false positive; so is one on a video outside the
  subset (the official evaluator keeps every video of the results file);
* a detection takes the unmatched ground truth it overlaps most: candidates in ``tiou.argsort()[::-1]`` order (ties
  as there), stopping at the first below the threshold, with one lock per tIoU threshold;
* a zero-length detection and a zero-length ground truth have tIoU 0 / 0 = NaN; ``NaN < threshold`` is False and
  argsort puts NaN last, so the official code matches such a pair at every threshold, ahead of any other
  candidate. This is mirrored, not fixed;
* AP is the VOC 2011 interpolated area (``interpolated_prec_rec``); mAP is the mean over classes;
* a detection reaching outside ``[0, duration]`` of its video is evaluated as given, as the official code does
  (it never reads the duration); the result counts such detections (``n_outside_video``, with the later of the
  stated duration and the last annotated end as the duration) and an :class:`EvaluationWarning` says how many.

Per-class APs are bit-identical to the official code's. The official code walks the detections one by one for
every threshold; here the tIoU matrix of each (class, video) is computed once (in bounded chunks) and the greedy
matching runs for all thresholds, classes and videos at once (see :func:`_greedy_match`). Ground-truth segments
keep file order and classes are indexed in order of first appearance, as in the official code, so that tIoU ties
and the floating-point sum of the class mean come out the same.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import warnings

import numpy as np

from clicktal.pipeline.data.annotations import GroundTruth
from clicktal.pipeline.data.detections import Detection, DetectionTable, detections_from_json
from clicktal.pipeline.core.geometry import FeatureGeometry


class EvaluationError(ValueError):
    """Detections or ground truth that cannot be evaluated; the message says which."""


class EvaluationWarning(UserWarning):
    """Detections evaluated as the official code does although they look wrong (outside their video)."""


def parse_tiou(spec: str) -> tuple[float, ...]:
    """tIoU thresholds from ``"a:b"`` (step 0.1), ``"a:step:b"`` (both inclusive), ``"0.3,0.5,0.7"`` or ``"0.5"``.

    Ranges are ``np.linspace(a, b, n)``: the same floats as the ``np.linspace(0.1, 0.7, 7)`` that SF-Net and BaS-Net
    pass to the official evaluator and its default ``np.linspace(0.5, 0.95, 10)``. A tIoU equal to a threshold is
    a match, so the exact float can matter.
    """
    def number(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"tIoU spec {spec!r}: {text!r} is not a number") from None

    text = spec.strip()
    if ":" in text:
        parts = [number(p) for p in text.split(":")]
        if len(parts) not in (2, 3):
            raise ValueError(f"tIoU spec {spec!r}: expected 'a:b' or 'a:step:b'")
        lo, step, hi = (parts[0], 0.1, parts[1]) if len(parts) == 2 else parts
        if step <= 0 or hi < lo:
            raise ValueError(f"tIoU spec {spec!r}: needs a <= b and a positive step")
        n = round((hi - lo) / step) + 1
        if abs(lo + (n - 1) * step - hi) > 1e-9:
            raise ValueError(f"tIoU spec {spec!r}: step {step} does not divide [{lo}, {hi}]")
        values = tuple(float(v) for v in np.linspace(lo, hi, n))
    else:
        values = tuple(number(p) for p in text.split(","))
    if not all(0 <= v <= 1 for v in values):
        raise ValueError(f"tIoU spec {spec!r}: thresholds must lie in [0, 1]")
    return values


# Averages reported when the evaluated thresholds contain them: the 0.1:0.5, 0.1:0.7 and 0.3:0.7 of THUMOS14 papers,
# ActivityNet's 0.5:0.05:0.95.
NAMED_RANGES: dict[str, tuple[float, ...]] = {
    name: parse_tiou(name) for name in ("0.1:0.5", "0.1:0.7", "0.3:0.7", "0.5:0.05:0.95")}


@dataclass(frozen=True)
class EvaluationResult:
    """Detection mAP; APs are fractions in [0, 1], one entry per threshold in ``tiou_thresholds`` order."""

    tiou_thresholds: tuple[float, ...]
    mAP: tuple[float, ...]
    average_mAP: float
    per_class_AP: dict[str, tuple[float, ...]]
    range_mAP: dict[str, float]  # name in NAMED_RANGES -> mean of mAP over that range
    n_detections: int  # evaluated
    n_unknown_label: int  # dropped with ignore_unknown_labels
    n_ambiguous: int  # dropped for overlapping an ambiguous segment
    n_outside_subset: int  # on videos outside the subset: evaluated, all false positives
    n_outside_video: int = 0  # evaluated, reaching before 0 s or past the video's duration

    def to_json(self) -> dict:
        return {"tiou_thresholds": list(self.tiou_thresholds), "mAP": list(self.mAP),
                "average_mAP": self.average_mAP,
                "per_class_AP": {k: list(v) for k, v in self.per_class_AP.items()},
                "range_mAP": dict(self.range_mAP)}


def evaluate_detections(gt: GroundTruth, detections: DetectionTable | Sequence[Detection] | Mapping, tiou_thresholds: Sequence[float],
                        subset: str | None = None, ambiguous: Mapping[str, Sequence[tuple[float, float]]] | None = None,
                        ignore_unknown_labels: bool = False) -> EvaluationResult:
    """ActivityNet detection mAP of ``detections`` (or a parsed results JSON mapping) against ``gt``.

    Args:
        tiou_thresholds: ``[K]`` thresholds, e.g. from :func:`parse_tiou`.
        subset: evaluate the ground truth of this subset only (all videos when None).
        ambiguous: video -> segments (e.g. THUMOS14's, from ``read_ambiguous``); detections with positive overlap
            with one of their video's are dropped before evaluation, as W-TALC's and SF-Net's detectionMAP.py
            ``filter_segments`` do.
        ignore_unknown_labels: drop and count detections whose label has no ground truth in the subset (otherwise
            an error naming the labels; the official code fails with a KeyError).
    """
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size == 0:
        raise EvaluationError("no tIoU thresholds given")
    if isinstance(detections, Mapping):
        detections = detections_from_json(detections)
    if not isinstance(detections, DetectionTable):
        detections = DetectionTable.from_detections(detections)
    videos = gt.subset(subset)
    classes = gt.classes_in_order(subset)
    if not classes:
        raise EvaluationError(f"{gt.source}: no ground-truth segments in subset {subset!r}")

    # codes into the ground truth's classes and videos; a detection keeps its input position, which decides ties
    n_in = len(detections)
    class_index = {c: i for i, c in enumerate(classes)}
    label_code = np.array([class_index.get(c, -1) for c in detections.labels], np.int64)
    det_label = label_code[detections.label]
    if (label_code < 0).any() and not ignore_unknown_labels:
        unknown = np.bincount(detections.label, minlength=len(detections.labels))
        listed = ", ".join(f"{detections.labels[c]!r} ({unknown[c]})"
                           for c in sorted(np.flatnonzero(label_code < 0), key=lambda c: -unknown[c]))
        raise EvaluationError(f"detections with labels that have no ground truth in subset {subset!r} of "
                              f"{gt.source}: {listed}; pass ignore_unknown_labels to drop them")
    video_index = {v: i for i, v in enumerate(videos)}
    for v in detections.videos:
        video_index.setdefault(v, len(video_index))
    det_video = np.array([video_index[v] for v in detections.videos], np.int64)[detections.video]
    det_seg, det_score = detections.segment, detections.score

    known = det_label >= 0
    unambiguous = (_clear_of_ambiguous(det_video, det_seg, ambiguous, video_index) if ambiguous
                   else np.ones(n_in, bool))
    keep = known & unambiguous
    extent = [gt.videos[v].extent_s if v in gt.videos else np.inf for v in video_index]
    outside = keep & ((det_seg[:, 0] < 0) | (det_seg[:, 1] > np.asarray(extent, np.float64)[det_video]))
    if outside.any():
        warnings.warn(f"{int(outside.sum())} of the evaluated detections reach outside [0, duration] of their "
                      f"video; they are evaluated as given (as the official code does)", EvaluationWarning,
                      stacklevel=2)
    det_video, det_label, det_seg, det_score = det_video[keep], det_label[keep], det_seg[keep], det_score[keep]

    gt_rows = [(video_index[v], class_index[s.label], s.start_s, s.end_s)
               for v, ann in videos.items() for s in ann.segments]
    gt_video, gt_label = (np.array([r[i] for r in gt_rows], np.int64) for i in (0, 1))
    gt_seg = np.array([r[2:] for r in gt_rows], dtype=np.float64)

    # Rank each class's detections as the official code does; ``ranked`` holds them class after class.
    by_class = np.argsort(det_label, kind="stable")  # grouped by class, input order inside
    bounds = np.searchsorted(det_label[by_class], np.arange(len(classes) + 1))
    ranked = np.concatenate([by_class[a:b][det_score[by_class[a:b]].argsort()[::-1]]
                             for a, b in zip(bounds[:-1], bounds[1:])])
    tp = _greedy_match(det_video[ranked], det_label[ranked], det_seg[ranked], gt_video, gt_label, gt_seg,
                       thresholds)  # [K, N]

    ap = np.zeros((thresholds.size, len(classes)))
    npos = np.bincount(gt_label, minlength=len(classes)).astype(np.float64)
    for c, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        if b > a:
            ap[:, c] = _interpolated_ap(tp[:, a:b], npos[c])
    mean_ap = ap.mean(axis=1)
    return EvaluationResult(
        tiou_thresholds=tuple(float(t) for t in thresholds), mAP=tuple(float(m) for m in mean_ap),
        average_mAP=float(mean_ap.mean()),
        per_class_AP={c: tuple(float(x) for x in ap[:, i]) for i, c in enumerate(classes)},
        range_mAP=_range_means(thresholds, mean_ap), n_detections=int(keep.sum()),
        n_unknown_label=int((~known).sum()), n_ambiguous=int((known & ~unambiguous).sum()),
        n_outside_subset=int((det_video >= len(videos)).sum()), n_outside_video=int(outside.sum()))


def _clear_of_ambiguous(det_video: np.ndarray, det_seg: np.ndarray,
                        ambiguous: Mapping[str, Sequence[tuple[float, float]]], video_index: Mapping[str, int]
                        ) -> np.ndarray:
    """``[N]`` True where a detection has no positive overlap with an ambiguous segment of its video."""
    keep = np.ones(det_video.shape[0], bool)
    for video, segments in ambiguous.items():
        idx = np.flatnonzero(det_video == video_index.get(video, -1))
        if idx.size:
            amb = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
            seg = det_seg[idx]
            overlap = np.minimum(seg[:, 1:], amb[None, :, 1]) - np.maximum(seg[:, :1], amb[None, :, 0])
            keep[idx] = ~(overlap > 0).any(axis=1)
    return keep


def segment_iou(target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """tIoU of segments ``target`` ``[P, 2]`` with ``candidates`` ``[G, 2]``: ``[P, G]``, computed exactly as the
    official ``segment_iou`` (same operations in the same order, so the same floats; 0/0 gives NaN)."""
    inter = (np.minimum(target[:, 1:], candidates[None, :, 1])
             - np.maximum(target[:, :1], candidates[None, :, 0])).clip(0)
    union = (candidates[None, :, 1] - candidates[None, :, 0]) + (target[:, 1:] - target[:, :1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


_CHUNK = 1 << 20  # tIoU entries computed at once


def _greedy_match(det_video: np.ndarray, det_label: np.ndarray, det_seg: np.ndarray, gt_video: np.ndarray,
                  gt_label: np.ndarray, gt_seg: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """True positives ``[K, N]`` of ``N`` ranked detections (class after class, best first inside a class).

    The official loop: in rank order, a detection walks its video's ground truth of its class in
    ``tiou.argsort()[::-1]`` order, skips those locked at this threshold, takes the first unlocked one, and stops
    (false positive) at the first with ``tiou < threshold``. So its options are a prefix of that order, and it takes
    its first option not locked by a better-ranked detection ("serial dictatorship").

    Here every (threshold, detection) is a row with its options as edges, and rounds run on all rows at once: a
    row whose first open option ``j`` is wanted (as any open option) by no better-ranked undecided row gets ``j``
    exactly as in the sequential loop, since options only close over time; rows left with no open option are
    false positives. The best undecided row of every (threshold, class, video) always qualifies, so each round
    settles at least one; in practice a handful of rounds settle everything.
    """
    n_det, n_gt, n_thr = det_video.shape[0], gt_video.shape[0], thresholds.size
    rows, gts = [], []
    # (class, video) blocks of detections, rank order kept inside a block
    block_order = np.lexsort((np.arange(n_det), det_video, det_label))
    n_videos = max(det_video.max(initial=0), gt_video.max(initial=0)) + 1
    keys = det_label[block_order] * n_videos + det_video[block_order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if n_det else np.empty(0, np.int64)
    gt_by_key: dict[int, list[int]] = {}
    for g, key in enumerate((gt_label * n_videos + gt_video).tolist()):
        gt_by_key.setdefault(key, []).append(g)
    for a, b in zip(starts, np.r_[starts[1:], n_det]):
        gt_idx = gt_by_key.get(int(keys[a]))
        if gt_idx is None:
            continue  # no ground truth of this class in this video: false positives
        gt_idx = np.asarray(gt_idx)
        chunk = max(1, _CHUNK // gt_idx.size)  # bounds the [p, g] temporaries of a long video
        for c in range(a, b, chunk):
            det_idx = block_order[c:min(c + chunk, b)]
            tiou = segment_iou(det_seg[det_idx], gt_seg[gt_idx])  # [p, g]
            i, j, value = _options(tiou, thresholds.min())
            for k, thr in enumerate(thresholds):
                # a row's options at a stricter threshold are a prefix of its options at the loosest
                at_k = ~(value < thr)
                rows.append(k * n_det + det_idx[i[at_k]])
                gts.append(k * n_gt + gt_idx[j[at_k]])

    tp = np.zeros(n_thr * n_det, bool)
    if rows:
        rows, gts = np.concatenate(rows), np.concatenate(gts)
        locked = np.zeros(n_thr * n_gt, bool)
        best = np.empty(n_thr * n_gt, np.int64)
        while rows.size:
            first = np.r_[True, rows[1:] != rows[:-1]]
            top_row, top_gt = rows[first], gts[first]
            best.fill(np.iinfo(np.int64).max)
            np.minimum.at(best, gts, rows)  # best-ranked undecided row wanting each ground truth
            win = best[top_gt] == top_row
            tp[top_row[win]] = True
            locked[top_gt[win]] = True
            open_ = ~(tp[rows] | locked[gts])
            rows, gts = rows[open_], gts[open_]
    return tp.reshape(n_thr, n_det)


def _options(tiou: np.ndarray, loosest: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The options ``(row, column, tiou)``, each ``[E]``, of every row of ``tiou`` ``[p, g]`` at threshold
    ``loosest``: the prefix of ``tiou[row].argsort()[::-1]`` before the first value below it, row after row.

    Sorting only the options by value gives the same order wherever a row's options are distinct; rows with equal
    options (NaNs count as equal) take the official order from an argsort of the whole row, because an unstable
    sort orders equal values by the whole array it sorts.
    """
    i, j = np.nonzero(~(tiou < loosest))
    value = tiou[i, j]
    order = np.lexsort((np.where(np.isnan(value), -np.inf, -value), i))  # NaN first, as argsort()[::-1] puts it
    i, j, value = i[order], j[order], value[order]
    equal = (i[1:] == i[:-1]) & ((value[1:] == value[:-1]) | (np.isnan(value[1:]) & np.isnan(value[:-1])))
    if not equal.any():
        return i, j, value
    tied = np.unique(i[1:][equal])
    untied = ~np.isin(i, tied)
    count = np.bincount(i, minlength=tiou.shape[0])[tied]
    pref = np.argsort(tiou[tied], axis=1)[:, ::-1]  # row by row the same as the official 1-d argsort
    r, q = np.nonzero(np.arange(tiou.shape[1])[None, :] < count[:, None])
    i, j = np.r_[i[untied], tied[r]], np.r_[j[untied], pref[r, q]]
    by_row = np.argsort(i, kind="stable")
    return i[by_row], j[by_row], tiou[i[by_row], j[by_row]]


def _interpolated_ap(tp: np.ndarray, npos: float) -> np.ndarray:
    """``[K]`` APs from true positives ``[K, n]`` in rank order, as the official code (VOC 2011 interpolation)."""
    tp = tp.astype(np.float64)
    tp_cumsum = np.cumsum(tp, axis=1)
    fp_cumsum = np.cumsum(1.0 - tp, axis=1)
    recall = tp_cumsum / npos
    precision = tp_cumsum / (tp_cumsum + fp_cumsum)
    out = np.empty(tp.shape[0])
    for k in range(tp.shape[0]):
        mprec = np.hstack([[0], precision[k], [0]])
        mrec = np.hstack([[0], recall[k], [1]])
        mprec = np.maximum.accumulate(mprec[::-1])[::-1]
        idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
        out[k] = np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])
    return out


def _range_means(thresholds: np.ndarray, mean_ap: np.ndarray) -> dict[str, float]:
    out = {}
    for name, members in NAMED_RANGES.items():
        hit = [np.flatnonzero(np.isclose(thresholds, m, rtol=0, atol=1e-9)) for m in members]
        if all(h.size for h in hit):
            out[name] = float(np.mean([mean_ap[h[0]] for h in hit]))
    return out


@dataclass(frozen=True)
class FrameLevelResult:
    mAP: float
    per_class_AP: dict[str, float]


def frame_level_map(gt: GroundTruth, scores: Mapping[str, np.ndarray], classes: Sequence[str],
                    geometry: FeatureGeometry, subset: str | None = None) -> FrameLevelResult:
    """Frame-level mAP (MultiLSTM's per-frame protocol): per class, every snippet of every video of the subset
    is ranked by its score; AP of that ranking; mAP = mean over the classes with ground truth in the subset.

    A snippet is positive for a class when its centre (the time its score belongs to) lies inside a ground-truth
    segment of that class. AP is the non-interpolated area, precision summed at each recall step, with tied
    scores forming one step (as ``sklearn.metrics.average_precision_score``).

    Args:
        scores: video -> ``[T, C]`` snippet scores, columns in ``classes`` order; every video of the subset.
        classes: ``C`` labels; must include every ground-truth class of the subset.
    """
    videos = gt.subset(subset)
    missing = sorted(set(videos) - set(scores))
    extra = sorted(set(scores) - set(videos))
    if missing or extra:
        raise EvaluationError(f"frame-level scores must cover exactly the videos of subset {subset!r}: "
                              f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                              f"not in the subset {extra[:5]}{'...' if len(extra) > 5 else ''}")
    eval_classes = gt.classes(subset)
    absent = [c for c in eval_classes if c not in classes]
    if absent:
        raise EvaluationError(f"score columns lack ground-truth classes {absent}")
    columns = [list(classes).index(c) for c in eval_classes]
    all_scores, all_labels = [], []
    for video, ann in videos.items():
        s = np.asarray(scores[video], dtype=np.float64)
        if s.ndim != 2 or s.shape[1] != len(classes):
            raise EvaluationError(f"video {video}: scores must be [T, {len(classes)}], got {s.shape}")
        centres = geometry.centre_s(np.arange(s.shape[0]))
        labels = np.zeros((s.shape[0], len(eval_classes)), bool)
        for seg in ann.segments:
            labels[(centres >= seg.start_s) & (centres <= seg.end_s), eval_classes.index(seg.label)] = True
        all_scores.append(s[:, columns])
        all_labels.append(labels)
    score, label = np.concatenate(all_scores), np.concatenate(all_labels)
    ap = {c: _ranking_ap(score[:, i], label[:, i]) for i, c in enumerate(eval_classes)}
    return FrameLevelResult(float(np.mean(list(ap.values()))), ap)


def foreground_ap(gt: GroundTruth, scores: Mapping[str, np.ndarray], geometry: FeatureGeometry,
                  subset: str | None = None) -> float:
    """Class-agnostic frame-level AP: every snippet of the subset ranked by ``scores[video] [T]`` (an actionness,
    or 1 - P(background)) against "inside some ground-truth segment", by :func:`frame_level_map`'s rule."""
    videos = {vid: replace(ann, segments=tuple(replace(seg, label="action") for seg in ann.segments))
              for vid, ann in gt.subset(subset).items()}
    columns = {vid: np.asarray(s, dtype=np.float64).reshape(-1, 1) for vid, s in scores.items()}
    return frame_level_map(GroundTruth(videos, source=gt.source), columns, ["action"], geometry).mAP


def _ranking_ap(score: np.ndarray, positive: np.ndarray) -> float:
    """Non-interpolated AP of ranking ``score`` ``[n]`` against ``positive`` ``[n]``; 0 without positives."""
    npos = positive.sum()
    if npos == 0:
        return 0.0
    order = np.argsort(-score, kind="stable")
    score, positive = score[order], positive[order]
    last_of_tie = np.r_[score[1:] != score[:-1], True]
    tps = np.cumsum(positive)[last_of_tie]
    seen = np.flatnonzero(last_of_tie) + 1
    recall = tps / npos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * tps / seen))

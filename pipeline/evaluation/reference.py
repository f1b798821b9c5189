"""A literal port of the official ActivityNet detection evaluator, kept only to verify and time
:mod:`clicktal.pipeline.evaluation.detection` against it (tests, ``benchmarks/evaluation.py``). It walks one detection at a
time: slow by design.

Source: github activitynet/ActivityNet, ``Evaluation/eval_detection.py`` (``compute_average_precision_detection``,
``ANETdetection.evaluate``) and ``Evaluation/utils.py`` (``segment_iou``, ``interpolated_prec_rec``); pandas rows
replaced by tuples, Python 2 by 3, nothing else changed.
"""
from __future__ import annotations

import numpy as np


def reference_segment_iou(target_segment, candidate_segments):
    tt1 = np.maximum(target_segment[0], candidate_segments[:, 0])
    tt2 = np.minimum(target_segment[1], candidate_segments[:, 1])
    segments_intersection = (tt2 - tt1).clip(0)
    segments_union = (candidate_segments[:, 1] - candidate_segments[:, 0]) \
        + (target_segment[1] - target_segment[0]) - segments_intersection
    tIoU = segments_intersection.astype(float) / segments_union
    return tIoU


def reference_interpolated_prec_rec(prec, rec):
    mprec = np.hstack([[0], prec, [0]])
    mrec = np.hstack([[0], rec, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
    ap = np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])
    return ap


def reference_average_precision_detection(ground_truth, prediction, tiou_thresholds):
    """ground_truth: [(video, t_start, t_end)]; prediction: [(video, t_start, t_end, score)], both in row order."""
    ap = np.zeros(len(tiou_thresholds))
    if not prediction:
        return ap
    npos = float(len(ground_truth))
    lock_gt = np.ones((len(tiou_thresholds), len(ground_truth))) * -1
    sort_idx = np.array([p[3] for p in prediction]).argsort()[::-1]
    prediction = [prediction[i] for i in sort_idx]
    tp = np.zeros((len(tiou_thresholds), len(prediction)))
    fp = np.zeros((len(tiou_thresholds), len(prediction)))
    ground_truth_gbvn = {}
    for index, (video, start, end) in enumerate(ground_truth):
        ground_truth_gbvn.setdefault(video, []).append((index, start, end))
    for idx, this_pred in enumerate(prediction):
        if this_pred[0] not in ground_truth_gbvn:
            fp[:, idx] = 1
            continue
        this_gt = ground_truth_gbvn[this_pred[0]]
        tiou_arr = reference_segment_iou(np.array(this_pred[1:3]), np.array([g[1:] for g in this_gt]))
        tiou_sorted_idx = tiou_arr.argsort()[::-1]
        for tidx, tiou_thr in enumerate(tiou_thresholds):
            for jdx in tiou_sorted_idx:
                if tiou_arr[jdx] < tiou_thr:
                    fp[tidx, idx] = 1
                    break
                if lock_gt[tidx, this_gt[jdx][0]] >= 0:
                    continue
                tp[tidx, idx] = 1
                lock_gt[tidx, this_gt[jdx][0]] = idx
                break
            if fp[tidx, idx] == 0 and tp[tidx, idx] == 0:
                fp[tidx, idx] = 1
    tp_cumsum = np.cumsum(tp, axis=1).astype(float)
    fp_cumsum = np.cumsum(fp, axis=1).astype(float)
    recall_cumsum = tp_cumsum / npos
    precision_cumsum = tp_cumsum / (tp_cumsum + fp_cumsum)
    for tidx in range(len(tiou_thresholds)):
        ap[tidx] = reference_interpolated_prec_rec(precision_cumsum[tidx, :], recall_cumsum[tidx, :])
    return ap


def reference_anet_detection(gt_database: dict, results: dict, subset: str, tiou_thresholds):
    """ANETdetection(...).evaluate() with check_status=False: (per-class AP by label, mAP)."""
    activity_index, gt_rows = {}, []
    for videoid, v in gt_database.items():
        if subset != v["subset"]:
            continue
        for ann in v["annotations"]:
            if ann["label"] not in activity_index:
                activity_index[ann["label"]] = len(activity_index)
            gt_rows.append((videoid, float(ann["segment"][0]), float(ann["segment"][1]), ann["label"]))
    pred_rows = [(videoid, float(r["segment"][0]), float(r["segment"][1]), r["score"], activity_index[r["label"]])
                 for videoid, v in results.items() for r in v]
    ap = np.zeros((len(tiou_thresholds), len(activity_index)))
    with np.errstate(divide="ignore", invalid="ignore"):
        for label, cidx in activity_index.items():
            ap[:, cidx] = reference_average_precision_detection(
                [r[:3] for r in gt_rows if r[3] == label], [r[:4] for r in pred_rows if r[4] == cidx],
                tiou_thresholds)
    return {label: ap[:, cidx] for label, cidx in activity_index.items()}, ap.mean(axis=1)

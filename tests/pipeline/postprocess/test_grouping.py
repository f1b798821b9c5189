import dataclasses

import numpy as np
import pytest

import clicktal.models  # noqa: F401  (registers the methods and their presets)
from clicktal.pipeline.core.config import ConfigError, config_from_dict
from clicktal.pipeline.data.detections import Detection
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.postprocess.grouping import (PRESETS, PostprocessConfig, detect_segments, find_runs, nms,
                                           pairwise_tiou, soft_nms)

SECOND = FeatureGeometry(fps=1, window=1, stride=1)  # snippet i spans [i, i + 1) s
THUMOS = FeatureGeometry(fps=25, window=16, stride=16)  # 0.64 s snippets


def spans(dets):
    return [(d.label, d.start_s, d.end_s) for d in dets]


def test_find_runs():
    mask = np.array([[0, 1, 1, 0, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
    row, start, end = find_runs(mask)
    assert row.tolist() == [0, 0, 1] and start.tolist() == [1, 4, 0] and end.tolist() == [3, 5, 5]


def test_multi_threshold_grouping_in_seconds_through_the_geometry():
    scores = np.array([[0.1], [0.6], [0.9], [0.6], [0.1]])
    cfg = PostprocessConfig(thresholds=(0.5, 0.8), nms="none")
    dets = detect_segments(scores, THUMOS, ["A"], "v", cfg)
    # >= 0.5: snippets 1-3 -> [0.64, 2.56) s, mean (0.6 + 0.9 + 0.6) / 3 = 0.7; >= 0.8: snippet 2 -> mean 0.9
    assert spans(dets) == [("A", 1.28, 1.92), ("A", 0.64, 2.56)]
    assert [d.score for d in dets] == pytest.approx([0.9, 0.7])
    # strict: > 0.6 leaves only the peak; a threshold hit by no snippet adds nothing
    strict = detect_segments(scores, THUMOS, ["A"], "v", dataclasses.replace(cfg, thresholds=(0.6, 0.95),
                                                                               strict=True))
    assert spans(strict) == [("A", 1.28, 1.92)]


def test_same_run_at_several_thresholds_is_one_segment():
    scores = np.array([[0.0], [0.9], [0.9], [0.0]])
    dets = detect_segments(scores, SECOND, ["A"], "v", PostprocessConfig(thresholds=(0.2, 0.5, 0.8), nms="none"))
    assert spans(dets) == [("A", 1.0, 3.0)]


def test_max_plus_video_score():
    scores = np.array([[0.1, 0.0], [0.7, 0.0], [0.4, 0.9], [0.0, 0.9]])
    cfg = PostprocessConfig(thresholds=(0.3,), scoring="max", video_weight=1.0, nms="none")
    dets = detect_segments(scores, SECOND, ["A", "B"], "v", cfg, video_scores=np.array([0.5, 0.2]))
    # A: [1, 3) max 0.7 + 0.5; B: [2, 4) max 0.9 + 0.2
    assert spans(dets) == [("A", 1.0, 3.0), ("B", 2.0, 4.0)]
    assert [d.score for d in dets] == pytest.approx([1.2, 1.1])
    with pytest.raises(ValueError, match="needs video_scores"):
        detect_segments(scores, SECOND, ["A", "B"], "v", cfg)


def test_outer_inner_contrast():
    scores = np.array([0, 0, 1, 1, 1, 1, 0.5, 0, 0, 0])[:, None]
    cfg = PostprocessConfig(thresholds=(0.8,), scoring="outer_inner", inflation=0.25, nms="none")
    [det] = detect_segments(scores, SECOND, ["A"], "v", cfg)
    # run [2, 6): inner mean 1; 0.25 x 4 = 1 snippet each side: snippets 1 and 6 -> outer (0 + 0.5) / 2
    assert (det.start_s, det.end_s, det.score) == (2.0, 6.0, pytest.approx(0.75))
    # at the video start the outer region is clipped: run [0, 2), ceil(0.5) = 1 snippet, right side only
    [det] = detect_segments(np.array([1, 1, 0.4, 0])[:, None], SECOND, ["A"], "v", cfg)
    assert det.score == pytest.approx(1 - 0.4)
    # a run spanning the whole video has no outer region: outer 0
    [det] = detect_segments(np.ones((3, 1)), SECOND, ["A"], "v", cfg)
    assert det.score == pytest.approx(1.0)
    # BackTAL adds 0.2 x the video score
    [det] = detect_segments(scores, SECOND, ["A"], "v", dataclasses.replace(cfg, video_weight=0.2),
                            video_scores=np.array([0.5]))
    assert det.score == pytest.approx(0.75 + 0.1)


def test_class_rules_and_mask():
    scores = np.full((4, 3), 0.9)
    video = np.array([0.3, 0.1, 0.8])
    labels = ["A", "B", "C"]
    cfg = PostprocessConfig(thresholds=(0.5,), nms="none", class_threshold=0.25)  # BackTAL: video score >= 0.25
    assert {d.label for d in detect_segments(scores, SECOND, labels, "v", cfg, video_scores=video)} == {"A", "C"}
    cfg = PostprocessConfig(thresholds=(0.5,), nms="none", class_ratio=1 / 1.5)  # SF-Net: > max / 1.5 and > 0
    assert {d.label for d in detect_segments(scores, SECOND, labels, "v", cfg, video_scores=video)} == {"C"}
    mask = np.array([True, True, False])
    assert {d.label for d in detect_segments(scores, SECOND, labels, "v", PostprocessConfig(nms="none"),
                                             class_mask=mask)} == {"A", "B"}


def test_topk_mean_video_score_is_computed_from_the_scores_for_the_class_rule():
    # 24 samples: k = 24 // 12 = 2. A: a 2-sample peak of 0.9 (top-2 mean 0.9); B: 0.5 everywhere (0.5); C: one
    # sample at 1.0 and 0.3 elsewhere (top-2 mean 0.65). The rule keeps classes > 0.9 / 1.5 = 0.6: A and C.
    scores = np.full((24, 3), 0.3)
    scores[:, 1] = 0.5
    scores[5:7, 0], scores[15, 2] = 0.9, 1.0
    cfg = PostprocessConfig(thresholds=(0.4,), nms="none", class_ratio=1 / 1.5, video_score="topk_mean",
                            scoring="mean", video_weight=1.0)
    dets = detect_segments(scores, SECOND, ["A", "B", "C"], "v", cfg)  # no video_scores needed
    assert sorted({d.label for d in dets}) == ["A", "C"]
    # the video score is added to the segment score: A's run [5, 7) scores 0.9 + 0.9
    assert max(d.score for d in dets if d.label == "A") == pytest.approx(1.8)
    # the model's own video scores are ignored by topk_mean ...
    ignored = detect_segments(scores, SECOND, ["A", "B", "C"], "v", cfg, video_scores=np.array([0.0, 1.0, 0.0]))
    assert sorted({d.label for d in ignored}) == ["A", "C"]
    # ... and read by "given", where B alone passes
    given = dataclasses.replace(cfg, video_score="given")
    assert {d.label for d in detect_segments(scores, SECOND, ["A", "B", "C"], "v", given,
                                             video_scores=np.array([0.0, 1.0, 0.0]))} == {"B"}
    with pytest.raises(ValueError, match="video_topk_divisor"):
        PostprocessConfig(video_topk_divisor=0)


def test_threshold_relative_to_the_mean_and_min_length():
    scores = np.array([1, 3, 3, 1, 2.5, 1, 1, 1])[:, None]  # mean 1.6875
    cfg = PostprocessConfig(thresholds=(1.0,), threshold_reference="mean", strict=True, nms="none")
    assert spans(detect_segments(scores, SECOND, ["A"], "v", cfg)) == [("A", 1.0, 3.0), ("A", 4.0, 5.0)]
    # SF-Net keeps runs of at least 2 snippets
    assert spans(detect_segments(scores, SECOND, ["A"], "v", dataclasses.replace(cfg, min_snippets=2))) == [
        ("A", 1.0, 3.0)]


def test_half_range_threshold_of_the_sfnet_code_preset():
    # W-TALC / SF-Net detectionMAP.py: threshold = max - (max - min) * 0.5 = 1 + 0.5 * 3 = 2.5, compared with '>'
    scores = np.array([1, 4, 3, 1, 2.5, 2.6, 2.7, 1])[:, None]
    cfg = dataclasses.replace(PRESETS.get("sfnet_code_half_range"), class_ratio=None, video_weight=0.0)
    assert spans(detect_segments(scores, SECOND, ["A"], "v", cfg)) == [("A", 1.0, 3.0), ("A", 5.0, 7.0)]
    assert cfg.threshold_reference == "range" and cfg.thresholds == (0.5,)


def test_frame_resolution_interpolates_between_snippet_centres():
    geometry = FeatureGeometry(fps=4, window=4, stride=4)  # 1 s snippets, centres at 0.5, 1.5, ...; 0.25 s frames
    scores = np.array([0.0, 1.0, 1.0, 0.0])[:, None]
    cfg = PostprocessConfig(thresholds=(0.75,), nms="none")
    assert spans(detect_segments(scores, geometry, ["A"], "v", cfg)) == [("A", 1.0, 3.0)]
    # frame mid-times 1.375 .. 2.625 s score 0.875 .. 1 (linear between centres): frames 5 .. 10 -> [1.25, 2.75]
    framed = detect_segments(scores, geometry, ["A"], "v", dataclasses.replace(cfg, resolution="frame"))
    assert spans(framed) == [("A", 1.25, 2.75)]


def test_actionness_proposals_are_scored_per_class():
    scores = np.array([[0.2, 0.1], [0.4, 0.1], [0.4, 0.3], [0.2, 0.1]])
    actionness = np.array([0.1, 0.9, 0.9, 0.1])
    cfg = PostprocessConfig(thresholds=(), actionness_thresholds=(0.5,), nms="none")
    dets = detect_segments(scores, SECOND, ["A", "B"], "v", cfg, actionness=actionness)
    assert spans(dets) == [("A", 1.0, 3.0), ("B", 1.0, 3.0)]
    assert [d.score for d in dets] == pytest.approx([0.4, 0.2])
    with pytest.raises(ValueError, match="no actionness"):
        detect_segments(scores, SECOND, ["A", "B"], "v", cfg)


def test_fsn_recipe_groups_runs_of_action_probability_keeps_long_runs_and_ranks_by_contrast():
    """The ``fsn`` preset on the frame grid: runs of 1 - P(bg) (passed as actionness), labelled with every class,
    >= 10 frames, scored by outer-inner contrast of the class probability + the video score."""
    frames = FeatureGeometry(fps=25, window=5, stride=5).frames()
    post = PRESETS.get("fsn").at_evaluation_tiou(0.5)
    L = 400
    p_bg = np.full(L, 0.95)
    probs = np.full((L, 3), 0.01)
    # one action of class A over frames 100-200: P(bg) low, but A's own probability only 0.3-0.4 (the rest spread
    # over the other classes), with a short A peak of 0.9 nested inside it at 150-154
    p_bg[100:200] = 0.1
    probs[100:200, 0], probs[100:200, 1] = 0.35, 0.3
    probs[150:154, 0] = 0.9
    # a 6-frame blip of action probability elsewhere: shorter than 10 frames
    p_bg[300:306] = 0.2
    probs[300:306, 0] = 0.5
    dets = detect_segments(probs, frames, ["A", "B", "C"], "v", post, actionness=1 - p_bg)
    assert {d.label for d in dets} == {"A", "B", "C"}  # every class (a class rule lost AVG on held-out videos)
    # the class rule as an option (top-L/12 mean: A 0.41 > B 0.3 > 0.41 / 1.5 = 0.27 > C 0.01) keeps A and B
    ruled = detect_segments(probs, frames, ["A", "B", "C"], "v", dataclasses.replace(post, class_ratio=1 / 1.5),
                            actionness=1 - p_bg)
    assert {d.label for d in ruled} == {"A", "B"}
    best = max(dets, key=lambda d: d.score)
    # the action as a whole ranks first: the class threshold alone would find the nested peak first (A's
    # probability never reaches 0.4 elsewhere), and the 6-frame blip is dropped
    assert (best.label, round(best.start_s * 25), round(best.end_s * 25)) == ("A", 100, 200)
    assert not any(round(d.start_s * 25) == 300 for d in dets)
    literal = detect_segments(probs, frames, ["A", "B", "C"], "v", PRESETS.get("fsn_literal").at_evaluation_tiou(0.5))
    top = max(literal, key=lambda d: d.score)
    assert (round(top.start_s * 25), round(top.end_s * 25)) == (150, 154)  # the fragment the recipe fixes
    assert {d.label for d in literal} == {"A", "B", "C"}  # every class, even C at 0.01 (threshold 0.0)


def test_hard_nms():
    start, end = np.array([0.0, 1.0, 20.0, 0.0]), np.array([10.0, 10.0, 30.0, 10.0])
    scores = np.array([0.9, 0.8, 0.7, 0.9])
    # [1, 10] has tIoU 0.9 with [0, 10]; the duplicate [0, 10] ties in score: the earlier one is kept
    assert nms(start, end, scores, 0.5).tolist() == [0, 2]
    assert nms(start, end, scores, 0.95).tolist() == [0, 1, 2]
    assert nms(start, end, scores, 0.5, top_k=1).tolist() == [0]
    assert pairwise_tiou(start, end)[0, 1] == pytest.approx(0.9)


def test_soft_nms():
    start, end, scores = np.array([0.0, 0.0, 50.0]), np.array([10.0, 5.0, 60.0]), np.array([1.0, 0.8, 0.5])
    keep, kept = soft_nms(start, end, scores, sigma=0.5, floor=0.001)
    # [0, 5] has tIoU 0.5 with [0, 10]: 0.8 x exp(-0.25 / 0.5); [50, 60] overlaps nothing
    assert keep.tolist() == [0, 2, 1] and kept == pytest.approx([1.0, 0.5, 0.8 * np.exp(-0.5)])
    keep, _ = soft_nms(start, end, scores, sigma=0.5, floor=0.49)  # 0.485 falls below the floor
    assert keep.tolist() == [0, 2]


def test_classwise_nms_and_top_k_per_video():
    scores = np.array([[0.9, 0.9], [0.9, 0.9], [0.2, 0.2], [0.7, 0.7], [0.2, 0.2]])
    cfg = PostprocessConfig(thresholds=(0.5, 0.8), scoring="max", nms="hard", nms_tiou=0.3)
    dets = detect_segments(scores, SECOND, ["A", "B"], "v", cfg)
    # per class: [0, 2) (0.9) and [3, 4) (0.7); the second class is not suppressed by the first
    assert sorted(spans(dets)) == [("A", 0.0, 2.0), ("A", 3.0, 4.0), ("B", 0.0, 2.0), ("B", 3.0, 4.0)]
    top = detect_segments(scores, SECOND, ["A", "B"], "v", dataclasses.replace(cfg, top_k=3))
    assert [d.score for d in top] == pytest.approx([0.9, 0.9, 0.7])
    soft = detect_segments(scores, SECOND, ["A", "B"], "v", dataclasses.replace(cfg, nms="soft"))
    assert len(soft) == 4 and all(isinstance(d, Detection) for d in soft)


def test_duration_clips_the_padded_last_snippet():
    [det] = detect_segments(np.ones((3, 1)), THUMOS, ["A"], "v", PostprocessConfig(nms="none"), duration_s=1.5)
    assert (det.start_s, det.end_s) == (0.0, 1.5)


def test_empty_and_bad_input():
    assert detect_segments(np.zeros((0, 2)), SECOND, ["A", "B"], "v", PostprocessConfig()) == []
    assert detect_segments(np.zeros((5, 2)), SECOND, ["A", "B"], "v", PostprocessConfig()) == []
    with pytest.raises(ValueError, match="scores must be \\[T, 3\\]"):
        detect_segments(np.zeros((5, 2)), SECOND, ["A", "B", "C"], "v", PostprocessConfig())
    with pytest.raises(ValueError, match="min_snippets must be >= 1"):
        PostprocessConfig(min_snippets=0)
    with pytest.raises(ValueError, match="needs thresholds"):
        PostprocessConfig(thresholds=())


def test_presets():
    assert PRESETS.names() == ["backtal", "fsn", "fsn_literal", "kinetics", "segment", "sfnet", "sfnet_code",
                              "sfnet_code_half_range", "wfsn"]
    backtal = PRESETS.get("backtal")
    assert backtal.thresholds == pytest.approx(np.arange(0.0, 0.25, 0.025))  # BackTAL ACT_THRESH_MIN/MAX/STEP
    assert backtal.actionness_thresholds == pytest.approx(np.arange(0.3, 0.8, 0.075))
    assert (backtal.inflation, backtal.video_weight, backtal.nms_tiou, backtal.class_threshold) == (
        0.25, 0.2, 0.55, 0.25)
    assert PRESETS.get("fsn_literal").thresholds == pytest.approx(np.arange(0, 11) / 10)  # "from 0 to 1", step 0.1
    sfnet, code = PRESETS.get("sfnet"), PRESETS.get("sfnet_code")
    assert dataclasses.replace(sfnet, video_weight=1.0) == code  # the paper and the code differ only there
    with pytest.raises(KeyError, match="known: backtal, fsn, fsn_literal, kinetics, segment, sfnet, sfnet_code, "
                                       "sfnet_code_half_range, wfsn"):
        PRESETS.get("bsn")
    # segment-level: Sec. 4.7's s_a >= 0 rule with W-TALC's evaluation, the code preset's grouping otherwise
    segment = PRESETS.get("segment")
    assert segment.class_threshold == 0.0 and segment.class_ratio is None
    assert dataclasses.replace(segment, class_threshold=None, class_ratio=1 / 2) == PRESETS.get("sfnet_code_half_range")


@pytest.mark.parametrize("name", ["sfnet", "sfnet_code", "sfnet_code_half_range", "backtal", "fsn", "fsn_literal",
                                  "wfsn"])
def test_presets_run_end_to_end(name):
    rng = np.random.default_rng(0)
    t = np.arange(200)
    scores = np.stack([np.exp(-((t - 60) / 15.0) ** 2), np.exp(-((t - 140) / 10.0) ** 2)], 1)
    scores = np.clip(scores + rng.normal(0, 0.05, scores.shape), 0, 1)
    dets = detect_segments(scores, THUMOS, ["A", "B"], "v", PRESETS.get(name), video_scores=np.array([0.9, 0.8]),
                           actionness=scores.max(1))
    best = {label: max((d for d in dets if d.label == label), key=lambda d: d.score) for label in "AB"}
    assert best["A"].start_s < 60 * 0.64 < best["A"].end_s and best["B"].start_s < 140 * 0.64 < best["B"].end_s


def test_config_loads_from_yaml_dicts():
    cfg = config_from_dict(PostprocessConfig, {"thresholds": [0.1, 0.2], "nms": "soft", "top_k": 100})
    assert cfg.thresholds == (0.1, 0.2) and cfg.nms == "soft"
    with pytest.raises(ConfigError, match="nms"):
        config_from_dict(PostprocessConfig, {"nms": "fast"})

"""Timeline pictures explain themselves: lanes and truth named by class, matched detections marked with their tIoU
(the mAP's greedy rule), the detection score defined against the curve, and "top N of M" when lanes are capped."""
import dataclasses

import numpy as np
import pytest

import clicktal.models  # noqa: F401  (registers the methods' presets)
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.core.postprocess import PRESETS
from clicktal.pipeline.data.annotations import Segment
from clicktal.pipeline.data.detections import Detection
from clicktal.pipeline.runs.timeline import describe_score, match_detections, plot_timeline, timeline_figure


def det(label: str, start: float, end: float, score: float) -> Detection:
    return Detection("v1", label, start, end, score)


def figure_texts(fig) -> list[str]:
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    texts = [t.get_text() for t in fig.findobj(Text) if t.get_text()]
    plt.close(fig)
    return texts


def test_the_best_detection_takes_the_instance_and_a_worse_one_shows_its_overlap_unmatched():
    truth = [Segment(10.0, 20.0, "jump")]
    dets = [det("jump", 11.0, 21.0, 0.5), det("jump", 10.0, 20.0, 0.9), det("run", 10.0, 20.0, 0.95),
            det("jump", 30.0, 40.0, 0.3)]
    assert match_detections(dets, truth) == [(pytest.approx(9 / 11), False), (1.0, True), (0.0, False),
                                             (0.0, False)]


def test_a_match_needs_the_threshold_and_each_instance_is_matched_once():
    truth = [Segment(10.0, 20.0, "jump"), Segment(50.0, 60.0, "jump")]
    at_half, below = det("jump", 10.0, 30.0, 0.9), det("jump", 50.0, 71.0, 0.8)  # tIoU 0.5 and 10/21
    assert match_detections([at_half, below], truth) == [(0.5, True), (pytest.approx(10 / 21), False)]
    assert match_detections([below], truth, tiou=0.4) == [(pytest.approx(10 / 21), True)]
    # the second detection of the same instance finds it taken: unmatched, its tIoU still shown
    assert match_detections([det("jump", 50, 60, 0.9), det("jump", 51, 60, 0.7)], truth) == [
        (1.0, True), (0.9, False)]


def test_the_caption_defines_the_score_against_the_curve_for_each_recipe():
    code = describe_score(PRESETS.get("sfnet_code"))
    assert "highest value of its class's curve inside the segment + 1 x the video score" in code
    assert "exceed the curve" in code
    assert "exceed" not in describe_score(PRESETS.get("sfnet"))
    fsn = describe_score(PRESETS.get("fsn"))
    assert "minus its mean over 0.25 x the segment's length on each side" in fsn and "top 1/12" in fsn
    soft = describe_score(dataclasses.replace(PRESETS.get("sfnet"), nms="soft"))
    assert "Soft-NMS lowered" in soft
    assert "not necessarily on the curve's scale" in describe_score(None)


def test_lanes_and_truth_are_named_matches_marked_and_a_capped_lane_list_says_top_n_of_m():
    classes = ["run", "jump", "swim"]
    grid = FeatureGeometry(fps=25, window=16, stride=16)
    scores = np.random.default_rng(0).random((60, 3))  # 38.4 s
    truth = [Segment(10.0, 20.0, "jump"), Segment(25.0, 30.0, "swim")]
    dets = [det("jump", 10.24, 19.84, 1.4), det("run", 2.0, 5.0, 1.2), det("jump", 11.0, 14.0, 1.1),
            det("swim", 30.0, 35.0, 0.2)]
    fig, summary = timeline_figure("v1", scores, grid, classes, dets, truth=truth, top=3,
                                   post=PRESETS.get("sfnet_code"))
    texts = figure_texts(fig)
    assert "v1: top 3 of 4 detections" in texts and summary.title_suffix == "top 3 of 4 detections"
    assert {"jump #1", "run #2", "jump #3", "truth: jump", "truth: swim"} <= set(texts)
    assert not any(t.startswith("swim #") for t in texts)  # the fourth detection is not drawn
    assert summary.classes == ["run", "jump", "swim"]  # curves: the drawn lanes' and the truth's classes
    assert [(lane.detection.score, lane.matched) for lane in summary.lanes] == [(1.4, True), (1.2, False),
                                                                                (1.1, False)]
    assert " 1.40  ✓ tIoU 0.96" in texts and " 1.10  tIoU 0.30" in texts and " 1.20" in texts
    assert any("+ 1 x the video score" in t and "tIoU >= 0.5" in t for t in texts)


def test_every_detection_drawn_says_how_many_and_pictures_without_curves_or_with_foreign_truth_are_written(
        tmp_path):
    dets = [det("jump", 1.0, 2.0, 0.9), det("run", 3.0, 4.0, 0.8)]
    path = tmp_path / "pics" / "v1.png"
    summary = plot_timeline(path, "v1", None, None, ["run", "jump"], dets, duration_s=10.0)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary.title_suffix == "2 detections" and summary.truth_lanes == []
    assert not list(path.parent.glob(".*"))  # the atomic write left no temp file
    # ground truth of a class the scores do not have: a truth lane, no curve
    grid = FeatureGeometry(fps=25, window=16, stride=16)
    summary = plot_timeline(path, "v1", np.zeros((10, 2)), grid, ["run", "jump"], dets,
                            truth=[Segment(1.0, 2.0, "dance")])
    assert summary.truth_lanes == ["truth: dance"] and summary.classes == ["run", "jump", "dance"]

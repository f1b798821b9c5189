import numpy as np
import pytest

from clicktal.pipeline.data.annotations import ActionClick, GroundTruth, Segment, VideoAnnotation
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.supervision import (background_gaps, build_supervision, simulate_action_clicks,
                                           simulate_background_clicks, simulate_labelled_segments)

VIDEO = VideoAnnotation("v", "validation", 100.0, (Segment(10, 20, "a"), Segment(15, 30, "b"), Segment(60, 61, "a")))


def test_uniform_clicks_fall_inside_their_instance_and_are_seeded():
    runs = [simulate_action_clicks(VIDEO, np.random.default_rng(3)) for _ in range(2)]
    assert runs[0] == runs[1]
    for click in runs[0]:
        assert any(s.start_s <= click.time_s <= s.end_s and s.label == click.label for s in VIDEO.segments)


def test_gaussian_clicks_concentrate_near_the_centre():
    video = VideoAnnotation("v", "x", 100.0, (Segment(0, 60, "a"),))
    rng = np.random.default_rng(0)
    uni = [simulate_action_clicks(video, rng)[0].time_s for _ in range(2000)]
    gau = [simulate_action_clicks(video, rng, mode="gaussian")[0].time_s for _ in range(2000)]
    # sigma = length / 6 = 10 s against the uniform 60 / sqrt(12) = 17.3 s
    assert abs(np.std(gau) - 10) < 0.6 and abs(np.std(uni) - 17.3) < 0.6 and abs(np.mean(gau) - 30) < 1
    assert min(gau) >= 0 and max(gau) <= 60


def test_one_background_click_per_gap():
    assert background_gaps(VIDEO) == [(0.0, 10), (30, 60), (61, 100.0)]
    clicks = simulate_background_clicks(VIDEO, np.random.default_rng(0))
    assert len(clicks) == 3
    assert all(lo <= t <= hi for t, (lo, hi) in zip(clicks, background_gaps(VIDEO)))


@pytest.mark.parametrize("per_instance", [1, 2])
def test_labelled_segments_are_snippets_inside_instances(per_instance):
    g = FeatureGeometry()
    segs = simulate_labelled_segments(VIDEO, np.random.default_rng(1), g, per_instance=per_instance)
    assert len(segs) == 3
    for seg, inst in zip(segs[:2], VIDEO.segments[:2]):
        assert inst.start_s <= seg.start_s < seg.end_s <= inst.end_s and seg.label == inst.label
        n = (seg.end_s - seg.start_s) / g.seconds_per_snippet
        assert abs(n - round(n)) < 1e-6 and (per_instance == 2 or round(n) == 1)
    assert segs[2].end_s - segs[2].start_s == pytest.approx(g.seconds_per_snippet)  # shorter than a snippet


def test_build_supervision_merges_clicks_with_video_labels():
    gt = GroundTruth({"v": VIDEO})
    sup = build_supervision(gt, action_clicks={"v": [ActionClick(12.0, "a")]}, background_clicks={"v": [5.0]},
                            with_boundaries=True)["v"]
    assert sup.video_labels == {"a", "b"} and sup.action_clicks == (ActionClick(12.0, "a"),)
    assert sup.background_clicks == (5.0,) and sup.boundaries == VIDEO.segments


def test_labelled_segments_past_a_too_short_stated_duration_stay_valid():
    # released THUMOS14 files state frames/30 for some 25 fps videos: instances run past the duration
    video = VideoAnnotation("v", "validation", 50.0, (Segment(60.0, 66.0, "a"),))
    for per_instance in (1, 2):
        for seed in range(5):
            (seg,) = simulate_labelled_segments(video, np.random.default_rng(seed), FeatureGeometry(),
                                                per_instance=per_instance)
            assert 60.0 <= seg.start_s < seg.end_s <= 66.0


def test_build_supervision_without_video_labels_and_with_segments():
    gt = GroundTruth({"v": VIDEO})
    sup = build_supervision(gt, labelled_segments={"v": [Segment(11, 12, "a")]}, with_video_labels=False)["v"]
    assert sup.video_labels == frozenset() and sup.labelled_segments == (Segment(11, 12, "a"),)
    assert sup.boundaries is None and sup.action_clicks == ()

"""data.labels: every kind of cheap label from real files and from the simulators, in any combination, each from its
own seeded stream; label statistics against the ground truth."""
import json

import numpy as np
import pytest

from clicktal.pipeline.core.config import ConfigError, config_from_dict
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.annotations import (ActionClick, AnnotationError, GroundTruth, Segment, VideoAnnotation,
                                                load_ground_truth, read_action_clicks, read_labelled_segments)
from clicktal.pipeline.data.datasets import DataConfig
from clicktal.pipeline.data.labels import (ActionClickConfig, BackgroundClickConfig, LabelConfig, SegmentLabelConfig,
                                           choose_action_clicks, choose_background_clicks, format_label_summary,
                                           label_statistics, training_supervision)
from clicktal.pipeline.data.stats import action_click_stats
from clicktal.pipeline.data.supervision import Supervision, background_gaps

GEO = FeatureGeometry()  # 25 fps, 16-frame snippets: 0.64 s


def _gt():
    return GroundTruth({
        "v1": VideoAnnotation("v1", "train", 30.0, (Segment(2, 6, "A"), Segment(10, 14, "B"))),
        "v2": VideoAnnotation("v2", "train", 30.0, (Segment(5, 9, "A"),)),
        "v3": VideoAnnotation("v3", "test", 30.0, (Segment(1, 4, "B"),)),
    })


@pytest.fixture(scope="module")
def thumos(benchkit):
    return load_ground_truth(benchkit / "thumos14/groundtruth.json")


def _files(benchkit, kind, n):
    ext = "txt" if kind == "action" else "csv"
    return [str(benchkit / f"thumos14/{kind}_clicks_A{a}.{ext}") for a in range(1, n + 1)]


def _supervision(gt, subset="validation", run_seed=0, **cfg):
    return training_supervision(gt, subset, config_from_dict(LabelConfig, cfg), seed=run_seed, geometry=GEO)


# ------------------------------------------------------------------------------------------------ action clicks


def test_action_click_sources(tmp_path):
    gt = _gt()
    files = []
    for k in range(3):
        f = tmp_path / f"A{k}.txt"
        f.write_text(f"v1,{3 + k},A\r\n\r\nv1,{11 + k},B\r\nv2,{6 + k},A\r\n")
        files.append(str(f))
    cfg = ActionClickConfig(source="random_annotator", files=files)
    picks = [choose_action_clicks(gt, "train", cfg, seed)[0] for seed in range(8)]
    assert picks[0] == choose_action_clicks(gt, "train", cfg, 0)[0]  # seeded
    for p in picks:  # every video's clicks come from a single annotator
        for vid, clicks in p.items():
            assert len({int(c.time_s) - base for c, base in zip(clicks, [3, 11] if vid == "v1" else [6])}) == 1
    assert len({tuple(c.time_s for c in p["v1"]) for p in picks}) > 1  # the annotator varies with the seed
    fixed, reports = choose_action_clicks(gt, "train", ActionClickConfig(source="annotator", files=files,
                                                                         annotator=2), 0)
    assert [c.time_s for c in fixed["v1"]] == [5.0, 13.0] and [r.source for r in reports] == [files[2]]
    sim, _ = choose_action_clicks(gt, "train", ActionClickConfig(source="uniform"), 0)
    assert all(any(s.start_s <= c.time_s <= s.end_s and s.label == c.label for s in gt.videos[v].segments)
               for v, cs in sim.items() for c in cs)
    assert choose_action_clicks(gt, "train", ActionClickConfig(source="none"), 0) == ({}, [])
    with pytest.raises(ValueError, match="files"):
        choose_action_clicks(gt, "train", ActionClickConfig(source="random_annotator"), 0)
    with pytest.raises(ValueError, match="annotator 3 is not an index into 3 files"):
        choose_action_clicks(gt, "train", ActionClickConfig(source="annotator", files=files, annotator=3), 0)


def test_real_thumos_random_annotator_is_seeded_and_reproducible(benchkit, thumos):
    files = _files(benchkit, "action", 4)
    labels = _supervision(thumos, action_clicks={"source": "random_annotator", "files": files})
    assert [r.kept for r in labels.reports] == [2980, 2919, 3014, 2986]
    again = _supervision(thumos, action_clicks={"source": "random_annotator", "files": files})
    assert labels.supervision == again.supervision
    per_file = [read_action_clicks(f, thumos)[0] for f in files]
    videos = sorted(thumos.subset("validation"))
    # the pinned stream (seed, 0xC11C), one draw per video in sorted order: SF-Net results depend on it
    picks = np.random.default_rng([0, 0xC11C]).integers(0, 4, size=len(videos))
    assert picks[:6].tolist() == [1, 2, 1, 0, 3, 0]
    for vid, k in zip(videos, picks):
        assert labels.supervision[vid].action_clicks == tuple(per_file[k].get(vid, ()))
    other = _supervision(thumos, run_seed=1, action_clicks={"source": "random_annotator", "files": files})
    assert other.supervision != labels.supervision


def test_boundaries_alone_are_full_supervision():
    gt = _gt()
    full = _supervision(gt, "train", boundaries=True).supervision
    assert set(full) == {"v1", "v2"} and full["v1"].boundaries == gt.videos["v1"].segments
    assert not full["v1"].action_clicks and full["v1"].video_labels == {"A", "B"}
    weak = _supervision(gt, "train").supervision["v1"]
    assert weak.boundaries is None and weak.video_labels == {"A", "B"}
    assert _supervision(gt, "train", video_labels=False).supervision["v1"].video_labels == frozenset()


# -------------------------------------------------------------------------------------------- background clicks


def test_real_background_clicks_one_annotator_per_run(benchkit, thumos):
    files = _files(benchkit, "background", 3)
    labels = _supervision(thumos, background_clicks={"source": "annotator", "files": files})
    assert [r.source for r in labels.reports] == [files[0]] and labels.reports[0].kept == 2264
    sup = labels.supervision
    assert sum(len(s.background_clicks) for s in sup.values()) == 2264
    assert sup["video_validation_0000051"].background_clicks[:2] == (21.5, 79.0)
    assert all(not s.action_clicks for s in sup.values())
    second = _supervision(thumos, background_clicks={"source": "annotator", "files": files, "annotator": 1})
    assert second.reports[0].kept == 2323
    with pytest.raises(ValueError, match="background_clicks.annotator 3 is not an index into 3 files"):
        choose_background_clicks(thumos, "validation", BackgroundClickConfig(source="annotator", files=files,
                                                                            annotator=3), 0)
    with pytest.raises(ValueError, match="data.labels.background_clicks.files"):
        choose_background_clicks(thumos, "validation", BackgroundClickConfig(source="annotator"), 0)


def test_simulated_background_clicks_one_per_gap_none_inside_actions(thumos):
    sup = _supervision(thumos, background_clicks={"source": "simulated", "min_gap_s": 2.0}).supervision
    assert sup == _supervision(thumos, background_clicks={"source": "simulated", "min_gap_s": 2.0}).supervision
    for vid, s in sup.items():
        gaps = background_gaps(thumos.videos[vid], min_gap_s=2.0)
        assert len(s.background_clicks) == len(gaps)
        assert all(lo <= t <= hi for t, (lo, hi) in zip(s.background_clicks, gaps))
    stats = label_statistics(sup, thumos)["totals"]["background_clicks"]
    assert stats["inside"] == 0 and stats["count"] == sum(len(background_gaps(thumos.videos[v], min_gap_s=2.0))
                                                          for v in sup)
    with pytest.raises(ConfigError, match="min_gap_s must be >= 0"):
        config_from_dict(LabelConfig, {"background_clicks": {"source": "simulated", "min_gap_s": -1}})


# -------------------------------------------------------------------------------------------- labelled segments


@pytest.mark.parametrize("per_instance", [1, 2])
def test_simulated_segments_lie_inside_their_instance(thumos, per_instance):
    sup = _supervision(thumos, segments={"source": "simulated", "per_instance": per_instance}).supervision
    sps = GEO.seconds_per_snippet
    lengths = []
    for vid, s in sup.items():
        instances = thumos.videos[vid].segments
        assert len(s.labelled_segments) == len(instances)
        for seg, inst in zip(s.labelled_segments, instances):
            assert seg.label == inst.label and seg.start_s < seg.end_s
            n = round((seg.end_s - seg.start_s) / sps)
            lengths.append(n)
            if inst.end_s - inst.start_s >= 2 * sps:  # holds a whole snippet: the labels lie inside it
                assert inst.start_s - 1e-9 <= seg.start_s and seg.end_s <= inst.end_s + 1e-9
    if per_instance == 1:
        assert set(lengths) == {1}
    else:
        assert max(lengths) > 2  # the span between the two draws is labelled too
    stats = label_statistics(sup, thumos)["totals"]["labelled_segments"]
    assert stats["count"] == 3007 and stats["outside"] < 0.02 * stats["count"]  # only instances under a snippet


def test_two_segment_span_covers_the_space_between_its_draws():
    # an instance over snippets 2..11 exactly: the two draws are integers in [2, 11]
    gt = GroundTruth({"v": VideoAnnotation("v", "train", 20.0, (Segment(2 * 0.64, 12 * 0.64, "A"),))})
    for seed in range(20):
        seg = _supervision(gt, "train", run_seed=seed, segments={"source": "simulated", "per_instance": 2}
                           ).supervision["v"].labelled_segments[0]
        draws = np.sort(np.random.default_rng([seed, 0x5E65]).integers(2, 12, size=2))
        assert seg.start_s == pytest.approx(draws[0] * 0.64) and seg.end_s == pytest.approx((draws[1] + 1) * 0.64)


def test_per_instance_must_be_one_or_two():
    with pytest.raises(ConfigError, match="labels.segments: per_instance must be 1 .* or 2 .*got 3"):
        config_from_dict(DataConfig, {"labels": {"segments": {"source": "simulated", "per_instance": 3}}})
    with pytest.raises(ValueError, match="per_instance"):
        SegmentLabelConfig(per_instance=0)


def _segment_file(tmp_path, database, name="mine.json"):
    p = tmp_path / name
    p.write_text(json.dumps({"version": "mine", "database": database}))
    return p


def test_labelled_segments_from_a_file(tmp_path):
    gt = _gt()
    p = _segment_file(tmp_path, {
        "v1": {"annotations": [{"segment": [11.0, 12.5], "label": "B"}, {"segment": [3, 4], "label": "A"},
                               {"segment": [20, 21], "label": "A"}]},  # no subset, no duration
        "v2": {"subset": "train", "duration": 30.0, "annotations": [{"segment": [5.5, 6], "label": "Z"}]},
        "vX": {"annotations": [{"segment": [1, 2], "label": "A"}]},
        "v3": {"annotations": [{"segment": [1, 2], "label": "B"}]},  # a test video: not a training label
    })
    segments, report = read_labelled_segments(p, gt)
    assert segments["v1"] == [Segment(3, 4, "A"), Segment(11, 12.5, "B"), Segment(20, 21, "A")]
    assert report.kept == 4 and report.unknown_videos == {"vX": 1} and report.unknown_labels == {"Z": 1}
    assert report.summary().startswith(f"{p}: kept 4 labelled segments")
    labels = _supervision(gt, "train", segments={"source": "file", "file": str(p)})
    assert labels.reports[0].source == str(p)
    sup = labels.supervision
    assert sup["v1"].labelled_segments == tuple(segments["v1"]) and sup["v2"].labelled_segments == ()
    stats = label_statistics(sup, gt)
    assert stats["per_video"]["v1"]["labelled_segments"] == {"count": 3, "inside": 2, "outside": 1}
    with pytest.raises(ValueError, match="segments.file"):
        _supervision(gt, "train", segments={"source": "file"})


@pytest.mark.parametrize("database, message", [
    ({"v1": {"annotations": [{"segment": [5, 4], "label": "A"}]}},
     r"video v1, annotation 0: segment \[5.0, 4.0\] is not a valid interval \(end before start\)"),
    ({"v1": {"annotations": [{"segment": [-1, 4], "label": "A"}]}}, r"annotation 0: .*\(negative start\)"),
    ({"v1": {"annotations": [{"segment": [1, 2], "label": "A"}, {"label": "A"}]}},
     "video v1, annotation 1: needs 'segment'"),
    ({"v1": {"annotations": [{"segment": ["x", 2], "label": "A"}]}}, "annotation 0: start 'x' is not a number"),
    ({"v1": {"annotations": {"segment": [1, 2]}}}, "video v1: 'annotations' is not a list"),
    ({"v1": [1, 2]}, "video v1: entry is not a mapping"),
])
def test_labelled_segment_errors_name_file_video_and_entry(tmp_path, database, message):
    p = _segment_file(tmp_path, database)
    with pytest.raises(AnnotationError, match=message) as err:
        read_labelled_segments(p, _gt())
    assert str(err.value).startswith(str(p))


def test_labelled_segment_file_errors_and_strict(tmp_path):
    gt = _gt()
    missing = tmp_path / "missing.json"
    with pytest.raises(AnnotationError, match=f"{missing}: no such labelled-segment file"):
        read_labelled_segments(missing, gt)
    bad = tmp_path / "bad.json"
    bad.write_text('{"database":\n {,}}')
    with pytest.raises(AnnotationError, match=f"{bad}: line 2: not valid JSON"):
        read_labelled_segments(bad, gt)
    flat = _segment_file(tmp_path, {}, "flat.json")
    flat.write_text("[]")
    with pytest.raises(AnnotationError, match="no 'database' mapping"):
        read_labelled_segments(flat, gt)
    p = _segment_file(tmp_path, {"vX": {"annotations": [{"segment": [1, 2], "label": "A"}]}})
    with pytest.raises(AnnotationError, match="video vX, annotation 0: video 'vX' is not in the ground truth"):
        read_labelled_segments(p, gt, strict=True)
    p = _segment_file(tmp_path, {"v1": {"annotations": [{"segment": [1, 2], "label": "Z"}]}})
    with pytest.raises(AnnotationError, match="annotation 0: class 'Z' is not in the ground truth"):
        read_labelled_segments(p, gt, strict=True)
    p = _segment_file(tmp_path, {"v1": {"annotations": [{"segment": [25, 31], "label": "A"}]}})
    assert read_labelled_segments(p, gt)[1].past_duration == {"v1": 1}
    with pytest.raises(AnnotationError, match="past the end of video v1"):
        read_labelled_segments(p, gt, strict=True)


# ------------------------------------------------------------------------------------------------- combinations


def test_every_kind_in_one_config(benchkit, thumos, tmp_path):
    vid = "video_validation_0000051"
    seg_file = _segment_file(tmp_path, {vid: {"annotations": [{"segment": [68.0, 70.0], "label": "Billiards"}]}})
    cfg = {"action_clicks": {"source": "random_annotator", "files": _files(benchkit, "action", 4)},
           "background_clicks": {"source": "annotator", "files": _files(benchkit, "background", 3)},
           "segments": {"source": "file", "file": str(seg_file)},
           "boundaries": True, "frame_targets": True}
    labels = _supervision(thumos, **cfg)
    assert len(labels.reports) == 6 and labels.reports[-1].unit == "labelled segments"
    s = labels.supervision[vid]
    assert s.action_clicks and s.background_clicks and s.labelled_segments == (Segment(68.0, 70.0, "Billiards"),)
    assert s.boundaries == thumos.videos[vid].segments and s.video_labels == {"Billiards"}
    simulated = _supervision(thumos, action_clicks={"source": "gaussian"},
                             background_clicks={"source": "simulated"},
                             segments={"source": "simulated", "per_instance": 2}, video_labels=False).supervision[vid]
    assert (len(simulated.action_clicks) == len(simulated.labelled_segments) == len(thumos.videos[vid].segments)
            and simulated.background_clicks and not simulated.video_labels and simulated.boundaries is None)


def test_frame_targets_need_the_boundaries():
    with pytest.raises(ConfigError, match="labels: frame_targets needs boundaries: true"):
        config_from_dict(DataConfig, {"labels": {"frame_targets": True}})
    assert config_from_dict(LabelConfig, {"frame_targets": True, "boundaries": True}).frame_targets


@pytest.mark.parametrize("source", ["random_annotator", "uniform", "gaussian"])
def test_other_kinds_leave_the_action_click_draws_alone(benchkit, thumos, source):
    clicks = {"source": source, "files": _files(benchkit, "action", 4)}
    alone = _supervision(thumos, run_seed=3, action_clicks=clicks).supervision
    more = _supervision(thumos, run_seed=3, action_clicks=clicks, background_clicks={"source": "simulated"},
                        segments={"source": "simulated", "per_instance": 2}, boundaries=True).supervision
    assert {v: s.action_clicks for v, s in alone.items()} == {v: s.action_clicks for v, s in more.items()}
    bg = _supervision(thumos, run_seed=3, background_clicks={"source": "simulated"}).supervision
    assert {v: s.background_clicks for v, s in bg.items()} == {v: s.background_clicks for v, s in more.items()}


def test_label_seed_overrides_the_run_seed(thumos):
    pinned = {"action_clicks": {"source": "uniform"}, "seed": 7}
    assert (_supervision(thumos, run_seed=0, **pinned).supervision
            == _supervision(thumos, run_seed=1, **pinned).supervision
            == _supervision(thumos, run_seed=7, action_clicks={"source": "uniform"}).supervision)


# --------------------------------------------------------------------------------------------------- statistics


def test_label_statistics_hand_made():
    gt = _gt()
    sup = {
        "v1": Supervision("v1", 30.0, frozenset({"A", "B"}),
                          action_clicks=(ActionClick(3, "A"), ActionClick(11, "A"), ActionClick(20, "B")),
                          background_clicks=(1.0, 6.0, 8.0),  # 6.0 is an instance's last second: inside
                          labelled_segments=(Segment(2, 3, "A"), Segment(5, 11, "B")),  # middle 8: outside
                          boundaries=gt.videos["v1"].segments),
        "v2": Supervision("v2", 30.0),
    }
    stats = label_statistics(sup, gt)
    assert json.loads(json.dumps(stats)) == stats
    assert stats["per_video"]["v1"] == {
        "action_clicks": {"count": 3, "inside": 1, "outside": 2},
        "background_clicks": {"count": 3, "inside": 1, "outside": 2},
        "labelled_segments": {"count": 2, "inside": 1, "outside": 1},
        "boundaries": {"count": 2},
        "video_labels": {"count": 2},
    }
    assert stats["per_video"]["v2"]["action_clicks"] == {"count": 0, "inside": 0, "outside": 0}
    assert stats["totals"] == {"videos": 2, **stats["per_video"]["v1"]}
    text = format_label_summary(stats)
    assert text.splitlines()[0] == "labels of 2 training videos:"
    assert "2 outside an instance of their class, 66.7%" in text and "1 inside an action, 33.3%" in text
    assert "(on 1 of 2 videos)" in text
    assert format_label_summary(label_statistics({"v2": Supervision("v2", 30.0)}, gt)).endswith("none")


def test_label_statistics_on_the_real_thumos_a1_clicks(benchkit, thumos):
    clicks = {"source": "annotator", "files": _files(benchkit, "action", 1)}
    labels = _supervision(thumos, action_clicks=clicks,
                          background_clicks={"source": "annotator", "files": _files(benchkit, "background", 1)})
    totals = label_statistics(labels.supervision, thumos)["totals"]
    # the annotation statistics of docs/reference.md (SF-Net Table 1): A1 2980 clicks, 121 (4.1%) misplaced; A1 background
    # clicks 2264, 175 inside actions
    assert totals["action_clicks"] == {"count": 2980, "inside": 2859, "outside": 121}
    assert totals["background_clicks"] == {"count": 2264, "inside": 175, "outside": 2089}
    assert totals["videos"] == 200 and totals["boundaries"] == {"count": 0}
    a1, _ = read_action_clicks(benchkit / "thumos14/action_clicks_A1.txt", thumos)
    assert action_click_stats(thumos, a1, "A1").outside == 121  # the same inside-an-instance test
    text = format_label_summary(label_statistics(labels.supervision, thumos))
    assert "2980  (121 outside an instance of their class, 4.1%)" in text

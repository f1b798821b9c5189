"""Bad data gets a named answer: empty or useless label files, labels past their video's end and non-finite
features are refused with the file, the place and the reason (or, for labels past the end, dropped and counted
under ``data.labels.beyond_video: drop``)."""
import json

import numpy as np
import pytest

from clicktal.pipeline.core.config import ConfigError, config_from_dict
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.annotations import (AnnotationError, GroundTruth, Segment, VideoAnnotation,
                                                load_ground_truth)
from clicktal.pipeline.data.cache import FeatureCache, FeatureMeta, NonFiniteFeatures
from clicktal.pipeline.data.formats import open_features
from clicktal.pipeline.data.datasets import VideoDataset
from clicktal.pipeline.data.labels import LabelConfig, training_supervision
from clicktal.pipeline.data.supervision import Supervision

GEO = FeatureGeometry()
META = FeatureMeta(GEO, {"rgb": (0, 4), "flow": (4, 8)}, extractor="test")


def _gt():
    return GroundTruth({
        "v1": VideoAnnotation("v1", "train", 63.0, (Segment(2, 6, "A"), Segment(10, 14, "B"))),
        "v2": VideoAnnotation("v2", "train", 30.0, (Segment(5, 9, "A"),)),
        "v3": VideoAnnotation("v3", "test", 30.0, (Segment(1, 4, "B"),)),
    }, source="gt.json")


def _labels(gt, subset="train", **cfg):
    return training_supervision(gt, subset, config_from_dict(LabelConfig, cfg), seed=0, geometry=GEO)


def _file(tmp_path, text, name="clicks.txt"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# ------------------------------------------------------------------------------------------ empty label sources


@pytest.mark.parametrize("kind, name, text", [
    ("action_clicks", "clicks.txt", ""),
    ("action_clicks", "clicks.txt", "\r\n\r\n"),
    ("background_clicks", "bg.csv", "URLID,Start\r\n"),
    ("segments", "segments.json", json.dumps({"database": {}})),
])
def test_an_empty_label_file_is_refused_naming_it(tmp_path, kind, name, text):
    path = _file(tmp_path, text, name)
    cfg = {"segments": {"source": "file", "file": path}} if kind == "segments" else \
        {kind: {"source": "annotator", "files": [path]}}
    with pytest.raises(AnnotationError, match=r"0 (clicks|labelled segments) kept for the 2 videos of training "
                                              r"subset 'train': the file holds no") as err:
        _labels(_gt(), **cfg)
    assert str(err.value).startswith(path)


def test_a_file_whose_every_click_is_skipped_is_refused_with_the_reasons(tmp_path):
    unknown = _file(tmp_path, "vX,3,A\nvY,4,A\nvY,5,B\n")
    with pytest.raises(AnnotationError, match=r"clicks.txt: 0 clicks kept for the 2 videos of training subset "
                                              r"'train': skipped 3 on 2 videos absent from the ground truth "
                                              r"\(vX, vY\)"):
        _labels(_gt(), action_clicks={"source": "annotator", "files": [unknown]})
    # one useful annotator file does not excuse a useless one drawn for other videos
    ok = _file(tmp_path, "v1,3,A\n", "ok.txt")
    mixed = _file(tmp_path, "v1,3,Zz\nv3,2,B\n", "mixed.txt")  # an unknown class, a test video
    with pytest.raises(AnnotationError, match=r"mixed.txt: 0 clicks kept .*: skipped 1 with classes absent from the "
                                              r"ground truth \(Zz\); 1 on videos of other subsets \(1 in 'test'\)"):
        _labels(_gt(), action_clicks={"source": "random_annotator", "files": [ok, mixed]})
    assert _labels(_gt(), action_clicks={"source": "annotator", "files": [ok]}).reports[0].kept == 1


# ------------------------------------------------------------------------------------ labels past the video's end


def test_a_click_far_past_the_end_is_refused_or_dropped_and_counted(tmp_path):
    path = _file(tmp_path, "v1,3,A\nv1,99999,B\nv2,6,A\n")
    with pytest.raises(AnnotationError, match=r"clicks.txt: line 2: time 99999.0 s is beyond the end of video v1 "
                                              r"\(length 63.000 s; at most 76.600 s allowed"):
        _labels(_gt(), action_clicks={"source": "annotator", "files": [path]})
    labels = _labels(_gt(), action_clicks={"source": "annotator", "files": [path]}, beyond_video="drop")
    report = labels.reports[0]
    assert report.kept == 2 and report.beyond_video == {"v1": 1} and report.skipped == 1
    assert "dropped 1 beyond the length of 1 videos (v1)" in report.summary()
    assert [c.time_s for c in labels.supervision["v1"].action_clicks] == [3.0]
    # within the tolerance (20 % + 1 s of 63 s): kept and counted; a tolerance of 0 refuses it
    near = _file(tmp_path, "v1,70,B\n", "near.txt")
    assert _labels(_gt(), action_clicks={"source": "annotator", "files": [near]}).reports[0].past_duration == {"v1": 1}
    with pytest.raises(AnnotationError, match="line 1: time 70.0 s is beyond the end of video v1"):
        _labels(_gt(), action_clicks={"source": "annotator", "files": [near]}, beyond_video_tolerance_s=0,
                beyond_video_tolerance_fraction=0)
    # dropping every click leaves the file empty for the run: refused, saying why
    only = _file(tmp_path, "v2,99999,A\n", "only.txt")
    with pytest.raises(AnnotationError, match=r"only.txt: 0 clicks kept .*dropped 1 beyond the length of 1 videos"):
        _labels(_gt(), action_clicks={"source": "annotator", "files": [only]}, beyond_video="drop")
    with pytest.raises(ConfigError, match="beyond_video"):
        config_from_dict(LabelConfig, {"beyond_video": "clip"})
    with pytest.raises(ConfigError, match="beyond_video_tolerance_s must be a finite number >= 0"):
        config_from_dict(LabelConfig, {"beyond_video_tolerance_s": -1})


def test_background_clicks_and_segments_far_past_the_end_too(tmp_path):
    bg = _file(tmp_path, "URLID,Start\nv1,20\nv2,5000\n", "bg.csv")
    with pytest.raises(AnnotationError, match=r"bg.csv: line 3: time 5000.0 s is beyond the end of video v2"):
        _labels(_gt(), background_clicks={"source": "annotator", "files": [bg]})
    assert _labels(_gt(), background_clicks={"source": "annotator", "files": [bg]}, beyond_video="drop"
                   ).reports[0].beyond_video == {"v2": 1}
    seg = _file(tmp_path, json.dumps({"database": {"v1": {"annotations": [
        {"segment": [3, 4], "label": "A"}, {"segment": [60, 500], "label": "B"}]}}}), "seg.json")
    with pytest.raises(AnnotationError, match=r"seg.json: video v1, annotation 1: time 500.0 s is beyond the end"):
        _labels(_gt(), segments={"source": "file", "file": seg})
    labels = _labels(_gt(), segments={"source": "file", "file": seg}, beyond_video="drop")
    assert labels.supervision["v1"].labelled_segments == (Segment(3, 4, "A"),)


def test_the_real_click_files_load_with_the_defaults(benchkit):
    thumos = load_ground_truth(benchkit / "thumos14/groundtruth.json")
    files = {kind: [str(benchkit / f"thumos14/{kind}_A{a}.{ext}") for a in range(1, n + 1)]
             for kind, ext, n in (("action_clicks", "txt", 4), ("background_clicks", "csv", 3))}
    labels = _labels(thumos, "validation", action_clicks={"source": "random_annotator",
                                                             "files": files["action_clicks"]})
    assert [r.kept for r in labels.reports] == [2980, 2919, 3014, 2986]
    # the clicks past the too-short stated durations are kept and counted, none dropped
    assert [sum(r.past_duration.values()) for r in labels.reports] == [0, 3, 4, 0]
    for a in range(3):
        bg = _labels(thumos, "validation", background_clicks={"source": "annotator", "annotator": a,
                                                                 "files": files["background_clicks"]}).reports[0]
        assert (bg.kept, bg.skipped) == ([2264, 2323, 2344][a], 0)
    gtea = load_ground_truth(benchkit / "gtea/groundtruth.json")
    gtea_files = [str(benchkit / f"gtea/action_clicks_A{a}.txt") for a in range(1, 5)]
    labels = _labels(gtea, "training", action_clicks={"source": "random_annotator", "files": gtea_files})
    assert [r.kept for r in labels.reports] == [369, 367, 377, 367] and not any(r.skipped for r in labels.reports)


# -------------------------------------------------------------------------------------------- non-finite features


def test_a_nan_row_in_a_cached_video_names_the_file_rows_and_columns(tmp_path):
    cache = FeatureCache(tmp_path)
    x = np.ones((40, 8), np.float32)
    cache.write("good", x, META)
    x[17, 5] = np.nan
    x[30] = np.nan
    cache.write("bad", x, META)
    assert cache.read("good")[0].shape == (40, 8)
    with pytest.raises(NonFiniteFeatures, match=r"bad.npy: 9 non-finite feature values \(9 NaN, 0 inf\) in 2 of 40 "
                                                r"rows \(snippets\) and 8 of 8 columns: rows 17, 30; columns "
                                                r"0, 1, 2, 3, 4, \.\.\. \(streams rgb, flow\)"):
        cache.read("bad")
    # the dataset reads through the same reader (memory-mapped, not preloaded, too)
    sup = {v: Supervision(v, 40 * GEO.seconds_per_snippet) for v in ("good", "bad")}
    for preload in (True, False):
        dataset = VideoDataset(open_features(tmp_path), sup, ["A"], preload=preload)
        assert dataset.item("good").features.shape == (40, 8)
        with pytest.raises(NonFiniteFeatures, match="rows 17, 30"):
            dataset.item("bad")


def test_an_inf_in_a_synth_layout_file_is_refused_too(tmp_path):
    (tmp_path / "features").mkdir()
    (tmp_path / "annotations.json").write_text(json.dumps({"database": {}, "feature_meta": {
        "fps": 25, "snippet_frames": 16, "rgb_dim": 4, "dim": 8}}))
    x = np.zeros((12, 8), np.float32)
    x[3, 6] = np.inf
    x[9, 6] = -np.inf
    x[9, 7] = np.nan
    np.save(tmp_path / "features" / "v.npy", x)
    with pytest.raises(NonFiniteFeatures, match=r"features/v.npy: 3 non-finite feature values \(1 NaN, 2 inf\) in "
                                                r"2 of 12 rows \(snippets\) and 2 of 8 columns: rows 3, 9; columns "
                                                r"6, 7 \(stream flow\)"):
        open_features(tmp_path).load("v")


def test_the_check_reads_in_chunks(tmp_path, monkeypatch):
    from clicktal.pipeline.data import cache as cache_module
    monkeypatch.setattr(cache_module, "CHECK_CHUNK_BYTES", 3 * 8 * 4)  # three rows at a time
    x = np.zeros((10, 8), np.float32)
    x[[2, 3, 9], 1] = np.nan
    FeatureCache(tmp_path).write("v", x, META)
    with pytest.raises(NonFiniteFeatures, match="in 3 of 10 rows .* rows 2, 3, 9; columns 1 "):
        FeatureCache(tmp_path).read("v")

import json

import numpy as np
import pytest

from clicktal.pipeline.data.annotations import GroundTruth, Segment, VideoAnnotation, load_ground_truth, read_ambiguous
from clicktal.pipeline.data.detections import (Detection, DetectionFileError, DetectionTable, detections_from_json,
                                               detections_to_json, read_detection_table, read_detections,
                                               write_detections)
from clicktal.pipeline.evaluation.detection import (NAMED_RANGES, EvaluationError, evaluate_detections, foreground_ap,
                                                    frame_level_map, parse_tiou, segment_iou)
from clicktal.pipeline.evaluation.reference import reference_anet_detection, reference_average_precision_detection
from clicktal.pipeline.core.geometry import FeatureGeometry


# --- hand-computed cases ---

def make_gt(videos: dict[str, list[tuple[float, float, str]]], subset: str = "test") -> GroundTruth:
    return GroundTruth({v: VideoAnnotation(v, subset, 100.0, tuple(Segment(s, e, c) for s, e, c in segs))
                        for v, segs in videos.items()})


def ap_of(gt, dets, thresholds=(0.5,), **kw):
    return evaluate_detections(gt, dets, thresholds, **kw)


def test_score_ties_break_as_the_official_argsort():
    gt = make_gt({"v1": [(0, 10, "A")]})
    # Equal scores: argsort of [0.5, 0.5] is [0, 1] (small arrays sort stably), reversed [1, 0]: the later
    # detection (the true positive) ranks first -> precision [1, 1/2] at recall [1, 1] -> AP 1.
    # (Input order reversed, the false positive would rank first -> AP 1/2.)
    dets = [Detection("v1", "A", 20, 30, 0.5), Detection("v1", "A", 0, 10, 0.5)]
    assert ap_of(gt, dets).per_class_AP["A"] == (1.0,)
    assert ap_of(gt, dets[::-1]).per_class_AP["A"] == (0.5,)


def test_duplicate_detection_is_a_false_positive():
    gt = make_gt({"v1": [(0, 10, "A"), (20, 30, "A")]})
    # ranked: TP (recall 1/2), duplicate FP, TP (recall 1): precision [1, 1/2, 2/3]
    # interpolated: recall 0 -> 1/2 at precision 1, 1/2 -> 1 at max(2/3) -> AP = 1/2 + 1/2 * 2/3 = 5/6
    dets = [Detection("v1", "A", 0, 10, 0.9), Detection("v1", "A", 0, 10, 0.8), Detection("v1", "A", 20, 30, 0.7)]
    assert ap_of(gt, dets).mAP[0] == pytest.approx(5 / 6, abs=1e-15)


def test_zero_length_segments_mirror_the_official_nan():
    gt = make_gt({"v1": [(5, 5, "A"), (10, 20, "A")]})
    # [7, 7] vs [5, 5]: intersection 0, union 0 -> tIoU NaN, and NaN < threshold is False: a match at every
    # threshold although the two do not even touch. [12, 12] vs [10, 20]: tIoU 0 / 10 = 0 -> FP.
    # precision [1, 1/2] at recall [1/2, 1/2] -> AP = 1/2 * 1 = 1/2 at every threshold.
    dets = [Detection("v1", "A", 7, 7, 0.9), Detection("v1", "A", 12, 12, 0.8)]
    assert ap_of(gt, dets, (0.1, 0.9)).per_class_AP["A"] == (0.5, 0.5)
    assert np.isnan(segment_iou(np.array([[7.0, 7.0]]), np.array([[5.0, 5.0]])))[0, 0]


def test_class_without_ground_truth_in_subset_and_class_without_detections():
    gt = GroundTruth({
        "v1": VideoAnnotation("v1", "test", 100.0, (Segment(0, 10, "A"), Segment(30, 40, "C"))),
        "v2": VideoAnnotation("v2", "validation", 100.0, (Segment(0, 10, "B"),)),
    })
    dets = [Detection("v1", "A", 0, 10, 0.9), Detection("v1", "B", 0, 10, 0.8)]
    # B has ground truth only in 'validation': not a class of 'test' -> an error naming it (official: KeyError)
    with pytest.raises(EvaluationError, match="'B' \\(1\\)"):
        ap_of(gt, dets, subset="test")
    res = ap_of(gt, dets, subset="test", ignore_unknown_labels=True)
    # classes of 'test' are A and C; A: one TP -> AP 1; C: no detections -> AP 0; mAP = 1/2
    assert res.per_class_AP == {"A": (1.0,), "C": (0.0,)} and res.mAP == (0.5,)
    assert res.n_unknown_label == 1 and res.n_detections == 1


def test_video_without_detections_and_detection_on_video_without_ground_truth():
    gt = make_gt({"v1": [(0, 10, "A")], "v2": [(0, 10, "A")]})
    # v2 has no detection: the one TP reaches recall 1/2 -> AP = 1/2 * 1 = 1/2
    assert ap_of(gt, [Detection("v1", "A", 0, 10, 0.9)]).mAP == (0.5,)
    # a better-scored detection on v3 (no ground truth, not even in the subset) ranks first as a FP:
    # precision [0, 1/2] at recall [0, 1/2] -> AP = 1/2 * 1/2 = 1/4
    res = ap_of(gt, [Detection("v1", "A", 0, 10, 0.9), Detection("v3", "A", 0, 10, 0.95)])
    assert res.mAP == (0.25,) and res.n_outside_subset == 1


def test_each_threshold_has_its_own_locks():
    gt = make_gt({"v1": [(0, 10, "A")]})
    # [0, 6] has tIoU 0.6, [0, 10] tIoU 1. At 0.5 the better-scored [0, 6] takes the ground truth and [0, 10] is a
    # FP -> AP 1. At 0.7 [0, 6] is a FP and [0, 10] a TP: precision [0, 1/2] at recall [0, 1] -> AP 1/2.
    dets = [Detection("v1", "A", 0, 6, 0.9), Detection("v1", "A", 0, 10, 0.8)]
    assert ap_of(gt, dets, (0.5, 0.7)).per_class_AP["A"] == (1.0, 0.5)


def test_equal_tiou_takes_the_later_ground_truth_as_the_official_argsort():
    gt = make_gt({"v1": [(0, 10, "A"), (10, 20, "A")]})
    # [5, 15] has tIoU 5/15 with both; argsort [0, 1] reversed -> it takes [10, 20]. [12, 20] (tIoU 0.8 with
    # [10, 20] only) is then a FP: precision [1, 1/2] at recall [1/2, 1/2] -> AP 1/2 at tIoU 0.3.
    dets = [Detection("v1", "A", 5, 15, 0.9), Detection("v1", "A", 12, 20, 0.8)]
    assert ap_of(gt, dets, (0.3,)).mAP == (0.5,)


def test_ambiguous_detections_are_dropped():
    gt = make_gt({"v1": [(0, 10, "A")]})
    dets = [Detection("v1", "A", 0, 10, 0.5), Detection("v1", "A", 18, 21, 0.9), Detection("v1", "A", 25, 30, 0.8)]
    # without the option: FP, FP, TP -> precision 1/3 at recall 1 -> AP 1/3
    assert ap_of(gt, dets).mAP[0] == pytest.approx(1 / 3, abs=1e-15)
    # [18, 21] overlaps the ambiguous [20, 25] and goes; [25, 30] only touches it (zero overlap) and stays:
    # FP, TP -> AP 1/2
    res = ap_of(gt, dets, ambiguous={"v1": [(20.0, 25.0)], "v9": [(0.0, 1.0)]})
    assert res.mAP == (0.5,) and res.n_ambiguous == 1 and res.n_detections == 2


def test_results_json_mapping_is_accepted_in_file_order():
    gt = make_gt({"v1": [(0, 10, "A")]})
    data = {"version": "x", "external_data": {}, "results": {
        "v1": [{"label": "A", "segment": [20, 30], "score": 0.5}, {"label": "A", "segment": [0, 10], "score": 0.5}]}}
    assert ap_of(gt, data).mAP == (1.0,)  # as test_score_ties_break_as_the_official_argsort


# --- equality with the official code on the real THUMOS14 ground truth ---

def random_results(database: dict, rng, n: int, quantize: bool) -> dict:
    """Results JSON: mostly jittered copies of ground-truth instances, some random; ~5% on validation videos."""
    videos = list(database)
    classes = sorted({a["label"] for v in database.values() for a in v["annotations"]})
    results = {}
    for _ in range(n):
        vid = videos[rng.integers(len(videos))]
        anns = database[vid]["annotations"]
        if database[vid]["subset"] == "validation" and rng.random() < 0.9:
            continue
        if rng.random() < 0.8:
            ann = anns[rng.integers(len(anns))]
            s, e = ann["segment"]
            centre, length = abs((s + e) / 2 + rng.normal(0, 1.5)), (e - s) * np.exp(rng.normal(0, 0.4))
            label, seg = ann["label"], [max(0.0, centre - length / 2), centre + length / 2]
        else:
            start = rng.uniform(0, database[vid]["duration"])
            label, seg = classes[rng.integers(len(classes))], [start, start + rng.exponential(4)]
        score = rng.random()
        if quantize:  # ties in score and, on the 0.1 s grid of the ground truth, in tIoU
            seg, score = [round(seg[0], 1), round(seg[1], 1)], round(score, 2)
        results.setdefault(vid, []).append({"label": label, "score": score, "segment": seg})
    return {"version": "test", "results": results, "external_data": {}}


@pytest.mark.filterwarnings("ignore::clicktal.pipeline.evaluation.detection.EvaluationWarning")  # random detections
@pytest.mark.parametrize("seed", [0, 1])
def test_equal_to_the_official_code_on_thumos14(benchkit, seed):
    path = benchkit / "thumos14" / "groundtruth.json"
    database = json.loads(path.read_text())["database"]
    results = random_results(database, np.random.default_rng(seed), 12000, quantize=False)
    thresholds = parse_tiou("0.1:0.1:0.9")
    ref_ap, ref_map = reference_anet_detection(database, results["results"], "test", thresholds)
    res = evaluate_detections(load_ground_truth(path), detections_from_json(results), thresholds, subset="test")
    assert set(res.per_class_AP) == set(ref_ap)
    for label, ap in ref_ap.items():
        assert res.per_class_AP[label] == tuple(ap), label  # bit-identical
    np.testing.assert_allclose(res.mAP, ref_map, rtol=1e-13)  # classes averaged in another order
    assert res.n_outside_subset > 0


@pytest.mark.filterwarnings("ignore::clicktal.pipeline.evaluation.detection.EvaluationWarning")  # random detections
def test_equal_to_the_official_code_with_ties(benchkit):
    """Quantised times and scores make ties in score and tIoU; the ground truth is given to the reference in the
    order GroundTruth keeps (sorted per video), which is what tIoU ties then depend on."""
    gt = load_ground_truth(benchkit / "thumos14" / "groundtruth.json")
    database = {v: {"subset": a.subset, "duration": a.duration_s,
                    "annotations": [{"segment": [s.start_s, s.end_s], "label": s.label} for s in a.segments]}
                for v, a in gt.videos.items()}
    results = random_results(database, np.random.default_rng(7), 12000, quantize=True)
    thresholds = parse_tiou("0.1:0.1:0.9")
    ref_ap, _ = reference_anet_detection(database, results["results"], "test", thresholds)
    res = evaluate_detections(gt, results, thresholds, subset="test")
    assert all(res.per_class_AP[label] == tuple(ap) for label, ap in ref_ap.items())


# --- thresholds, named ranges, frame-level mAP, results files ---

def test_parse_tiou():
    assert parse_tiou("0.1:0.7") == tuple(np.linspace(0.1, 0.7, 7))  # the floats SF-Net passes to the evaluator
    assert parse_tiou("0.5:0.05:0.95") == tuple(np.linspace(0.5, 0.95, 10))  # ActivityNet's default
    assert parse_tiou("0.3, 0.5,0.7") == (0.3, 0.5, 0.7) and parse_tiou("0.5") == (0.5,)
    for bad, message in [("0.1:x", "not a number"), ("0.7:0.1", "a <= b"), ("0.1:0.3:0.6", "does not divide"),
                         ("0.5,1.5", "\\[0, 1\\]"), ("1:2:3:4", "a:step:b")]:
        with pytest.raises(ValueError, match=message):
            parse_tiou(bad)


def test_named_range_averages():
    gt = make_gt({"v1": [(0, 10, "A")]})
    res = evaluate_detections(gt, [Detection("v1", "A", 0, 6, 1.0)], parse_tiou("0.1:0.1:0.9"))
    # tIoU 0.6: AP 1 at thresholds up to 0.6, 0 above
    assert res.range_mAP == pytest.approx({"0.1:0.5": 1.0, "0.1:0.7": 6 / 7, "0.3:0.7": 4 / 5})
    assert set(NAMED_RANGES) >= set(res.range_mAP) and res.average_mAP == pytest.approx(6 / 9)
    json_out = res.to_json()
    assert json_out["mAP"] == list(res.mAP) and json_out["per_class_AP"]["A"][6] == 0.0


def test_frame_level_map():
    geometry = FeatureGeometry(fps=1, window=1, stride=1)  # snippet i has its centre at i + 0.5 s
    gt = make_gt({"v1": [(1, 3, "A"), (4, 5, "B")]})
    scores = np.array([[0.1, 0.5], [0.9, 0.5], [0.3, 0.5], [0.8, 0.5], [0.2, 0.5]])
    res = frame_level_map(gt, {"v1": scores}, ["A", "B"], geometry)
    # A: snippets 1, 2 positive; ranking 0.9 (+), 0.8 (-), 0.3 (+): AP = (1/1 + 2/3) / 2 = 5/6
    # B: snippet 4 positive, all scores tied: one step, precision 1/5 at recall 1 -> AP 1/5
    assert res.per_class_AP == pytest.approx({"A": 5 / 6, "B": 1 / 5})
    assert res.mAP == pytest.approx((5 / 6 + 1 / 5) / 2)
    with pytest.raises(EvaluationError, match="missing \\['v1'\\]"):
        frame_level_map(gt, {}, ["A", "B"], geometry)
    with pytest.raises(EvaluationError, match="lack ground-truth classes \\['B'\\]"):
        frame_level_map(gt, {"v1": scores[:, :1]}, ["A"], geometry)


def test_foreground_ap_ignores_labels():
    geometry = FeatureGeometry(fps=1, window=1, stride=1)
    gt = make_gt({"v1": [(1, 3, "A"), (4, 5, "B")]})
    # snippets 1, 2, 4 inside a segment, whatever its class; ranking 0.9 (+), 0.8 (-), 0.7 (+), 0.6 (+), 0.1 (-)
    score = np.array([0.8, 0.9, 0.7, 0.1, 0.6])
    assert foreground_ap(gt, {"v1": score}, geometry) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    with pytest.raises(EvaluationError, match="missing"):
        foreground_ap(gt, {}, geometry)


def test_results_file_round_trip_keeps_order(tmp_path):
    dets = [Detection("v2", "B", 1.0, 2.0, 0.3), Detection("v1", "A", 0.0, 1.5, 0.9), Detection("v2", "A", 3, 4, 1)]
    path = tmp_path / "out" / "dets.json"
    write_detections(path, dets, version="v9")
    data = json.loads(path.read_text())
    assert list(data["results"]) == ["v2", "v1"] and data["version"] == "v9" and data["external_data"] == {}
    assert read_detections(path) == [dets[0], dets[2], dets[1]]  # grouped by video, first-appearance order
    assert [p.name for p in path.parent.iterdir()] == ["dets.json"]  # no temp file left
    assert detections_to_json(dets)["results"]["v1"] == [{"label": "A", "score": 0.9, "segment": [0.0, 1.5]}]


@pytest.mark.parametrize("content, message", [
    ("{", "line 1: not valid JSON"),
    ('{"database": {}}', "no 'results' mapping"),
    ('{"results": {"v": {}}}', "video v: results must be a list"),
    ('{"results": {"v": [{"label": "A", "score": 1}]}}', "video v, result 0: needs 'label', 'score' and 'segment'"),
    ('{"results": {"v": [{"label": "A", "score": "x", "segment": [0, 1]}]}}', "score 'x' is not a finite number"),
    ('{"results": {"v": [{"label": "A", "score": 1, "segment": [2, 1]}]}}', "ends before it starts"),
    ('{"results": {"v": [{"label": 3, "score": 1, "segment": [0, 1]}]}}', "label 3 is not a string"),
])
def test_results_file_errors_name_file_video_and_entry(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DetectionFileError, match=f"bad.json: .*{message}"):
        read_detections(path)


def test_more_results_file_errors_through_the_fast_reader(tmp_path):
    # what the strict decoder refuses goes to the entry-by-entry check, which names the entry
    cases = [('{"results": {"v": [{"label": "A", "score": NaN, "segment": [0, 1]}]}}', "score nan is not a finite"),
             ('{"results": {"v": [{"label": "A", "score": true, "segment": [0, 1]}]}}', "score True is not a finite"),
             ('{"results": {"v": [{"label": "A", "score": 1, "segment": [0, 1, 2]}]}}', "result 0: needs"),
             ('{"results": {"v": [{"label": "A", "score": 1, "segment": [0, 1e999]}]}}', "end inf is not a finite"),
             ('{"results": {"v": [{"label": "A", "score": 1, "segment": ["0", 1]}]}}', "start '0' is not a finite"),
             (b'{"results": {"v": [\xff]}}', "not UTF-8 text")]
    for content, message in cases:
        path = tmp_path / "bad.json"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(DetectionFileError, match=f"bad.json: .*{message}"):
            read_detection_table(path)


def test_fast_reader_equals_the_json_module_bit_for_bit(tmp_path):
    """Columns from the msgspec reader are the floats, labels and order that json + detections_from_json give,
    including integers, a byte-order mark, extra keys, and NaN outside the results (which json reads)."""
    rng = np.random.default_rng(3)
    results = {f"v{v}": [{"label": f"c{rng.integers(4)}", "score": float(rng.random()) if k % 3 else int(k % 2),
                          "segment": [float(rng.random() * 1e3) / 7, 1e3 + k * 0.1], "extra": [1, {"x": None}]}
                         for k in range(int(rng.integers(1, 30)))] for v in [5, 2, 9, 0]}
    text = json.dumps({"version": "x", "results": results, "external_data": {}})
    expected = detections_from_json(json.loads(text))
    for name, content in [("plain.json", text.encode()), ("bom.json", b"\xef\xbb\xbf" + text.encode()),
                          ("nan.json", text.replace('"external_data": {}', '"external_data": NaN').encode())]:
        (tmp_path / name).write_bytes(content)
        table = read_detection_table(tmp_path / name)
        assert list(table) == expected, name
        assert table.videos == ("v5", "v2", "v9", "v0") and table.segment.dtype == np.float64
        assert table.segment.tobytes() == np.array([(d.start_s, d.end_s) for d in expected]).tobytes()
    assert read_detections(tmp_path / "plain.json") == expected
    empty = tmp_path / "empty.json"
    empty.write_text('{"results": {}}')
    assert len(read_detection_table(empty)) == 0


@pytest.mark.filterwarnings("ignore::clicktal.pipeline.evaluation.detection.EvaluationWarning")  # random detections
def test_table_and_list_inputs_evaluate_identically(benchkit, tmp_path):
    path = benchkit / "thumos14" / "groundtruth.json"
    results = random_results(json.loads(path.read_text())["database"], np.random.default_rng(5), 6000,
                             quantize=True)
    (tmp_path / "dets.json").write_text(json.dumps(results))
    gt, thresholds = load_ground_truth(path), parse_tiou("0.1:0.7")
    from_list = evaluate_detections(gt, detections_from_json(results), thresholds, subset="test")
    from_table = evaluate_detections(gt, read_detection_table(tmp_path / "dets.json"), thresholds, subset="test")
    assert from_table == from_list
    assert DetectionTable.from_detections([]).segment.shape == (0, 2)


def test_missing_results_file(tmp_path):
    with pytest.raises(DetectionFileError, match="nope.json: no such detections file"):
        read_detections(tmp_path / "nope.json")


def test_thumos14_ambiguous_file_drops_detections(benchkit):
    gt = load_ground_truth(benchkit / "thumos14" / "groundtruth.json")
    ambiguous = read_ambiguous(benchkit / "thumos14" / "ambiguous_test.txt")
    video, (start, end) = next(iter(ambiguous.items()))[0], next(iter(ambiguous.values()))[0]
    dets = [Detection(video, "HighJump", start, end, 0.5), Detection(video, "HighJump", end + 0.5, end + 1, 0.4)]
    res = evaluate_detections(gt, dets, (0.5,), subset="test", ambiguous=ambiguous)
    assert res.n_ambiguous == 1 and res.n_detections == 1


def test_equal_to_the_official_code_on_tie_heavy_data():
    """Integer times: many equal tIoUs, duplicate and zero-length segments (NaN tIoU) on both sides."""
    rng = np.random.default_rng(3)
    videos = {}
    for v in range(6):
        starts = rng.integers(0, 40, 30)
        videos[f"v{v}"] = [(float(s), float(s + rng.integers(0, 4)), "AB"[rng.integers(2)]) for s in starts]
    gt = make_gt(videos)
    rows = [(v, s.start_s, s.end_s, s.label) for v, a in gt.videos.items() for s in a.segments]
    dets = []
    for _ in range(3000):
        start = int(rng.integers(0, 42))
        dets.append(Detection(f"v{rng.integers(7)}", "AB"[rng.integers(2)], float(start),
                              float(start + rng.integers(0, 5)), float(rng.integers(0, 20))))
    thresholds = (0.0, 0.2, 1 / 3, 0.5, 2 / 3, 1.0)
    res = evaluate_detections(gt, dets, thresholds)
    with np.errstate(divide="ignore", invalid="ignore"):
        for label in "AB":
            ref = reference_average_precision_detection(
                [r[:3] for r in rows if r[3] == label],
                [(d.video, d.start_s, d.end_s, d.score) for d in dets if d.label == label], thresholds)
            assert res.per_class_AP[label] == tuple(ref)

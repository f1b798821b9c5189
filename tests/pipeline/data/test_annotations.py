import json

import pytest

from clicktal.pipeline.data.annotations import (AnnotationError, LengthCheck, load_ground_truth, read_action_clicks,
                                                read_ambiguous, read_background_clicks)


@pytest.fixture
def gt_file(tmp_path):
    db = {"database": {
        "vA": {"subset": "validation", "duration": 100.0, "annotations": [
            {"segment": [10.0, 20.0], "label": "Jump"}, {"segment": [50.0, 60.0], "label": "Run"}]},
        "vB": {"subset": "test", "duration": 30.0, "annotations": [{"segment": [1.0, 2.0], "label": "Swim"}]},
    }}
    p = tmp_path / "gt.json"
    p.write_text(json.dumps(db))
    return p


def test_ground_truth_reader(gt_file):
    gt = load_ground_truth(gt_file)
    assert gt.classes() == ["Jump", "Run", "Swim"] and gt.classes("validation") == ["Jump", "Run"]
    assert gt.videos["vA"].labels == {"Jump", "Run"} and gt.subsets() == ["test", "validation"]


@pytest.mark.parametrize("db, message", [
    ({"nodb": {}}, "no 'database'"),
    ({"database": {"v": {"duration": -1, "annotations": []}}}, "video v: duration -1.0 is not positive"),
    ({"database": {"v": {"duration": 5, "annotations": [{"segment": [3, 2], "label": "x"}]}}},
     "annotation 0: segment \\[3.0, 2.0\\] is not a valid interval"),
    ({"database": {"v": {"duration": 5, "annotations": [{"label": "x"}]}}}, "needs 'segment'"),
])
def test_ground_truth_errors_name_the_video(tmp_path, db, message):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(db))
    with pytest.raises(AnnotationError, match=message):
        load_ground_truth(p)


def test_invalid_json_names_the_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"database":\n {,}}')
    with pytest.raises(AnnotationError, match="line 2"):
        load_ground_truth(p)


def test_action_clicks_crlf_blank_lines_and_unknowns(tmp_path, gt_file):
    gt = load_ground_truth(gt_file)
    p = tmp_path / "clicks.txt"
    p.write_bytes(b"vA,15.5,Jump\r\n\r\nvA,55,Run\r\n\r\nvZ,3,Jump\r\nvA,12,Dance\r\n")
    clicks, report = read_action_clicks(p, gt)
    assert [(c.time_s, c.label) for c in clicks["vA"]] == [(15.5, "Jump"), (55.0, "Run")]
    assert report.kept == 2 and report.unknown_videos == {"vZ": 1} and report.unknown_labels == {"Dance": 1}
    assert "skipped 1 on 1 videos" in report.summary() and "Dance" in report.summary()
    with pytest.raises(AnnotationError, match="line 5: video 'vZ'"):
        read_action_clicks(p, gt, strict=True)


@pytest.mark.parametrize("line, message", [
    (b"vA,15.5\r\n", "line 1: expected 'video,seconds,label'"),
    (b"vA,abc,Jump\r\n", "line 1: time 'abc' is not a number"),
    (b"vA,-2,Jump\r\n", "line 1: negative time"),
    (b"vA,nan,Jump\r\n", "not finite"),
])
def test_action_click_errors_name_file_and_line(tmp_path, gt_file, line, message):
    p = tmp_path / "clicks.txt"
    p.write_bytes(line)
    with pytest.raises(AnnotationError, match=message) as err:
        read_action_clicks(p, load_ground_truth(gt_file))
    assert str(p) in str(err.value)


def test_click_past_the_end_is_counted_or_refused(tmp_path, gt_file):
    gt = load_ground_truth(gt_file)
    p = tmp_path / "clicks.txt"
    p.write_text("vA,120,Jump\n")
    clicks, report = read_action_clicks(p, gt)
    assert report.past_duration == {"vA": 1} and len(clicks["vA"]) == 1
    with pytest.raises(AnnotationError, match="line 1: time 120.0 s is past the end of video vA"):
        read_action_clicks(p, gt, strict=True)
    # beyond the tolerance (100 s + 20 % + 1 s): refused, or dropped and counted
    p.write_text("vA,15,Jump\nvA,122,Jump\n")
    with pytest.raises(AnnotationError, match=r"line 2: time 122.0 s is beyond the end of video vA \(length 100.000 s"):
        read_action_clicks(p, gt)
    clicks, report = read_action_clicks(p, gt, length=LengthCheck("drop"))
    assert len(clicks["vA"]) == 1 and report.beyond_video == {"vA": 1} and not report.past_duration


def test_background_clicks_with_bom_and_header(tmp_path, gt_file):
    p = tmp_path / "bg.csv"
    p.write_bytes("\ufeffURLID,URL,TagID,Tag,Start,End,Time,State\r\n"
                  "vA,vA.mp4,20,background_background,30.5,30.5,1,1\r\n"
                  "vA,vA.mp4,20,background_background,2,2,1,1\r\n".encode("utf-8"))
    clicks, report = read_background_clicks(p, load_ground_truth(gt_file))
    assert clicks == {"vA": [2.0, 30.5]} and report.kept == 2


def test_background_clicks_errors(tmp_path, gt_file):
    gt = load_ground_truth(gt_file)
    p = tmp_path / "bg.csv"
    p.write_text("URLID,Begin\nvA,3\n")
    with pytest.raises(AnnotationError, match="line 1: header has no 'Start' column"):
        read_background_clicks(p, gt)
    p.write_text("URLID,Start\nvA,3,4\n")
    with pytest.raises(AnnotationError, match="line 2: expected 2 fields"):
        read_background_clicks(p, gt)


def test_ambiguous_list(tmp_path):
    p = tmp_path / "amb.txt"
    p.write_text("vB  0.0 1.4\nvB 95.7 97.2\n\n")
    assert read_ambiguous(p) == {"vB": [(0.0, 1.4), (95.7, 97.2)]}
    p.write_text("vB 3\n")
    with pytest.raises(AnnotationError, match="line 1: expected 'video start end'"):
        read_ambiguous(p)


def test_real_benchkit_files_read(benchkit):
    gt = load_ground_truth(benchkit / "thumos14/groundtruth.json")
    assert len(gt.subset("validation")) == 200 and len(gt.subset("test")) == 212 and len(gt.classes()) == 20
    counts = []
    for a in range(1, 5):
        clicks, report = read_action_clicks(benchkit / f"thumos14/action_clicks_A{a}.txt", gt)
        counts.append(report.kept)
    assert counts == [2980, 2919, 3014, 2986]
    bg, report = read_background_clicks(benchkit / "thumos14/background_clicks_A1.csv", gt)
    assert report.kept == 2264 and report.skipped == 0
    amb = read_ambiguous(benchkit / "thumos14/ambiguous_test.txt")
    assert all(v.startswith("video_test") for v in amb)


def test_backtal_ground_truth_copy_reads_with_its_own_durations(benchkit):
    # the BackTAL repository's gt_thumos14.json: no taxonomy, fps per video, durations at that fps, two test
    # videos fewer (docs/backtal.md)
    ours = load_ground_truth(benchkit / "thumos14/groundtruth.json")
    theirs = load_ground_truth(benchkit / "thumos14/groundtruth_backtal.json")
    assert len(theirs.subset("val")) == 200 and len(theirs.subset("test")) == 210  # "val", the code's TRAIN_SPLIT
    assert set(ours.subset("test")) - set(theirs.subset("test")) == {"video_test_0000270", "video_test_0001496"}
    assert theirs.classes() == ours.classes()
    assert theirs.videos["video_test_0000950"].duration_s == pytest.approx(1315.394)
    assert ours.videos["video_test_0000950"].duration_s == pytest.approx(1096.067, abs=1e-3)
    bg, report = read_background_clicks(benchkit / "thumos14/background_clicks_A1.csv", theirs)
    assert report.kept == 2264

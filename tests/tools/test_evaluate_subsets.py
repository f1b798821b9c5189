"""`clicktal-evaluate --subset` with several subsets or `all`: one pooled evaluation, hand-worked APs."""
import json

import pytest

from clicktal.tools.evaluate import main

GT = {"version": "t", "database": {
    "v1": {"subset": "test", "duration": 100.0, "annotations": [
        {"segment": [0, 10], "label": "A"}, {"segment": [20, 30], "label": "B"}]},
    "v2": {"subset": "test", "duration": 50.0, "annotations": [{"segment": [0, 10], "label": "A"}]},
    "v3": {"subset": "validation", "duration": 50.0, "annotations": [
        {"segment": [0, 10], "label": "C"}, {"segment": [30, 40], "label": "A"}]},
    "v4": {"subset": "training", "duration": 50.0, "annotations": [{"segment": [0, 10], "label": "B"}]},
}}
PRED = {"version": "t", "results": {
    "v1": [{"label": "A", "score": 0.9, "segment": [0, 6]}, {"label": "B", "score": 0.8, "segment": [20, 30]},
           {"label": "A", "score": 0.7, "segment": [40, 45]}],
    "v2": [{"label": "A", "score": 0.6, "segment": [0, 10]}],
    "v3": [{"label": "C", "score": 0.95, "segment": [0, 10]}, {"label": "A", "score": 0.5, "segment": [30, 40]}],
    "v4": [{"label": "B", "score": 0.85, "segment": [0, 10]}],
}}


@pytest.fixture
def files(tmp_path):
    paths = {"gt": tmp_path / "gt.json", "pred": tmp_path / "pred.json"}
    paths["gt"].write_text(json.dumps(GT))
    paths["pred"].write_text(json.dumps(PRED))
    return paths


def evaluate(capsys, files, *subset: str, out=None, gt=None) -> tuple[int, str, str, dict | None]:
    argv = ["--gt", str(gt or files["gt"]), "--pred", str(files["pred"]), "--tiou", "0.5,0.7"]
    argv += ["--subset", *subset] if subset else []
    argv += ["--out", str(out)] if out else []
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err, json.loads(out.read_text()) if out and code == 0 else None


def test_all_pools_every_subset(files, capsys, tmp_path):
    code, out, err, result = evaluate(capsys, files, "all", out=tmp_path / "r.json")
    assert code == 0, err
    assert out.splitlines()[0] == ("subsets test (2 videos), training (1 video), validation (1 video): "
                                   "4 videos scored")
    assert "outside the subset" not in out
    # A (3 ground truths: v1, v2, v3): 0.9 v1 [0, 6] tIoU 0.6, 0.7 v1 FP, 0.6 v2, 0.5 v3.
    #   0.5: TP FP TP TP -> precision envelope 1, 3/4, 3/4 at recall 1/3, 2/3, 1 -> AP 5/6
    #   0.7: FP FP TP TP -> precision 1/3, 1/2 at recall 1/3, 2/3 -> envelope 1/2 -> AP 1/3
    # B (v1, v4) and C (v3): every detection a TP -> AP 1
    assert result["per_class_AP"] == {"A": [pytest.approx(5 / 6), pytest.approx(1 / 3)], "B": [1.0, 1.0],
                                      "C": [1.0, 1.0]}
    assert result["mAP"] == [pytest.approx(17 / 18), pytest.approx(7 / 9)]
    assert result["subsets"] == ["test", "training", "validation"] and result["videos_scored"] == 4


@pytest.mark.parametrize("names", [("validation", "test"), ("test", "validation"), ("test", "validation", "test")])
def test_named_subsets_are_pooled_whatever_their_order(files, capsys, tmp_path, names):
    code, out, err, result = evaluate(capsys, files, *names, out=tmp_path / "r.json")
    assert code == 0, err
    assert out.splitlines()[0] == "subsets test (2 videos), validation (1 video): 3 videos scored"
    # v4 (training) is outside: its B detection (0.85) is a false positive ranked above v1's true one -> B AP 1/2
    assert "1 on videos outside the subsets counted as false positives" in out
    assert result["per_class_AP"]["B"] == [0.5, 0.5]
    assert result["mAP"][0] == pytest.approx((5 / 6 + 1 / 2 + 1) / 3)
    assert result["subsets"] == ["test", "validation"] and result["videos_scored"] == 3


def test_pooled_subsets_score_as_a_file_of_their_videos(files, capsys, tmp_path):
    only = {"version": "t", "database": {v: e for v, e in GT["database"].items() if e["subset"] != "training"}}
    (tmp_path / "only.json").write_text(json.dumps(only))
    _, _, _, pooled = evaluate(capsys, files, "test", "validation", out=tmp_path / "pooled.json")
    code, _, err, alone = evaluate(capsys, files, "all", out=tmp_path / "alone.json", gt=tmp_path / "only.json")
    assert code == 0, err
    assert pooled["per_class_AP"] == alone["per_class_AP"] and pooled["mAP"] == alone["mAP"]


def test_one_subset_as_before(files, capsys, tmp_path):
    code, out, err, _ = evaluate(capsys, files, "test")
    assert code == 2 and "'C' (1)" in err and "subset 'test'" in err and out == ""  # C has no test ground truth
    files["pred"].write_text(json.dumps({"results": {v: r for v, r in PRED["results"].items() if v != "v3"}}))
    code, out, err, result = evaluate(capsys, files, "test", out=tmp_path / "r.json")
    assert code == 0, err
    assert out.splitlines()[0] == "subset test (2 videos): 2 videos scored"
    assert "1 on videos outside the subset counted as false positives" in out
    assert result["mAP"][0] == pytest.approx((5 / 6 + 1 / 2) / 2)  # A: v1 and v2 only (AP 5/6 as in the old test)


@pytest.mark.parametrize("subset, message", [
    ((), "has subsets test, training, validation; choose one with --subset, several (--subset test training) "
         "or --subset all"),
    (("test", "train", "valid"), "gt.json: no subset 'train', 'valid' (has test, training, validation)"),
    (("all", "test"), "--subset all means every subset of"),
])
def test_bad_subset_choices_are_one_line_exit_2(files, capsys, subset, message):
    code, out, err, _ = evaluate(capsys, files, *subset)
    assert code == 2 and message in err and out == "" and len(err.strip().splitlines()) == 1


def test_a_subset_named_all_is_that_subset(files, capsys):
    gt = json.loads(json.dumps(GT))
    gt["database"]["v4"]["subset"] = "all"
    files["gt"].write_text(json.dumps(gt))
    code, out, err, _ = evaluate(capsys, files, "all")
    assert code == 2 and "'A' (4), 'C' (1)" in err  # only v4's class B has ground truth in that subset

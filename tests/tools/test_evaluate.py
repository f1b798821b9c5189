import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "evaluate.py"


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, timeout=60)


@pytest.fixture
def files(tmp_path):
    gt = {"version": "t", "taxonomy": [], "database": {
        "v1": {"subset": "test", "duration": 100.0, "annotations": [
            {"segment": [0, 10], "label": "A"}, {"segment": [20, 30], "label": "B"}]},
        "v2": {"subset": "test", "duration": 50.0, "annotations": [{"segment": [0, 10], "label": "A"}]},
        "v3": {"subset": "validation", "duration": 50.0, "annotations": [{"segment": [0, 10], "label": "C"}]},
    }}
    pred = {"version": "t", "external_data": {}, "results": {
        "v1": [{"label": "A", "score": 0.9, "segment": [0, 6]}, {"label": "B", "score": 0.8, "segment": [20, 30]},
               {"label": "A", "score": 0.7, "segment": [40, 45]}],
        "v2": [{"label": "A", "score": 0.6, "segment": [0, 10]}],
    }}
    paths = {"gt": tmp_path / "gt.json", "pred": tmp_path / "pred.json", "amb": tmp_path / "amb.txt"}
    paths["gt"].write_text(json.dumps(gt))
    paths["pred"].write_text(json.dumps(pred))
    paths["amb"].write_text("v1 41.0 42.0\n")
    return paths


def test_table_and_json(files, tmp_path):
    out = tmp_path / "res" / "results.json"
    proc = run("--gt", files["gt"], "--pred", files["pred"], "--subset", "test", "--tiou", "0.5,0.7", "--out", out,
               "--per-class")
    assert proc.returncode == 0, proc.stderr
    # A (2 ground truths): [0, 6] has tIoU 0.6, [40, 45] is a FP, v2's [0, 10] a TP.
    #   0.5: TP, FP, TP -> precision [1, 1/2, 2/3] at recall [1/2, 1/2, 1] -> AP 1/2 + 1/2 * 2/3 = 5/6
    #   0.7: FP, FP, TP -> precision 1/3 at recall 1/2 -> AP 1/6.  B: AP 1 at both.
    result = json.loads(out.read_text())
    assert result["tiou_thresholds"] == [0.5, 0.7]
    assert result["per_class_AP"] == {"A": [pytest.approx(5 / 6), pytest.approx(1 / 6)], "B": [1.0, 1.0]}
    assert result["mAP"] == [pytest.approx((5 / 6 + 1) / 2), pytest.approx((1 / 6 + 1) / 2)]
    assert result["average_mAP"] == pytest.approx((11 / 12 + 7 / 12) / 2)
    lines = proc.stdout.splitlines()
    assert "0.50     91.67" in lines and "0.70     58.33" in lines
    assert any(line.startswith("A ") and "83.33  16.67" in line for line in lines)  # per-class table


def test_ambiguous_and_named_ranges(files):
    proc = run("--gt", files["gt"], "--pred", files["pred"], "--subset", "test", "--tiou", "0.3:0.7",
               "--ambiguous", files["amb"])
    assert proc.returncode == 0, proc.stderr
    assert "1 dropped for overlapping ambiguous segments" in proc.stdout
    assert "average over 0.3:0.7:" in proc.stdout and "average over 0.1:0.5" not in proc.stdout


def test_unknown_labels(files, tmp_path):
    pred = json.loads(files["pred"].read_text())
    pred["results"]["v2"].append({"label": "C", "score": 0.5, "segment": [0, 10]})  # C is a validation class
    files["pred"].write_text(json.dumps(pred))
    proc = run("--gt", files["gt"], "--pred", files["pred"], "--subset", "test")
    assert proc.returncode == 2 and "pred.json" in proc.stderr and "'C' (1)" in proc.stderr
    proc = run("--gt", files["gt"], "--pred", files["pred"], "--subset", "test", "--ignore-unknown-labels")
    assert proc.returncode == 0 and "1 dropped for labels without ground truth" in proc.stdout


@pytest.mark.parametrize("change, message", [
    (lambda f: f["gt"].unlink(), "gt.json: no such ground-truth file"),
    (lambda f: f["pred"].write_text("{not json"), "pred.json: line 1: not valid JSON"),
    (lambda f: f["pred"].write_text('{"results": {"v1": [{"label": "A"}]}}'),
     "pred.json: video v1, result 0: needs 'label', 'score' and 'segment'"),
    (lambda f: f["amb"].write_text("v1 3\n"), "amb.txt: line 1: expected 'video start end'"),
])
def test_bad_input_names_the_file(files, change, message):
    change(files)
    proc = run("--gt", files["gt"], "--pred", files["pred"], "--subset", "test", "--ambiguous", files["amb"])
    assert proc.returncode == 2 and message in proc.stderr and proc.stdout == ""


def test_subset_must_be_chosen_and_exist(files):
    proc = run("--gt", files["gt"], "--pred", files["pred"])
    assert proc.returncode == 2 and "has subsets test, validation; choose one with --subset" in proc.stderr
    proc = run("--gt", files["gt"], "--pred", files["pred"], "--subset", "train")
    assert proc.returncode == 2 and "no subset 'train'" in proc.stderr


def test_bad_tiou(files):
    proc = run("--gt", files["gt"], "--pred", files["pred"], "--subset", "test", "--tiou", "0.7:0.1")
    assert proc.returncode == 2 and "--tiou" in proc.stderr and "a <= b" in proc.stderr

"""tools/train_localizer.py and tools/infer.py end to end on a tiny generated feature set."""
import json

import pytest
import yaml

from clicktal.pipeline.data.detections import read_detections
from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    gt = random_ground_truth(n_videos=10, seed=2)
    synthesize_features(gt, root / "feats", dim=8, seed=2)
    gt_path = gt.write(root / "gt.json")
    cfg = {
        "name": "tiny",
        "data": {"features": "UNSET", "ground_truth": str(gt_path), "train_subset": "training", "test_subset": "test",
                 "labels": {"action_clicks": {"source": "uniform"}}, "sampling": {"train": {"kind": "crop", "length": 64}}},
        "model": {"name": "sfnet", "params": {"eta": 2.0, "mining": {"start_iteration": 3}}},
        "train": {"iterations": 6, "batch_size": 4, "progress": False, "num_threads": 1, "checkpoint_every": 2},
        "postprocess": {"preset": "sfnet"},
        "evaluation": {"use_ambiguous": False},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return root, path


def test_train_eval_only_resume_and_infer(setup, capsys, load_tool):
    root, cfg = setup
    train = load_tool("train_localizer")
    out = root / "run"
    assert train.main(["--config", str(cfg), "--features", str(root / "feats"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mAP@0.5" in printed and "weights: last" in printed
    for f in ("config.yaml", "checkpoint_last.pt", "train_log.csv", "train_log.jsonl", "detections.json",
              "results.json", "run_meta.json"):
        assert (out / f).exists(), f
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["features"] == str(root / "feats")
    assert saved["model"]["params"]["mining"]["xi"] == 0.9  # resolved defaults are saved
    results = json.loads((out / "results.json").read_text())
    assert results["subset"] == "test" and results["selected"] == "last" and results["iterations"] == 6
    dets = read_detections(out / "detections.json")
    assert dets and {d.video for d in dets} <= {f"synth_{i:04d}" for i in range(5, 10)}

    # resuming a finished run trains nothing and gives the same detections
    assert train.main(["--config", str(cfg), "--features", str(root / "feats"), "--out", str(out), "--resume"]) == 0
    assert read_detections(out / "detections.json") == dets
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 6

    assert train.main(["--out", str(out), "--eval-only"]) == 0
    assert read_detections(out / "detections.json") == dets
    assert json.loads((out / "results.json").read_text())["average_mAP"] == results["average_mAP"]

    infer = load_tool("infer")
    dest = root / "dets.json"
    assert infer.main(["--run", str(out), "--features", str(root / "feats"), "--out", str(dest),
                       "--videos", "synth_0007", "--set", "nms=hard"]) == 0
    got = read_detections(dest)
    assert got and {d.video for d in got} == {"synth_0007"}


def test_set_overrides_and_config_errors(setup, capsys, load_tool):
    root, cfg = setup
    train = load_tool("train_localizer")
    out = root / "short"
    assert train.main(["--config", str(cfg), "--features", str(root / "feats"), "--out", str(out),
                       "--set", "train.iterations=2", "--set", "model.params.mining.enabled=false"]) == 0
    assert json.loads((out / "results.json").read_text())["iterations"] == 2
    capsys.readouterr()
    assert train.main(["--config", str(cfg), "--features", str(root / "feats"), "--out", str(root / "bad"),
                       "--set", "model.params.etaa=3"]) == 2
    assert "etaa" in capsys.readouterr().err


def test_demo_function_trains_validates_and_tests(tmp_path):
    from clicktal.tools.demo import demo_sfnet

    gt = random_ground_truth(n_videos=10, seed=3)
    synthesize_features(gt, tmp_path / "feats", dim=8, seed=3)
    result, table = demo_sfnet(tmp_path / "feats", tmp_path / "demo", ground_truth=gt, train_subset="training",
                               test_subset="test", overrides={"train": {"iterations": 4, "validate_every": 2}})
    assert "| SF-Net (SFBAE) |" in table and "held-out training videos" in table
    assert result.extra["last_validation"]["iteration"] == 4 and (tmp_path / "demo" / "groundtruth.json").exists()
    assert 0 <= result.average <= 1


def test_set_parsing_and_result_tables():
    from clicktal.pipeline.runs.schema import ExperimentConfig
    from clicktal.pipeline.runs.experiments import apply_overrides, parse_set
    from clicktal.tools.tables import format_results

    over = parse_set(["train.iterations=7", "model.params.mining.xi=0.8", "data.sampling.train.kind=whole"])
    assert over == {"train": {"iterations": 7}, "model": {"params": {"mining": {"xi": 0.8}}},
                    "data": {"sampling": {"train": {"kind": "whole"}}}}
    cfg = apply_overrides(ExperimentConfig(), over)
    assert cfg.train.iterations == 7 and cfg.model.params == {"mining": {"xi": 0.8}}
    table = format_results([("A", [[10.0, 20.0], [12.0, 22.0]])], [0.5], minutes={"A": 1.5})
    assert "| A | 11.0 ± 1.0 | 21.0 ± 1.0 | 1.5 |" in table

"""SF-Net end to end through the engine, pinned: the numbers were measured before the engine v2 refactor (layers,
sampling stage, label kinds, shared blocks) and must not move."""
import json

import pytest

from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features
from clicktal.pipeline.runs.experiments import apply_overrides, run_experiment
from clicktal.pipeline.runs.schema import ExperimentConfig

PINNED_MAP = [0.16604948378963713, 0.13639120932848953, 0.08820145467260944, 0.06530827426778307,
              0.016087149446994877, 0.00971606033717835, 0.008695652173913044]


def test_sfnet_short_run_reproduces_the_pinned_numbers(tmp_path):
    gt = random_ground_truth(n_videos=24, seed=3)
    synthesize_features(gt, tmp_path / "feats", dim=16, seed=3)
    cfg = apply_overrides(ExperimentConfig(), {
        "data": {"features": str(tmp_path / "feats"), "ground_truth": str(gt.write(tmp_path / "gt.json")),
                 "train_subset": "training", "test_subset": "test",
                 "labels": {"action_clicks": {"source": "uniform"}},
                 "sampling": {"train": {"kind": "crop", "length": 48}}},
        "train": {"iterations": 30, "batch_size": 4, "seed": 2, "progress": False, "num_threads": 1,
                  "checkpoint_every": 30},
        "model": {"name": "sfnet", "params": {"mining": {"start_iteration": 10, "scores_from": "training_pass"}}},
        "postprocess": {"preset": "sfnet", "params": {"class_ratio": None, "class_threshold": 0.1}}})
    res = run_experiment(cfg, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert rows[-1]["total"] == pytest.approx(15.476333618164062, rel=1e-5)
    assert sum(r["total"] for r in rows) == pytest.approx(494.1644744873047, rel=1e-5)
    assert sum(r["n_mined"] for r in rows) == 41
    assert res.extra["n_detections"] == 1068
    assert [res.mAP[t] for t in sorted(res.mAP)] == pytest.approx(PINNED_MAP, abs=1e-6)

"""A trained run records its feature contract and refuses features that break it, naming the field; frame-level
mAP as a run evaluation option."""
import json

import pytest

from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.formats import open_features
from clicktal.pipeline.data.contract import ContractError
from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features
from clicktal.pipeline.runs.experiments import apply_overrides, evaluate_run, run_experiment
from clicktal.pipeline.runs.inference import load_run
from clicktal.pipeline.runs.schema import ExperimentConfig


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    gt = random_ground_truth(n_videos=8, seed=5)
    gt_path = gt.write(root / "gt.json")
    synthesize_features(gt, root / "feats", dim=8, seed=5)
    for name, geometry in (("fps30", FeatureGeometry(30, 16, 16)), ("stride8", FeatureGeometry(25, 16, 8))):
        synthesize_features(gt, root / name, dim=8, seed=5, geometry=geometry)
    cfg = apply_overrides(ExperimentConfig(), {
        "data": {"features": str(root / "feats"), "ground_truth": str(gt_path), "train_subset": "training",
                 "test_subset": "test", "labels": {"action_clicks": {"source": "uniform"}},
                 "sampling": {"train": {"kind": "crop", "length": 32}, "inference": {"kind": "resize", "length": 50}}},
        "train": {"iterations": 3, "batch_size": 2, "progress": False, "num_threads": 1},
        "evaluation": {"use_ambiguous": False, "frame_map": True}})
    result = run_experiment(cfg, root / "run")
    return root, result


def test_the_run_records_the_whole_contract_and_frame_map(run):
    root, result = run
    meta = json.loads((root / "run" / "run_meta.json").read_text())
    assert meta["contract"] == {"extractor": "synthetic-clicktal", "geometry": {"fps": 25, "window": 16, "stride": 16},
                                "streams": {"rgb": [0, 4], "flow": [4, 8]}, "dim": 8,
                                "weights_sha256": {"rgb": "untrained", "flow": "untrained"}}
    saved = json.loads((root / "run" / "results.json").read_text())
    labels = json.loads((root / "run" / "labels.json").read_text())
    assert labels["totals"]["videos"] == 4 and labels["totals"]["action_clicks"]["count"] > 0
    assert labels["totals"]["action_clicks"]["outside"] == 0  # simulated clicks lie in their instances
    assert set(labels["per_video"]) == set(meta["train_videos"])
    frame = saved["frame_mAP"]
    assert 0 < frame["mAP"] <= 1 and frame["mAP"] == result.extra["frame_mAP"]["mAP"]
    assert frame["videos"] == 4 and frame["videos_without_features"] == 0 and len(frame["per_class_AP"]) >= 1


@pytest.mark.parametrize("folder, field", [("fps30", "geometry.fps"), ("stride8", "geometry.stride")])
def test_features_of_another_fps_or_stride_are_refused_with_the_field_named(run, folder, field):
    root, _ = run
    with pytest.raises(ContractError, match=field):
        evaluate_run(root / "run", features=str(root / folder))
    loaded = load_run(root / "run")
    source = open_features(root / folder)
    with pytest.raises(ContractError, match=rf"video {source.ids()[0]}: .*{field}"):
        loaded.detect(source, source.ids())


def test_matching_features_pass(run):
    root, _ = run
    loaded = load_run(root / "run")
    source = open_features(root / "feats")
    assert isinstance(loaded.detect(source, source.ids()[:2]), list)


def test_a_preset_on_the_command_line_keeps_the_runs_overrides(run, monkeypatch):
    """--preset X on a run whose config tunes the post-processing keeps that tuning (here a class rule); a
    command-line override still wins."""
    import dataclasses

    from clicktal.pipeline.runs import inference
    from clicktal.pipeline.runs.schema import PostprocessSpec, postprocess_config

    root, _ = run
    loaded = load_run(root / "run")
    tuned = dataclasses.replace(loaded.config, postprocess=PostprocessSpec("sfnet", {"class_threshold": 0.37}))
    monkeypatch.setattr(loaded, "config", tuned)
    seen = []
    monkeypatch.setattr(inference, "infer_videos", lambda model, source, ids, classes, post, **kw: seen.append(post))
    source = open_features(root / "feats")
    loaded.detect(source, source.ids()[:1], preset="sfnet_code")
    loaded.detect(source, source.ids()[:1], preset="sfnet_code", overrides={"class_threshold": 0.2})
    assert seen[0] == postprocess_config(PostprocessSpec("sfnet_code", {"class_threshold": 0.37}))
    assert seen[1] == postprocess_config(PostprocessSpec("sfnet_code", {"class_threshold": 0.2}))
    assert seen[0] != postprocess_config(PostprocessSpec("sfnet_code"))

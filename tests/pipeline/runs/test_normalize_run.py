"""A run trained with ``data.normalize: standardize`` records the training videos' statistics and applies the same
transform in validation, evaluation and on new features at detect time."""
import json

import numpy as np
import pytest

from clicktal.pipeline.data.cache import CacheSource
from clicktal.pipeline.data.formats import open_features
from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features
from clicktal.pipeline.runs.engine import load_checkpoint
from clicktal.pipeline.runs.experiments import evaluate_run
from clicktal.pipeline.runs.inference import load_run, predict_scores


@pytest.fixture(scope="module")
def run(tmp_path_factory, train_small_run):
    return train_small_run(tmp_path_factory.mktemp("normalize"), seed=5,
                           data={"normalize": "standardize", "val_fraction": 0.25}, train={"validate_every": 4})


def test_the_statistics_are_the_training_videos_and_are_recorded_in_the_run(run):
    root, _ = run
    meta = json.loads((root / "run" / "run_meta.json").read_text())
    norm = meta["normalization"]
    assert norm["kind"] == "standardize" and meta["heldout_videos"]
    source = open_features(root / "feats")
    train = np.concatenate([source.load(v)[0] for v in meta["train_videos"]]).astype(np.float64)
    assert norm["videos"] == len(meta["train_videos"]) and norm["snippets"] == len(train)
    assert np.allclose(norm["mean"], train.mean(0)) and np.allclose(norm["std"], train.std(0))
    ck = load_checkpoint(root / "run" / "checkpoint_last.pt")
    assert ck["meta"]["normalization"] == norm


def test_detect_on_a_new_cache_applies_the_runs_statistics(run):
    root, _ = run
    new = random_ground_truth(n_videos=3, seed=11)
    synthesize_features(new, root / "new_cache", dim=8, seed=11)
    loaded = load_run(root / "run")
    source = CacheSource(root / "new_cache")
    scores = {}
    loaded.detect(source, source.ids(), scores_out=scores)
    mean, std = (np.asarray(loaded.normalization.to_dict()[k]) for k in ("mean", "std"))
    for vid in source.ids():
        raw, meta = source.load(vid)
        want, _ = predict_scores(loaded.model, ((raw - mean) / std).astype(np.float32), meta.geometry,
                                 sampler=loaded.sampler)
        plain, _ = predict_scores(loaded.model, raw, meta.geometry, sampler=loaded.sampler)
        assert np.allclose(scores[vid][0].scores, want.scores, atol=1e-6)
        assert not np.allclose(want.scores, plain.scores, atol=1e-3)  # the transform matters on these features


def test_evaluation_of_the_run_reads_its_recorded_statistics(run):
    root, result = run
    again = evaluate_run(root / "run")
    assert again.average == pytest.approx(result.average, abs=1e-9)

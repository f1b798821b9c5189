"""Fixtures of the fault tests."""
import pytest

from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Generated features of 10 videos (8-d, seed 4) in ``feats/`` and their ground truth ``gt.json``; read only."""
    root = tmp_path_factory.mktemp("faults")
    gt = random_ground_truth(n_videos=10, seed=4)
    synthesize_features(gt, root / "feats", dim=8, seed=4)
    gt.write(root / "gt.json")
    return root

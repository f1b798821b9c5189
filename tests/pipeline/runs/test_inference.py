"""Model -> frame scores -> detections in seconds."""
import numpy as np
import pytest
import torch

from clicktal.models import build_localizer
from clicktal.pipeline.core.config import ConfigError
from clicktal.pipeline.runs.schema import PostprocessSpec
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.runs.inference import detect_video, postprocess_config, predict_scores
from clicktal.pipeline.postprocess.grouping import PRESETS

CLASSES = ["jump", "run", "swim"]


def model():
    torch.manual_seed(0)
    m, _ = build_localizer("sfnet", {}, input_dim=6, num_classes=3, streams={"rgb": (0, 3), "flow": (3, 6)})
    return m


def test_postprocess_presets_with_overrides():
    assert postprocess_config(PostprocessSpec("sfnet")) == PRESETS.get("sfnet")
    cfg = postprocess_config(PostprocessSpec("sfnet", {"thresholds": [0.5, 0.7], "nms": "hard"}))
    assert cfg.thresholds == (0.5, 0.7) and cfg.nms == "hard" and cfg.scoring == PRESETS.get("sfnet").scoring
    with pytest.raises(ConfigError, match="threshold"):
        postprocess_config(PostprocessSpec("sfnet", {"threshold": 0.5}))
    with pytest.raises(KeyError, match="nope"):
        postprocess_config(PostprocessSpec("nope"))


def test_predict_scores_covers_every_snippet_in_eval_mode():
    m = model().train()
    feats = np.random.default_rng(0).random((37, 6)).astype(np.float32)
    a, b = predict_scores(m, feats), predict_scores(m, feats)
    assert a.scores.shape == (37, 3) and np.array_equal(a.scores, b.scores)  # no dropout at inference
    assert not m.training


def test_detections_are_in_seconds_of_the_features_geometry():
    geo = FeatureGeometry(fps=15, window=16, stride=16)
    feats = np.random.default_rng(1).random((50, 6)).astype(np.float32)
    dets = detect_video(model(), feats, geo, CLASSES, "vid", postprocess_config(PostprocessSpec("sfnet")),
                        duration_s=52.0)
    assert dets and all(d.video == "vid" and d.label in CLASSES for d in dets)
    step = 16 / 15
    for d in dets:
        assert 0 <= d.start_s < d.end_s <= 52.0
        assert abs(d.start_s / step - round(d.start_s / step)) < 1e-6  # snippet edges of this geometry
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)

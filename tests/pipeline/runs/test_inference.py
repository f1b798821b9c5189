"""Model -> frame scores -> detections in seconds."""
import numpy as np
import pytest
import torch

from clicktal.models import FrameScores, Localizer, LocalizerOutput, build_localizer
from clicktal.pipeline.core.config import ConfigError, config_from_dict
from clicktal.pipeline.runs.schema import ExperimentConfig, PostprocessSpec, postprocess_config
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.sampling import Sampler, SamplerConfig, SamplingConfig
from clicktal.pipeline.runs.inference import detect_video, predict_scores
from clicktal.pipeline.postprocess.grouping import PRESETS

CLASSES = ["jump", "run", "swim"]
G = FeatureGeometry(fps=25, window=16, stride=16)


def model():
    torch.manual_seed(0)
    m, _ = build_localizer("sfnet", {}, input_dim=6, num_classes=3, streams={"rgb": (0, 3), "flow": (3, 6)})
    return m


def test_postprocess_presets_with_overrides():
    assert postprocess_config(PostprocessSpec("sfnet")) == PRESETS.get("sfnet")
    cfg = postprocess_config(PostprocessSpec("sfnet", {"thresholds": [0.5, 0.7], "nms": "hard"}))
    assert cfg.thresholds == (0.5, 0.7) and cfg.nms == "hard" and cfg.scoring == PRESETS.get("sfnet").scoring
    # the spec checks itself when built (a config naming the key fails at load time)
    with pytest.raises(ValueError, match="params: unknown key.*threshold"):
        PostprocessSpec("sfnet", {"threshold": 0.5})
    with pytest.raises(ValueError, match="preset: unknown post-processing preset 'nope'"):
        PostprocessSpec("nope")
    with pytest.raises(ConfigError, match=r"<cfg>: postprocess\.params: .*min_snippets must be >= 1"):
        config_from_dict(ExperimentConfig, {"postprocess": {"params": {"min_snippets": 0}}}, "<cfg>")


def test_a_config_without_a_preset_gets_its_method_s_default_and_records_it():
    for method, preset in (("sfnet", "sfnet"), ("backtal", "backtal"), ("fsn", "fsn"), ("wfsn", "wfsn")):
        cfg = config_from_dict(ExperimentConfig, {"model": {"name": method}}, "<cfg>")
        assert cfg.postprocess.preset == preset, method  # FSN's default is its measured recipe, not fsn_literal
    cfg = config_from_dict(ExperimentConfig, {"model": {"name": "backtal"}, "postprocess": {"params": {"nms_tiou": 0.4}}},
                           "<cfg>")
    assert postprocess_config(cfg.postprocess) == postprocess_config(PostprocessSpec("backtal", {"nms_tiou": 0.4}))
    with pytest.raises(ValueError, match="preset: not set"):
        postprocess_config(PostprocessSpec())


def test_predict_scores_covers_every_snippet_in_eval_mode():
    m = model().train()
    feats = np.random.default_rng(0).random((37, 6)).astype(np.float32)
    (a, grid), (b, _) = predict_scores(m, feats, G), predict_scores(m, feats, G)
    assert a.scores.shape == (37, 3) and np.array_equal(a.scores, b.scores)  # no dropout at inference
    assert grid == G
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


class Echo(Localizer):
    """Class scores = the first feature columns, per snippet or repeated on every frame of a snippet."""

    num_classes = 3

    def __init__(self, output_resolution="snippet", frames=16):
        super().__init__()
        self.output_resolution, self.frames = output_resolution, frames
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, features, mask):
        return LocalizerOutput(features[..., :3], None, mask)

    def frame_scores(self, output, index=0):
        s = output.class_scores[index].numpy()
        if self.output_resolution == "frame":
            s = np.repeat(s, self.frames, axis=0)
        return FrameScores(s, s.max(0), s)


def sampled(kind, **kw):
    return Sampler(SamplingConfig(inference=SamplerConfig(kind=kind, **kw)))


def test_every_inference_sampler_maps_scores_back_to_the_native_grid():
    T = 203
    step = (np.arange(T) >= 77).astype(np.float32)
    feats = np.stack([step, 1 - step, np.linspace(0, 1, T, dtype=np.float32)], axis=1)
    for sampler, elements in ((sampled("whole"), T), (sampled("crop", length=50), T),
                              (sampled("windows", length=7), T), (sampled("resize", length=750), 750),
                              (sampled("resize", length=60), 60), (sampled("segments", count=40, mode="uniform"), 40)):
        fs, grid = predict_scores(Echo(), feats, G, sampler=sampler)
        assert fs.scores.shape == (T, 3) and grid == G
        if elements == T:
            assert np.array_equal(fs.scores, feats)
        else:  # the step's edge within one sampled element (in native snippets) of the truth, the ramp exact
            edge = np.flatnonzero(fs.scores[:, 0] >= 0.5)[0]
            assert abs(edge - 77) <= max(1.0, T / elements), (sampler.config.inference, edge)
            assert np.abs(fs.scores[:, 2] - feats[:, 2]).max() < 0.02


def test_per_frame_models_get_frame_scores_and_detections_in_seconds():
    T = 20
    feats = np.zeros((T, 3), np.float32)
    feats[5:9, 1] = 1.0  # class "run" on snippets 5-8: 3.2 s to 5.76 s
    fs, grid = predict_scores(Echo("frame"), feats, G, sampler=sampled("windows", length=7))
    assert fs.scores.shape == (T * 16, 3) and grid == G.frames()
    post = postprocess_config(PostprocessSpec("fsn_literal", {"thresholds": [0.5], "nms": "none",
                                                              "nms_tiou_offset": None}))
    dets = detect_video(Echo("frame"), feats, G, CLASSES, "v", post, sampler=sampled("windows", length=7))
    assert [(d.label, d.start_s, d.end_s) for d in dets] == [("run", pytest.approx(3.2), pytest.approx(5.76))]


def test_inference_resamples_the_features_only(monkeypatch):
    """No target of any kind is built or moved, and no item made, whatever the sampler (before, every window was a
    labelled item with all-zero targets)."""
    from clicktal.pipeline.data import datasets, targets

    def refuse(*args, **kwargs):
        raise AssertionError("inference made a target")

    monkeypatch.setattr(targets, "build_targets", refuse)
    monkeypatch.setattr(datasets, "build_targets", refuse)
    monkeypatch.setattr(targets.TargetKind, "moved", refuse)
    monkeypatch.setattr(datasets.VideoItem, "__init__", refuse)
    T = 45
    feats = np.random.default_rng(1).random((T, 3)).astype(np.float32)
    for sampler in (sampled("whole"), sampled("windows", length=7), sampled("resize", length=60),
                    sampled("segments", count=10, mode="uniform")):
        fs, _ = predict_scores(Echo(), feats, G, sampler=sampler)
        assert fs.scores.shape == (T, 3)
    fs, _ = predict_scores(Echo("frame"), feats, G, sampler=sampled("windows", length=7))
    assert np.array_equal(fs.scores, np.repeat(feats, 16, axis=0))

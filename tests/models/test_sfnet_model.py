"""SF-Net's network: registry, shapes, padding invariance, frame scores."""
import numpy as np
import pytest
import torch

from clicktal.models import LOCALIZERS, build_localizer, localizer_config
from clicktal.pipeline.core.config import ConfigError

STREAMS = {"rgb": (0, 5), "flow": (5, 10)}


def model(**params):
    torch.manual_seed(0)
    m, resolved = build_localizer("sfnet", params, input_dim=10, num_classes=4, streams=STREAMS)
    return m.eval(), resolved


def test_registry_builds_sfnet_with_resolved_defaults():
    assert "sfnet" in LOCALIZERS.names()
    m, resolved = model(eta=7)
    assert resolved["eta"] == 7.0 and resolved["mining"]["radius"] == 5 and resolved["mining"]["xi"] == 0.9
    assert set(m.streams) == {"rgb", "flow"}
    # paper defaults: hidden width = stream width, three FC layers, two temporal convolutions
    s = m.streams["rgb"]
    assert s.cls[0].in_features == 5 and s.cls[0].out_features == 5 and s.classifier.out_features == 5  # Nc + 1
    assert s.temporal.conv1.kernel_size == (3,) and s.temporal.conv2.out_channels == 5


def test_unknown_or_mistyped_params_are_named():
    with pytest.raises(ConfigError, match="mining.radiuss"):
        localizer_config("sfnet", {"mining": {"radiuss": 3}})
    with pytest.raises(ConfigError, match="eta"):
        localizer_config("sfnet", {"eta": "five"})


def test_shapes_and_joint_stream_option():
    m, _ = model()
    x, mask = torch.rand(3, 7, 10), torch.ones(3, 7, dtype=torch.bool)
    out = m(x, mask)
    assert out.class_scores.shape == (3, 7, 5) and out.actionness.shape == (3, 7)
    assert out.aux["class_scores/flow"].shape == (3, 7, 5)
    joint, _ = model(two_stream=False, hidden_dim=8)
    assert list(joint.streams) == ["joint"] and joint(x, mask).class_scores.shape == (3, 7, 5)


def test_padding_never_changes_a_videos_scores():
    m, _ = model()
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(1, 9, 10, generator=g), torch.rand(1, 5, 10, generator=g)
    batch = torch.zeros(2, 9, 10)
    batch[0], batch[1, :5] = a[0], b[0]
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0], mask[1, :5] = True, True
    out = m(batch, mask)
    alone = m(b, torch.ones(1, 5, dtype=torch.bool))
    assert torch.allclose(out.class_scores[1, :5], alone.class_scores[0], atol=1e-6)
    assert torch.allclose(out.actionness[1, :5], alone.actionness[0], atol=1e-6)


def test_frame_scores_add_actionness_to_class_probabilities():
    m, _ = model()
    out = m(torch.rand(1, 16, 10), torch.ones(1, 16, dtype=torch.bool))
    fs = m.frame_scores(out)
    assert fs.scores.shape == (16, 4) and fs.video_scores.shape == (4,) and fs.actionness.shape == (16,)
    assert np.allclose(fs.scores, fs.class_probs + fs.actionness[:, None], atol=1e-6)
    assert np.isclose(fs.video_scores.sum(), 1.0)
    code, _ = model(inference={"score_space": "activation", "actionness_weight": 2.0,
                               "video_score": "pooled_activation"})
    out = code(torch.rand(1, 16, 10), torch.ones(1, 16, dtype=torch.bool))
    fs = code.frame_scores(out)
    expected = out.class_scores[0, :, 1:] + 2 * out.actionness[0, :, None]
    assert np.allclose(fs.scores, expected.detach().numpy(), atol=1e-5)


def test_without_actionness_the_frame_scores_are_class_probabilities():
    m, _ = model(actionness=False, mining={"enabled": False})
    fs = m.frame_scores(m(torch.rand(1, 6, 10), torch.ones(1, 6, dtype=torch.bool)))
    assert fs.actionness is None and np.allclose(fs.scores, fs.class_probs)


STREAM_KEYS = ["cls.0.weight", "cls.0.bias", "cls.2.weight", "cls.2.bias", "classifier.weight", "classifier.bias",
               "temporal.conv1.weight", "temporal.conv1.bias", "temporal.conv2.weight", "temporal.conv2.bias",
               "action.weight", "action.bias"]
KEYS = ([f"streams.{s}.{k}" for s in ("rgb", "flow") for k in STREAM_KEYS]
        + ["class_mul.flow", "class_mul.rgb", "act_mul.flow", "act_mul.rgb"])


def test_state_dict_keys_follow_the_module_tree_and_round_trip():
    m, _ = model()
    sd = m.state_dict()
    assert list(sd) == KEYS  # weights only: the miner's kept labels are training state (test_sfnet_miner.py)
    # parameter order (what optimiser checkpoints index by) is the key order
    assert [p.shape for p in m.parameters()] == [sd[k].shape for k in KEYS]
    x, mask = torch.rand(2, 9, 10), torch.ones(2, 9, dtype=torch.bool)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    fresh, _ = model()
    assert fresh.load_state_dict(m.state_dict(), strict=True)
    assert torch.allclose(fresh(x, mask).class_scores, m(x, mask).class_scores)

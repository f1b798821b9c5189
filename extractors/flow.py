"""TV-L1 optical flow (OpenCV contrib's Dual TV-L1), the convention of the I3D features the papers use.

* Input: consecutive frames of the resampled video, converted to grayscale, at the resized resolution (shorter side
  256 by default), *before* the centre crop; the flow field is then cropped like the RGB frames.
* Output: ``(dx, dy)`` in pixels of the resized frame (``dx > 0``: content moves right, ``dy > 0``: down), clipped to
  ``[-FLOW_CLIP, FLOW_CLIP]`` = [-20, 20] and divided by 20, so the network sees ``[-1, 1]``.
* Pairs: the flow of frame ``t`` is the pair ``(t, t + 1)``. The last frame of a video has no successor: its flow
  repeats the flow of the pair before it (a one-frame video gets zero flow). Snippet ``i`` therefore uses the flows
  of frames ``[i * stride, i * stride + window)``, i.e. the pairs ``(t, t + 1)`` for those ``t`` (see
  :func:`snippet_flow_pairs`); the padded positions past the end of the video (frozen copies of the last frame)
  have zero flow. Two identical frames (a frame held by the resampler) give exactly zero flow.
* ``flow_size`` (smoke tests only): compute TV-L1 on frames whose shorter side is ``flow_size`` and upsample the
  field (values scaled by the size ratio, so magnitudes stay in resized-frame pixels). ``None`` is the faithful
  default.

Implementations (``method`` x ``device``), each recorded in the cache signature so that a cache never mixes them:

* ``opencv`` on the CPU: ``cv2.optflow.DualTVL1OpticalFlow`` in ``workers`` processes (joblib/loky; OpenCV threads
  do not speed TV-L1 up, processes do), each on a contiguous block of frame pairs;
* ``opencv`` on CUDA: ``cv2.cuda.OpticalFlowDual_TVL1``, which needs an OpenCV built with CUDA (no median
  filtering there, so its flow differs);
* ``tvl1-torch`` on the CPU or CUDA: the same algorithm as OpenCV's CPU one written in torch
  (:mod:`.tvl1_torch`), batched over frame pairs; it runs on any CUDA torch install.

``method="auto"`` (the default) takes OpenCV CUDA when it is there, else torch's TV-L1 on the GPU when torch sees
one (``device`` auto or cuda), else OpenCV on the CPU. Asking for CUDA where neither can have it warns and runs on
the CPU.
"""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import torch

from .decode import resize_short_side
from .tvl1_torch import default_batch_pairs, tvl1_flow

FLOW_CLIP = 20.0

# Every TV-L1 parameter, in one place: OpenCV's defaults, which are the values of the original implementation
# (Zach et al. 2007 / Sanchez et al. 2013) used by denseflow and the kinetics-i3d / video_features pipelines.
TVL1_PARAMS = {
    "tau": 0.25,  # time step of the numerical scheme
    "lambda": 0.15,  # data-term weight (smaller = smoother)
    "theta": 0.3,  # coupling between the two sub-problems
    "nscales": 5,  # pyramid levels
    "warps": 5,  # warpings per level
    "epsilon": 0.01,  # stopping threshold
    "inner_iterations": 30,
    "outer_iterations": 10,  # the CUDA implementation takes inner * outer = 300 iterations
    "scale_step": 0.8,  # pyramid down-scaling factor
    "gamma": 0.0,  # no illumination term
    "median_filtering": 5,  # CPU only: median filter on the flow between warps
}

FLOW_DEVICES = ("auto", "cpu", "cuda")
FLOW_METHODS = ("auto", "opencv", "tvl1-torch")
# (method, device) -> the implementation recorded in the cache signature
FLOW_IMPLEMENTATIONS = {
    ("opencv", "cpu"): "cv2.optflow.DualTVL1OpticalFlow",
    ("opencv", "cuda"): "cv2.cuda.OpticalFlowDual_TVL1",
    ("tvl1-torch", "cpu"): "clicktal.extractors.tvl1_torch (cpu)",
    ("tvl1-torch", "cuda"): "clicktal.extractors.tvl1_torch (cuda)",
}


def cuda_flow_available() -> bool:
    """True when OpenCV was built with CUDA (``cv2.cuda.OpticalFlowDual_TVL1``) and sees a GPU."""
    try:
        return cv2.cuda.getCudaEnabledDeviceCount() > 0 and hasattr(cv2.cuda, "OpticalFlowDual_TVL1")
    except (AttributeError, cv2.error):
        return False


def torch_cuda_available() -> bool:
    return torch.cuda.is_available()


def resolve_flow(method: str = "auto", device: str = "auto", warn: bool = True) -> tuple[str, str]:
    """The ``(method, device)`` that ``method`` (auto | opencv | tvl1-torch) on ``device`` (auto | cpu | cuda)
    runs on this machine (see the module docstring)."""
    if method not in FLOW_METHODS:
        raise ValueError(f"unknown flow method {method!r}; choose from {FLOW_METHODS}")
    if device not in FLOW_DEVICES:
        raise ValueError(f"unknown flow device {device!r}; choose from {FLOW_DEVICES}")
    if device != "cpu":
        if method in ("auto", "opencv") and cuda_flow_available():
            return "opencv", "cuda"
        if method in ("auto", "tvl1-torch") and torch_cuda_available():
            return "tvl1-torch", "cuda"
        if device == "cuda" and warn:
            warnings.warn(
                f"--flow-device cuda: no CUDA TV-L1 here for --flow {method} (OpenCV {cv2.__version__} has no CUDA "
                f"or sees no GPU; torch.cuda.is_available() is {torch_cuda_available()}); computing TV-L1 on the "
                f"CPU. On a GPU, --flow tvl1-torch needs only a CUDA torch; OpenCV's CUDA TV-L1 needs OpenCV built "
                f"with CUDA and contrib (docker/Dockerfile.cuda).",
                RuntimeWarning,
                stacklevel=2,
            )
    return ("opencv" if method == "auto" else method), "cpu"


def flow_implementation(method: str = "auto", device: str = "auto") -> str:
    """The TV-L1 implementation that ``method`` on ``device`` runs on this machine."""
    return FLOW_IMPLEMENTATIONS[resolve_flow(method, device, warn=False)]


# TVL1_PARAMS key -> setter of cv2.optflow.DualTVL1OpticalFlow
_CPU_SETTERS = {
    "tau": "setTau", "lambda": "setLambda", "theta": "setTheta", "nscales": "setScalesNumber",
    "warps": "setWarpingsNumber", "epsilon": "setEpsilon", "inner_iterations": "setInnerIterations",
    "outer_iterations": "setOuterIterations", "scale_step": "setScaleStep", "gamma": "setGamma",
    "median_filtering": "setMedianFiltering",
}


def _cpu_tvl1():
    tv = cv2.optflow.DualTVL1OpticalFlow_create()
    for key, setter in _CPU_SETTERS.items():
        getattr(tv, setter)(TVL1_PARAMS[key])
    tv.setUseInitialFlow(False)
    return tv


def _cuda_tvl1():
    p = TVL1_PARAMS
    return cv2.cuda.OpticalFlowDual_TVL1.create(
        p["tau"], p["lambda"], p["theta"], p["nscales"], p["warps"], p["epsilon"],
        p["inner_iterations"] * p["outer_iterations"], p["scale_step"], p["gamma"], False,
    )


def tvl1_block(grays: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Raw OpenCV TV-L1 flow in pixels for consecutive pairs of ``grays`` ``[n + 1, H, W]`` uint8 ->
    ``[n, H, W, 2]``.

    Module-level so that worker processes can run it. A pair of identical frames gets exactly zero flow without
    running TV-L1."""
    n = len(grays) - 1
    out = np.empty((max(n, 0), *grays.shape[1:], 2), np.float32)
    if n <= 0:
        return out
    if device == "cuda":
        tv = _cuda_tvl1()
        prev, nxt = cv2.cuda_GpuMat(), cv2.cuda_GpuMat()
        prev.upload(grays[0])
        for i in range(n):
            nxt.upload(grays[i + 1])
            out[i] = 0 if np.array_equal(grays[i], grays[i + 1]) else tv.calc(prev, nxt, None).download()
            prev, nxt = nxt, prev
        return out
    cv2.setNumThreads(1)  # parallelism comes from processes; threads would only oversubscribe the cores
    tv = _cpu_tvl1()
    for i in range(n):
        out[i] = 0 if np.array_equal(grays[i], grays[i + 1]) else tv.calc(grays[i], grays[i + 1], None)
    return out


# TVL1_PARAMS as the keywords of tvl1_flow (whose ``lambda`` is ``lambda_``)
TVL1_TORCH_KWARGS = {("lambda_" if key == "lambda" else key): value for key, value in TVL1_PARAMS.items()}


def tvl1_torch_block(grays: np.ndarray, device: str = "cpu", batch_pairs: int | None = None) -> np.ndarray:
    """Raw torch TV-L1 flow (:func:`.tvl1_torch.tvl1_flow`) for consecutive pairs of ``grays`` ``[n + 1, H, W]``
    uint8 -> ``[n, H, W, 2]``, ``batch_pairs`` pairs at a time (default: what fits the device's memory); identical
    frames get exactly zero flow, as in :func:`tvl1_block`."""
    n = len(grays) - 1
    out = np.zeros((max(n, 0), *grays.shape[1:], 2), np.float32)
    moving = [i for i in range(n) if not np.array_equal(grays[i], grays[i + 1])]
    if not moving:
        return out
    dev = torch.device(device)
    batch = batch_pairs or default_batch_pairs(*grays.shape[1:], dev)
    frames = torch.from_numpy(np.ascontiguousarray(grays))
    with torch.inference_mode():
        for a in range(0, len(moving), batch):
            idx = torch.tensor(moving[a:a + batch])
            flow = tvl1_flow(frames[idx].to(dev), frames[idx + 1].to(dev), **TVL1_TORCH_KWARGS)
            out[moving[a:a + batch]] = flow.cpu().numpy()
    return out


def to_gray(frames: np.ndarray) -> np.ndarray:
    """``[n, H, W, 3]`` RGB uint8 -> ``[n, H, W]`` uint8 (ITU-R BT.601 luma, as OpenCV)."""
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]) if len(frames) else \
        np.zeros((0, *frames.shape[1:3]), np.uint8)


def scale_flow(raw: np.ndarray) -> np.ndarray:
    """Pixels -> network input: clip to [-20, 20], divide by 20."""
    return (np.clip(raw, -FLOW_CLIP, FLOW_CLIP) / FLOW_CLIP).astype(np.float32)


def quantize_flow(scaled: np.ndarray) -> np.ndarray:
    """[-1, 1] -> uint8 (0 = -20 px, 255 = +20 px): the usual flow-image encoding (denseflow, TSN)."""
    return np.round((np.clip(scaled, -1, 1) + 1) * 127.5).astype(np.uint8)


def dequantize_flow(q: np.ndarray) -> np.ndarray:
    return (q.astype(np.float32) / 127.5 - 1).astype(np.float32)


def snippet_flow_pairs(index: int, num_frames: int, window: int = 16, stride: int = 16) -> list[tuple[int, int]]:
    """The frame pairs whose flow snippet ``index`` sees (the documented alignment, padding included).

    Frame ``t`` in ``[index * stride, index * stride + window)`` contributes the pair ``(t, t + 1)``; the last
    frame's pair is the one before it; positions past the end of the video repeat the last frame (edge padding), so
    their pair is ``(last, last)``: zero motion.
    """
    pairs = []
    for t in range(index * stride, index * stride + window):
        if t >= num_frames:
            pairs.append((num_frames - 1, num_frames - 1))
            continue
        if t == num_frames - 1 and num_frames > 1:
            t = num_frames - 2
        pairs.append((t, min(t + 1, num_frames - 1)))
    return pairs


class FlowComputer:
    """Turns resized RGB frames into scaled flow, streaming: feed chunks, get the flows of every frame whose
    successor has been seen; :meth:`finish` returns the last frame's (repeated) flow.

    ``method`` and ``device`` pick the implementation (:func:`resolve_flow`). ``workers`` > 1 splits each chunk's
    pairs across that many processes (OpenCV on the CPU); ``batch_pairs`` bounds the pairs torch's TV-L1 holds at
    once (default: what fits the device's memory).
    """

    def __init__(self, device: str = "cpu", workers: int = 1, flow_size: int | None = None, method: str = "auto",
                 batch_pairs: int | None = None):
        self.method, self.device = resolve_flow(method, device)
        self.workers = max(1, int(workers)) if (self.method, self.device) == ("opencv", "cpu") else 1
        self.flow_size = flow_size
        self.batch_pairs = batch_pairs
        self._last_gray: np.ndarray | None = None
        self._last_flow: np.ndarray | None = None
        self._parallel = None

    @property
    def implementation(self) -> str:
        return FLOW_IMPLEMENTATIONS[self.method, self.device]

    def __enter__(self) -> "FlowComputer":
        if self.workers > 1:
            from joblib import Parallel

            self._parallel = Parallel(n_jobs=self.workers, backend="loky")
            self._parallel.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._parallel is not None:
            self._parallel.__exit__(*exc)
            self._parallel = None

    def _gray(self, frames: np.ndarray) -> np.ndarray:
        gray = to_gray(frames)
        if self.flow_size and self.flow_size < min(gray.shape[1:3]):
            gray = np.stack([resize_short_side(g, self.flow_size) for g in gray])
        return gray

    def _raw(self, grays: np.ndarray) -> np.ndarray:
        n = len(grays) - 1
        if self.method == "tvl1-torch":
            return tvl1_torch_block(grays, self.device, self.batch_pairs)
        if self._parallel is None or n < 2:
            return tvl1_block(grays, self.device)
        from joblib import delayed

        bounds = np.linspace(0, n, min(self.workers, n) + 1).round().astype(int)
        parts = self._parallel(delayed(tvl1_block)(grays[a:b + 1], "cpu") for a, b in zip(bounds[:-1], bounds[1:]))
        return np.concatenate(parts)

    def _finish_field(self, raw: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        if raw.shape[1:3] != (h, w):  # computed at flow_size: back to resized-frame pixels
            fy, fx = h / raw.shape[1], w / raw.shape[2]
            raw = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in raw])
            raw[..., 0] *= fx
            raw[..., 1] *= fy
        return scale_flow(raw)

    def push(self, frames: np.ndarray) -> np.ndarray:
        """Resized RGB frames ``[n, H, W, 3]`` -> scaled flows ``[m, H, W, 2]`` of the frames now complete."""
        if len(frames) == 0:
            return np.zeros((0, *frames.shape[1:3], 2), np.float32)
        grays = self._gray(frames)
        if self._last_gray is not None:
            grays = np.concatenate([self._last_gray[None], grays])
        self._last_gray = grays[-1]
        flows = self._finish_field(self._raw(grays), frames.shape[1:3]) if len(grays) > 1 else \
            np.zeros((0, *frames.shape[1:3], 2), np.float32)
        if len(flows):
            self._last_flow = flows[-1]
        return flows

    def finish(self, frame_shape: tuple[int, int]) -> np.ndarray:
        """The last frame's flow ``[1, H, W, 2]``: the previous pair's flow repeated, zeros for a one-frame video."""
        if self._last_gray is None:
            return np.zeros((0, *frame_shape, 2), np.float32)
        last = self._last_flow if self._last_flow is not None else np.zeros((*frame_shape, 2), np.float32)
        return last[None].copy()

    def describe(self) -> dict:
        """The flow choices, for the cache metadata."""
        version = f"opencv {cv2.__version__}" if self.method == "opencv" else f"torch {torch.__version__}"
        return {
            "algorithm": "Dual TV-L1 (Zach et al. 2007, Wedel et al. 2009; OpenCV's DualTVL1OpticalFlow)",
            "implementation": self.implementation,
            "method": self.method,
            "version": version,
            "device": self.device,
            "params": dict(TVL1_PARAMS),
            "input": "grayscale of the resized frame (before the centre crop)",
            "flow_size": self.flow_size,
            "clip_px": FLOW_CLIP,
            "scale": f"clip to [-{FLOW_CLIP:g}, {FLOW_CLIP:g}] px, divide by {FLOW_CLIP:g}",
            "pair": "frame t uses the pair (t, t+1); the last frame repeats the previous pair's flow; padded "
                    "positions past the end and frames held before the first video frame have zero flow",
        }

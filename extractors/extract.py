"""Per-video extraction (one picklable function) and the run over a folder of videos.

:func:`extract_video` decodes, computes flow and features for one video and writes them to the feature cache; it
is what joblib runs locally and what runs unchanged on joblib's Dask backend or on Ray. :func:`extract_folder`
finds the videos, skips those already complete, runs the rest with a progress bar, and writes ``failures.json``.

Snippets. Snippet ``i`` sees the resampled frames ``[i * stride, i * stride + window)`` and the flows of the same
frames (the pair ``(t, t + 1)`` for each frame ``t``; see :mod:`clicktal.extractors.flow`). The last partial
snippet is padded by repeating the video's last frame and last flow (edge padding), never dropped, so a video of
``duration_s`` seconds gives ``FeatureGeometry.snippet_count(duration_s) = ceil(duration_s * fps / stride)`` rows.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import math
import os
import platform
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from clicktal.pipeline.data.cache import FeatureCache, FeatureMeta
from clicktal.pipeline.core.files import atomic_write
from clicktal.pipeline.core.geometry import FeatureGeometry

from .decode import BACKENDS, Video, VideoError, find_videos
from .flow import FLOW_DEVICES, FlowComputer, quantize_flow

SAVE_FLOW_FORMATS = ("jpg", "png", "npz")
PARALLEL_BACKENDS = ("loky", "dask", "ray")
FAILED_ERROR = "error"  # an unexpected exception (the message has its type)
CACHE_CONFLICT = "cache_conflict"


@dataclass(frozen=True)
class ExtractionConfig:
    """Every extraction choice. The defaults are the conventions of the published I3D features."""

    features: str = "i3d"  # i3d | tsn | pv_i3d_r50 | pv_slowfast_r50
    fps: float = 25.0  # resampling rate
    window: int = 16  # frames per snippet
    stride: int = 16  # frames between snippet starts
    decoder: str = "pyav"  # pyav | decord
    resize: int = 256  # shorter side after resizing
    crop: int = 224  # centre crop (square)
    flow_device: str = "auto"  # auto | cpu | cuda (TV-L1)
    flow_size: int | None = None  # smoke tests only: TV-L1 at this shorter side, upsampled (None = at `resize`)
    flow_workers: int = 1  # processes for TV-L1 within one video (CPU)
    device: str = "cpu"  # torch device for the networks
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    batch_size: int = 8  # snippets per network call
    chunk_frames: int = 64  # frames decoded per chunk (bounds memory)
    weights_dir: str | None = None
    random_init: bool = False  # smoke tests without weights: features are meaningless, marked "untrained"
    seed: int = 0  # random initialisation seed
    tsn_arch: str = "resnet50"
    save_flow: str | None = None  # None | jpg | png | npz: also keep the flow (uint8) under <out>/flow/<video>/
    torch_threads: int | None = None  # torch intra-op threads in the worker (None: torch's default)

    def __post_init__(self) -> None:
        from .models import FEATURES, PRECISIONS

        problems = []
        if self.features not in FEATURES:
            problems.append(f"features {self.features!r} (choose from {FEATURES})")
        if self.decoder not in BACKENDS:
            problems.append(f"decoder {self.decoder!r} (choose from {BACKENDS})")
        if self.flow_device not in FLOW_DEVICES:
            problems.append(f"flow_device {self.flow_device!r} (choose from {FLOW_DEVICES})")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} (choose from {PRECISIONS})")
        if self.save_flow not in (None, *SAVE_FLOW_FORMATS):
            problems.append(f"save_flow {self.save_flow!r} (choose from {SAVE_FLOW_FORMATS})")
        if not 0 < self.crop <= self.resize:
            problems.append(f"crop {self.crop} must be positive and at most resize {self.resize}")
        if self.flow_size is not None and not 8 <= self.flow_size:
            problems.append(f"flow_size {self.flow_size} must be at least 8")
        for name in ("window", "stride", "batch_size", "chunk_frames", "flow_workers"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if problems:
            raise ValueError("invalid extraction config: " + "; ".join(problems))
        FeatureGeometry(self.fps, self.window, self.stride)  # validates

    @property
    def geometry(self) -> FeatureGeometry:
        return FeatureGeometry(fps=float(self.fps), window=int(self.window), stride=int(self.stride))

    def signature(self) -> dict:
        """The choices that change the numbers; a cached video with another signature is not reused."""
        keys = ("features", "fps", "window", "stride", "resize", "crop", "flow_size", "precision", "random_init",
                "seed", "tsn_arch")
        sig = {k: getattr(self, k) for k in keys}
        if not self.random_init:
            sig.pop("seed")
        if self.features != "tsn":
            sig.pop("tsn_arch")
        return sig

    def model_key(self) -> tuple:
        return (self.features, self.weights_dir, self.random_init, self.seed, self.device, self.precision,
                self.tsn_arch, self.window)


@dataclass
class VideoResult:
    video_id: str
    path: str
    status: str  # done | skipped | failed
    reason: str | None = None
    message: str | None = None
    seconds: float = 0.0  # wall time spent
    duration_s: float = 0.0  # video duration (done / skipped)
    num_snippets: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------ per process
_EXTRACTORS: dict[tuple, object] = {}


def _weights_stamp(config: ExtractionConfig) -> tuple:
    """Identity of the weights folder's files (a replaced checkpoint must not be served from the cache below)."""
    if config.random_init:
        return ()
    from .weights import default_weights_dir

    folder = Path(config.weights_dir) if config.weights_dir else default_weights_dir()
    try:
        return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()
                            if p.is_file()))
    except OSError:
        return ()


def get_extractor(config: ExtractionConfig):
    """The config's extractor, built once per process (weights load once per worker)."""
    key = (config.model_key(), _weights_stamp(config))
    if key not in _EXTRACTORS:
        from .models import build_extractor

        _EXTRACTORS.clear()  # one model set per process is enough
        _EXTRACTORS[key] = build_extractor(
            config.features, weights_dir=config.weights_dir, random_init=config.random_init, device=config.device,
            precision=config.precision, seed=config.seed, tsn_arch=config.tsn_arch, window=config.window,
        )
    return _EXTRACTORS[key]


def library_versions(decoder: str = "pyav") -> dict[str, str]:
    import av
    import cv2
    import torch
    import torchvision

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "av": av.__version__,
        "ffmpeg": str(getattr(av, "ffmpeg_version_info", "")),
        "opencv": cv2.__version__,
    }
    try:
        from importlib.metadata import version

        versions["clicktal"] = version("clicktal")
    except Exception:  # noqa: BLE001
        pass
    if decoder == "decord":
        import decord

        versions["decord"] = decord.__version__
    if "pytorchvideo" in sys.modules:
        versions["pytorchvideo"] = getattr(sys.modules["pytorchvideo"], "__version__", "?")
    return versions


# ------------------------------------------------------------------------------------------------ snippets
def centre_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """``[n, H, W, C]`` -> ``[n, size, size, C]`` (the centre; odd margins put the extra pixel after)."""
    h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return frames[:, top:top + size, left:left + size]


class SnippetAssembler:
    """Collects frames (and flows) as they stream in and hands out batches of complete snippets.

    Only the frames that unfinished snippets still need are kept. After :meth:`close` with the video's frame count
    the remaining snippets are padded by repeating the last frame / flow.
    """

    def __init__(self, window: int, stride: int, batch_size: int, with_flow: bool):
        self.window, self.stride, self.batch_size, self.with_flow = window, stride, batch_size, with_flow
        self._rgb: list[np.ndarray] = []
        self._flow: list[np.ndarray] = []
        self._rgb_base = 0
        self._flow_base = 0
        self.next_snippet = 0
        self.num_frames: int | None = None
        self._pending: list[tuple[np.ndarray, np.ndarray | None]] = []

    def add(self, rgb: np.ndarray | None = None, flow: np.ndarray | None = None) -> None:
        if rgb is not None:
            self._rgb.extend(rgb)
        if flow is not None:
            self._flow.extend(flow)

    def close(self, num_frames: int) -> None:
        if self._rgb_base + len(self._rgb) != num_frames:
            raise AssertionError(f"assembler saw {self._rgb_base + len(self._rgb)} frames, video has {num_frames}")
        if self.with_flow and self._flow_base + len(self._flow) != num_frames:
            raise AssertionError(f"assembler saw {self._flow_base + len(self._flow)} flows for {num_frames} frames")
        self.num_frames = num_frames

    @property
    def num_snippets(self) -> int | None:
        return None if self.num_frames is None else max(1, math.ceil(self.num_frames / self.stride))

    def _take(self, buf: list[np.ndarray], base: int, start: int) -> np.ndarray:
        last = base + len(buf) - 1
        idx = [min(t, last) - base for t in range(start, start + self.window)]
        return np.stack([buf[i] for i in idx])

    def _ready(self, i: int) -> bool:
        if self.num_frames is not None:
            return i < self.num_snippets
        end = i * self.stride + self.window
        return self._rgb_base + len(self._rgb) >= end and (
            not self.with_flow or self._flow_base + len(self._flow) >= end)

    def batches(self, final: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Batches ``(rgb [B, window, h, w, 3], flow [B, window, h, w, 2] | None)`` of complete snippets, in
        order; with ``final`` also the last, smaller batch."""
        while self._ready(self.next_snippet):
            start = self.next_snippet * self.stride
            rgb = self._take(self._rgb, self._rgb_base, start)
            flow = self._take(self._flow, self._flow_base, start) if self.with_flow else None
            self._pending.append((rgb, flow))
            self.next_snippet += 1
            self._drop_before(self.next_snippet * self.stride)
            if len(self._pending) == self.batch_size:
                yield self._flush()
        if final and self._pending:
            yield self._flush()

    def _flush(self):
        rgb = np.stack([r for r, _ in self._pending])
        flow = np.stack([f for _, f in self._pending]) if self.with_flow else None
        self._pending = []
        return rgb, flow

    def _drop_before(self, frame: int) -> None:
        # keep at least the last element: padding repeats it
        n = min(frame - self._rgb_base, len(self._rgb) - 1)
        if n > 0:
            del self._rgb[:n]
            self._rgb_base += n
        if self.with_flow:
            n = min(frame - self._flow_base, len(self._flow) - 1)
            if n > 0:
                del self._flow[:n]
                self._flow_base += n


class FlowWriter:
    """Saves the (cropped) flow as uint8 while it streams: ``x_%06d.<ext>`` / ``y_%06d.<ext>`` images, or
    ``flow_%06d.npz`` chunks (``flow [n, H, W, 2]`` uint8, first frame index in the name). Written to a hidden
    temporary folder that is renamed into place by :meth:`commit`."""

    ENCODING = "uint8 q = round((clip(f, -20, 20) / 20 + 1) * 127.5); f = (q / 127.5 - 1) * 20 pixels"

    def __init__(self, root: Path, video_id: str, fmt: str):
        self.final = root / video_id
        self.tmp = root / f".{video_id}.tmp-{os.getpid()}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.fmt = fmt
        self.count = 0

    def write(self, flows: np.ndarray) -> None:
        import cv2

        if len(flows) == 0:
            return
        q = quantize_flow(flows)
        if self.fmt == "npz":
            np.savez_compressed(self.tmp / f"flow_{self.count:06d}.npz", flow=q)
        else:
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if self.fmt == "jpg" else []
            for i, f in enumerate(q):
                cv2.imwrite(str(self.tmp / f"x_{self.count + i:06d}.{self.fmt}"), f[..., 0], params)
                cv2.imwrite(str(self.tmp / f"y_{self.count + i:06d}.{self.fmt}"), f[..., 1], params)
        self.count += len(flows)

    def commit(self, info: dict) -> None:
        (self.tmp / "flow.json").write_text(json.dumps(dict(info, frames=self.count, encoding=self.ENCODING,
                                                            format=self.fmt), indent=1))
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def read_saved_flow(folder: str | os.PathLike) -> np.ndarray:
    """Flow saved by ``--save-flow`` back as ``[N, H, W, 2]`` float32 in [-1, 1] (quantized to 1/127.5)."""
    import cv2

    from .flow import dequantize_flow

    folder = Path(folder)
    info = json.loads((folder / "flow.json").read_text())
    if info["format"] == "npz":
        q = np.concatenate([np.load(p)["flow"] for p in sorted(folder.glob("flow_*.npz"))])
    else:
        ext = info["format"]
        q = np.stack([np.stack([cv2.imread(str(folder / f"{c}_{i:06d}.{ext}"), cv2.IMREAD_GRAYSCALE)
                                for c in ("x", "y")], axis=-1) for i in range(info["frames"])])
    if len(q) != info["frames"]:
        raise ValueError(f"{folder}: {len(q)} flow frames, flow.json says {info['frames']}")
    return dequantize_flow(q)


def compute_features(path: str | os.PathLike, config: ExtractionConfig, *, flow_dir: str | os.PathLike | None = None,
                     video_id: str | None = None) -> tuple[np.ndarray, FeatureMeta]:
    """Features ``[T, D]`` and their metadata for one video, streaming (memory does not grow with its length).

    Raises :class:`VideoError` for a bad video."""
    path = Path(path)
    geometry = config.geometry
    extractor = get_extractor(config)
    if config.torch_threads:
        import torch

        torch.set_num_threads(config.torch_threads)
    needs_flow = extractor.needs_flow
    rows: list[np.ndarray] = []
    assembler = SnippetAssembler(config.window, config.stride, config.batch_size, needs_flow)
    writer = FlowWriter(Path(flow_dir), video_id or path.stem, config.save_flow) if (
        flow_dir and config.save_flow and needs_flow) else None
    flow_cm = FlowComputer(config.flow_device, config.flow_workers, config.flow_size) if needs_flow else \
        contextlib.nullcontext()
    try:
        with Video(path, config.decoder) as video, flow_cm as flow:
            shape = None
            for chunk in video.chunks(config.fps, config.chunk_frames, short_side=config.resize,
                                      stride=config.stride):
                shape = chunk.shape[1:3]
                flows = centre_crop(flow.push(chunk), config.crop) if needs_flow else None
                if writer is not None:
                    writer.write(flows)
                assembler.add(centre_crop(chunk, config.crop), flows)
                for rgb, fl in assembler.batches():
                    rows.append(extractor(rgb, fl))
            if needs_flow:
                last = centre_crop(flow.finish(shape), config.crop)
                if writer is not None:
                    writer.write(last)
                assembler.add(flow=last)
            assembler.close(video.stats.output_frames)
            for rgb, fl in assembler.batches(final=True):
                rows.append(extractor(rgb, fl))
            stats, info = video.stats, video.info
            flow_info = flow.describe() if needs_flow else None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    features = np.concatenate(rows).astype(np.float32)
    expected = geometry.snippet_count(stats.duration_s)
    if features.shape[0] != expected:  # the decoder and the geometry share one rule; this is a bug if it fires
        raise AssertionError(f"{path}: {features.shape[0]} snippets but geometry says {expected}")
    meta = FeatureMeta(
        geometry=geometry,
        streams=dict(extractor.streams),
        extractor=extractor.name,
        weights_sha256=dict(extractor.weights_sha256),
        source={
            "path": str(path.resolve()),
            "size_bytes": info.size_bytes,
            "duration_s": stats.duration_s,
            "native_fps": info.native_fps,
            "width": info.width,
            "height": info.height,
            "rotation": info.rotation,
            "codec": info.codec,
            "declared_duration_s": info.declared_duration_s,
            "decoded_frames": stats.decoded_frames,
            "resampled_frames": stats.output_frames,
        },
        versions=library_versions(config.decoder),
        options={
            "signature": config.signature(),
            "untrained": config.random_init,
            "decoder": config.decoder,
            "resampling": f"by presentation timestamp to {config.fps:g} fps: output frame k is the source frame "
                          "shown at k / fps; last frame lasts as long as the interval before it",
            "frames": {
                "resize": f"shorter side to {config.resize} (cv2 INTER_AREA down, INTER_LINEAR up), upright "
                          "(rotation metadata applied)",
                "crop": f"centre {config.crop} x {config.crop}",
            },
            "snippets": f"snippet i = frames [i*{config.stride}, i*{config.stride}+{config.window}); the last "
                        "partial snippet is padded by repeating the last frame and flow",
            "flow": flow_info,
            "model": extractor.describe(),
            "device": str(extractor.device),
            "precision": extractor.precision,
            "random_init_seed": config.seed if config.random_init else None,
            "save_flow": config.save_flow if needs_flow else None,
        },
    )
    if writer is not None:
        writer.commit({"video_id": video_id or path.stem, "size": [config.crop, config.crop],
                       "fps": config.fps, "flow": flow_info})
    return features, meta


def _cached_state(cache: FeatureCache, video_id: str, config: ExtractionConfig, flow_root: Path,
                  weights: dict[str, str] | None = None) -> str | None:
    """``"complete"`` when the cache holds this video made with the same signature, ``"conflict:<why>"`` when it
    holds it made differently, ``None`` when it does not hold it."""
    if not cache.has(video_id):
        return None
    try:
        meta = cache.read_meta(video_id)
    except Exception as e:  # noqa: BLE001 - an unreadable sidecar means "not complete"
        return f"conflict:unreadable sidecar ({e})"
    sig = meta.options.get("signature")
    if sig != json.loads(json.dumps(config.signature())):
        theirs = sig or {}
        diff = {k: (theirs.get(k), v) for k, v in config.signature().items() if theirs.get(k) != v}
        return f"conflict:cached with other options (cached vs asked: {diff})"
    weights = weights if weights is not None else get_extractor(config).weights_sha256
    if meta.weights_sha256 != weights:
        return f"conflict:cached with other weights (sha256 {meta.weights_sha256} vs {weights})"
    if config.save_flow and not (flow_root / video_id / "flow.json").is_file():
        return None  # features are there but the flow asked for is not: redo
    return "complete"


def _clean_stale(cache: FeatureCache, video_id: str, flow_root: Path) -> None:
    """Leftovers of a killed run for this video (its temp files); other videos' are not touched."""
    vid = glob.escape(video_id)
    for p in [*cache.root.glob(f".{vid}.npy.*.tmp"), *cache.root.glob(f".{vid}.json.*.tmp")]:
        p.unlink(missing_ok=True)
    if flow_root.is_dir():
        for p in flow_root.glob(f".{vid}.tmp-*"):
            shutil.rmtree(p, ignore_errors=True)


def _skipped(cache: FeatureCache, video_id: str, path: Path) -> VideoResult:
    meta = json.loads(cache.meta_path(video_id).read_text())
    return VideoResult(video_id, str(path), "skipped", duration_s=float(meta.get("source", {}).get("duration_s", 0)),
                       num_snippets=int(meta.get("num_snippets", 0)))


def extract_video(path: str | os.PathLike, out_dir: str | os.PathLike, config: ExtractionConfig,
                  video_id: str | None = None, overwrite: bool = False) -> VideoResult:
    """Extract one video into the cache at ``out_dir`` and report; never raises for a bad video.

    A video already complete in the cache with the same signature is skipped (``status="skipped"``). This is the
    function the local pool, Dask and Ray run; everything it needs travels in its (picklable) arguments.
    """
    path = Path(path)
    video_id = video_id or path.stem
    cache = FeatureCache(out_dir)
    flow_root = Path(out_dir) / "flow"
    t0 = time.perf_counter()
    if not overwrite:
        state = _cached_state(cache, video_id, config, flow_root)
        if state == "complete":
            return _skipped(cache, video_id, path)
        if state and state.startswith("conflict:"):
            return VideoResult(video_id, str(path), "failed", CACHE_CONFLICT,
                               f"{state[len('conflict:'):]}; use --overwrite or another --out")
    try:
        cache.root.mkdir(parents=True, exist_ok=True)
        _clean_stale(cache, video_id, flow_root)
        features, meta = compute_features(path, config, flow_dir=flow_root if config.save_flow else None,
                                          video_id=video_id)
        cache.write(video_id, features, meta)
        return VideoResult(video_id, str(path), "done", seconds=time.perf_counter() - t0,
                           duration_s=float(meta.source["duration_s"]), num_snippets=int(features.shape[0]))
    except VideoError as e:
        return VideoResult(video_id, str(path), "failed", e.reason, e.detail, time.perf_counter() - t0)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - keep going past any one video; the message says what happened
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        return VideoResult(video_id, str(path), "failed", FAILED_ERROR, tb, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------ the folder run
def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/n"`` (0-based ``i``) -> ``(i, n)``."""
    if shard is None:
        return None
    if isinstance(shard, str):
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard {shard!r}: expected i/n, e.g. 0/4") from None
    else:
        i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {i}/{n}: need 0 <= i < n")
    return i, n


def plan_videos(videos: str | os.PathLike | Iterable, shard=None) -> list[tuple[str, Path]]:
    """``(video_id, path)`` for a folder (recursive), a list file, or an iterable of paths; ids are file stems and
    must be unique. ``shard=(i, n)`` keeps every n-th video of the sorted list starting at i (deterministic)."""
    if isinstance(videos, (str, os.PathLike)):
        paths = find_videos(videos)
    else:
        paths = sorted(Path(p) for p in videos)
    seen: dict[str, Path] = {}
    clashes = []
    for p in paths:
        if p.stem in seen:
            clashes.append(f"{seen[p.stem]} and {p}")
        seen[p.stem] = p
    if clashes:
        raise ValueError("video ids (file names without extension) must be unique in one cache; clashes: "
                         + "; ".join(clashes[:5]))
    items = [(p.stem, p) for p in paths]
    shard = parse_shard(shard)
    if shard:
        i, n = shard
        items = items[i::n]
    return items


@dataclass
class Summary:
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    wall_s: float = 0.0
    video_seconds: float = 0.0  # duration of the videos extracted in this run
    failures: list[dict] = field(default_factory=list)
    results: list[VideoResult] = field(default_factory=list)
    failures_path: str | None = None
    out_dir: str | None = None

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def text(self) -> str:
        speed = self.video_seconds / self.wall_s if self.wall_s > 0 else 0.0
        lines = [f"{self.total} videos: {self.done} extracted, {self.skipped} already in the cache, "
                 f"{self.failed} failed; {self.video_seconds:.1f} video-s in {self.wall_s:.1f} s "
                 f"({speed:.2f} video-s per wall-s) -> {self.out_dir}"]
        for f in self.failures:
            lines.append(f"  FAILED {f['path']}: {f['reason']}: {f['message']}")
        if self.failures_path:
            lines.append(f"failures listed in {self.failures_path}")
        return "\n".join(lines)


@contextlib.contextmanager
def _parallel_backend(backend: str, workers: int, scheduler: str | None):
    """joblib's backend for the run: loky (local processes), dask (a distributed.Client, local or at
    ``scheduler``) or ray (``ray.init(address=scheduler)``). Dask and Ray import lazily."""
    from joblib import parallel_config

    if backend == "loky":
        with parallel_config(backend="loky", n_jobs=workers):
            yield
    elif backend == "dask":
        try:
            from dask.distributed import Client
        except ImportError as e:
            raise RuntimeError(
                f"--backend dask needs dask.distributed ({e}); pip install 'clicktal[cluster]'") from None
        client = Client(scheduler) if scheduler else Client(n_workers=workers, threads_per_worker=1)
        try:
            with parallel_config(backend="dask", n_jobs=workers):
                yield
        finally:
            client.close()
    elif backend == "ray":
        try:
            import ray
            from ray.util.joblib import register_ray
        except ImportError as e:
            raise RuntimeError(f"--backend ray needs ray ({e}); pip install 'clicktal[cluster]'") from None
        register_ray()
        if not ray.is_initialized():
            ray.init(address=scheduler) if scheduler else ray.init(num_cpus=workers)
        with parallel_config(backend="ray", n_jobs=workers):
            yield
    else:
        raise ValueError(f"unknown backend {backend!r}; choose from {PARALLEL_BACKENDS}")


def extract_folder(videos: str | os.PathLike | Iterable, out_dir: str | os.PathLike, *, workers: int = 1,
                   backend: str = "loky", scheduler: str | None = None, shard=None, overwrite: bool = False,
                   progress: bool = True, config: ExtractionConfig | None = None, **options) -> Summary:
    """Extract every video under ``videos`` (a folder, searched recursively, a list file, or paths) into the
    feature cache ``out_dir``; resumable, keeps going past bad videos, writes ``failures.json``.

    ``options`` are :class:`ExtractionConfig` fields (``features="i3d"``, ``random_init=True``, ``fps=25``, ...).
    ``workers`` processes run videos in parallel; when there are fewer pending videos than workers, the videos run
    one after another with ``workers`` TV-L1 processes each. Weights are checked before any video starts
    (:class:`~clicktal.extractors.weights.WeightsError` if missing and not ``random_init``).
    """
    t0 = time.perf_counter()
    config = dataclasses.replace(config, **options) if config is not None else ExtractionConfig(**options)
    if backend not in PARALLEL_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {PARALLEL_BACKENDS}")
    workers = max(1, int(workers))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shard_t = parse_shard(shard)
    items = plan_videos(videos, shard_t)
    summary = Summary(total=len(items), out_dir=str(out))

    # Weights are checked here, once, before any video: a missing checkpoint is a setup error, not a bad video.
    checked = get_extractor(config if backend == "loky" else dataclasses.replace(config, device="cpu",
                                                                                 precision="fp32"))

    cache = FeatureCache(out)
    pending = []
    for vid, path in items:
        state = None if overwrite else _cached_state(cache, vid, config, out / "flow", checked.weights_sha256)
        if state == "complete":
            summary.results.append(_skipped(cache, vid, path))
        else:
            pending.append((vid, path))

    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), initial=len(items) - len(pending), unit="video", disable=not progress,
               dynamic_ncols=True, desc="extract")
    try:
        for result in _run(pending, out, config, workers, backend, scheduler, overwrite):
            summary.results.append(result)
            if result.status == "failed":
                bar.write(f"FAILED {result.path}: {result.reason}: {result.message}", file=sys.stderr)
            bar.update(1)
            bar.set_postfix(failed=sum(r.status == "failed" for r in summary.results), refresh=False)
    finally:
        bar.close()

    for r in summary.results:
        if r.status == "done":
            summary.done += 1
            summary.video_seconds += r.duration_s
        elif r.status == "skipped":
            summary.skipped += 1
        else:
            summary.failed += 1
            summary.failures.append({"video": r.video_id, "path": r.path, "reason": r.reason, "message": r.message})
    summary.failures.sort(key=lambda f: f["path"])
    name = "failures.json" if not shard_t else f"failures.shard-{shard_t[0]}-of-{shard_t[1]}.json"
    fpath = out / name
    payload = json.dumps({"failed": summary.failures, "total": summary.total, "done": summary.done,
                          "skipped": summary.skipped}, indent=1).encode()
    atomic_write(fpath, lambda f: f.write(payload))
    summary.failures_path = str(fpath)
    summary.wall_s = time.perf_counter() - t0
    return summary


def _run(pending, out: Path, config: ExtractionConfig, workers: int, backend: str, scheduler, overwrite
         ) -> Iterator[VideoResult]:
    if not pending:
        return
    if backend == "loky" and (workers == 1 or len(pending) < workers):
        # Fewer videos than workers: one video at a time, its TV-L1 spread over the workers.
        cfg = dataclasses.replace(config, flow_workers=max(config.flow_workers, workers))
        for vid, path in pending:
            yield extract_video(path, out, cfg, vid, overwrite)
        return
    from joblib import Parallel, delayed

    threads = config.torch_threads or max(1, (os.cpu_count() or 1) // workers)
    cfg = dataclasses.replace(config, flow_workers=1, torch_threads=threads)
    with _parallel_backend(backend, workers, scheduler):
        try:
            parallel = Parallel(return_as="generator_unordered")
        except ValueError:  # backends without result callbacks (Ray's): results arrive together at the end
            parallel = Parallel(return_as="list")
        yield from parallel(delayed(extract_video)(path, out, cfg, vid, overwrite) for vid, path in pending)


def i3d_weights_present(weights_dir: str | os.PathLike | None = None) -> bool:
    """True when both I3D checkpoints are in the weights folder (they are verified when loaded)."""
    from .weights import I3D_FILES, default_weights_dir

    folder = Path(weights_dir) if weights_dir else default_weights_dir()
    return all((folder / name).is_file() for name in I3D_FILES.values())

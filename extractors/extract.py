"""Per-video extraction: one picklable function from a video file to its features in the cache.

:func:`compute_features` decodes one video, streams its frames (and TV-L1 flow) through the snippet assembler and
the network, and returns the features ``[T, D]`` with their :class:`FeatureMeta`. :func:`extract_video` writes them
to the feature cache, skipping a video already complete there; it is what joblib runs locally and what runs
unchanged on joblib's Dask backend or on Ray (see :mod:`clicktal.extractors.runner` for the folder run).

Several processes may share one cache: a video is extracted under its lock (:mod:`clicktal.extractors.locks`), a
video locked by another live process is left to it (``status="locked"``), and only the lock holder removes a
video's leftover temporary files. A cached video is reused only when the options (the flow implementation that
runs included), the weights and the source file (size, modification time, and the sha256 of its first and last
MiB) are the ones it was made from, and its array is whole (a truncated ``.npy`` is extracted again, the result
saying so). A video id the cache cannot hold (``.``, ``..``, a leading dot, a path separator:
:func:`~clicktal.pipeline.data.cache.bad_video_id`) fails the video with reason ``bad_id`` before anything is read
or written.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.contract import FeatureContract
from clicktal.pipeline.data.cache import FeatureCache, FeatureMeta, bad_video_id
from clicktal.pipeline.data.provenance import source_change, source_fingerprint

from .decode import BACKENDS, MAX_FRAME_GAP_S, Video, VideoError
from .diskio import DISK_FULL, describe_disk_full, disk_full_error, naming
from .flow import FLOW_DEVICES, FLOW_IMPLEMENTATIONS, FLOW_METHODS, FlowComputer, flow_implementation
from .flowio import SAVE_FLOW_FORMATS, FlowWriter, remove_entry
from .locks import VideoLock
from .snippets import SnippetAssembler, centre_crop

FAILED_ERROR = "error"  # an unexpected exception (the message has its type)
CACHE_CONFLICT = "cache_conflict"
SOURCE_CHANGED = "source_changed"  # the video file is not the one the cached features were made from
LOCKED = "locked"  # status (not a failure): another live process is extracting this video
BAD_ID = "bad_id"  # the video id (file name without extension) cannot name a video in the cache


@dataclass(frozen=True)
class ExtractionConfig:
    """Every extraction choice. The defaults are the conventions of the published I3D features."""

    features: str = "i3d"  # i3d | i3d_rgb | tsn | pv_i3d_r50 | pv_slowfast_r50
    fps: float = 25.0  # resampling rate
    window: int = 16  # frames per snippet
    stride: int = 16  # frames between snippet starts
    decoder: str = "pyav"  # pyav | decord
    resize: int = 256  # shorter side after resizing
    crop: int = 224  # centre crop (square)
    flow: str = "auto"  # auto | opencv | tvl1-torch (TV-L1 implementation)
    flow_device: str = "auto"  # auto | cpu | cuda (TV-L1)
    flow_size: int | None = None  # smoke tests only: TV-L1 at this shorter side, upsampled (None = at `resize`)
    flow_workers: int = 1  # processes for TV-L1 within one video (CPU)
    device: str = "auto"  # torch device for the networks: auto (CUDA when torch sees it, else cpu), cpu, cuda[:N]
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    batch_size: int = 8  # snippets per network call
    chunk_frames: int = 64  # frames decoded per chunk (bounds memory)
    weights_dir: str | None = None
    offline: bool = False  # never download missing weights (also $CLICKTAL_OFFLINE=1): a missing file is an error
    random_init: bool = False  # smoke tests without weights: features are meaningless, marked "untrained"
    seed: int = 0  # random initialisation seed
    tsn_arch: str = "resnet50"
    save_flow: str | None = None  # None | jpg | png | npz: also keep the flow (uint8) under <out>/flow/<video>/
    torch_threads: int | None = None  # torch intra-op threads in the worker (None: torch's default)
    max_frame_gap_s: float = MAX_FRAME_GAP_S  # a larger gap between timestamps fails the video (bad_timestamps)

    def __post_init__(self) -> None:
        from .networks import FEATURES, PRECISIONS

        problems = []
        if self.features not in FEATURES:
            problems.append(f"features {self.features!r} (choose from {FEATURES})")
        if self.decoder not in BACKENDS:
            problems.append(f"decoder {self.decoder!r} (choose from {BACKENDS})")
        if self.flow not in FLOW_METHODS:
            problems.append(f"flow {self.flow!r} (choose from {FLOW_METHODS})")
        if self.flow_device not in FLOW_DEVICES:
            problems.append(f"flow_device {self.flow_device!r} (choose from {FLOW_DEVICES})")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} (choose from {PRECISIONS})")
        if self.save_flow not in (None, *SAVE_FLOW_FORMATS):
            problems.append(f"save_flow {self.save_flow!r} (choose from {SAVE_FLOW_FORMATS})")
        if not 0 < self.crop <= self.resize:
            problems.append(f"crop {self.crop} must be positive and at most resize {self.resize}")
        if not self.max_frame_gap_s > 0:
            problems.append(f"max_frame_gap_s {self.max_frame_gap_s} must be positive")
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

    def signature(self, flow_impl: str | None = None) -> dict:
        """The choices that change the numbers; a cached video with another signature is not reused.

        ``flow_impl`` is the TV-L1 implementation that ran (default: what ``flow`` on ``flow_device`` resolves to
        on this machine; ``auto`` is never recorded as such)."""
        from .networks import FLOW_FEATURES

        keys = ("features", "fps", "window", "stride", "resize", "crop", "flow_size", "precision", "random_init",
                "seed", "tsn_arch")
        sig = {k: getattr(self, k) for k in keys}
        if not self.random_init:
            sig.pop("seed")
        if self.features != "tsn":
            sig.pop("tsn_arch")
        if self.features in FLOW_FEATURES:
            sig["flow_impl"] = flow_impl or flow_implementation(self.flow, self.flow_device)
        return sig

    @classmethod
    def from_signature(cls, signature: dict, **given) -> "ExtractionConfig":
        """The config that makes features of ``signature`` (:meth:`signature`, as a run records it) again, with the
        non-``None`` ``given`` fields on top. The TV-L1 implementation recorded as ``flow_impl`` is chosen again
        (CPU and CUDA TV-L1 differ in their numbers)."""
        options = dict(signature)
        impl = options.pop("flow_impl", None)
        method, device = {v: k for k, v in FLOW_IMPLEMENTATIONS.items()}.get(impl, (None, None))
        config = cls(**options, **({"flow": method, "flow_device": device} if device else {}))
        return dataclasses.replace(config, **{k: v for k, v in given.items() if v is not None})

    def model_key(self) -> tuple:
        return (self.features, self.weights_dir, self.random_init, self.seed, self.device, self.precision,
                self.tsn_arch, self.window)


@dataclass
class VideoResult:
    video_id: str
    path: str
    status: str  # done | skipped | failed | locked (another live process is extracting it)
    reason: str | None = None
    message: str | None = None
    seconds: float = 0.0  # wall time spent
    duration_s: float = 0.0  # video duration (done / skipped)
    num_snippets: int = 0
    note: str | None = None  # a video done again: why its cache entry was not complete ("<file>: truncated ...")

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
    """The config's extractor, built once per process (weights load once per worker; missing ones are downloaded
    first unless ``config.offline``)."""
    key = (config.model_key(), _weights_stamp(config))
    if key not in _EXTRACTORS:
        from .networks import build_extractor

        _EXTRACTORS.clear()  # one model set per process is enough
        extractor = build_extractor(
            config.features, weights_dir=config.weights_dir, random_init=config.random_init, device=config.device,
            precision=config.precision, seed=config.seed, tsn_arch=config.tsn_arch, window=config.window,
            offline=config.offline,
        )
        # stamped after building: a first-use download changed the folder, and the next call must find this one
        _EXTRACTORS[(config.model_key(), _weights_stamp(config))] = extractor
        return extractor
    return _EXTRACTORS[key]


def planned_contract(config: ExtractionConfig) -> FeatureContract:
    """The feature contract that extracting with ``config`` will produce (its extractor is built, weights loaded and
    hashed), so that a mismatch with a trained run is found before any video is decoded."""
    extractor = get_extractor(config)
    return FeatureContract(extractor.name, config.geometry, dict(extractor.streams), extractor.dim,
                           dict(extractor.weights_sha256))


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


# ------------------------------------------------------------------------------------------------ per video
def compute_features(path: str | os.PathLike, config: ExtractionConfig, *, flow_dir: str | os.PathLike | None = None,
                     video_id: str | None = None) -> tuple[np.ndarray, FeatureMeta]:
    """Features ``[T, D]`` and their metadata for one video, streaming (memory does not grow with its length).

    Raises :class:`VideoError` for a bad video."""
    path = Path(path)
    geometry = config.geometry
    extractor = get_extractor(config)
    try:
        fingerprint = source_fingerprint(path)
    except OSError:  # missing or unreadable: opening it below says which
        fingerprint = {}
    if config.torch_threads:
        import torch

        torch.set_num_threads(config.torch_threads)
    needs_flow = extractor.needs_flow
    rows: list[np.ndarray] = []
    assembler = SnippetAssembler(config.window, config.stride, config.batch_size, needs_flow)
    writer = FlowWriter(Path(flow_dir), video_id or path.stem, config.save_flow) if (
        flow_dir and config.save_flow and needs_flow) else None
    flow_cm = FlowComputer(config.flow_device, config.flow_workers, config.flow_size, config.flow) if needs_flow \
        else \
        contextlib.nullcontext()
    try:
        with Video(path, config.decoder) as video, flow_cm as flow:
            shape = None
            for chunk in video.chunks(config.fps, config.chunk_frames, short_side=config.resize,
                                      stride=config.stride, max_gap_s=config.max_frame_gap_s):
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
            flow_impl = flow.implementation if needs_flow else None
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
            "mtime_ns": fingerprint.get("mtime_ns"),
            "head_tail_sha256": fingerprint.get("head_tail_sha256"),
            "duration_s": stats.duration_s,
            "start_offset_s": stats.start_offset_s,
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
            "signature": config.signature(flow_impl),
            "untrained": config.random_init,
            "decoder": config.decoder,
            "resampling": f"by presentation timestamp to {config.fps:g} fps: output frame k is the source frame "
                          "shown at k / fps of the player's clock (time 0 = the container's start; frames before "
                          "the first video frame, source.start_offset_s, hold it); last frame lasts as long as "
                          "the interval before it",
            "frames": {
                "resize": f"shorter side to {config.resize} (cv2 INTER_AREA down, INTER_LINEAR up), upright "
                          "(rotation metadata applied)",
                "crop": f"centre {config.crop} x {config.crop}",
            },
            "snippets": f"snippet i = frames [i*{config.stride}, i*{config.stride}+{config.window}); the last "
                        "partial snippet is padded by repeating the last frame, with zero flow",
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


def cached_state(cache: FeatureCache, video_id: str, config: ExtractionConfig, flow_root: Path,
                 weights: dict[str, str] | None = None, source: str | os.PathLike | None = None) -> str | None:
    """``"complete"`` when the cache holds this video made with the same signature (and, given ``source``, from
    that file), ``"conflict:<why>"`` when it holds it made differently, ``"source_changed:<why>"`` when the file at
    ``source`` is not the one it was made from, ``None`` when it does not hold it."""
    if not cache.has(video_id):
        return None
    try:
        meta = cache.read_meta(video_id)
    except Exception as e:  # noqa: BLE001 - an unreadable sidecar means "not complete"
        return f"conflict:unreadable sidecar ({e})"
    asked = json.loads(json.dumps(config.signature()))
    theirs = dict(meta.options.get("signature") or {})
    device = (meta.options.get("flow") or {}).get("device")
    if "flow_impl" in asked and "flow_impl" not in theirs and ("opencv", device) in FLOW_IMPLEMENTATIONS:
        theirs["flow_impl"] = FLOW_IMPLEMENTATIONS["opencv", device]  # a sidecar from before the key: OpenCV's
    if theirs != asked:
        diff = {k: (theirs.get(k), asked.get(k)) for k in sorted({*theirs, *asked}) if theirs.get(k) != asked.get(k)}
        return f"conflict:cached with other options (cached vs asked: {diff})"
    weights = weights if weights is not None else get_extractor(config).weights_sha256
    if meta.weights_sha256 != weights:
        return f"conflict:cached with other weights (sha256 {meta.weights_sha256} vs {weights})"
    why = source_change(meta.source, source) if source is not None else None
    if why:
        return f"source_changed:{why}"
    if config.save_flow and not (flow_root / video_id / "flow.json").is_file():
        return None  # features are there but the flow asked for is not: redo
    return "complete"


def clean_leftovers(cache: FeatureCache, video_id: str, flow_root: Path) -> None:
    """Leftovers of a dead run for this video (its temp files). Called only by the holder of the video's lock, so
    no live process is writing them; other videos' files are not touched (``v`` never matches ``v.npy.x``'s, and
    no video id begins with a dot, so no video's own name looks like another's temp file). A flow folder is
    removed only through :func:`~clicktal.extractors.flowio.remove_entry` (inside ``flow_root``, nowhere else)."""
    vid = re.escape(video_id)
    temp, flow_temp = re.compile(rf"\.{vid}\.(npy|json)\.[^.]+\.tmp"), re.compile(rf"\.{vid}\.tmp-\d+")
    for p in cache.root.glob(".*.tmp"):
        if temp.fullmatch(p.name):
            p.unlink(missing_ok=True)
    if flow_root.is_dir():
        for p in flow_root.glob(".*.tmp-*"):
            if flow_temp.fullmatch(p.name):
                remove_entry(flow_root, p.name)


def bad_id_result(video_id: str, path: str | os.PathLike) -> VideoResult | None:
    """The ``bad_id`` failure of a video whose id the cache cannot hold, else ``None``."""
    why = bad_video_id(video_id)
    if why is None:
        return None
    return VideoResult(video_id, str(path), "failed", BAD_ID,
                       f"{why}; rename the file (the video id is its name without the extension)")


def skipped_result(cache: FeatureCache, video_id: str, path: Path) -> VideoResult:
    """The ``"skipped"`` result of a video already complete in the cache (duration and snippets from its sidecar)."""
    meta = json.loads(cache.meta_path(video_id).read_text())
    return VideoResult(video_id, str(path), "skipped", duration_s=float(meta.get("source", {}).get("duration_s", 0)),
                       num_snippets=int(meta.get("num_snippets", 0)))


def cached_result(cache: FeatureCache, video_id: str, path: Path, config: ExtractionConfig,
                  weights: dict[str, str] | None = None) -> VideoResult | None:
    """The result of a video the cache already answers for (skipped, or failed with a conflict), else ``None``."""
    state = cached_state(cache, video_id, config, cache.root / "flow", weights, source=path)
    if state == "complete":
        return skipped_result(cache, video_id, path)
    if not state:
        return None
    kind, why = state.split(":", 1)
    if kind == "source_changed":
        return VideoResult(video_id, str(path), "failed", SOURCE_CHANGED,
                           f"{path} is not the file its cached features were made from: {why}; use --overwrite to "
                           "extract it again (or another --out)")
    return VideoResult(video_id, str(path), "failed", CACHE_CONFLICT, f"{why}; use --overwrite or another --out")


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def write_features(cache: FeatureCache, video_id: str, features: np.ndarray, meta: FeatureMeta) -> None:
    """``cache.write``; an ``OSError`` naming no file is raised again naming the one that failed (the array is
    written first, then its sidecar: an array replaced already means the sidecar failed)."""
    target = cache.feature_path(video_id)
    before = _file_stamp(target)
    with naming(lambda: cache.meta_path(video_id) if _file_stamp(target) != before else target):
        cache.write(video_id, features, meta)


def extract_video(path: str | os.PathLike, out_dir: str | os.PathLike, config: ExtractionConfig,
                  video_id: str | None = None, overwrite: bool = False) -> VideoResult:
    """Extract one video into the cache at ``out_dir`` and report; never raises for a bad video.

    A video already complete in the cache with the same signature, from the same source file, is skipped
    (``status="skipped"``); one that another live process holds the lock of is left to it (``status="locked"``).
    A full disk fails the video with reason ``disk_full`` naming the file; an id the cache cannot hold, with
    ``bad_id``. An entry whose array is not whole is extracted again (``note`` says why). This is the function the
    local pool, Dask and Ray run; everything it needs travels in its (picklable) arguments.
    """
    path = Path(path)
    video_id = video_id if video_id is not None else path.stem
    refused = bad_id_result(video_id, path)
    if refused is not None:
        return refused
    cache = FeatureCache(out_dir)
    flow_root = Path(out_dir) / "flow"
    t0 = time.perf_counter()
    lock = VideoLock.for_video(out_dir, video_id)
    try:
        early = None if overwrite else cached_result(cache, video_id, path, config)
        if early is not None:
            return early
        if not lock.acquire():
            return (None if overwrite else cached_result(cache, video_id, path, config)) or VideoResult(
                video_id, str(path), LOCKED, LOCKED,
                f"being extracted by another process ({lock.owner()}, {lock.path}); left to it, a rerun picks it "
                "up if that process does not finish it", time.perf_counter() - t0)
        early = None if overwrite else cached_result(cache, video_id, path, config)  # done while we waited?
        if early is not None:
            return early
        cache.root.mkdir(parents=True, exist_ok=True)
        clean_leftovers(cache, video_id, flow_root)
        damaged = None if overwrite else cache.incomplete(video_id)
        features, meta = compute_features(path, config, flow_dir=flow_root if config.save_flow else None,
                                          video_id=video_id)
        write_features(cache, video_id, features, meta)
        return VideoResult(video_id, str(path), "done", seconds=time.perf_counter() - t0,
                           duration_s=float(meta.source["duration_s"]), num_snippets=int(features.shape[0]),
                           note=damaged)
    except VideoError as e:
        return VideoResult(video_id, str(path), "failed", e.reason, e.detail, time.perf_counter() - t0)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - keep going past any one video; the message says what happened
        if disk_full_error(e) is not None:
            return VideoResult(video_id, str(path), "failed", DISK_FULL, describe_disk_full(e, cache.root),
                               time.perf_counter() - t0)
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        return VideoResult(video_id, str(path), "failed", FAILED_ERROR, tb, time.perf_counter() - t0)
    finally:
        lock.release()

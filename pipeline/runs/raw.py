"""A run's raw per-video outputs, saved in its folder so that post-processing presets and class rules are re-tuned
offline, without a forward pass (as OpenTAD saves and loads raw predictions).

For each subset a run scores (its test subset; ``heldout``: the training videos it held out), ``<run>/raw/`` holds
``<subset>.npz`` (``np.savez_compressed``, numeric arrays only: it loads with ``allow_pickle=False``) and
``<subset>.json``, its index. Per video ``v`` the arrays are the model's trimmed output of every inference sample,
concatenated over the samples (``v/class_scores [N, K]``, ``v/actionness [N]`` when the model has one,
``v/aux/<name> [N]`` for its aux outputs with one value per row, ``v/positions [N]``: each row's native snippet
position, ``v/sample_lengths [S]``) and the :class:`~clicktal.models.FrameScores` the run grouped
(``v/frame_scores/scores [R, C]``, ``.../video_scores [C]``, ``.../class_probs [R, C]``, ``.../actionness [R]``; R
native snippets, or frames for a per-frame model). The index names the classes, the weights (checkpoint file and
iteration), and per video its native grid, the grid of the frame-score rows, its snippet count and the duration its
segments are clipped to: everything :func:`regroup` needs to group them in seconds exactly as the run did.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clicktal.models import FrameScores
from clicktal.pipeline.core.files import atomic_write, atomic_write_text
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.core.postprocess import PostprocessConfig
from clicktal.pipeline.data.detections import Detection
from clicktal.pipeline.data.sampling import SampleGrid
from clicktal.pipeline.runs.inference import (LoadedRun, SampleOutput, VideoOutputs, group_scores, native_scores)

RAW_DIR = "raw"
HELDOUT = "heldout"  # the raw outputs of the training videos a run held out (``data.val_fraction``)
FORMAT = "clicktal raw outputs 1"


class RawOutputError(ValueError):
    """A run's raw outputs are missing, unreadable or not those of the weights asked about; the message is one
    line naming the file."""


@dataclass
class RawOutputs:
    """One subset's saved outputs: its videos (in the run's order), their classes, and the weights and index they
    came from."""

    subset: str
    classes: list[str]
    videos: dict[str, VideoOutputs]
    checkpoint: str  # file name of the weights that made them
    iteration: int
    path: Path  # the .npz
    changed_sources: dict[str, str] = field(default_factory=dict)


def raw_path(run_dir: str | os.PathLike, subset: str) -> Path:
    """``<run>/raw/<subset>.npz``."""
    return Path(run_dir) / RAW_DIR / f"{subset}.npz"


def save_raw(run_dir: str | os.PathLike, subset: str, videos: dict[str, VideoOutputs], *, classes: list[str],
             checkpoint: str, iteration: int, changed_sources: dict[str, str] | None = None) -> Path:
    """Write ``videos`` (from :func:`~clicktal.pipeline.runs.inference.score_videos`) as ``<run>/raw/<subset>.npz``
    and its index ``<subset>.json``, each atomically (the index last; it records the arrays' SHA-256, so an index
    and arrays of two different writes are told apart). ``checkpoint`` (file name) and ``iteration`` say which
    weights made them. Returns the .npz path."""
    path = raw_path(run_dir, subset)
    arrays: dict[str, np.ndarray] = {}
    index = {}
    for vid, v in videos.items():
        arrays[f"{vid}/class_scores"] = np.concatenate([s.class_scores for s in v.samples])
        if v.samples[0].actionness is not None:
            arrays[f"{vid}/actionness"] = np.concatenate([s.actionness for s in v.samples])
        for name in v.samples[0].aux:
            arrays[f"{vid}/aux/{name}"] = np.concatenate([s.aux[name] for s in v.samples])
        arrays[f"{vid}/positions"] = np.concatenate([s.grid.positions for s in v.samples])
        arrays[f"{vid}/sample_lengths"] = np.array([len(s.class_scores) for s in v.samples], dtype=np.int64)
        for name in ("scores", "video_scores", "class_probs", "actionness"):
            if getattr(v.scores, name) is not None:
                arrays[f"{vid}/frame_scores/{name}"] = np.asarray(getattr(v.scores, name))
        index[vid] = {"geometry": v.geometry.to_dict(), "num_snippets": v.samples[0].grid.num_native,
                      "score_grid": v.grid.to_dict(), "duration_s": v.duration_s, "aux": list(v.samples[0].aux)}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    data = buffer.getvalue()
    atomic_write(path, lambda f: f.write(data))
    atomic_write_text(path.with_suffix(".json"), json.dumps({
        "format": FORMAT, "subset": subset, "arrays": path.name, "sha256": hashlib.sha256(data).hexdigest(),
        "classes": list(classes), "checkpoint": checkpoint, "iteration": int(iteration),
        "changed_sources": changed_sources or {}, "videos": index}, indent=1))
    return path


def load_raw(run_dir: str | os.PathLike, subset: str) -> RawOutputs:
    """The raw outputs a run saved for ``subset``; a missing, corrupt or mismatched file is a
    :class:`RawOutputError` naming it (one line)."""
    path = raw_path(run_dir, subset)
    index_path = path.with_suffix(".json")
    if not index_path.is_file() or not path.is_file():
        missing = index_path if not index_path.is_file() else path
        raise RawOutputError(f"{missing}: no such file: the run saved no raw outputs for {subset!r} (trained before "
                             f"runs saved them, or never evaluated on it); evaluate it again with its features")
    try:
        index = json.loads(index_path.read_text())
        if index.get("format") != FORMAT:
            raise ValueError(f"format {index.get('format')!r}, expected {FORMAT!r}")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != index["sha256"]:
            raise ValueError(f"its arrays are not the ones {index_path.name} describes (a write was cut short?)")
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            videos = {vid: _video(z, vid, info) for vid, info in index["videos"].items()}
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise RawOutputError(f"{path}: not readable as raw outputs: "
                             + " ".join(f"{type(e).__name__}: {e}".split())) from None
    return RawOutputs(subset, list(index["classes"]), videos, index["checkpoint"], int(index["iteration"]), path,
                      dict(index.get("changed_sources") or {}))


def _video(z, vid: str, info: dict) -> VideoOutputs:
    geometry = FeatureGeometry.from_dict(info["geometry"])
    num = int(info["num_snippets"])
    get = lambda key: z[f"{vid}/{key}"] if f"{vid}/{key}" in z.files else None
    lengths = np.asarray(z[f"{vid}/sample_lengths"]).tolist()
    bounds = np.cumsum([0] + lengths)
    split = lambda a: None if a is None else [a[b:e] for b, e in zip(bounds[:-1], bounds[1:])]
    cls, act, pos = split(z[f"{vid}/class_scores"]), split(get("actionness")), split(z[f"{vid}/positions"])
    aux = {name: split(z[f"{vid}/aux/{name}"]) for name in info["aux"]}
    samples = [SampleOutput(SampleGrid(geometry, pos[i], num), cls[i], None if act is None else act[i],
                            {name: a[i] for name, a in aux.items()}) for i in range(len(lengths))]
    scores = FrameScores(z[f"{vid}/frame_scores/scores"], z[f"{vid}/frame_scores/video_scores"],
                         z[f"{vid}/frame_scores/class_probs"], get("frame_scores/actionness"))
    return VideoOutputs(scores, FeatureGeometry.from_dict(info["score_grid"]), samples, info["duration_s"])


def with_inference(run: LoadedRun, inference) -> LoadedRun:
    """A copy of ``run`` whose model makes frame scores with the typed inference config ``inference`` (e.g. an
    :class:`~clicktal.models.sfnet_config.SFNetInferenceConfig` with another ``video_score``); the weights are
    shared and ``run`` itself is left unchanged."""
    config = getattr(run.model, "config", None)
    current = getattr(config, "inference", None)
    if current is None:
        raise TypeError(f"model {run.config.model.name!r} has no inference options to replace")
    if type(inference) is not type(current):
        raise TypeError(f"model {run.config.model.name!r} takes a {type(current).__name__} as its inference "
                        f"config, got a {type(inference).__name__}")
    model = copy.copy(run.model)  # a shallow copy: the module's own attribute dict, the same weights
    model.config = dataclasses.replace(config, inference=inference)
    return dataclasses.replace(run, model=model)


def regroup(run: LoadedRun, subset: str, post: PostprocessConfig, *, inference=None) -> list[Detection]:
    """Detections of ``subset`` from the run's saved raw outputs, with no forward pass: the frame scores it grouped,
    grouped by ``post``; with ``inference`` (a typed inference config of the run's model, see
    :func:`with_inference`), frame scores made again from the saved model outputs under it. With the run's own
    post-processing and no ``inference`` these are the run's detections exactly. Outputs saved from other weights
    than ``run``'s are refused (:class:`RawOutputError`)."""
    raw = load_raw(run.checkpoint.parent, subset)
    check_weights(raw, run)
    if raw.classes != run.classes:
        raise RawOutputError(f"{raw.path}: classes {raw.classes} are not the run's {run.classes}")
    videos = raw.videos
    if inference is not None:
        videos = rescore(with_inference(run, inference), videos)
    return [d for vid, v in videos.items()
            for d in group_scores(v.scores, v.grid, raw.classes, vid, post, duration_s=v.duration_s)]


def rescore(run: LoadedRun, videos: dict[str, VideoOutputs]) -> dict[str, VideoOutputs]:
    """``videos`` with their frame scores made again from their saved sample outputs by ``run``'s model (its
    :meth:`~clicktal.models.base.Localizer.frame_scores` and inference config), without the network."""
    out = {}
    for vid, v in videos.items():
        frames = [run.model.frame_scores(s.output(run.device), 0) for s in v.samples]
        scores, grid = native_scores(run.model, [s.grid for s in v.samples], frames, v.geometry)
        out[vid] = dataclasses.replace(v, scores=scores, grid=grid)
    return out


def check_weights(raw: RawOutputs, run: LoadedRun) -> None:
    """Refuse raw outputs made by other weights than the run's (another checkpoint file, or the same file since
    retrained), naming both."""
    if (raw.checkpoint, raw.iteration) != (run.checkpoint.name, run.iteration):
        raise RawOutputError(f"{raw.path}: outputs of {raw.checkpoint} at iteration {raw.iteration}, not of the "
                             f"weights asked about ({run.checkpoint.name} at iteration {run.iteration})")


def clear_raw(run_dir: str | os.PathLike, *, temp_only: bool = False) -> list[Path]:
    """Remove what :func:`save_raw` wrote into ``<run>/raw`` (a run being replaced: no outputs of old weights may
    outlive it), or with ``temp_only`` only the temp files a killed write left; returns the files removed."""
    folder = Path(run_dir) / RAW_DIR
    if not folder.is_dir():
        return []
    patterns = [".*.tmp"] if temp_only else [".*.tmp", "*.npz", "*.json"]
    removed = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})
    for p in removed:
        p.unlink(missing_ok=True)
    if not temp_only and not any(folder.iterdir()):
        folder.rmdir()
    return removed


__all__ = ["RAW_DIR", "HELDOUT", "RawOutputError", "RawOutputs", "raw_path", "save_raw", "load_raw", "regroup",
           "rescore", "with_inference", "check_weights", "clear_raw"]

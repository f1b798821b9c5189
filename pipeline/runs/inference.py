"""Model -> frame scores -> detections.

Each video goes through the run's inference sampler (:mod:`clicktal.pipeline.data.sampling`: the whole video, tiles,
one resized sample, ...); the model says how each sample's output becomes frame scores
(:meth:`~clicktal.models.base.Localizer.frame_scores`); the samples' scores are mapped back onto the video's native
snippet grid, or onto its frames for a model that predicts per frame, and post-processing
(:mod:`clicktal.pipeline.postprocess.grouping`) groups them with a named preset into detections in seconds.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from clicktal.models import FrameScores, Localizer, LocalizerOutput, build_localizer
from clicktal.pipeline.core.config import ConfigError, FieldError, config_from_dict, config_to_dict, dump_config
from clicktal.pipeline.core.files import atomic_write_text
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.cache import FeatureMeta, FeatureSource
from clicktal.pipeline.data.contract import FeatureContract
from clicktal.pipeline.data.detections import Detection
from clicktal.pipeline.data.normalize import Normalization, normalized
from clicktal.pipeline.data.provenance import check_sources
from clicktal.pipeline.data.sampling import SampleGrid, Sampler, resample_features, to_native
from clicktal.pipeline.postprocess.grouping import PostprocessConfig, detect_segments
from clicktal.pipeline.core.locks import FolderLock
from clicktal.pipeline.runs.engine import (RunExistsError, atomic_torch_save, existing_run, load_checkpoint,
                                           remove_run_files, resolve_device)
from clicktal.pipeline.runs.schema import ExperimentConfig, PostprocessSpec, postprocess_config


SAMPLES_PER_CALL = 256


@dataclass
class SampleOutput:
    """One inference sample's model output, trimmed to its rows (numpy, the model's dtype): ``class_scores [L, K]``,
    ``actionness [L]`` or None, and ``aux``: the aux outputs with one value per row (``[L]``; e.g. BackTAL's feature
    magnitudes), with the sample's ``grid`` on the video's native snippets. What :func:`native_scores` needs to make
    the video's frame scores again under another inference config, without the network."""

    grid: SampleGrid
    class_scores: np.ndarray
    actionness: np.ndarray | None = None
    aux: dict[str, np.ndarray] = field(default_factory=dict)

    def output(self, device: torch.device | str = "cpu") -> LocalizerOutput:
        """The sample as a one-video :class:`LocalizerOutput` (``[1, L, K]``, every row valid)."""
        tensor = lambda a: torch.as_tensor(a, device=device)[None]
        mask = torch.ones(1, len(self.class_scores), dtype=torch.bool, device=device)
        return LocalizerOutput(tensor(self.class_scores), None if self.actionness is None else tensor(self.actionness),
                               mask, {k: tensor(v) for k, v in self.aux.items()})


@dataclass
class VideoOutputs:
    """One scored video: the :class:`FrameScores` post-processing groups and the grid their rows live on (the
    native snippets, or their frames), the samples' raw outputs that made them, and the duration its segments are
    clipped to (seconds; None: not clipped)."""

    scores: FrameScores
    grid: FeatureGeometry
    samples: list[SampleOutput]
    duration_s: float | None = None

    @property
    def geometry(self) -> FeatureGeometry:
        """The video's native snippet grid."""
        return self.samples[0].grid.native


@torch.no_grad()
def predict_scores(model: Localizer, features: np.ndarray, geometry: FeatureGeometry, *,
                   sampler: Sampler | None = None, device: torch.device | str = "cpu",
                   outputs_out: list | None = None) -> tuple[FrameScores, FeatureGeometry]:
    """One video's frame scores on its native grid: ``features [T, D]`` resampled on ``sampler``'s inference grids
    (whole video by default; the features only: inference makes no targets), in eval mode. Returns the scores and
    their grid: ``geometry`` itself, or its frames (``[T * f]`` rows) for a model whose ``output_resolution`` is
    ``"frame"``. A video's scores from several
    samples (tiles) are averaged where they overlap; its video-level scores are the maximum over the samples (a
    class present in any part is present in the video). Consecutive samples of one length (tiles) go through the
    model together, up to ``SAMPLES_PER_CALL`` at a time and unpadded, so a sample's output is what it is alone up
    to float rounding (7-snippet windows are otherwise a thousand tiny convolution calls per video).
    ``outputs_out`` receives each sample's :class:`SampleOutput` (for saving raw outputs)."""
    model.eval()
    grids = (sampler or Sampler()).inference_grids(geometry, int(features.shape[0]))
    outs = []
    start = 0
    while start < len(grids):
        stop = start + 1
        while (stop < len(grids) and stop - start < SAMPLES_PER_CALL
               and len(grids[stop].positions) == len(grids[start].positions)):
            stop += 1
        x = torch.tensor(np.stack([resample_features(features, g) for g in grids[start:stop]]),
                         dtype=torch.float32).to(device)
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=device)
        out = model(x, mask)
        outs.extend(model.frame_scores(out, i) for i in range(stop - start))
        if outputs_out is not None:
            outputs_out.extend(_sample_output(out, i, grids[start + i]) for i in range(stop - start))
        start = stop
    return native_scores(model, grids, outs, geometry)


def _sample_output(out: LocalizerOutput, index: int, grid: SampleGrid) -> SampleOutput:
    numpy = lambda t: t[index].detach().cpu().numpy()
    return SampleOutput(grid, numpy(out.class_scores), None if out.actionness is None else numpy(out.actionness),
                        {k: numpy(v) for k, v in out.aux.items() if v.dim() == 2})  # [B, L]: one value per row


def native_scores(model: Localizer, grids: Sequence[SampleGrid], outs: Sequence[FrameScores],
                  geometry: FeatureGeometry) -> tuple[FrameScores, FeatureGeometry]:
    """The samples' :class:`FrameScores` (``outs[i]`` on ``grids[i]``) as one video's scores on its native grid
    ``geometry`` (or its frames for a per-frame model), and that grid (see :func:`predict_scores`)."""
    per_frame = model.output_resolution == "frame"
    f = geometry.frames_per_snippet if per_frame else None
    native = lambda name: to_native(grids, [getattr(o, name) for o in outs], frames_per_snippet=f)
    scores = FrameScores(scores=native("scores"), video_scores=np.max([o.video_scores for o in outs], axis=0),
                         class_probs=native("class_probs"),
                         actionness=None if outs[0].actionness is None else native("actionness"))
    return scores, (geometry.frames() if per_frame else geometry)


def detect_video(model: Localizer, features: np.ndarray, geometry: FeatureGeometry, classes: Sequence[str],
                 video_id: str, post: PostprocessConfig, *, duration_s: float | None = None,
                 sampler: Sampler | None = None, device: torch.device | str = "cpu",
                 scores_out: dict | None = None) -> list[Detection]:
    """Detections of one video (seconds), best first; ``scores_out[video_id]`` receives its native-grid
    :class:`FrameScores` and their grid when given (for frame-level mAP and regrouping)."""
    fs, grid = predict_scores(model, features, geometry, sampler=sampler, device=device)
    if scores_out is not None:
        scores_out[video_id] = (fs, grid)
    return group_scores(fs, grid, classes, video_id, post, duration_s=duration_s)


def group_scores(scores: FrameScores, grid: FeatureGeometry, classes: Sequence[str], video_id: str,
                 post: PostprocessConfig, *, duration_s: float | None = None) -> list[Detection]:
    """One video's native-grid scores (from :func:`predict_scores`) grouped by ``post`` into detections."""
    return detect_segments(scores.scores, grid, classes, video_id, post, video_scores=scores.video_scores,
                           actionness=scores.actionness, duration_s=duration_s)


def infer_videos(model: Localizer, source: FeatureSource, video_ids: Iterable[str], classes: Sequence[str],
                 post: PostprocessConfig, *, durations: dict[str, float] | None = None,
                 sampler: Sampler | None = None, device: torch.device | str = "cpu",
                 scores_out: dict | None = None) -> list[Detection]:
    """Detections of every video in ``video_ids`` (features from ``source``), video after video."""
    out: list[Detection] = []
    for vid in video_ids:
        feats, meta = source.load(vid)
        out.extend(detect_video(model, feats, meta.geometry, classes, vid, post,
                                duration_s=(durations or {}).get(vid), sampler=sampler, device=device,
                                scores_out=scores_out))
    return out


def score_videos(model: Localizer, source: FeatureSource, video_ids: Iterable[str], *,
                 durations: dict[str, float] | None = None, sampler: Sampler | None = None,
                 device: torch.device | str = "cpu") -> dict[str, VideoOutputs]:
    """Every video of ``video_ids`` (features from ``source``) scored, not grouped: its frame scores, their grid,
    its samples' raw outputs and its duration from ``durations`` (for evaluation and saving raw outputs)."""
    out: dict[str, VideoOutputs] = {}
    for vid in video_ids:
        feats, meta = source.load(vid)
        samples: list[SampleOutput] = []
        fs, grid = predict_scores(model, feats, meta.geometry, sampler=sampler, device=device, outputs_out=samples)
        out[vid] = VideoOutputs(fs, grid, samples, (durations or {}).get(vid))
    return out


@dataclass
class LoadedRun:
    """A trained run: its model (eval mode), resolved config, classes, checkpoint and the feature contract its
    features must keep."""

    model: Localizer
    config: ExperimentConfig
    classes: list[str]
    checkpoint: Path
    device: torch.device
    contract: FeatureContract
    extraction: dict | None = None  # the extraction options of the training features (None: not extracted here)
    normalization: Normalization = field(default_factory=Normalization)  # applied to every feature it reads
    iteration: int = 0  # the training iteration the checkpoint's weights are from

    @property
    def sampler(self) -> Sampler:
        return Sampler(self.config.data.sampling)

    def check_features(self, source: FeatureSource, video_ids: Iterable[str], *, accept_changed_sources: bool = False,
                       note=None) -> dict[str, FeatureMeta]:
        """Each video's metadata, after checking it keeps the run's contract (a
        :class:`~clicktal.pipeline.data.contract.ContractError` names the first video that breaks it and the
        fields that differ) and was made from the source file still at its path
        (:func:`~clicktal.pipeline.data.provenance.check_sources`; ``accept_changed_sources`` uses them anyway and
        ``note`` names them)."""
        metas = {vid: source.meta(vid) for vid in video_ids}
        for vid, meta in metas.items():
            self.contract.check(FeatureContract.of(meta), f"video {vid}", expected=f"the run {self.checkpoint.parent}")
        check_sources(metas, accept=accept_changed_sources, where=str(getattr(source, "root", "the features")),
                      note=note)
        return metas

    def postprocess(self, preset: str | None = None, overrides: dict | None = None) -> PostprocessSpec:
        """The run's post-processing, or ``preset`` with the run's own overrides kept (a preset asked for on a tuned
        run must not silently drop its tuning), with ``overrides`` replacing fields on top; a
        :class:`ConfigError` names a field that does not fit."""
        spec = self.config.postprocess
        try:
            return PostprocessSpec(preset or spec.preset, {**spec.params, **(overrides or {})})
        except FieldError as e:
            raise ConfigError(f"postprocess.{e.key} (the run's, with the preset / overrides given): "
                              f"{e.reason}") from None

    def detect(self, source: FeatureSource, video_ids: Iterable[str], *, preset: str | None = None,
               overrides: dict | None = None, scores_out: dict | None = None, accept_changed_sources: bool = False,
               note=None) -> list[Detection]:
        """Detections (seconds) of ``video_ids`` from ``source`` with the run's post-processing, or ``preset``
        with the run's own overrides kept (a preset asked for on a tuned run must not silently drop its tuning),
        with ``overrides`` replacing fields on top. Each video's segments are clipped to its duration when its features
        record one. ``scores_out[video]`` receives each video's :class:`FrameScores` and their grid. Features made
        from a source file replaced since are refused unless ``accept_changed_sources`` (see
        :meth:`check_features`)."""
        post = postprocess_config(self.postprocess(preset, overrides))
        ids = list(video_ids)
        metas = self.check_features(source, ids, accept_changed_sources=accept_changed_sources, note=note)
        durations = {vid: float(d) for vid, meta in metas.items() if (d := meta.source.get("duration_s"))}
        return infer_videos(self.model, normalized(source, self.normalization), ids, self.classes, post,
                            durations=durations, sampler=self.sampler, device=self.device, scores_out=scores_out)


def load_run(run_dir: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
             device: str = "auto") -> LoadedRun:
    """Rebuild the model of a run folder from the config and metadata stored in its checkpoint.

    ``checkpoint`` defaults to the run's selected weights (``checkpoint_best.pt`` when the run selected on
    validation, else ``checkpoint_last.pt``)."""
    run_dir = Path(run_dir)
    if checkpoint is None:
        best, last = run_dir / "checkpoint_best.pt", run_dir / "checkpoint_last.pt"
        checkpoint = best if best.exists() else last
    checkpoint = Path(checkpoint)
    dev = resolve_device(device)
    ck = load_checkpoint(checkpoint, dev)
    cfg_dict, meta = ck.get("config"), ck.get("meta") or {}
    if not cfg_dict or "classes" not in meta:
        raise ValueError(f"{checkpoint}: no config or run metadata (written by clicktal's run_experiment?)")
    cfg = config_from_dict(ExperimentConfig, cfg_dict, str(checkpoint))
    contract = run_contract(meta, checkpoint)
    model, _ = build_localizer(cfg.model.name, cfg.model.typed, input_dim=contract.dim,
                               num_classes=len(meta["classes"]), streams=contract.streams, geometry=contract.geometry)
    model.load_state_dict(ck["model"])
    model.to(dev).eval()
    return LoadedRun(model, cfg, list(meta["classes"]), checkpoint, dev, contract, meta.get("extraction"),
                     Normalization.from_dict(meta.get("normalization"), str(checkpoint)), int(ck.get("iteration", 0)))


def match_class_names(classes: Sequence[str], names: Sequence[str], aliases: dict[str, str] | None = None
                      ) -> list[int]:
    """For each of ``classes``, the index in ``names`` of the same name (case and surrounding spaces ignored), or
    of ``aliases[class]``; -1 when there is none. An alias that names nothing in ``names`` is an error."""
    lookup = {n.strip().lower(): i for i, n in enumerate(names)}
    aliases = aliases or {}
    out = []
    for c in classes:
        name = aliases.get(c, c).strip().lower()
        if c in aliases and name not in lookup:
            raise ValueError(f"alias {c!r} -> {aliases[c]!r} names none of the {len(names)} classes")
        out.append(lookup.get(name, -1))
    return out


def write_untrained_run(run_dir: str | os.PathLike, config: ExperimentConfig, *, classes: Sequence[str],
                        contract: FeatureContract, extraction: dict | None, buffers: dict[str, torch.Tensor],
                        note: str, overwrite: bool = False) -> Path:
    """A run folder for a model that is not trained (the Kinetics baseline): its config, and a checkpoint at
    iteration 0 whose weights are the built model's with ``buffers`` filled in, so that :func:`load_run`,
    ``tools/detect.py`` and ``tools/infer.py`` use it as any run. ``note`` says in ``run_meta.json`` where the
    weights came from. A folder that already holds a run is refused (:class:`RunExistsError`) unless
    ``overwrite``. Returns the checkpoint's path."""
    model, params = build_localizer(config.model.name, config.model.typed, input_dim=contract.dim,
                                    num_classes=len(classes), streams=contract.streams, geometry=contract.geometry)
    state = model.state_dict()
    unknown = sorted(set(buffers) - set(state))
    if unknown:
        raise ValueError(f"model {config.model.name!r} has no tensors {unknown}")
    state.update(buffers)
    model.load_state_dict(state)
    cfg = replace(config, model=replace(config.model, params=params))
    meta = {"classes": list(classes), "contract": contract.to_dict(), "extraction": extraction, "trained": False,
            "note": note}
    out = Path(run_dir)
    with FolderLock(out, what="writing an untrained run"):
        held = existing_run(out)
        if held is not None and not overwrite:
            raise RunExistsError(f"{out}: already holds {held}; replace it with --overwrite, or write into another "
                                 f"folder")
        remove_run_files(out)
        dump_config(cfg, out / "config.yaml")
        atomic_write_text(out / "run_meta.json", json.dumps(meta, indent=1))
        path = out / "checkpoint_last.pt"
        atomic_torch_save({"iteration": 0, "model": model.state_dict(), "config": config_to_dict(cfg),
                           "meta": meta}, path)
    return path


def run_contract(meta: dict, where: str | os.PathLike) -> FeatureContract:
    """The feature contract a run recorded (``meta["contract"]``)."""
    if "contract" not in meta:
        raise ValueError(f"{where}: the run records no feature contract (trained before clicktal recorded one); "
                         f"retrain it to use it on new features")
    return FeatureContract.from_dict(meta["contract"])


__all__ = ["SampleOutput", "VideoOutputs", "predict_scores", "native_scores", "detect_video", "group_scores",
           "infer_videos", "score_videos", "LoadedRun", "load_run",
           "match_class_names", "run_contract", "write_untrained_run"]

"""One experiment end to end: train a localizer from a config, detect on the test subset, evaluate, and write
everything (resolved config, checkpoints, logs, detections, results, and the raw per-video outputs of the test and
held-out videos: :mod:`clicktal.pipeline.runs.raw`) into one run folder.

:func:`run_experiment` is what ``tools/train_localizer.py``, the ablation benchmark and the demo call;
:func:`evaluate_run` is ``--eval-only`` and ``clicktal-evaluate --run`` (another preset on the saved raw outputs,
without a forward pass). Model selection never looks at the test subset: a run ends with its last
weights, or with the best on a held-out part of the training subset (``train.select``), and the results say which.

Messages go to this module's logger (INFO; WARNING for what was repaired or left out), or to a ``log`` callable a
caller passes instead; a training run's console output is also kept in its folder as ``run.log``.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from clicktal.models import build_localizer

from clicktal.pipeline.data.annotations import GroundTruth, load_ground_truth, read_ambiguous
from clicktal.pipeline.core.config import (ConfigError, config_from_dict, config_to_dict, merge_overrides,
                                          parse_yaml_value)
from clicktal.pipeline.core.files import atomic_write_text, naming_full_disk, sweep_temp_files
from clicktal.pipeline.core.locks import FolderLock
from clicktal.pipeline.data.datasets import (DataBundle, load_data, label_counts, open_data_features,
                                            resolve_ground_truth)
from clicktal.pipeline.data.detections import Detection, write_detections
from clicktal.pipeline.data.labels import format_label_summary, label_statistics
from clicktal.pipeline.runs.engine import (RUN_FILES, RunExistsError, TrainResult, Trainer, existing_run,
                                           load_checkpoint, read_log, remove_run_files, resolve_device,
                                           seed_everything, validation_losses)
from clicktal.pipeline.core.postprocess import PostprocessConfig
from clicktal.pipeline.runs.schema import ExperimentConfig, postprocess_config
from clicktal.pipeline.data.sampling import Sampler
from clicktal.pipeline.evaluation.detection import evaluate_detections, frame_level_map
from clicktal.pipeline.runs.inference import VideoOutputs, group_scores, infer_videos, load_run, score_videos
from clicktal.pipeline.runs.raw import (HELDOUT, RawOutputError, RawOutputs, check_weights, clear_raw, load_raw,
                                        raw_path, save_raw)

logger = logging.getLogger(__name__)

Log = Callable[[str], object]  # a caller's receiver of messages (every level), instead of the logger


def _say(log: Log | None, level: int) -> Log:
    """Where a message of ``level`` goes: to ``log`` when the caller passes one, else to this module's logger."""
    return log if log is not None else partial(logger.log, level)


class _RunLog(logging.Handler):
    """A run's console output, kept in its folder as ``run.log`` (appended: a resumed run continues it): the records
    that reach the root logger from the thread that runs it (INFO and up when a tool runs it, whatever its console
    shows). Those from before the folder is known to be the run's (loading the data, the folder's lock, the check
    for a run already there) are held, and written when :meth:`open` names the file; if it never does, nothing is
    written."""

    def __init__(self):
        super().__init__()
        thread = threading.get_ident()
        self.addFilter(lambda record: record.thread == thread)  # runs in other threads keep their own files
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
        self.held: list[logging.LogRecord] = []
        self.file: logging.FileHandler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.file is None:
            self.held.append(record)
        else:
            self.file.handle(record)

    def open(self, path: Path) -> None:
        with naming_full_disk(path):
            self.file = logging.FileHandler(path, mode="a", encoding="utf-8")
        self.file.setFormatter(self.formatter)
        for record in self.held:
            self.file.handle(record)
        self.held.clear()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        super().close()


@contextmanager
def _run_log() -> Iterator[_RunLog]:
    """A :class:`_RunLog` on the root logger while the block runs."""
    handler, root = _RunLog(), logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        handler.close()


@dataclass
class ExperimentResult:
    """mAP (fractions) per reported tIoU and their average, plus where everything is and the results record."""

    name: str
    run_dir: Path
    mAP: dict[float, float]  # tIoU -> mAP over evaluation.tiou_thresholds
    average: float  # mean mAP over evaluation.average_over
    selected: str  # which weights: "last" or e.g. "val_loss@1500"
    train_seconds: float
    iterations: int
    detections: Path | None  # None: an evaluation that wrote nothing
    extra: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)  # what results.json holds

    def row(self, report: list[float]) -> list[float]:
        """mAP in percent at ``report`` thresholds, then the average."""
        return [100 * self.mAP[_key(self.mAP, t)] for t in report] + [100 * self.average]


def _key(d: dict[float, float], t: float) -> float:
    for k in d:
        if abs(k - t) < 1e-9:
            return k
    raise KeyError(f"tIoU {t} was not evaluated (evaluated: {sorted(d)})")


def apply_overrides(cfg: ExperimentConfig, overrides: dict | None, source: str = "<overrides>") -> ExperimentConfig:
    """``cfg`` with a nested mapping merged on top (checked like a YAML file)."""
    if not overrides:
        return cfg
    data = merge_overrides(config_to_dict(cfg), overrides)
    return config_from_dict(ExperimentConfig, data, source)


def parse_set(items: list[str]) -> dict:
    """``["train.iterations=500", "model.params.eta=7"]`` -> nested mapping (values parsed as YAML); a malformed item
    or value is a :class:`ConfigError` naming it."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = parse_yaml_value(value, f"--set {item}")
    return out


def _metadata(bundle: DataBundle) -> dict:
    """What rebuilding and applying the model needs: its classes, the whole feature contract, the feature
    normalisation it trained with and the extraction options of its features (``tools/detect.py`` extracts new
    videos with them); and which videos it saw, which ground-truth videos had no features and which were used
    although their source file changed."""
    options = bundle.source.meta(bundle.train.ids[0]).options
    return {"classes": bundle.classes, "contract": bundle.contract.to_dict(),
            "normalization": bundle.normalization.to_dict(),
            "extraction": options.get("signature"), "train_videos": list(bundle.train.ids),
            "heldout_videos": list(bundle.val.ids) if bundle.val else [],
            "videos_without_features": bundle.without_features, "changed_sources": bundle.changed_sources}


def _durations(gt: GroundTruth, ids) -> dict[str, float]:
    return {v: gt.videos[v].extent_s for v in ids if v in gt.videos}


def _evaluate(cfg: ExperimentConfig, gt: GroundTruth, detections: list[Detection], subset: str | None,
              ambiguous: dict | None):
    res = evaluate_detections(gt, detections, cfg.evaluation.tiou_thresholds, subset=subset, ambiguous=ambiguous,
                              ignore_unknown_labels=True)
    mAP = {float(t): float(m) for t, m in zip(res.tiou_thresholds, res.mAP)}
    avg = float(np.mean([mAP[_key(mAP, t)] for t in cfg.evaluation.average_over]))
    return res, mAP, avg


def _regroup(videos: dict[str, VideoOutputs], classes: list[str], post: PostprocessConfig) -> list[Detection]:
    """The scored videos' frame scores grouped with ``post`` (each clipped to its duration), video after video."""
    return [d for v, out in videos.items()
            for d in group_scores(out.scores, out.grid, classes, v, post, duration_s=out.duration_s)]


def _evaluate_groupings(cfg: ExperimentConfig, gt: GroundTruth, classes: list[str], videos: dict[str, VideoOutputs],
                        groupings: list[tuple[PostprocessConfig, tuple[float, ...]]], ambiguous: dict | None
                        ) -> tuple[dict[float, float], float, dict]:
    """A protocol whose recipe changes with the evaluation tIoU (``post.protocol.groupings``): the test scores
    grouped once per recipe, each grouping evaluated at its tIoUs alone. Returns the mAP per tIoU, the average over
    ``average_over`` and the evaluation's JSON record (with each tIoU's NMS threshold and detection count)."""
    mAP, record = {}, {"tiou_thresholds": [], "mAP": [], "nms_tiou": [], "n_detections": [], "per_class_AP": {}}
    for post_t, tious in groupings:
        dets = _regroup(videos, classes, post_t)
        res = evaluate_detections(gt, dets, list(tious), subset=cfg.data.test_subset, ambiguous=ambiguous,
                                  ignore_unknown_labels=True)
        for i, t in enumerate(tious):
            mAP[float(t)] = float(res.mAP[i])
            for key, value in (("tiou_thresholds", float(t)), ("mAP", mAP[float(t)]), ("nms_tiou", post_t.nms_tiou),
                               ("n_detections", len(dets))):
                record[key].append(value)
            for c, ap in res.per_class_AP.items():
                record["per_class_AP"].setdefault(c, []).append(float(ap[i]))
    avg = float(np.mean([mAP[_key(mAP, t)] for t in cfg.evaluation.average_over]))
    record["average_mAP"] = float(np.mean(record["mAP"]))
    return mAP, avg, record


def _frame_map(gt: GroundTruth, classes: list[str], scored: dict[str, VideoOutputs], subset: str) -> dict:
    """Frame-level mAP (the frame-segmentation papers' metric) of the test videos' native-grid scores: per snippet,
    or per frame for a model that predicts frames. Videos of the subset without features are left out, and counted."""
    grids = {out.grid for out in scored.values()}
    if len(grids) != 1:
        raise ValueError(f"frame-level mAP needs one grid for all videos, got {sorted(map(str, grids))}")
    videos = {v: gt.videos[v] for v in scored}
    res = frame_level_map(GroundTruth(videos, source=gt.source), {v: out.scores.scores for v, out in scored.items()},
                          classes, grids.pop())
    return {"mAP": res.mAP, "per_class_AP": res.per_class_AP, "videos": len(videos),
            "videos_without_features": len(gt.subset(subset)) - len(videos)}


def make_validator(cfg: ExperimentConfig, bundle: DataBundle, device):
    """Validation on the held-out training videos: loss on their clicks and mAP against their boundaries."""
    if bundle.val is None:
        return None
    post = postprocess_config(cfg.postprocess)
    held = GroundTruth({v: bundle.gt.videos[v] for v in bundle.val.ids}, source="held-out training videos")
    sampler = Sampler(cfg.data.sampling)

    def validate(model, iteration: int) -> dict[str, float]:
        terms = validation_losses(model, bundle.val, iteration, device, sampler)
        out = {"val_loss": terms.pop("total"), **{f"val_{k}": v for k, v in terms.items()}}
        dets = infer_videos(model, bundle.source, bundle.val.ids, bundle.classes, post,
                            durations=_durations(bundle.gt, bundle.val.ids), sampler=sampler, device=device)
        if held.classes():
            _, _, out["val_map"] = _evaluate(cfg, held, dets, None, None)
        return out

    return validate


def write_label_report(bundle: DataBundle, out: Path, *, log: Log | None = None) -> dict:
    """``labels.json`` in the run folder: how many labels of each kind every training video got and how many fall
    inside / outside its ground-truth actions, and what the label files' readers kept and skipped; a summary is
    logged (INFO)."""
    log = _say(log, logging.INFO)
    used = set(bundle.train.ids) | set(bundle.val.ids if bundle.val else ())
    stats = label_statistics({v: s for v, s in bundle.labels.supervision.items() if v in used}, bundle.gt)
    stats["files"] = [r.summary() for r in bundle.labels.reports]
    atomic_write_text(out / "labels.json", json.dumps(stats, indent=1))
    log(format_label_summary(stats))
    for line in stats["files"]:
        log(f"  {line}")
    return stats




def run_experiment(cfg: ExperimentConfig, out_dir: str | os.PathLike, *, resume: bool = False,
                   overwrite: bool = False, evaluate: bool = True, stop_after: int | None = None,
                   log: Log | None = None) -> ExperimentResult | TrainResult:
    """Train ``cfg`` into ``out_dir``; then (``evaluate``) detect on ``cfg.data.test_subset``, write
    ``detections.json`` and ``results.json`` and return the :class:`ExperimentResult`. ``stop_after`` ends training
    early with a checkpoint (for tests of resuming) and returns the :class:`TrainResult`. The label summary
    (``labels.json`` has the details) is logged as INFO; the ground-truth videos without features and what the
    trainer repairs on its own as warnings; ``log``, when given, receives them all instead. What the run logs
    (the engine's progress too) is appended to ``run.log`` in the run folder.

    The run folder has one writer: its lock (:class:`~clicktal.pipeline.core.locks.FolderLock`) is held throughout,
    and a second run on it is refused naming the holder. A folder that already holds a run is refused
    (:class:`RunExistsError`, naming it and its last iteration) unless ``resume`` continues it or ``overwrite``
    replaces it. ``resume`` first checks the run's checkpoint against ``cfg`` (:meth:`Trainer.resume_checkpoint`:
    a config that changes training is refused, naming the keys) and writes nothing into the run folder before
    that."""
    out = Path(out_dir)
    with _run_log() as run_log:
        return _run_experiment(cfg, out, resume, overwrite, evaluate, stop_after, log, run_log)


def _run_experiment(cfg: ExperimentConfig, out: Path, resume: bool, overwrite: bool, evaluate: bool,
                    stop_after: int | None, log: Log | None, run_log: _RunLog) -> ExperimentResult | TrainResult:
    """:func:`run_experiment`, its records going to ``run_log``, opened once the folder is known to be the run's."""
    info, warn = _say(log, logging.INFO), _say(log, logging.WARNING)
    seed = cfg.train.seed
    bundle = load_data(cfg.data, seed=seed, kinds=cfg.model.targets, note=warn)
    meta = _metadata(bundle)
    seed_everything(seed, cfg.train.deterministic)  # the initial weights are part of what the seed reproduces
    contract = bundle.contract
    model, params = build_localizer(cfg.model.name, cfg.model.typed, input_dim=contract.dim,
                                    num_classes=len(bundle.classes), streams=contract.streams,
                                    geometry=contract.geometry)
    cfg = replace(cfg, model=replace(cfg.model, params=params))
    meta["labels"] = label_counts(bundle.train)
    device = resolve_device(cfg.train.device)
    trainer = Trainer(model, bundle.train, cfg.train, out, sampler=Sampler(cfg.data.sampling),
                      validator=make_validator(cfg, bundle, device), resolved_config=cfg, metadata=meta, note=warn)
    with FolderLock(out, what="training"):
        if resume:
            trainer.resume_checkpoint()
        elif (held := existing_run(out)) is not None:
            if not overwrite:
                raise RunExistsError(f"{out}: already holds {held}; continue it with --resume, replace it with "
                                     f"--overwrite, or train into another folder")
            remove_run_files(out)
            clear_raw(out)
            info(f"{out}: replaced {held} (--overwrite)")
        # the run folder's one writer is starting
        run_log.open(out / "run.log")
        stale = sweep_temp_files(out, list(RUN_FILES)) + clear_raw(out, temp_only=True)
        if stale:
            warn(f"{out}: removed {len(stale)} temp file(s) a killed run left: {', '.join(p.name for p in stale)}")
        write_label_report(bundle, out, log=log)
        atomic_write_text(out / "run_meta.json", json.dumps(meta, indent=1))
        result = trainer.fit(resume=resume, stop_after=stop_after)
        if stop_after is not None and result.iterations < cfg.train.iterations or not evaluate:
            return result
        ck = load_checkpoint(result.checkpoint, trainer.device)
        model.load_state_dict(ck["model"])
        return _detect_and_evaluate(model, cfg, bundle, out, result.selected, result.seconds, result.iterations,
                                    trainer.device, (result.checkpoint.name, int(ck["iteration"])), log=log)


def _detect_and_evaluate(model, cfg: ExperimentConfig, bundle: DataBundle, out: Path, selected: str,
                         seconds: float, iterations: int, device, weights: tuple[str, int], *, write: bool = True,
                         log: Log | None = None) -> ExperimentResult:
    """Score the test videos with ``model`` (the weights ``weights``: checkpoint file name and iteration), save
    their raw outputs in ``out/raw`` with the held-out training videos' (when the run holds some out: for tuning
    post-processing offline, never on the test subset), then group, evaluate and write the results (without
    ``write`` nothing is written)."""
    t0 = time.perf_counter()
    sampler = Sampler(cfg.data.sampling)
    videos = score_videos(model, bundle.source, bundle.test_ids, durations=_durations(bundle.gt, bundle.test_ids),
                          sampler=sampler, device=device)
    dets = _regroup(videos, bundle.classes, postprocess_config(cfg.postprocess))
    infer_s = time.perf_counter() - t0
    checkpoint, iteration = weights
    if write:
        save_raw(out, cfg.data.test_subset, videos, classes=bundle.classes, checkpoint=checkpoint,
                 iteration=iteration, changed_sources=bundle.changed_sources)
    if write and bundle.val is not None:
        held = score_videos(model, bundle.source, bundle.val.ids, durations=_durations(bundle.gt, bundle.val.ids),
                            sampler=sampler, device=device)
        save_raw(out, HELDOUT, held, classes=bundle.classes, checkpoint=checkpoint, iteration=iteration)
    extra = {"n_detections": len(dets), "inference_seconds": infer_s,
             "test_videos_without_features": bundle.without_features.get(cfg.data.test_subset, []),
             "changed_sources": bundle.changed_sources}
    return _evaluate_and_write(cfg, bundle.gt, bundle.classes, videos, dets, out, selected, seconds, iterations,
                               extra, write=write, log=log)


def _evaluate_and_write(cfg: ExperimentConfig, gt: GroundTruth, classes: list[str], videos: dict[str, VideoOutputs],
                        dets: list[Detection], out: Path, selected: str, seconds: float, iterations: int,
                        extra: dict, *, write: bool = True, log: Log | None = None) -> ExperimentResult:
    """Evaluate the test videos' detections ``dets`` (grouped from ``videos`` with ``cfg.postprocess``) as the
    config asks, and (``write``) write ``detections.json`` and ``results.json`` into the run folder ``out``."""
    post = postprocess_config(cfg.postprocess)
    ambiguous = read_ambiguous(cfg.data.ambiguous) if cfg.data.ambiguous and cfg.evaluation.use_ambiguous else None
    res, mAP, avg = _evaluate(cfg, gt, dets, cfg.data.test_subset, ambiguous)
    extra = {**extra, "n_ambiguous_dropped": res.n_ambiguous, "n_outside_video": res.n_outside_video}
    evaluation = res.to_json()
    groupings = post.protocol.groupings(post, cfg.evaluation.tiou_thresholds)
    if [recipe for recipe, _ in groupings] != [post]:  # the standard protocol's is the evaluation above
        mAP, avg, evaluation = _evaluate_groupings(cfg, gt, classes, videos, groupings, ambiguous)
        evaluation["note"] = post.protocol.note(post)
    if cfg.evaluation.frame_map:
        extra["frame_mAP"] = _frame_map(gt, classes, videos, cfg.data.test_subset)
    if cfg.evaluation.without_class_selection:
        every_class = _regroup(videos, classes, replace(post, class_threshold=None, class_ratio=None))
        _, plain, plain_avg = _evaluate(cfg, gt, every_class, cfg.data.test_subset, ambiguous)
        extra["mAP_without_class_selection"] = {f"{t:.2f}": m for t, m in plain.items()}
        extra["average_mAP_without_class_selection"] = plain_avg
    validations = (read_log(out / "val_log.jsonl", _say(log, logging.WARNING)) if (out / "val_log.jsonl").exists()
                   else [])
    if validations:
        extra["last_validation"] = validations[-1]
    det_path = out / "detections.json" if write else None
    record = {
        "name": cfg.name, "features": cfg.data.features, "subset": cfg.data.test_subset, "selected": selected,
        "iterations": iterations, "train_seconds": seconds, "mAP": {f"{t:.2f}": m for t, m in mAP.items()},
        "average_mAP": avg, "average_over": cfg.evaluation.average_over, "evaluation": evaluation,
        "postprocess": {"preset": cfg.postprocess.preset, "params": dict(cfg.postprocess.params)}, **extra,
        "note": "model selection never used the test subset"}
    result = ExperimentResult(cfg.name, out, mAP, avg, selected, seconds, iterations, det_path, extra, record)
    if write:
        write_detections(det_path, dets, version=cfg.name, external_data={"selected": selected})
        # config.yaml stays the training config (written by the trainer); what this evaluation used is recorded here
        atomic_write_text(out / "results.json", json.dumps(record, indent=1))
    return result


def evaluate_run(run_dir: str | os.PathLike, *, features: str | None = None, checkpoint: str | None = None,
                 subset: str | None = None, preset: str | None = None, overrides: dict | None = None,
                 write: bool = True, log: Log | None = None) -> ExperimentResult:
    """``--eval-only``: the run's selected (or given) checkpoint on the test subset (or ``subset``), grouped with the
    run's post-processing, or ``preset`` (the run's own overrides kept) with ``overrides`` (post-processing fields)
    on top. Without ``features``, the subset's raw outputs the run saved (``raw/<subset>.npz``) are regrouped when
    they are the checkpoint's (no forward pass; ``extra["scores_from"]`` names the file); else the videos are scored
    again from the features (``features``, default the run's) and their raw outputs saved. ``write``: detections and
    results replace the run's own ``detections.json`` and ``results.json``; without it nothing is written (the
    result's ``record`` holds what ``results.json`` would). Messages as :func:`run_experiment`'s."""
    warn = _say(log, logging.WARNING)
    run = load_run(run_dir, checkpoint=checkpoint)
    cfg = run.config
    data = replace(cfg.data, features=features or cfg.data.features,
                   test_subset=subset or cfg.data.test_subset)
    cfg = replace(cfg, data=data, postprocess=run.postprocess(preset, overrides))
    previous, train_s = Path(run_dir) / "results.json", 0.0
    if previous.exists():
        try:
            train_s = json.loads(previous.read_text()).get("train_seconds", 0.0)
        except ValueError as e:  # a results file of an older, non-atomic write, cut short
            warn(f"{previous}: not readable ({e}); its training time is lost, recorded as 0")
    selected = {"checkpoint_best.pt": "best", "checkpoint_last.pt": "last"}.get(run.checkpoint.name,
                                                                                str(run.checkpoint))
    out = Path(run_dir)
    if features is None and raw_path(out, data.test_subset).is_file():
        raw = load_raw(out, data.test_subset)
        try:
            check_weights(raw, run)
        except RawOutputError as e:
            warn(f"{e}; scoring the videos again from the features")
        else:
            return _evaluate_raw(cfg, run.classes, raw, out, selected, train_s, run.iteration, write=write, log=log)
    bundle = load_data(cfg.data, seed=cfg.train.seed, contract=run.contract, normalization=run.normalization,
                       note=warn)
    if bundle.classes != run.classes:
        raise ValueError(f"the run was trained on classes {run.classes}, the data has {bundle.classes}")
    with FolderLock(out, what="evaluation") if write else nullcontext():
        return _detect_and_evaluate(run.model, cfg, bundle, out, selected, train_s, run.iteration, run.device,
                                    (run.checkpoint.name, run.iteration), write=write, log=log)


def _evaluate_raw(cfg: ExperimentConfig, classes: list[str], raw: RawOutputs, out: Path, selected: str,
                  seconds: float, iterations: int, *, write: bool, log: Log | None = None) -> ExperimentResult:
    """Evaluate the test videos' saved raw outputs ``raw`` grouped with ``cfg.postprocess``, without the network
    or the features."""
    if raw.classes != classes:
        raise RawOutputError(f"{raw.path}: classes {raw.classes} are not the run's {classes}")
    gt = (load_ground_truth(cfg.data.ground_truth) if cfg.data.ground_truth
          else resolve_ground_truth(cfg.data, open_data_features(cfg.data)))
    dets = _regroup(raw.videos, classes, postprocess_config(cfg.postprocess))
    extra = {"n_detections": len(dets), "scores_from": str(raw.path),
             "test_videos_without_features": [v for v in sorted(gt.subset(cfg.data.test_subset))
                                              if v not in raw.videos],
             "changed_sources": raw.changed_sources}
    _say(log, logging.INFO)(f"scores: the raw outputs saved in {raw.path} (no forward pass)")
    with FolderLock(out, what="evaluation") if write else nullcontext():
        return _evaluate_and_write(cfg, gt, classes, raw.videos, dets, out, selected, seconds, iterations, extra,
                                   write=write, log=log)


__all__ = ["ExperimentResult", "RunExistsError", "run_experiment", "evaluate_run", "apply_overrides", "parse_set", "make_validator"]

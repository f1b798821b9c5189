"""The training engine every localizer shares: seeded batches, optimiser, clipping, checkpoints that resume exactly,
a NaN/inf guard, periodic validation and a log of every loss term.

Exact resume: the batch of iteration ``i`` is drawn from a generator that is a pure function of ``(seed, i)``
(:func:`~clicktal.pipeline.data.datasets.batch_rng`), and a checkpoint holds the model's weights, the state its method
keeps beside them (``Localizer.training_state``, such as SF-Net's kept mined labels), the optimiser, the torch /
numpy / python RNG states and the iteration; so a run killed and resumed ends with the same weights as one that was
never interrupted. A checkpoint holds tensors and plain values only and
is read with torch's restricted unpickler (:func:`load_checkpoint`): run folders are shared, and a pickle that
names a callable is refused before anything in it runs.

Run folder layout (``out``): ``config.yaml`` (the full resolved config), ``checkpoint_last.pt``
(``checkpoint_best.pt`` when selecting on validation), ``train_log.jsonl`` and ``train_log.csv`` (one row per
iteration: every loss term, gradient norm, learning rate, seconds), ``val_log.jsonl``, and (``train.tensorboard``)
TensorBoard event files ``events.out.tfevents.*`` holding the same numbers, the validation scores and the mining
yield (:class:`_Board`).

Watching: messages go through :mod:`logging` (one logger per module); :func:`console_logging` is the tools' console
and ``run.log`` (:mod:`~clicktal.pipeline.runs.experiments`) keeps it in the run folder. Progress is a tqdm bar on a
terminal, else a log line every 5 % of the schedule or 30 s (:class:`_Progress`).

Faults: a resume reads the checkpoint and the logs and names the file in every error (:class:`CheckpointError`);
the last log line, cut short by a kill or a full disk during its append, is dropped with a note. A resume whose
config differs from the one the checkpoint was trained with in anything that changes training is refused, naming
the keys (:class:`ResumeError`; what may change: ``schema.RESUME_MAY_CHANGE``). A run folder has one writer, the
training process, so temp files of atomic writes found there when training starts are left over from a killed run
and are removed. A full disk raises :class:`~clicktal.pipeline.core.files.DiskFullError` naming the file.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib.util
import io
import json
import logging
import math
import os
import pickle
import random
import re
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from clicktal.models import localizer_config
from clicktal.models.base import Localizer
from clicktal.pipeline.core.config import config_from_dict, config_to_dict, dump_config
from clicktal.pipeline.core.files import atomic_write, atomic_write_text, naming_full_disk, sweep_temp_files
from clicktal.pipeline.data.datasets import TrainingContext, VideoDataset, batch_rng, collate, sample_batch
from clicktal.pipeline.data.sampling import Sampler
from clicktal.pipeline.runs.schema import (RESUME_MAY_CHANGE, RESUME_MAY_CHANGE_WITHOUT_VALIDATION, OptimConfig,
                                           TrainConfig, resume_conflicts)

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A loss term or the gradient went NaN/inf; the message names the iteration and the term."""

    def __init__(self, iteration: int, term: str, value: float):
        super().__init__(f"iteration {iteration}: {term} is {value} (not finite); training stopped")
        self.iteration, self.term, self.value = iteration, term, value


class CheckpointError(ValueError):
    """A checkpoint or run log that cannot be read or resumed from; the message names the file (and the line)."""


class ResumeError(ValueError):
    """A resume refused because the config changed what the run trains; the message names the file and keys."""


class RunExistsError(ValueError):
    """Writing a new run into a folder that already holds one, unasked (no resume, no overwrite)."""


TRAINER_FILES = ("checkpoint_last.pt", "checkpoint_best.pt", "config.yaml", "train_log.jsonl", "train_log.csv",
                 "val_log.jsonl", "val_log.csv")
RUN_FILES = ("labels.json", "run_meta.json", "detections.json", "results.json",
             "run.log")  # an experiment's, besides the trainer's
EVENT_FILES = "events.out.tfevents.*"  # the trainer's TensorBoard event files (one per fit), a glob pattern
RUN_RESULT_FILES = ("checkpoint_last.pt", "checkpoint_best.pt", "train_log.jsonl", "results.json", "detections.json")


def remove_run_files(out: Path) -> None:
    """Remove every file a run writes into ``out`` (a run being replaced: none may outlive it, such as a stale
    ``checkpoint_best.pt`` that :func:`~clicktal.pipeline.runs.inference.load_run` would pick)."""
    for name in TRAINER_FILES + RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for path in out.glob(EVENT_FILES):
        path.unlink()


def existing_run(out: Path) -> str | None:
    """What the folder ``out`` already holds of a run, in words (its last logged iteration and its files), or None
    when it holds none."""
    found = [name for name in RUN_RESULT_FILES if (out / name).exists()]
    if not found:
        return None
    try:
        rows = read_log(out / "train_log.jsonl", lambda _: None) if (out / "train_log.jsonl").exists() else []
        last = f"trained to iteration {rows[-1]['iteration']}" if rows else "no logged iteration"
    except (OSError, ValueError) as e:
        last = f"an unreadable log ({e})"
    return f"a run ({last}; {', '.join(found)})"


class ConsoleHandler(logging.Handler):
    """The tools' console: records below WARNING on stdout as bare lines (what ``print`` wrote before), WARNING and
    up on stderr prefixed with their level (``warning: ...``). The streams are looked up at each record, so a
    redirected ``sys.stdout`` (a test's capture) is followed."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.WARNING:
                stream, text = sys.stderr, f"{record.levelname.lower()}: {text}"
            else:
                stream = sys.stdout
            stream.write(text + "\n")
            stream.flush()
        except Exception:  # logging's contract: a failing handler reports itself, never raises into the caller
            self.handleError(record)


@contextmanager
def console_logging(level: int = logging.INFO) -> Iterator[None]:
    """What a tool shows while the block runs: records of ``level`` and up on the console (:class:`ConsoleHandler`
    on the root logger). clicktal's loggers log INFO (DEBUG too at ``level`` DEBUG) whatever the console shows, so
    a run's ``run.log`` keeps them under ``--quiet``; other libraries keep their levels. The logging setup before
    the block is restored after it."""
    root, package = logging.getLogger(), logging.getLogger("clicktal")
    handler, package_level = ConsoleHandler(level), package.level
    root.addHandler(handler)
    package.setLevel(min(level, logging.INFO))
    try:
        yield
    finally:
        root.removeHandler(handler)
        package.setLevel(package_level)


def add_log_options(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet`` and ``-v/--verbose``, read by :func:`log_level`."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="show warnings and errors only")
    group.add_argument("-v", "--verbose", action="store_true", help="show debug messages too")


def log_level(args: argparse.Namespace) -> int:
    """The console level that :func:`add_log_options`'s flags ask for (INFO without them)."""
    return logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int
    checkpoint: Path  # the weights the run ends with (last or best by validation)
    selected: str  # "last" or e.g. "val_loss@1500"
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device {name!r}: torch sees no CUDA device here; use auto or cpu")
    return device


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def _numpy_array_globals() -> list:
    """The pickle globals of a plain numpy array (its constructor, class and dtypes), which checkpoints written
    before the numpy RNG state was stored as a tensor hold. Allowing them lets no code run: they only rebuild an
    array, and any object inside one goes through the same restricted unpickler."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return [_reconstruct, np.ndarray, np.dtype, *{type(np.dtype(t)) for t in ("uint32", "float64", "int64")}]


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint written by :class:`Trainer`, read with torch's restricted unpickler: tensors, plain values and
    numpy arrays only, so no code in the file can run. :class:`CheckpointError` naming the file when it holds
    anything else (a pickled callable: refused before it runs), is truncated, damaged or not a checkpoint;
    FileNotFoundError when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            ck = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        refused = re.search(r"(?:Unsupported global|Unsupported operand|unsupported)[^\n]*", str(e))
        raise CheckpointError(
            f"{path}: refused: it holds objects other than tensors and plain values "
            f"({refused.group(0).strip() if refused else _first_line(e)}), which a clicktal checkpoint never does; "
            f"it was not run. Do not use a file from an untrusted source; retrain, or convert it with trusted "
            f"code into tensors and plain values") from None
    except Exception as e:  # torch reports a truncated zip, a damaged file, ... each its own way
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or damaged?): "
                              f"{type(e).__name__}: {_first_line(e)}") from None
    missing = [k for k in ("iteration", "model") if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise CheckpointError(f"{path}: not a clicktal checkpoint: missing {', '.join(missing)}")
    return ck


def _rng_state() -> dict:
    """The torch / numpy / python / CUDA RNG states as tensors and plain values (what :func:`load_checkpoint`
    reads without allowing anything else)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": {"bit_generator": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(rng: dict) -> None:
    """Restore :func:`_rng_state`'s states (the numpy one also as the tuple older checkpoints hold)."""
    torch.set_rng_state(rng["torch"])
    state = rng["numpy"]
    if isinstance(state, dict):
        state = (state["bit_generator"], np.asarray(state["keys"], dtype=np.int64).astype(np.uint32), state["pos"],
                 state["has_gauss"], state["cached_gaussian"])
    np.random.set_state(state)
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


_RESUME_KEYS = ("iteration", "model", "optimizer", "rng")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


def read_log(path: Path, note: Callable[[str], None]) -> list[dict]:
    """The rows of a JSONL run log. Its last line, when cut short (a kill or a full disk while it was appended),
    is dropped and ``note`` says so; any other line that is not a JSON object with an integer ``iteration`` is a
    :class:`CheckpointError` naming the file and line."""
    lines = [(no, line) for no, line in enumerate(path.read_bytes().decode("utf-8", "replace").split("\n"), 1)
             if line.strip()]
    rows = []
    for no, line in lines:
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or type(row.get("iteration")) is not int:
                raise ValueError("not an object with an integer 'iteration'")
        except ValueError as e:
            if no == lines[-1][0]:
                note(f"{path}: line {no} is cut short (the run was killed or the disk filled while it was "
                     f"written); dropped")
                break
            raise CheckpointError(f"{path}: line {no}: not a log row ({e}); only the last line may be cut "
                                  f"short, so this log was changed by something else") from None
        rows.append(row)
    return rows


class _Log:
    """``<name>.jsonl`` + ``<name>.csv``; on resume, rows past the checkpoint's iteration are dropped (and a
    cut-short last line, see :func:`read_log`), and with ``complete`` a log that stops short of the checkpoint is
    noted."""

    def __init__(self, run_dir: Path, name: str, resume_at: int | None, note: Callable[[str], None],
                 complete: bool = False):
        self.jsonl, self.csv = run_dir / f"{name}.jsonl", run_dir / f"{name}.csv"
        rows = []
        if resume_at is not None and self.jsonl.exists():
            rows = [r for r in read_log(self.jsonl, note) if r["iteration"] <= resume_at]
            last = rows[-1]["iteration"] if rows else 0
            if complete and last < resume_at:
                note(f"{self.jsonl}: ends at iteration {last}, the checkpoint at {resume_at}: the rows in between "
                     f"were lost (a crash before they reached the disk); the log keeps that gap")
        self.columns: list[str] | None = list(rows[0]) if rows else None
        atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in rows))
        if rows:
            atomic_write_text(self.csv, self._csv_text(rows, header=True))
        else:
            self.csv.unlink(missing_ok=True)
        self.rows = rows

    def _csv_text(self, rows: list[dict], header: bool) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore")
        if header:
            w.writeheader()
        w.writerows(rows)
        return buf.getvalue()

    def write(self, row: dict) -> None:
        new = self.columns is None
        if new:
            self.columns = list(row)
        for path, text in ((self.jsonl, json.dumps(row) + "\n"), (self.csv, self._csv_text([row], header=new))):
            with naming_full_disk(path), path.open("a", newline="") as f:
                f.write(text)
        self.rows.append(row)


Validator = Callable[[Localizer, int], dict[str, float]]


def _model_params_resolved(config: dict) -> dict:
    """``config`` with ``model.params`` through today's schema of its localizer, so that an option added since a run
    was saved takes its default (the behaviour the run trained with) on both sides of a resume check. Params that
    today's schema rejects are compared as stored."""
    model = config.get("model")
    if not (isinstance(model, dict) and isinstance(model.get("name"), str) and isinstance(model.get("params"), dict)):
        return config
    try:
        params = config_to_dict(localizer_config(model["name"], model["params"]))
    except (KeyError, ValueError):
        return config
    return {**config, "model": {**model, "params": params}}


class Trainer:
    """Trains ``model`` on ``train_set`` under ``cfg``, writing into ``run_dir``.

    ``validator(model, iteration) -> {"val_loss": ..., "val_map": ...}`` runs every ``cfg.validate_every``
    iterations when given (it must only look at held-out training videos). ``sampler`` draws the training samples
    (``DataConfig.sampling``; whole videos by default). ``resolved_config`` is written to ``run_dir/config.yaml``
    and, with ``metadata`` (what rebuilding the model needs: classes, input width, streams), into every checkpoint.
    ``note`` receives what the trainer repairs on its own (a cut-short log line, stale temp files); a warning of
    this module's logger by default. With ``cfg.tensorboard`` the tensorboard package must be installed (checked
    here, before any work).
    """

    def __init__(self, model: Localizer, train_set: VideoDataset, cfg: TrainConfig, run_dir: str | os.PathLike, *,
                 sampler: Sampler | None = None, validator: Validator | None = None,
                 resolved_config: Any = None, metadata: dict | None = None,
                 note: Callable[[str], None] | None = None):
        self.model, self.train_set, self.cfg = model, train_set, cfg
        self.run_dir = Path(run_dir)
        self.sampler = sampler or Sampler()
        self.validator = validator
        self.resolved_config = resolved_config
        self.metadata = dict(metadata or {})
        self.note = note or logger.warning
        self.device = resolve_device(cfg.device)
        if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise ValueError("train.tensorboard: the tensorboard package is not installed; install it (pip install "
                             "tensorboard) or set train.tensorboard=false")
        self._resume_ck: dict | None = None
        if cfg.select != "last" and (validator is None or cfg.validate_every <= 0):
            raise ValueError(f"train.select {cfg.select!r} needs a held-out validation set (data.val_fraction > 0) "
                             f"and train.validate_every > 0")

    @property
    def last_path(self) -> Path:
        return self.run_dir / "checkpoint_last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoint_best.pt"

    def _state(self, iteration: int, optimizer, best: dict) -> dict:
        return {"iteration": iteration, "model": self.model.state_dict(), "optimizer": optimizer.state_dict(),
                "method_state": self.model.training_state(), "rng": _rng_state(),
                "best": best, "config": self._config_dict(), "train_config": config_to_dict(self.cfg),
                "meta": self.metadata}

    def _config_dict(self):
        cfg = self.resolved_config
        if cfg is None:
            return None
        return cfg if isinstance(cfg, dict) else config_to_dict(cfg)

    def resume_checkpoint(self) -> dict:
        """``checkpoint_last.pt``, read and checked for a resume (once; :meth:`fit` reuses it): readable and
        complete, trained with a config that differs from this one in nothing that changes training
        (:func:`~clicktal.pipeline.runs.schema.resume_conflicts`), and not past ``train.iterations``. Every error
        names the file; nothing in the run folder is written."""
        if self._resume_ck is not None:
            return self._resume_ck
        path = self.last_path
        if not path.exists():
            raise FileNotFoundError(f"{path}: nothing to resume")
        ck = load_checkpoint(path, self.device)
        missing = [k for k in _RESUME_KEYS if k not in ck]
        missing += [f"rng.{k}" for k in ("torch", "numpy", "python") if "rng" in ck and k not in (ck["rng"] or {})]
        if missing:
            raise CheckpointError(f"{path}: cannot resume from it: missing {', '.join(missing)}")
        self._check_resume_config(ck, path)
        if self.cfg.iterations < int(ck["iteration"]):
            raise ResumeError(f"{path}: the checkpoint is at iteration {ck['iteration']}, past train.iterations "
                              f"{self.cfg.iterations}; a resume may lengthen the schedule, or shorten it down to "
                              f"the checkpoint's iteration, not undo training")
        self._resume_ck = ck
        return ck

    def _check_resume_config(self, ck: dict, path: Path) -> None:
        saved = ck.get("config") or ({"train": ck["train_config"]} if ck.get("train_config") else None)
        if ck.get("config") and dataclasses.is_dataclass(self.resolved_config):
            try:  # through the schema: a key added since the run was saved takes its default on both sides
                saved = config_to_dict(config_from_dict(type(self.resolved_config), ck["config"], str(path)))
            except ValueError:
                pass  # not valid under today's schema (e.g. a misspelled preset): compare as stored
        if saved is None:
            self.note(f"{path}: records no config (an old checkpoint); the resume cannot check it")
            return
        current = self._config_dict() or {"train": config_to_dict(self.cfg)}
        saved, current = _model_params_resolved(saved), _model_params_resolved(current)
        if set(saved) != set(current):  # one side is a bare Trainer's schedule: compare that
            saved, current = {"train": saved.get("train")}, {"train": current.get("train")}
        conflicts = resume_conflicts(saved, current)
        if conflicts:
            changed = "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in conflicts)
            raise ResumeError(
                f"{path}: refusing to resume with a config that changes what the run trains: {changed}. A resume "
                f"may change only {', '.join(RESUME_MAY_CHANGE)}, and "
                f"{', '.join(RESUME_MAY_CHANGE_WITHOUT_VALIDATION)} when the run does not validate on held-out "
                f"videos (train.iterations may grow, or shrink down to the checkpoint's iteration). Train another "
                f"config in a new run folder")

    def fit(self, *, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train to ``cfg.iterations`` (or until ``stop_after`` iterations are done, saving a checkpoint there,
        which is what a kill after a checkpoint leaves). ``resume`` continues from ``checkpoint_last.pt``
        (checked by :meth:`resume_checkpoint`)."""
        threads = torch.get_num_threads()
        if self.cfg.num_threads:
            torch.set_num_threads(self.cfg.num_threads)
        try:
            return self._fit(resume, stop_after)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, resume: bool, stop_after: int | None) -> TrainResult:
        cfg = self.cfg
        ck = self.resume_checkpoint() if resume else None
        self._resume_ck = None  # read afresh by a later resume
        self.run_dir.mkdir(parents=True, exist_ok=True)
        stale = sweep_temp_files(self.run_dir, list(TRAINER_FILES))
        if stale:
            self.note(f"{self.run_dir}: removed {len(stale)} temp file(s) a killed run left: "
                      f"{', '.join(p.name for p in stale)}")
        if not resume:  # a new run replaces the trainer's files: an earlier run's events would mix with its own
            for path in self.run_dir.glob(EVENT_FILES):
                path.unlink()
        seed_everything(cfg.seed, cfg.deterministic)
        model = self.model.to(self.device)
        optimizer = make_optimizer(model, cfg.optimizer)
        start, best = 0, {}
        if ck is not None:
            try:
                model.load_state_dict(ck["model"])
                # checkpoints written before the method's state was stored beside the weights have none (SF-Net's
                # kept labels were in its state dict then, which load_state_dict reads)
                if "method_state" in ck:
                    model.load_training_state(ck["method_state"])
                optimizer.load_state_dict(ck["optimizer"])
            except (RuntimeError, ValueError, KeyError, TypeError) as e:
                raise CheckpointError(f"{self.last_path}: its weights, method state or optimiser state do not fit "
                                      f"this model: {_first_line(e)}") from e
            _set_rng_state(ck["rng"])
            start, best = int(ck["iteration"]), dict(ck.get("best") or {})
        if self.resolved_config is not None:
            dump_config(self.resolved_config, self.run_dir / "config.yaml")
        log = _Log(self.run_dir, "train_log", start if resume else None, self.note, complete=True)
        val_log = _Log(self.run_dir, "val_log", start if resume else None, self.note)
        context = TrainingContext(iter_videos=lambda: iter(self.train_set), device=self.device)
        end = cfg.iterations if stop_after is None else min(cfg.iterations, stop_after)
        t_run = time.perf_counter()
        if start < end:
            logger.info(f"{self.run_dir}: training iterations {start + 1}-{end} of {cfg.iterations} on "
                        f"{self.device}" + (f" (resumed at iteration {start})" if resume else ""))
        board = _Board(self.run_dir, start if resume else None) if cfg.tensorboard and start < end else None
        progress = _Progress(start, end, cfg.iterations, cfg.progress)
        try:
            with board or nullcontext():
                it, optimizer, best = self._loop(model, optimizer, context, start, end, best, log, val_log, board,
                                                 progress)
        finally:
            progress.close()
        if it == start:  # nothing ran (already complete): keep the files as they are
            if not self.last_path.exists():
                atomic_torch_save(self._state(it, optimizer, best), self.last_path)
        model.eval()
        selected, ckpt = "last", self.last_path
        if cfg.select != "last" and best:
            selected, ckpt = f"{cfg.select}@{best['iteration']}", self.best_path
        seconds = time.perf_counter() - t_run
        if it > start:
            logger.info(f"{self.run_dir}: trained to iteration {it} in {seconds:.1f} s; weights: {selected}")
        return TrainResult(self.run_dir, it, ckpt, selected, log.rows, seconds)

    def _loop(self, model: Localizer, optimizer: torch.optim.Optimizer, context: TrainingContext, start: int,
              end: int, best: dict, log: _Log, val_log: _Log, board: _Board | None, progress: _Progress
              ) -> tuple[int, torch.optim.Optimizer, dict]:
        """Iterations ``start + 1`` to ``end``: each logged (``log``, ``board``, ``progress``), validated and
        checkpointed on schedule. Returns the iteration reached, the optimiser (a training hook may replace it) and
        the best validation so far."""
        cfg = self.cfg
        it = start
        while it < end:
            t0 = time.perf_counter()
            if model.training_hook(it, context):
                optimizer = make_optimizer(model, cfg.optimizer)
            batch = sample_batch(self.train_set, cfg.batch_size, batch_rng(cfg.seed, it), self.sampler,
                                 iteration=it).to(self.device)
            model.train()
            output = model(batch.features, batch.mask)
            terms = model.losses(output, batch, iteration=it)
            for name, value in terms.items():
                v = float(value.detach())
                if not math.isfinite(v):
                    raise NonFiniteLossError(it, f"loss term {name!r}", v)
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            clip = cfg.optimizer.grad_clip if cfg.optimizer.grad_clip else float("inf")
            params = [p for p in model.parameters() if p.grad is not None]
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, clip)) if params else 0.0
            if not math.isfinite(gnorm):
                raise NonFiniteLossError(it, "the gradient norm", gnorm)
            optimizer.step()
            model.after_step(output, batch, iteration=it)
            it += 1
            row = {"iteration": it, **{k: float(v.detach()) for k, v in terms.items()}, "grad_norm": gnorm,
                   "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
            log.write(row)
            if board is not None:
                board.iteration(row, terms)
            progress.update(it, row["total"])
            if self.validator is not None and cfg.validate_every > 0 and it % cfg.validate_every == 0:
                model.eval()
                scores = self.validator(model, it)
                val_log.write({"iteration": it, **scores})
                if board is not None:
                    board.validation(it, scores)
                shown = {k: v for k, v in scores.items() if k in ("val_loss", "val_map")} or scores
                logger.info(f"validation at iteration {it}: "
                            + ", ".join(f"{name} {value:.4g}" for name, value in shown.items()))
                if cfg.select != "last" and _better(cfg.select, scores, best):
                    best = {"iteration": it, cfg.select: scores[cfg.select]}
                    atomic_torch_save(self._state(it, optimizer, best), self.best_path)
            if it % max(cfg.checkpoint_every, 1) == 0 or it == end:
                if board is not None:  # every event up to the checkpoint on disk before it: a resume loses none
                    board.flush()
                atomic_torch_save(self._state(it, optimizer, best), self.last_path)
        return it, optimizer, best


def _better(key: str, scores: dict, best: dict) -> bool:
    if key not in scores:
        return False
    if key not in best:
        return True
    return scores[key] < best[key] if key == "val_loss" else scores[key] > best[key]


class _Board:
    """The run's TensorBoard event file (``train.tensorboard``), its steps the iteration numbers of
    ``train_log.jsonl``: per iteration every loss term (``loss/<term>``), the gradient norm, learning rate and
    seconds (``train/grad_norm``, ``train/lr``, ``train/seconds``) and, where the terms count mined and clicked
    snippets (SF-Net's ``n_mined`` and ``n_clicks``), the mining yield (``mining/yield``: mined per clicked
    snippet); per validation every score (``val/<name>``, the ``val_`` prefix dropped: ``val/map``, ``val/loss``).

    A resumed fit (``resume_at``: the checkpoint's iteration) writes a new file whose first event tells TensorBoard
    to drop the earlier files' steps past the checkpoint (what a killed run logged after its last checkpoint, which
    the resumed run logs again), so no step is shown twice; :meth:`flush` before each checkpoint keeps every step up
    to it on disk, so none is lost. A full disk is a :class:`DiskFullError` naming the event files."""

    def __init__(self, run_dir: Path, resume_at: int | None):
        from torch.utils.tensorboard import SummaryWriter  # the package's presence is checked by Trainer

        self.where = run_dir / EVENT_FILES
        # TensorBoard keeps the earlier steps below purge_step: the checkpoint's own iteration is one of them
        with naming_full_disk(self.where):
            self.writer = SummaryWriter(str(run_dir), purge_step=None if resume_at is None else resume_at + 1)

    def iteration(self, row: dict[str, float], terms: dict) -> None:
        """The ``train_log`` ``row`` of an iteration, whose loss terms are the keys of ``terms``."""
        scalars = {f"loss/{name}": row[name] for name in terms}
        scalars.update({f"train/{name}": row[name] for name in ("grad_norm", "lr", "seconds")})
        if "n_mined" in row and row.get("n_clicks"):  # no clicked snippet in the batch: no yield to speak of
            scalars["mining/yield"] = row["n_mined"] / row["n_clicks"]
        self._add(scalars, row["iteration"])

    def validation(self, iteration: int, scores: dict[str, float]) -> None:
        self._add({f"val/{name.removeprefix('val_')}": value for name, value in scores.items()}, iteration)

    def _add(self, scalars: dict[str, float], step: int) -> None:
        with naming_full_disk(self.where):
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        with naming_full_disk(self.where):
            self.writer.flush()

    def __enter__(self) -> _Board:
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            with naming_full_disk(self.where):
                self.writer.close()
        except OSError:
            if kind is None:  # with an error already on its way, that one is reported, not the close's
                raise


class _Progress:
    """How far training is: a tqdm bar when ``bar`` (``train.progress``) and the console is a terminal; else a log
    line (iteration, schedule, loss, iterations per second, seconds left) every 5 % of the schedule or 30 s, and
    at ``end``, the last iteration of this fit."""

    EVERY_FRACTION, EVERY_S = 0.05, 30.0

    def __init__(self, start: int, end: int, total: int, bar: bool):
        self.start, self.end, self.total = start, end, total
        self.t_start = self.t_line = time.perf_counter()
        self.line_at, self.step = start, max(1, math.ceil(total * self.EVERY_FRACTION))
        self.bar = _tqdm(start, total) if bar and _on_terminal() else None

    def update(self, it: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}")
            return
        now = time.perf_counter()
        if it - self.line_at < self.step and now - self.t_line < self.EVERY_S and it != self.end:
            return
        rate = (it - self.start) / max(now - self.t_start, 1e-9)
        logger.info(f"iteration {it}/{self.total} ({100 * it / self.total:.0f} %): loss {loss:.4g}, "
                    f"{rate:.3g} it/s, {(self.total - it) / rate:.0f} s left")
        self.line_at, self.t_line = it, now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _on_terminal() -> bool:
    """Whether stdout and stderr (where tqdm draws) are both terminals: a bar written to a file or pipe is noise."""
    try:
        return sys.stdout.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stream (pythonw), or a closed one
        return False


def _tqdm(start: int, total: int):
    """A tqdm bar from ``start`` to ``total``, or None without tqdm (then :class:`_Progress` logs lines)."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, initial=start, desc="train", dynamic_ncols=True, leave=False)


def validation_losses(model: Localizer, dataset: VideoDataset, iteration: int, device: torch.device | str = "cpu",
                      sampler: Sampler | None = None) -> dict[str, float]:
    """Each loss term (``total`` among them) averaged over the inference samples of ``dataset``'s videos (whole
    videos by default), one sample at a time, in eval mode (no dropout); NaN for every term of an empty dataset."""
    sampler = sampler or Sampler()
    model.eval()
    values: dict[str, list[float]] = {}
    with torch.no_grad():
        for item in dataset:
            for sample in sampler.inference_samples(item):
                batch = collate([sample]).to(device)
                terms = model.losses(model(batch.features, batch.mask), batch, iteration=iteration)
                for name, value in terms.items():
                    values.setdefault(name, []).append(float(value))
    return {name: float(np.mean(v)) for name, v in values.items()} or {"total": float("nan")}

"""The training engine every localizer shares: seeded batches, optimiser, clipping, checkpoints that resume exactly,
a NaN/inf guard, periodic validation and a log of every loss term.

Exact resume: the batch of iteration ``i`` is drawn from a generator that is a pure function of ``(seed, i)``
(:func:`~clicktal.pipeline.data.datasets.batch_rng`), and a checkpoint holds the model (with any state it keeps, such as
mined labels), the optimiser, the torch / numpy / python RNG states and the iteration; so a run killed and resumed
ends with the same weights as one that was never interrupted.

Run folder layout (``out``): ``config.yaml`` (the full resolved config), ``checkpoint_last.pt``
(``checkpoint_best.pt`` when selecting on validation), ``train_log.jsonl`` and ``train_log.csv`` (one row per
iteration: every loss term, gradient norm, learning rate, seconds), ``val_log.jsonl``.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

from clicktal.models.base import Localizer
from clicktal.pipeline.core.config import config_to_dict, dump_config
from clicktal.pipeline.core.files import atomic_write
from clicktal.pipeline.data.datasets import TrainingContext, VideoDataset, batch_rng, collate, sample_batch
from clicktal.pipeline.data.sampling import Sampler
from clicktal.pipeline.runs.schema import OptimConfig, TrainConfig


class NonFiniteLossError(FloatingPointError):
    """A loss term or the gradient went NaN/inf; the message names the iteration and the term."""

    def __init__(self, iteration: int, term: str, value: float):
        super().__init__(f"iteration {iteration}: {term} is {value} (not finite); training stopped")
        self.iteration, self.term, self.value = iteration, term, value


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
    return torch.device(name)


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


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=False)


class _Log:
    """``train_log.jsonl`` + ``train_log.csv``; on resume, rows past the checkpoint's iteration are dropped."""

    def __init__(self, run_dir: Path, name: str, resume_at: int | None):
        self.jsonl, self.csv = run_dir / f"{name}.jsonl", run_dir / f"{name}.csv"
        rows = []
        if resume_at is not None and self.jsonl.exists():
            rows = [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]
            rows = [r for r in rows if r.get("iteration", 0) <= resume_at]
        self.columns: list[str] | None = None
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self.csv.unlink(missing_ok=True)
        for r in rows:
            self._csv_row(r)
        self.rows = rows

    def _csv_row(self, row: dict) -> None:
        new = self.columns is None
        if new:
            self.columns = list(row)
        with self.csv.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def write(self, row: dict) -> None:
        with self.jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self._csv_row(row)
        self.rows.append(row)


Validator = Callable[[Localizer, int], dict[str, float]]


class Trainer:
    """Trains ``model`` on ``train_set`` under ``cfg``, writing into ``run_dir``.

    ``validator(model, iteration) -> {"val_loss": ..., "val_map": ...}`` runs every ``cfg.validate_every``
    iterations when given (it must only look at held-out training videos). ``sampler`` draws the training samples
    (``DataConfig.sampling``; whole videos by default). ``resolved_config`` is written to ``run_dir/config.yaml`` and, with ``metadata``
    (what rebuilding the model needs: classes, input width, streams), into every checkpoint.
    """

    def __init__(self, model: Localizer, train_set: VideoDataset, cfg: TrainConfig, run_dir: str | os.PathLike, *,
                 sampler: Sampler | None = None, validator: Validator | None = None,
                 resolved_config: Any = None, metadata: dict | None = None):
        self.model, self.train_set, self.cfg = model, train_set, cfg
        self.run_dir = Path(run_dir)
        self.sampler = sampler or Sampler()
        self.validator = validator
        self.resolved_config = resolved_config
        self.metadata = dict(metadata or {})
        self.device = resolve_device(cfg.device)
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
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
                "best": best, "config": self._config_dict(), "meta": self.metadata}

    def _config_dict(self):
        cfg = self.resolved_config
        if cfg is None:
            return None
        return cfg if isinstance(cfg, dict) else config_to_dict(cfg)

    def fit(self, *, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train to ``cfg.iterations`` (or until ``stop_after`` iterations are done, saving a checkpoint there,
        which is what a kill after a checkpoint leaves). ``resume`` continues from ``checkpoint_last.pt``."""
        threads = torch.get_num_threads()
        if self.cfg.num_threads:
            torch.set_num_threads(self.cfg.num_threads)
        try:
            return self._fit(resume, stop_after)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, resume: bool, stop_after: int | None) -> TrainResult:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(cfg.seed, cfg.deterministic)
        model = self.model.to(self.device)
        optimizer = make_optimizer(model, cfg.optimizer)
        start, best = 0, {}
        if resume:
            if not self.last_path.exists():
                raise FileNotFoundError(f"{self.last_path}: nothing to resume")
            ck = load_checkpoint(self.last_path, self.device)
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            torch.set_rng_state(ck["rng"]["torch"])
            np.random.set_state(ck["rng"]["numpy"])
            random.setstate(ck["rng"]["python"])
            if ck["rng"].get("cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(ck["rng"]["cuda"])
            start, best = int(ck["iteration"]), dict(ck.get("best") or {})
        if self.resolved_config is not None:
            if isinstance(self.resolved_config, dict):
                import yaml
                (self.run_dir / "config.yaml").write_text(yaml.safe_dump(self.resolved_config, sort_keys=False))
            else:
                dump_config(self.resolved_config, self.run_dir / "config.yaml")
        log = _Log(self.run_dir, "train_log", start if resume else None)
        val_log = _Log(self.run_dir, "val_log", start if resume else None)
        context = TrainingContext(iter_videos=lambda: iter(self.train_set), device=self.device)
        end = cfg.iterations if stop_after is None else min(cfg.iterations, stop_after)
        t_run = time.perf_counter()
        bar = _progress(start, cfg.iterations, cfg.progress)
        it = start
        while it < end:
            t0 = time.perf_counter()
            if model.training_hook(it, context):
                optimizer = make_optimizer(model, cfg.optimizer)
            batch = sample_batch(self.train_set, cfg.batch_size, batch_rng(cfg.seed, it),
                                 self.sampler).to(self.device)
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
            it += 1
            row = {"iteration": it, **{k: float(v.detach()) for k, v in terms.items()}, "grad_norm": gnorm,
                   "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
            log.write(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['total']:.3f}")
            if self.validator is not None and cfg.validate_every > 0 and it % cfg.validate_every == 0:
                model.eval()
                scores = self.validator(model, it)
                val_log.write({"iteration": it, **scores})
                if cfg.select != "last" and _better(cfg.select, scores, best):
                    best = {"iteration": it, cfg.select: scores[cfg.select]}
                    atomic_torch_save(self._state(it, optimizer, best), self.best_path)
            if it % max(cfg.checkpoint_every, 1) == 0 or it == end:
                atomic_torch_save(self._state(it, optimizer, best), self.last_path)
        if bar is not None:
            bar.close()
        if it == start:  # nothing ran (already complete): keep the files as they are
            if not self.last_path.exists():
                atomic_torch_save(self._state(it, optimizer, best), self.last_path)
        model.eval()
        selected, ckpt = "last", self.last_path
        if cfg.select != "last" and best:
            selected, ckpt = f"{cfg.select}@{best['iteration']}", self.best_path
        return TrainResult(self.run_dir, it, ckpt, selected, log.rows, time.perf_counter() - t_run)


def _better(key: str, scores: dict, best: dict) -> bool:
    if key not in scores:
        return False
    if key not in best:
        return True
    return scores[key] < best[key] if key == "val_loss" else scores[key] > best[key]


def _progress(start: int, total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, initial=start, desc="train", dynamic_ncols=True, leave=False)


def validation_loss(model: Localizer, dataset: VideoDataset, iteration: int, device: torch.device | str = "cpu",
                    sampler: Sampler | None = None) -> float:
    """Mean total loss over the inference samples of ``dataset``'s videos (whole videos by default), one sample at a
    time, in eval mode (no dropout)."""
    sampler = sampler or Sampler()
    model.eval()
    values = []
    with torch.no_grad():
        for item in dataset:
            for sample in sampler.inference_samples(item):
                batch = collate([sample]).to(device)
                terms = model.losses(model(batch.features, batch.mask), batch, iteration=iteration)
                values.append(float(terms["total"]))
    return float(np.mean(values)) if values else float("nan")

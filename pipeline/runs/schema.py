"""The experiment schema: one YAML file's typed sections (data, model, training, post-processing, evaluation)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from clicktal.pipeline.data.datasets import DataConfig


@dataclass
class OptimConfig:
    """``adam`` (the paper) or ``sgd``; ``weight_decay`` 5e-4 is the authors' code's (the paper names none);
    ``grad_clip``: max global gradient norm, None for no clipping (the paper clips nothing)."""

    name: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    grad_clip: float | None = None


@dataclass
class TrainConfig:
    """The schedule. ``select``: which weights a run ends with: ``last`` (the paper: a fixed number of iterations)
    or the best of the periodic validations on the held-out part of the training subset (``val_loss``: lowest
    loss; ``val_map``: highest mAP against the held-out videos' boundaries). Never the test subset."""

    iterations: int = 5000
    batch_size: int = 32
    seed: int = 0
    deterministic: bool = False
    optimizer: OptimConfig = field(default_factory=OptimConfig)
    checkpoint_every: int = 500
    validate_every: int = 0
    select: Literal["last", "val_loss", "val_map"] = "last"
    num_threads: int | None = None
    device: str = "auto"
    progress: bool = True


@dataclass
class ModelSpec:
    """A registered localizer and its parameters (checked into its typed config when built)."""

    name: str = "sfnet"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class PostprocessSpec:
    """A post-processing preset (see ``clicktal.pipeline.postprocess.grouping``) and overrides of its fields."""

    preset: str = "sfnet"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalConfig:
    """tIoU thresholds of the mAP; ``average_over`` the ones averaged into "AVG" (SF-Net: 0.1:0.1:0.7);
    ``frame_map``: also frame-level mAP (FSN's Table 1 metric) in ``results.json``."""

    tiou_thresholds: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    average_over: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    report: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7])
    use_ambiguous: bool = True
    frame_map: bool = False


@dataclass
class ExperimentConfig:
    """One YAML file: data, model, training, post-processing, evaluation."""

    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    postprocess: PostprocessSpec = field(default_factory=PostprocessSpec)
    evaluation: EvalConfig = field(default_factory=EvalConfig)

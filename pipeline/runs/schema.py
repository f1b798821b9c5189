"""The experiment schema: one YAML file's typed sections (data, model, training, post-processing, evaluation) and
the modules it imports (``imports:``, user methods registered through ``clicktal.models.register_method``).

Every value is checked when the config is built (``__post_init__``), so that a bad value fails at load time with
its dotted key and the file, never after training: numbers in range, the model name against the method registry,
its params against the method's typed config, the target kinds it declares against the target-kind registry and
``data.labels`` against the labels it needs, the post-processing
preset against ``PRESETS`` and its params against ``PostprocessConfig``, evaluation thresholds that are evaluated.

:func:`resume_conflicts` says which changes a resumed run refuses (see :data:`RESUME_MAY_CHANGE`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from clicktal.models import LOCALIZERS, localizer_config
from clicktal.pipeline.core.config import ConfigError, FieldError, nested_error
from clicktal.pipeline.core.postprocess import PRESETS, PostprocessConfig
from clicktal.pipeline.data.config import DataConfig


def _require(checks: list[tuple[bool, str, str]]) -> None:
    """Raise :class:`FieldError` for the first ``(ok, key, reason)`` that is not ok."""
    for ok, key, reason in checks:
        if not ok:
            raise FieldError(key, reason)


@dataclass
class OptimConfig:
    """``adam`` (the paper) or ``sgd``; ``weight_decay`` 5e-4 is the authors' code's (the paper names none);
    ``grad_clip``: max global gradient norm, None for no clipping (the paper clips nothing)."""

    name: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        _require([
            (self.name in ("adam", "sgd"), "name", f"expected one of ['adam', 'sgd'], got {self.name!r}"),
            (math.isfinite(self.lr) and self.lr > 0, "lr", f"must be a positive number, got {self.lr}"),
            (math.isfinite(self.weight_decay) and self.weight_decay >= 0, "weight_decay",
             f"must be >= 0, got {self.weight_decay}"),
            (0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum}"),
            (self.grad_clip is None or (math.isfinite(self.grad_clip) and self.grad_clip > 0), "grad_clip",
             f"must be a positive number or null (no clipping), got {self.grad_clip}"),
        ])


@dataclass
class TrainConfig:
    """The schedule. ``select``: which weights a run ends with: ``last`` (the paper: a fixed number of iterations)
    or the best of the periodic validations on the held-out part of the training subset (``val_loss``: lowest
    loss; ``val_map``: highest mAP against the held-out videos' boundaries). Never the test subset.
    ``device``: ``auto`` (CUDA when there is one), ``cpu``, ``cuda``, ``cuda:1``, ... ``progress``: a bar while
    the console is a terminal (else, and without it, a log line every 5 % of the schedule or 30 s).
    ``tensorboard``: TensorBoard event files in the run folder (every loss term, learning rate, gradient norm,
    validation score)."""

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
    tensorboard: bool = True

    def __post_init__(self) -> None:
        _require([
            (self.iterations >= 1, "iterations", f"must be >= 1, got {self.iterations} (nothing would be trained)"),
            (self.batch_size >= 1, "batch_size", f"must be >= 1 video per batch, got {self.batch_size}"),
            (0 <= self.seed < 2**64, "seed", f"must be an integer in [0, 2**64), got {self.seed}"),
            (self.checkpoint_every >= 1, "checkpoint_every", f"must be >= 1, got {self.checkpoint_every}"),
            (self.validate_every >= 0, "validate_every", f"must be >= 0 (0: no validation), got "
                                                         f"{self.validate_every}"),
            (self.select in ("last", "val_loss", "val_map"), "select",
             f"expected one of ['last', 'val_loss', 'val_map'], got {self.select!r}"),
            (self.num_threads is None or self.num_threads >= 1, "num_threads",
             f"must be >= 1 or null (torch's default), got {self.num_threads}"),
            (self.device == "auto" or _is_device(self.device), "device",
             f"expected auto, cpu, cuda or cuda:N, got {self.device!r}"),
        ])


# the usual device names, checked without importing torch (checking a config imports none)
_COMMON_DEVICE = re.compile(r"(cpu|cuda|mps)(:(0|[1-9][0-9]{0,3}))?")


def _is_device(name: str) -> bool:
    """Whether torch reads ``name`` as a device; torch is imported only for a name that is not a usual one."""
    if _COMMON_DEVICE.fullmatch(name):
        return True
    import torch
    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        return False
    return True


@dataclass
class ModelSpec:
    """A registered method (``clicktal.models.LOCALIZERS``) and its parameters, checked into its typed config
    (``localizer_config``) when the spec is built, and the target kinds the method declares for them, checked
    against the target-kind registry."""

    name: str = "sfnet"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in LOCALIZERS:
            raise FieldError("name", f"unknown localizer {self.name!r}; known: {', '.join(LOCALIZERS.names())}")
        try:
            # resolved once here; not a field, so the saved config keeps the plain mapping
            self._typed = localizer_config(self.name, self.params, source="params")
        except ValueError as e:
            raise nested_error("params", e) from None
        try:
            self._targets = LOCALIZERS.get(self.name).target_kinds(self._typed)
        except ValueError as e:
            raise FieldError("name", f"method {self.name!r} declares targets: {e}") from None

    @property
    def typed(self):
        """``params`` checked into the method's typed config (when the spec was built)."""
        return self._typed

    @property
    def targets(self) -> tuple[str, ...]:
        """The target kinds the method's training batches carry (``Method.targets`` for :attr:`typed`)."""
        return self._targets


@dataclass
class PostprocessSpec:
    """A post-processing preset (registered by a method, ``clicktal.models.Method.presets``) and overrides of its
    fields, checked (:func:`postprocess_config`) when the spec is built. Left out (None), an experiment config
    resolves it to its method's default preset (``Method.preset``) when it loads, and records that name."""

    preset: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.preset is not None:
            _resolve_postprocess(self)


def _resolve_postprocess(spec: PostprocessSpec) -> PostprocessConfig:
    if spec.preset is None:
        raise FieldError("preset", "not set (an experiment config sets its method's default preset)")
    if spec.preset not in PRESETS:
        raise FieldError("preset", f"unknown post-processing preset {spec.preset!r}; known: "
                                   f"{', '.join(PRESETS.names())}")
    base = PRESETS.get(spec.preset)
    fields = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(spec.params) - fields)
    if unknown:
        raise FieldError("params", f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.params.items()}
    try:
        return dataclasses.replace(base, **params)
    except (TypeError, ValueError) as e:
        raise FieldError("params", str(e)) from None


def postprocess_config(spec: PostprocessSpec) -> PostprocessConfig:
    """The preset ``spec.preset`` with ``spec.params`` replacing its fields (lists become tuples); a
    :class:`~clicktal.pipeline.core.config.ConfigError` naming ``postprocess.<key>`` when they do not fit."""
    try:
        return _resolve_postprocess(spec)
    except FieldError as e:
        raise ConfigError(f"postprocess.{e.key}: {e.reason}") from None


@dataclass
class EvalConfig:
    """tIoU thresholds of the mAP; ``average_over`` the ones averaged into "AVG" (e.g. 0.1:0.1:0.7) and
    ``report`` the ones printed, both among ``tiou_thresholds``; ``frame_map``: also frame-level mAP (the per-frame
    metric) in ``results.json``; ``without_class_selection``: also the mAP of the same scores grouped for every
    class, with no video-level class rule (``results.json`` ``mAP_without_class_selection``)."""

    tiou_thresholds: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    average_over: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    report: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7])
    use_ambiguous: bool = True
    frame_map: bool = False
    without_class_selection: bool = False

    def __post_init__(self) -> None:
        evaluated = lambda t: any(abs(t - e) < 1e-9 for e in self.tiou_thresholds)
        _require([(bool(self.tiou_thresholds), "tiou_thresholds", "needs at least one threshold")]
                 + [(0 <= t <= 1, f"tiou_thresholds[{i}]", f"must lie in [0, 1], got {t}")
                    for i, t in enumerate(self.tiou_thresholds)]
                 + [(bool(self.average_over), "average_over", "needs at least one threshold")]
                 + [(evaluated(t), f"{name}[{i}]", f"{t} is not among tiou_thresholds {self.tiou_thresholds}")
                    for name in ("average_over", "report") for i, t in enumerate(getattr(self, name))])


# a module name as Python spells one (dotted identifiers)
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def import_module_of_config(name: str, folder: Path | None, key: str = "imports") -> str:
    """Import what a config's ``imports:`` entry ``name`` names: a ``.py`` file (a path with a ``/`` or ending in
    ``.py``; a relative one is taken from ``folder``, the config file's, else the current directory) or a module name
    importable from ``sys.path``. A file is imported once per process whatever its spelling (under a module name
    made from its resolved path). Returns what the resolved config records: the file's absolute path, or the module
    name. A missing file or module, or an error raised while importing it, is a :class:`ConfigError` naming ``key``
    and the file or module."""
    if name.endswith(".py") or "/" in name or os.sep in name:
        path = Path(os.path.expanduser(name))
        path = (path if path.is_absolute() else (folder or Path.cwd()) / path).resolve()
        if not path.is_file():
            raise ConfigError(f"{key}: no file {path}")
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
        module = f"_clicktal_imports_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
        if module not in sys.modules:
            spec = importlib.util.spec_from_file_location(module, path)
            loaded = importlib.util.module_from_spec(spec)
            sys.modules[module] = loaded  # before running it: a dataclass in it looks its module up
            try:
                spec.loader.exec_module(loaded)
            except Exception as e:  # the user's code: any error, as one line naming the file
                del sys.modules[module]
                raise ConfigError(f"{key}: importing {path} failed: {type(e).__name__}: {e}") from None
        return str(path)
    if not _MODULE_NAME.fullmatch(name):
        raise ConfigError(f"{key}: expected a module name (my_package.my_method) or a .py path, got {name!r}")
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):  # the module itself, not something it imports
            raise ConfigError(f"{key}: no module named {name!r} on the Python path (a file is given as a path "
                              f"ending in .py, relative to the config's folder)") from None
        raise ConfigError(f"{key}: importing {name} failed: {type(e).__name__}: {e}") from None
    except Exception as e:  # the user's code, as above
        raise ConfigError(f"{key}: importing {name} failed: {type(e).__name__}: {e}") from None
    return name


@dataclass
class ExperimentConfig:
    """One YAML file: data, model, training, post-processing, evaluation; ``imports``: modules (names or ``.py``
    paths, relative to the config's folder) imported before anything else is checked, so that a method they
    register (``clicktal.models.register_method``) may be named by ``model.name`` and its presets by
    ``postprocess.preset``. Importing runs the modules' code, as OpenTAD's ``custom_imports`` does: a config is the
    user's own file."""

    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    postprocess: PostprocessSpec = field(default_factory=PostprocessSpec)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    imports: list[str] = field(default_factory=list)

    @classmethod
    def prepare_config(cls, data: dict, *, folder: Path | None) -> dict:
        """``data`` (the config's mapping) with its ``imports`` imported (before ``model`` is checked, whatever the
        key order) and recorded as absolute paths or module names, so that a run rebuilt from its saved config in
        another folder imports the same files."""
        names = data.get("imports", [])
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise ConfigError(f"imports: expected a list of module names or .py paths, got {names!r}")
        if names:
            data["imports"] = [import_module_of_config(n.strip(), folder, f"imports[{i}]")
                               for i, n in enumerate(names)]
        return data

    def __post_init__(self) -> None:
        if self.postprocess.preset is None:  # the method's own recipe, named in the resolved config
            default = LOCALIZERS.get(self.model.name).preset
            if default is None:
                raise FieldError("postprocess.preset", f"method {self.model.name!r} has no presets of its own: "
                                                       f"name one (known: {', '.join(PRESETS.names())})")
            try:
                self.postprocess = PostprocessSpec(default, self.postprocess.params)
            except FieldError as e:
                raise FieldError(f"postprocess.{e.key}", f"{e.reason} (preset {default!r}, method "
                                                         f"{self.model.name!r}'s default)") from None
        validates = self.train.validate_every > 0 and self.data.val_fraction > 0
        # a config that names no features yet is a template (filled in by --features or overrides, then checked)
        missing = LOCALIZERS.get(self.model.name).missing_labels(
            self.model.typed, self.data.labels) if self.data.features else []
        _require([
            (bool(self.name.strip()) and "/" not in self.name, "name",
             f"must be a non-empty name without '/' (the default run folder is runs/<name>), got {self.name!r}"),
            (0 <= self.data.val_fraction < 1, "data.val_fraction",
             f"must be in [0, 1), got {self.data.val_fraction}"),
            (self.train.select == "last" or validates, "train.select",
             f"{self.train.select!r} needs a held-out validation set: data.val_fraction > 0 and "
             f"train.validate_every > 0"),
            (not missing, "data.labels", f"model {self.model.name!r} {'; '.join(missing)}"),
        ])


# ------------------------------------------------------------------------------------------------------ resume

# What a resumed run may change: nothing here changes the weights it trains (RNG draws depend on (seed, iteration)
# only), nor its test results except as the new value says.
#   train.progress, train.tensorboard, train.checkpoint_every: bookkeeping;
#   train.device, train.num_threads: where it runs (another device or thread count may round floats differently,
#     so the weights can differ from an uninterrupted run's in the last bits; the draws stay the same);
#   train.iterations: a longer (or shorter, not below the checkpoint) schedule; nothing in the engine depends on the
#     total (there is no learning-rate schedule), so the run equals one trained that long from the start;
#   name, data.test_subset, data.ambiguous, data.preload, evaluation.report / use_ambiguous / frame_map /
#     without_class_selection: the test
#     evaluation and its report, never read by training;
#   postprocess.*, evaluation.tiou_thresholds / average_over: post-processing and mAP of the test subset, and also
#     of the periodic validation on held-out videos (val_map, which train.select can pick weights by), so they may
#     change only when the run does not validate (train.validate_every 0 or data.val_fraction 0).
# Everything else (seed, model, optimiser, data, labels, sampling, batch size, validation schedule, selection,
# determinism) changes what is trained and is refused, naming the keys.
RESUME_MAY_CHANGE = ("name", "train.progress", "train.tensorboard", "train.checkpoint_every", "train.device",
                     "train.num_threads", "train.iterations", "data.test_subset", "data.ambiguous", "data.preload",
                     "data.accept_changed_sources", "evaluation.report",
                     "evaluation.use_ambiguous", "evaluation.frame_map", "evaluation.without_class_selection")
RESUME_MAY_CHANGE_WITHOUT_VALIDATION = ("postprocess", "evaluation.tiou_thresholds", "evaluation.average_over")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _under(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def resume_conflicts(saved: dict, current: dict) -> list[tuple[str, Any, Any]]:
    """``(dotted key, saved value, current value)``, sorted by key, for each value in which ``current`` (a resolved
    config as a mapping) differs from ``saved`` (the one the run was trained with) in a way a resume refuses:
    everything but :data:`RESUME_MAY_CHANGE`, and :data:`RESUME_MAY_CHANGE_WITHOUT_VALIDATION` too when the saved
    run validates on held-out videos. A value one side lacks is ``"(absent)"``."""
    # runs saved before configs had imports record none: an empty list is the same as none
    saved, current = ({k: v for k, v in c.items() if k != "imports" or v} for c in (saved, current))
    a, b = _flatten(saved), _flatten(current)
    train, data = saved.get("train") or {}, saved.get("data") or {}
    validates = (train.get("validate_every") or 0) > 0 and (data.get("val_fraction") or 0) > 0
    allowed = RESUME_MAY_CHANGE + (() if validates else RESUME_MAY_CHANGE_WITHOUT_VALIDATION)
    absent = "(absent)"
    return [(k, a.get(k, absent), b.get(k, absent)) for k in sorted(set(a) | set(b))
            if a.get(k, absent) != b.get(k, absent) and not _under(k, allowed)]

"""The method registry: each method is one record (:class:`Method`) registered by name: its typed config, its
builder, the labels it trains from, the target kinds its batches carry, and its paper's post-processing presets
(each preset is a :class:`~clicktal.pipeline.core.postprocess.PostprocessConfig`, which also says the evaluation
protocol the recipe is evaluated with). A builder may be named as ``"package.module:function"`` and is then
imported the first time the method is built, so that a config is checked (its ``model.params`` against the typed
config, its ``data.labels`` against what the method needs, its target kinds against the registry of
:mod:`~clicktal.pipeline.data.targets`) without importing torch. A method from outside the package registers itself
with :func:`register_method` (a config lists its module under ``imports:``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from clicktal.pipeline.core.config import config_from_dict, config_to_dict
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.core.postprocess import PRESETS, PostprocessConfig
from clicktal.pipeline.core.registry import Registry, import_object
from clicktal.pipeline.data.targets import target_kind

if TYPE_CHECKING:
    from clicktal.pipeline.data.labels import LabelConfig

    from .base import Localizer

# the label kinds of ``data.labels`` a method may need, and how a config gives each
LABEL_KINDS: dict[str, Callable[[Any], bool]] = {
    "action_clicks": lambda labels: labels.action_clicks.source != "none",
    "background_clicks": lambda labels: labels.background_clicks.source != "none",
    "segments": lambda labels: labels.segments.source != "none",
    "boundaries": lambda labels: labels.boundaries,
    "frame_targets": lambda labels: labels.frame_targets,
    "video_labels": lambda labels: labels.video_labels,
}


@dataclass(frozen=True)
class LabelNeed:
    """A method needs at least one of the label kinds ``any_of`` (keys of ``data.labels``, see
    :data:`LABEL_KINDS`), for the reason ``why``; only when ``when(config)`` holds for its typed config, if given
    (e.g. a loss term that is switched on)."""

    any_of: tuple[str, ...]
    why: str
    when: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.any_of) - set(LABEL_KINDS))
        if not self.any_of or unknown:
            raise ValueError(f"LabelNeed.any_of: expected label kinds among {', '.join(LABEL_KINDS)}, got "
                             f"{list(self.any_of)}")


@dataclass(frozen=True)
class Method:
    """A registered method: its typed config class, a keyword-only builder
    ``builder(*, config, input_dim, num_classes, streams, geometry) -> Localizer`` (or ``"module:function"``
    naming it), the labels it needs (:class:`LabelNeed`), its post-processing presets by name (registered in
    ``PRESETS`` with the method, so that a config may name them) and ``targets``: the target kinds its losses read
    (names registered with :func:`~clicktal.pipeline.data.targets.register_target_kind`), as a tuple, or as a
    function of the typed config returning them when a switched-off loss reads fewer. A run's training and
    held-out datasets build these kinds and the kinds they require, nothing else (``data.labels.frame_targets``
    adds ``frames``); a method that declares none trains from no targets. ``default_preset``: the preset a config
    naming this method gets when its ``postprocess.preset`` is left out (default: the first of ``presets``)."""

    config_type: type
    builder: Callable[..., Localizer] | str
    needs: tuple[LabelNeed, ...] = ()
    presets: Mapping[str, PostprocessConfig] = field(default_factory=dict)
    targets: tuple[str, ...] | Callable[[Any], Iterable[str]] = ()
    default_preset: str | None = None

    def __post_init__(self) -> None:
        if self.default_preset is not None and self.default_preset not in self.presets:
            raise ValueError(f"default_preset {self.default_preset!r} is not one of the method's presets "
                             f"({', '.join(self.presets) or 'none'})")

    @property
    def preset(self) -> str | None:
        """The name of the method's default post-processing preset (None for a method without presets)."""
        return self.default_preset or next(iter(self.presets), None)

    def build(self, *, config, input_dim: int, num_classes: int, streams: dict[str, tuple[int, int]] | None,
              geometry: FeatureGeometry) -> Localizer:
        builder = import_object(self.builder) if isinstance(self.builder, str) else self.builder
        return builder(config=config, input_dim=input_dim, num_classes=num_classes, streams=streams,
                       geometry=geometry)

    def target_kinds(self, config) -> tuple[str, ...]:
        """The target kinds a batch carries for the typed ``config``; a kind that is not registered is a
        ValueError naming the registered ones."""
        kinds = tuple(self.targets(config) if callable(self.targets) else self.targets)
        for name in kinds:
            target_kind(name)
        return kinds

    def missing_labels(self, config, labels: LabelConfig) -> list[str]:
        """One line per need that ``labels`` (the config's ``data.labels``) leaves unmet by the typed ``config``."""
        return [f"needs {' or '.join(f'data.labels.{k}' for k in need.any_of)} ({need.why})"
                for need in self.needs
                if (need.when is None or need.when(config)) and not any(LABEL_KINDS[k](labels) for k in need.any_of)]


LOCALIZERS: Registry[Method] = Registry("localizer")
METHODS = LOCALIZERS  # one registry; "method" is the record's name, "localizer" what a config's model names


def register_method(name: str, method: Method) -> Method:
    """Register ``method`` under ``name`` and its presets in ``PRESETS``; a name or preset already taken is an
    error (nothing is registered then). Returns the method."""
    taken = [p for p in method.presets if p in PRESETS]
    if name in LOCALIZERS or taken:
        raise KeyError(f"method {name!r}: " + ("the name is already registered" if name in LOCALIZERS else
                                               f"preset(s) {', '.join(taken)} already registered"))
    for preset, post in method.presets.items():
        if not isinstance(post, PostprocessConfig):
            raise TypeError(f"method {name!r}: preset {preset!r} is a {type(post).__name__}, not a PostprocessConfig")
    LOCALIZERS.register(name)(method)
    for preset, post in method.presets.items():
        PRESETS.register(preset)(post)
    return method


def register_localizer(name: str, config_type: type):
    """Decorator registering a builder under ``name`` with its config dataclass (a method with no label needs, no
    presets and no target kinds of its own; :func:`register_method` declares them)."""

    def decorator(build):
        register_method(name, Method(config_type, build))
        return build

    return decorator


def localizer_config(name: str, params: dict | None, source: str = "<model.params>"):
    """``params`` (a plain mapping, e.g. from YAML) checked into the typed config of localizer ``name``."""
    return config_from_dict(LOCALIZERS.get(name).config_type, params or {}, source)


def build_localizer(name: str, params, *, input_dim: int, num_classes: int,
                    streams: dict[str, tuple[int, int]] | None = None,
                    geometry: FeatureGeometry | None = None) -> tuple[Localizer, dict]:
    """Build localizer ``name`` for ``input_dim``-d features with the column ranges ``streams`` (e.g. ``{"rgb": (0,
    1024), "flow": (1024, 2048)}``) on the time grid ``geometry`` (the features' own: a model that predicts per
    frame needs frames per snippet); ``params``: its typed config (an experiment's ``model.typed``, checked once
    when the config loaded) or a plain mapping to check. Returns the model and its fully resolved params (for the
    saved config)."""
    config_type = LOCALIZERS.get(name).config_type
    cfg = params if isinstance(params, config_type) else localizer_config(name, params)
    model = LOCALIZERS.get(name).build(config=cfg, input_dim=input_dim, num_classes=num_classes, streams=streams,
                                       geometry=geometry or FeatureGeometry())
    return model, config_to_dict(cfg)

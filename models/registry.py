"""The localizer registry: each name's typed config class and its builder. A builder may be named as
``"package.module:function"`` and is then imported the first time that localizer is built, so that a config is
checked (its ``model.params`` against the typed config) without importing torch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from clicktal.pipeline.core.config import config_from_dict, config_to_dict
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.core.registry import Registry, import_object

if TYPE_CHECKING:
    from .base import Localizer


@dataclass(frozen=True)
class LocalizerEntry:
    """A registered localizer: its typed config class and a keyword-only builder
    ``builder(*, config, input_dim, num_classes, streams, geometry) -> Localizer``, or where to import it from."""

    config_type: type
    builder: Callable[..., Localizer] | str

    def build(self, *, config, input_dim: int, num_classes: int, streams: dict[str, tuple[int, int]] | None,
              geometry: FeatureGeometry) -> Localizer:
        builder = import_object(self.builder) if isinstance(self.builder, str) else self.builder
        return builder(config=config, input_dim=input_dim, num_classes=num_classes, streams=streams,
                       geometry=geometry)


LOCALIZERS: Registry[LocalizerEntry] = Registry("localizer")


def register_localizer(name: str, config_type: type):
    """Decorator registering a builder under ``name`` with its config dataclass."""

    def decorator(build):
        LOCALIZERS.register(name)(LocalizerEntry(config_type, build))
        return build

    return decorator


def localizer_config(name: str, params: dict | None, source: str = "<model.params>"):
    """``params`` (a plain mapping, e.g. from YAML) checked into the typed config of localizer ``name``."""
    return config_from_dict(LOCALIZERS.get(name).config_type, params or {}, source)


def build_localizer(name: str, params: dict | None, *, input_dim: int, num_classes: int,
                    streams: dict[str, tuple[int, int]] | None = None,
                    geometry: FeatureGeometry | None = None) -> tuple[Localizer, dict]:
    """Build localizer ``name`` for ``input_dim``-d features with the column ranges ``streams`` (e.g. ``{"rgb": (0,
    1024), "flow": (1024, 2048)}``) on the time grid ``geometry`` (the features' own: a model that predicts per
    frame needs frames per snippet); returns the model and its fully resolved params (for the saved config)."""
    cfg = localizer_config(name, params)
    model = LOCALIZERS.get(name).build(config=cfg, input_dim=input_dim, num_classes=num_classes, streams=streams,
                                       geometry=geometry or FeatureGeometry())
    return model, config_to_dict(cfg)

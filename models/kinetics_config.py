"""The Kinetics baseline's typed config (``model.params`` of a config naming ``kinetics``), apart from the localizer
in :mod:`clicktal.models.kinetics` so that a config is checked without importing torch."""
from __future__ import annotations

from dataclasses import dataclass, field

from clicktal.pipeline.core.config import FieldError

KINETICS_CLASSES = 400


@dataclass
class KineticsConfig:
    """``class_index``: for each dataset class, the index of its Kinetics-400 class, or -1 when it has none
    (``tools/kinetics_run.py`` matches the names); ``feature_dim``: the I3D RGB feature width the head reads (the
    first columns of the features, the ``rgb`` stream)."""

    class_index: list[int] = field(default_factory=list)
    feature_dim: int = 1024

    def __post_init__(self) -> None:
        bad = [i for i in self.class_index if not -1 <= i < KINETICS_CLASSES]
        if bad:
            raise FieldError("class_index", f"entries must be -1 or a Kinetics-400 index, got {bad[:5]}")

"""The Kinetics baseline's typed config (``model.params`` of a config naming ``kinetics``), apart from the localizer
in :mod:`clicktal.models.kinetics` so that a config is checked without importing torch."""
from __future__ import annotations

from dataclasses import dataclass, field

from clicktal.pipeline.core.config import FieldError
from clicktal.pipeline.core.postprocess import PostprocessConfig

from .registry import Method

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


# The baseline's record (``clicktal.models`` registers it as ``kinetics``): nothing trains, so it needs no labels and
# no target kinds.
KINETICS = Method(
    KineticsConfig, "clicktal.models.kinetics:build_kinetics",
    presets={
        # The Kinetics baseline (models/kinetics.py, not a paper's method; our choices): classes whose video-averaged
        # Kinetics probability is at least 0.1, runs of per-snippet probability at 0.1:0.1:0.9 at frame resolution, mean
        # inside plus the video score (a confident video class ranks its segments first), class-wise NMS at 0.5.
        "kinetics": PostprocessConfig(
            class_threshold=0.1, resolution="frame", thresholds=tuple(round(0.1 * i, 1) for i in range(1, 10)),
            scoring="mean", video_weight=1.0, nms="hard", nms_tiou=0.5),
    })

"""Localizers: one module per family, registered by name in :data:`LOCALIZERS`.

``build_localizer("sfnet", params, input_dim=..., num_classes=..., streams=...)`` builds one from a plain mapping
(checked into the family's typed config); ``LOCALIZERS.names()`` lists them.
"""
from .base import (LOCALIZERS, FrameScores, Localizer, LocalizerOutput, TrainingContext, build_localizer,
                   localizer_config, register_localizer)
from . import sfnet  # noqa: F401  (registers "sfnet")
from . import backtal  # noqa: F401  (registers "backtal")
from . import segment  # noqa: F401  (registers "segment")
from . import fsn  # noqa: F401  (registers "fsn" and "wfsn")
from . import kinetics  # noqa: F401  (registers "kinetics", the no-training baseline)

__all__ = ["LOCALIZERS", "FrameScores", "Localizer", "LocalizerOutput", "TrainingContext", "build_localizer",
           "localizer_config", "register_localizer"]

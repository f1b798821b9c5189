"""Methods: one record per method (:class:`Method`: typed config, builder, the labels it needs, its paper's
post-processing presets), registered by name in :data:`LOCALIZERS`.

``build_localizer("sfnet", params, input_dim=..., num_classes=..., streams=...)`` builds one from a plain mapping
(checked into the method's typed config); ``LOCALIZERS.names()`` lists them. Each built-in method's record and typed
config live in a torch-free ``<family>_config`` module and its network is imported when it is first built, so that
importing this package, or checking a config, imports no torch; the interface types of :mod:`.base` are imported on
first use. A method from outside the package calls :func:`register_method` (docs/engine.md, "How to add a method").
"""
from .backtal_config import BACKTAL, BackTALConfig
from .fsn_config import FSN, WFSN, FSNConfig, WFSNConfig
from .kinetics_config import KINETICS, KineticsConfig
from .registry import (LABEL_KINDS, LOCALIZERS, METHODS, LabelNeed, Method, build_localizer, localizer_config,
                       register_localizer, register_method)
from .segment_config import SEGMENT, SegmentConfig
from .sfnet_config import SFNET, SFNetConfig

for _name, _method in (("sfnet", SFNET), ("backtal", BACKTAL), ("segment", SEGMENT), ("fsn", FSN), ("wfsn", WFSN),
                       ("kinetics", KINETICS)):  # kinetics: the no-training baseline
    register_method(_name, _method)
del _name, _method

_FROM_BASE = ("FrameScores", "Localizer", "LocalizerOutput", "TrainingContext")


def __getattr__(name: str):
    if name in _FROM_BASE:  # base imports torch: only when one of its types is asked for
        from . import base
        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LABEL_KINDS", "LOCALIZERS", "METHODS", "FrameScores", "LabelNeed", "Localizer", "LocalizerOutput",
           "Method", "TrainingContext", "build_localizer", "localizer_config", "register_localizer",
           "register_method"]

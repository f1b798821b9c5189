"""Localizers: one module per family, registered by name in :data:`LOCALIZERS`.

``build_localizer("sfnet", params, input_dim=..., num_classes=..., streams=...)`` builds one from a plain mapping
(checked into the family's typed config); ``LOCALIZERS.names()`` lists them. Each family's typed config lives in a
torch-free ``<family>_config`` module and its network is imported when it is first built, so that importing this
package, or checking a config, imports no torch; the interface types of :mod:`.base` are imported on first use.
"""
from .backtal_config import BackTALConfig
from .fsn_config import FSNConfig, WFSNConfig
from .kinetics_config import KineticsConfig
from .registry import LOCALIZERS, LocalizerEntry, build_localizer, localizer_config, register_localizer
from .segment_config import SegmentConfig
from .sfnet_config import SFNetConfig

for _name, _config, _builder in (
        ("sfnet", SFNetConfig, "sfnet:build_sfnet"),
        ("backtal", BackTALConfig, "backtal:build_backtal"),
        ("segment", SegmentConfig, "segment:build_segment"),
        ("fsn", FSNConfig, "fsn:build_fsn"),
        ("wfsn", WFSNConfig, "fsn:build_wfsn"),
        ("kinetics", KineticsConfig, "kinetics:build_kinetics"),  # the no-training baseline
):
    LOCALIZERS.register(_name)(LocalizerEntry(_config, f"{__name__}.{_builder}"))
del _name, _config, _builder

_FROM_BASE = ("FrameScores", "Localizer", "LocalizerOutput", "TrainingContext")


def __getattr__(name: str):
    if name in _FROM_BASE:  # base imports torch: only when one of its types is asked for
        from . import base
        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LOCALIZERS", "FrameScores", "Localizer", "LocalizerOutput", "TrainingContext", "build_localizer",
           "localizer_config", "register_localizer"]

"""Which reader opens a feature folder: this project's cache, the synthesizer's folder, or a community release.

``data.feature_format`` names the layout (``auto``: recognised from the folder), ``data.feature_layout`` states the
snippet grid and the RGB width where a layout does not carry them. Every reader is a
:class:`~clicktal.pipeline.data.cache.FeatureSource` giving the same :class:`FeatureMeta` (geometry, named streams)
as the cache, so that a click at second t lands on the same snippet whichever layout holds the features.

Layouts: ``cache`` (``<video>.npy`` + ``<video>.json``, clicktal-extract), ``synth`` (``features/`` +
``annotations.json``), ``wtalc`` (W-TALC / SF-Net joint file, :mod:`~clicktal.pipeline.data.releases`), ``basnet``
(``features/{train,test}/{rgb,flow}/<video>.npy``), ``backtal_npz`` (BackTAL's per-video ``.npz`` resized to 750
rows), ``actionformer`` (``<video>.npy`` + an annotation JSON with per-video fps; :mod:`~clicktal.pipeline.data.
layouts`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from clicktal.pipeline.core.config import FieldError
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data import layouts
from clicktal.pipeline.data.annotations import load_ground_truth
from clicktal.pipeline.data.cache import CacheError, CacheSource, FeatureSource, SynthSource
from clicktal.pipeline.data.releases import WtalcSource, is_wtalc

FeatureFormat = Literal["auto", "cache", "synth", "wtalc", "basnet", "backtal_npz", "actionformer"]


@dataclass
class FeatureLayoutConfig:
    """What a layout may not state. ``fps``, ``window``, ``stride``: the snippet grid in frames (0: the layout's
    own: the cache's sidecars, the synthesizer's ``annotations.json``, SF-Net's per-dataset values for W-TALC,
    25 / 16 / 16 for BaS-Net; for ActionFormer ``window`` / ``stride`` are its ``num_frames`` / ``feat_stride``
    (default: a ``clicktal-export`` folder's ``export.json``, else 16 / 4) and ``fps`` its ``default_fps`` (0: each
    video's fps from the annotation JSON)). ``rgb_dim``: width of the RGB stream in two-stream features (0: W-TALC
    half the width; BaS-Net and BackTAL name their streams; ActionFormer one stream ``features`` unless its folder's
    ``export.json`` names them). The cache and the synthesizer's folder
    state all of it; giving any of it for them is refused."""

    fps: float = 0.0
    window: float = 0.0
    stride: float = 0.0
    rgb_dim: int = 0

    def __post_init__(self) -> None:
        for name in ("fps", "window", "stride", "rgb_dim"):
            if getattr(self, name) < 0:
                raise FieldError(name, f"must be >= 0 (0: the layout's own), got {getattr(self, name)}")

    @property
    def given(self) -> bool:
        return any((self.fps, self.window, self.stride, self.rgb_dim))

    def geometry(self, default: FeatureGeometry | None) -> FeatureGeometry | None:
        """The layout's ``default`` grid with the given fields replacing its own (None: no default and none
        given)."""
        if not (self.fps or self.window or self.stride):
            return default
        base = default or FeatureGeometry()
        stride = self.stride or base.stride
        return FeatureGeometry(self.fps or base.fps, self.window or (base.window if default else stride), stride)


def detect_format(root: Path) -> str:
    """The layout of ``root`` (``cache`` when nothing more specific is recognised)."""
    root = Path(root)
    if (root / "features").is_dir() and (root / "annotations.json").is_file():
        return "synth"
    if is_wtalc(root):
        return "wtalc"
    if layouts.is_basnet(root):
        return "basnet"
    if layouts.is_backtal_npz(root):
        return "backtal_npz"
    if layouts.is_actionformer(root):
        return "actionformer"
    return "cache"


def open_features(root: str | os.PathLike, *, format: str = "auto", layout: FeatureLayoutConfig | None = None,
                  annotations: str | os.PathLike | None = None) -> FeatureSource:
    """The :class:`FeatureSource` of ``root`` in layout ``format`` (``auto``: :func:`detect_format`).
    ``annotations``: the ground-truth file (ActionFormer's layout takes each video's fps and duration from it)."""
    root = Path(root)
    layout = layout or FeatureLayoutConfig()
    if not root.is_dir():
        raise CacheError(f"{root}: no such feature folder")
    fmt = detect_format(root) if format == "auto" else format
    rgb = layout.rgb_dim or None
    if fmt in ("cache", "synth"):
        if layout.given:
            raise CacheError(f"{root}: a {fmt} folder states its own geometry and streams; data.feature_layout must "
                             "stay empty for it")
        return SynthSource(root) if fmt == "synth" else CacheSource(root)
    if fmt == "wtalc":
        return WtalcSource(root, geometry=layout.geometry(None), rgb_dim=rgb)
    if fmt == "basnet":
        return layouts.BasnetSource(root, geometry=layout.geometry(None), rgb_dim=rgb)
    if fmt == "backtal_npz":  # training files may lack durations: the ground truth's then
        durations = ({v: a.duration_s for v, a in load_ground_truth(annotations).videos.items()} if annotations
                     else None)
        return layouts.BacktalNpzSource(root, durations=durations, default_fps=layout.fps or None, rgb_dim=rgb)
    if fmt == "actionformer":
        return layouts.ActionFormerSource(root, annotations=Path(annotations) if annotations else None,
                                          feat_stride=layout.stride or None, num_frames=layout.window or None,
                                          default_fps=layout.fps or None, rgb_dim=rgb)
    raise CacheError(f"{root}: unknown feature format {fmt!r}")


def describe_no_features(root: str | os.PathLike) -> str:
    """Why ``root`` offers no video's features, in one line: what a feature folder must hold and what it holds."""
    root = Path(root)
    npy = sorted(p.name for p in root.glob("*.npy")) if root.is_dir() else []
    found = (f"it holds {len(npy)} .npy file(s) without a <video>.json sidecar (e.g. {npy[0]})" if npy
             else "it holds no .npy file")
    return (f"{root}: no video's features: expected a clicktal feature cache (<video>.npy with its <video>.json "
            f"sidecar, clicktal-extract), the synthesizer's features/ + annotations.json, or a released layout "
            f"named by data.feature_format (wtalc, basnet, backtal_npz, actionformer; see docs/own_data.md); "
            f"{found}")


__all__ = ["FeatureFormat", "FeatureLayoutConfig", "detect_format", "open_features", "describe_no_features"]

"""The feature contract: what a model trained on features depends on, recorded in every run and checked on load.

A :class:`FeatureContract` is the extractor, its weights' sha256 per stream, the geometry (fps, window, stride), the
stream layout and the width. Layouts whose every video has its own grid (ActionFormer's per-video fps, BackTAL's
resize to 750 rows) set ``per_video_geometry``: the geometry then travels with each video's features, and the
contract holds the first video's as an example, not a requirement. Features that break a run's contract are refused with the field that differs named
(features of another fps or stride put clicks and detections at the wrong seconds even when the width matches).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.cache import FeatureMeta, FeatureSource


class ContractError(ValueError):
    """Features that do not match a contract; the message names the video (or file) and the differing fields."""


@dataclass(frozen=True)
class FeatureContract:
    extractor: str
    geometry: FeatureGeometry
    streams: dict[str, tuple[int, int]]
    dim: int
    weights_sha256: dict[str, str] = field(default_factory=dict)
    per_video_geometry: bool = False

    @classmethod
    def of(cls, meta: FeatureMeta, *, per_video_geometry: bool = False) -> "FeatureContract":
        return cls(meta.extractor, meta.geometry, {k: (int(a), int(b)) for k, (a, b) in meta.streams.items()},
                   int(meta.dim), dict(meta.weights_sha256), per_video_geometry)

    def to_dict(self) -> dict:
        d = {"extractor": self.extractor, "geometry": self.geometry.to_dict(),
             "streams": {k: list(v) for k, v in self.streams.items()}, "dim": self.dim,
             "weights_sha256": dict(self.weights_sha256)}
        if self.per_video_geometry:
            d["per_video_geometry"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureContract":
        return cls(str(d["extractor"]), FeatureGeometry.from_dict(d["geometry"]),
                   {k: (int(v[0]), int(v[1])) for k, v in d["streams"].items()}, int(d["dim"]),
                   dict(d.get("weights_sha256") or {}), bool(d.get("per_video_geometry", False)))

    def differences(self, other: "FeatureContract") -> list[str]:
        """``field: ours != theirs`` for every field that differs (geometry field by field; not at all when this
        contract holds per-video geometries: each video's own grid is then used)."""
        out = []
        for name in () if self.per_video_geometry else ("fps", "window", "stride"):
            a, b = getattr(self.geometry, name), getattr(other.geometry, name)
            if abs(float(a) - float(b)) > 1e-9:
                out.append(f"geometry.{name}: {a} != {b}")
        for name in ("extractor", "streams", "dim", "weights_sha256"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                out.append(f"{name}: {a} != {b}")
        return out

    def check(self, other: "FeatureContract", where: str, *, expected: str = "the run") -> None:
        """Raise :class:`ContractError` naming ``where`` when ``other`` differs from this contract."""
        diff = self.differences(other)
        if diff:
            raise ContractError(f"{where}: features break the contract of {expected} ({'; '.join(diff)})")


def source_contract(source: FeatureSource, video_ids: Iterable[str] | None = None) -> FeatureContract:
    """The one contract shared by ``video_ids`` of ``source`` (all of its videos by default); an error names the
    first video whose features differ from the first one's."""
    ids = list(source.ids() if video_ids is None else video_ids)
    if not ids:
        raise ContractError(f"{getattr(source, 'root', source)}: no features")
    per_video = bool(getattr(source, "per_video_geometry", False))
    first = FeatureContract.of(source.meta(ids[0]), per_video_geometry=per_video)
    for vid in ids[1:]:
        first.check(FeatureContract.of(source.meta(vid), per_video_geometry=per_video), f"video {vid}",
                    expected=f"video {ids[0]} of the same set")
    return first


__all__ = ["ContractError", "FeatureContract", "source_contract"]

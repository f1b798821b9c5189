"""Target kinds: the registry of what a model may be trained from, each kind made from a video's
:class:`~clicktal.pipeline.data.supervision.Supervision` on its native snippet grid, moved with a sample's grid
(:mod:`~clicktal.pipeline.data.sampling`) and padded into a batch.

A :class:`TargetKind` says how its array is built (``build(context)``; None when the video has none of it), how it
moves with a :class:`~clicktal.pipeline.data.sampling.SampleGrid` (``"points"``: each labelled snippet marks the
nearest element; ``"dense"``: a labelled span stays dense; ``"frames"``: per frame through the grid's frame
positions; ``"video"``: one row per video, unmoved; or a function of the item's targets and the grid) and how it is
collated (the padding dtype, a ``[B, T]`` mask of the rows holding a label, rows made distributions).
:func:`register_target_kind` adds one; a dataset builds the kinds it is asked for (:func:`build_targets`) and the
kinds they require, nothing else: a run asks for the kinds its method declares (``Method.targets`` in
:mod:`clicktal.models.registry`, checked against this registry when the config loads; the module imports torch only
to collate).

Today's kinds (``[T]`` per video, ``[B, T]`` in a batch; ``C`` classes):

* ``video_labels [C]``: the video-level multi-hot labels;
* ``clicks [T, C]``: action clicks per snippet and class (counts); ``anchors [T]``: snippets holding one (the
  anchors a mining step may expand); ``background [T]``: snippets holding a background click;
* ``segments [T, C]``: labelled segments, multi-hot on the snippets whose centre they hold;
  ``boundaries [T, C]``: full boundaries, likewise;
* ``actions [T, C]``: all of these together, each labelled row a distribution over the classes (two clicks of
  different classes on one snippet share it): what a frame loss over every labelled snippet reads; a snippet labelled by clicks alone
  moves as a point, one labelled by a segment or boundary as a span;
* ``frames [T * f, C + 1]`` (asked for by ``data.labels.frame_targets``): multi-hot per frame of the resampled
  video, column ``c + 1`` for every instance of class ``c`` holding the frame (overlapping instances all count:
  every CliffDiving instance of THUMOS14 lies inside a Diving one), column 0 for background; in a batch each
  frame's row is divided by its sum (a distribution, for the frame-wise softmax cross-entropy of the models that
  predict frames);
* ``truth [T, C]``: the ground truth's snippets, for diagnostics only (the mining precision), never a loss.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np

from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.annotations import Segment
from clicktal.pipeline.data.sampling import SampleGrid, resample_points, resample_targets
from clicktal.pipeline.data.supervision import Supervision

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class BuildContext:
    """What a kind's builder reads: one video's supervision, its native grid and length, the class columns, and the
    kinds it requires, already built."""

    video_id: str
    supervision: Supervision
    geometry: FeatureGeometry
    num_snippets: int
    index: Mapping[str, int]  # class name -> column
    built: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.index)


Resample = Literal["points", "dense", "frames", "video"] | Callable[[Mapping[str, np.ndarray], SampleGrid], np.ndarray]


@dataclass(frozen=True)
class TargetKind:
    """One kind of target; see the module docstring. ``per`` says what its first axis counts (``"video"``: no time
    axis; ``"snippet"``: the sample's elements; ``"frame"``: their frames); ``requires`` names the kinds its
    builder or its resampling reads (they are built with it); ``row_mask`` adds a ``[B, T]`` mask of the rows
    holding a label to the batch; ``distribution`` divides each collated row by its sum."""

    name: str
    build: Callable[[BuildContext], np.ndarray | None]
    resample: Resample
    per: Literal["video", "snippet", "frame"] = "snippet"
    dtype: type = np.float32
    requires: tuple[str, ...] = ()
    row_mask: bool = False
    distribution: bool = False

    def moved(self, targets: Mapping[str, np.ndarray], grid: SampleGrid) -> np.ndarray:
        """This kind of ``targets`` (one video's, on its native grid) on the sample grid ``grid``."""
        if callable(self.resample):
            return self.resample(targets, grid)
        values = targets[self.name]
        if self.resample == "points":
            return resample_points(values, grid)
        if self.resample == "dense":
            return resample_targets(values, grid)
        if self.resample == "frames":
            return values[grid.frame_positions(grid.native.frames_per_snippet)]
        return values

    def collate(self, arrays: Sequence[np.ndarray], length: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``arrays`` (one per sample) padded with zeros to ``length`` elements (frames: to the longest), and the
        mask of the rows holding a label when ``row_mask``."""
        import torch  # here, not at the top: checking a config looks kinds up (a method's targets) without torch

        if self.per == "video":
            return torch.from_numpy(np.stack(arrays)), None
        rows = length if self.per == "snippet" else max(len(a) for a in arrays)
        out = torch.from_numpy(pad(arrays, rows, self.dtype))
        mask = out.sum(-1) > 0 if self.row_mask else None
        if self.distribution:
            out = out / out.sum(-1, keepdim=True).clamp_min(1.0)
        return out, mask


_KINDS: dict[str, TargetKind] = {}


def register_target_kind(kind: TargetKind, *, replace: bool = False) -> TargetKind:
    """Add ``kind`` to the registry (a name taken is refused unless ``replace``); returns it."""
    if kind.name in _KINDS and not replace:
        raise ValueError(f"target kind {kind.name!r} is already registered (replace=True to replace it)")
    unknown = [r for r in kind.requires if r not in _KINDS and r != kind.name]
    if unknown:
        raise ValueError(f"target kind {kind.name!r} requires unregistered kind(s) {unknown}")
    _KINDS[kind.name] = kind
    return kind


def target_kind(name: str) -> TargetKind:
    """The registered kind ``name``; an unknown name is an error naming the registered ones."""
    try:
        return _KINDS[name]
    except KeyError:
        raise ValueError(f"unknown target kind {name!r} (registered: {', '.join(_KINDS)})") from None


def target_kinds() -> list[str]:
    """The registered kinds' names, in registration order."""
    return list(_KINDS)


def with_requirements(kinds: Iterable[str]) -> list[str]:
    """``kinds`` and every kind they require, each after the kinds it requires."""
    out: list[str] = []

    def add(name: str) -> None:
        if name not in out:
            for r in target_kind(name).requires:
                add(r)
            out.append(name)

    for name in kinds:
        add(name)
    return out


def build_targets(video_id: str, supervision: Supervision, geometry: FeatureGeometry, num_snippets: int,
                  classes: Sequence[str], kinds: Iterable[str]) -> dict[str, np.ndarray]:
    """The targets of one video on its native grid: each of ``kinds`` (and the kinds they require) that the
    video has."""
    index = {c: i for i, c in enumerate(classes)}
    built: dict[str, np.ndarray] = {}
    for name in with_requirements(kinds):
        values = target_kind(name).build(BuildContext(video_id, supervision, geometry, num_snippets, index, built))
        if values is not None:
            built[name] = values
    return built


def pad(arrays: Sequence[np.ndarray], length: int, dtype) -> np.ndarray:
    """``arrays`` stacked on a new first axis, each zero-padded to ``length`` rows."""
    out = np.zeros((len(arrays), length) + arrays[0].shape[1:], dtype)
    for b, a in enumerate(arrays):
        out[b, : len(a)] = a
    return out


# ------------------------------------------------------------------------------------------------ today's kinds


def segment_snippets(geometry: FeatureGeometry, start_s: float, end_s: float, num_snippets: int) -> np.ndarray:
    """Indices of the snippets whose centre lies in ``[start_s, end_s]``; the snippet holding the segment's middle
    when no centre does (an instance shorter than a snippet still labels one)."""
    centres = geometry.centre_s(np.arange(num_snippets))
    idx = np.flatnonzero((centres >= start_s) & (centres <= end_s))
    if idx.size == 0:
        idx = np.array([geometry.index_of((start_s + end_s) / 2, num_snippets)])
    return idx


def _segment_targets(segments: Iterable[Segment], geometry: FeatureGeometry, index: Mapping[str, int], T: int
                     ) -> np.ndarray:
    out = np.zeros((T, len(index)), np.float32)
    for seg in segments:
        if seg.label in index:
            out[segment_snippets(geometry, seg.start_s, seg.end_s, T), index[seg.label]] = 1.0
    return out


def frame_labels(segments: Iterable[Segment], geometry: FeatureGeometry, index: Mapping[str, int], T: int
                 ) -> np.ndarray:
    """``[T * f, C + 1]`` uint8 multi-hot, per frame of the resampled video (``f`` frames per snippet): column
    ``c + 1`` set for every instance of class ``c`` holding the frame's centre (all of them where instances
    overlap), column 0 (background) where none does."""
    centres = geometry.frames().centre_s(np.arange(T * geometry.frames_per_snippet))
    out = np.zeros((len(centres), len(index) + 1), np.uint8)
    for seg in segments:
        if seg.label in index:
            out[(centres >= seg.start_s) & (centres <= seg.end_s), index[seg.label] + 1] = 1
    out[:, 0] = ~out[:, 1:].any(axis=1)
    return out


def _video_labels(ctx: BuildContext) -> np.ndarray:
    out = np.zeros(ctx.num_classes, np.float32)
    for label in ctx.supervision.video_labels:
        if label in ctx.index:
            out[ctx.index[label]] = 1.0
    return out


def _clicks(ctx: BuildContext) -> np.ndarray:
    out = np.zeros((ctx.num_snippets, ctx.num_classes), np.float32)
    for click in ctx.supervision.action_clicks:
        if click.label in ctx.index:
            out[ctx.geometry.index_of(click.time_s, ctx.num_snippets), ctx.index[click.label]] += 1.0
    return out


def _background(ctx: BuildContext) -> np.ndarray:
    out = np.zeros(ctx.num_snippets, bool)
    for t_s in ctx.supervision.background_clicks:
        out[ctx.geometry.index_of(t_s, ctx.num_snippets)] = True
    return out


def _actions(ctx: BuildContext) -> np.ndarray:
    b = ctx.built
    targets = np.maximum(b["clicks"], np.maximum(b["segments"], b["boundaries"]))
    labelled = targets.sum(axis=1) > 0
    targets[labelled] /= targets[labelled].sum(axis=1, keepdims=True)
    return targets


def _move_actions(targets: Mapping[str, np.ndarray], grid: SampleGrid) -> np.ndarray:
    # a snippet labelled by clicks alone moves as a point, one labelled by a segment or boundary as a span
    actions = targets["actions"]
    spans = np.zeros(len(actions), bool)
    for name in ("segments", "boundaries"):
        if name in targets:
            spans |= targets[name].any(axis=1)
    anchors = targets.get("anchors", np.zeros(len(actions), bool))
    point = (anchors & ~spans)[:, None]
    moved = np.maximum(resample_points(np.where(point, actions, 0), grid),
                       resample_targets(np.where(point, 0, actions), grid))
    labelled = moved.sum(axis=1) > 0
    moved[labelled] /= moved[labelled].sum(axis=1, keepdims=True)
    return moved


def _frames(ctx: BuildContext) -> np.ndarray:
    if ctx.supervision.boundaries is None:
        raise ValueError(f"video {ctx.video_id}: frame targets need the boundaries (data.labels.boundaries: true)")
    return frame_labels(ctx.supervision.boundaries, ctx.geometry, ctx.index, ctx.num_snippets)


def _spans(get: Callable[[Supervision], Iterable[Segment] | None]) -> Callable[[BuildContext], np.ndarray | None]:
    def build(ctx: BuildContext) -> np.ndarray | None:
        segments = get(ctx.supervision)
        return None if segments is None else _segment_targets(segments, ctx.geometry, ctx.index, ctx.num_snippets)
    return build


for _kind in (
    TargetKind("video_labels", _video_labels, "video", per="video"),
    TargetKind("clicks", _clicks, "points"),
    TargetKind("anchors", lambda ctx: ctx.built["clicks"].sum(axis=1) > 0, "points", dtype=bool, requires=("clicks",)),
    TargetKind("background", _background, "points", dtype=bool),
    TargetKind("segments", _spans(lambda s: s.labelled_segments), "dense", row_mask=True),
    TargetKind("boundaries", _spans(lambda s: s.boundaries or ()), "dense", row_mask=True),
    TargetKind("actions", _actions, _move_actions, requires=("clicks", "segments", "boundaries", "anchors"),
               row_mask=True),
    TargetKind("frames", _frames, "frames", per="frame", row_mask=True, distribution=True),
    TargetKind("truth", _spans(lambda s: s.truth), "dense"),
):
    register_target_kind(_kind)

# what a dataset builds when no method says which kinds (frames only when data.labels.frame_targets asks for them)
DEFAULT_KINDS = ("video_labels", "clicks", "anchors", "background", "segments", "boundaries", "actions", "truth")

__all__ = ["BuildContext", "TargetKind", "register_target_kind", "target_kind", "target_kinds", "with_requirements",
           "build_targets", "pad", "segment_snippets", "frame_labels", "DEFAULT_KINDS"]

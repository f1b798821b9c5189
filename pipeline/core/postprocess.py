"""The post-processing recipe (:class:`PostprocessConfig`, a plain dataclass), the evaluation protocols that say
which recipe a run's evaluation applies at which tIoU, and the :data:`PRESETS` registry of named recipes.

Torch-free and below every other layer, so that each method declares its paper's presets beside its own config
(``models/<family>_config.py``); :mod:`clicktal.pipeline.postprocess.grouping` applies a recipe.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from clicktal.pipeline.core.registry import Registry

Scoring = Literal["mean", "max", "outer_inner"]
NmsKind = Literal["none", "hard", "soft"]
Resolution = Literal["snippet", "frame"]
ThresholdReference = Literal["absolute", "mean", "range"]
VideoScore = Literal["given", "topk_mean"]


@dataclass(frozen=True)
class PostprocessConfig:
    """How frame scores become detections. Field groups follow the pipeline order.

    Classes: with ``class_threshold`` only classes whose video score is ``>=`` it are localised; with
    ``class_ratio`` only those whose video score is positive and ``>`` ratio x the video's best class score. The
    video scores are those the model gives (``video_score="given"``) or ``topk_mean``: per class, the mean of its
    ``max(L // video_topk_divisor, 1)`` highest scores over the video's ``L`` samples (SF-Net's code's rule, computed
    here on the stitched native-grid scores, so a tiled inference gets one video score, not the best tile's).

    Grouping: ``resolution="frame"`` first interpolates the snippet scores linearly (between snippet centres) to one
    score per frame of the resampled video, so boundaries land on frames instead of snippet edges. For each of
    ``thresholds`` a run of consecutive samples with score ``>=`` threshold (``>`` when ``strict``) is a segment;
    ``threshold_reference`` says what a threshold is relative to: ``absolute`` (the score itself), ``mean`` (a
    multiple of the class's mean score over the video) or ``range`` (a fraction of the way from the class's minimum
    to its maximum over the video: 0.5 is W-TALC's half-range threshold). Runs of the
    class-agnostic ``actionness`` signal at ``actionness_thresholds`` are proposals for every localised class too.
    Runs shorter than ``min_snippets`` snippets are dropped; a segment found at several thresholds is kept once.

    Scoring: ``mean`` or ``max`` of the class score inside, or ``outer_inner``: mean inside minus mean over the
    ``inflation`` x length samples (rounded up) on each side, clipped to the video, 0 when that region is empty
    (AutoLoc's outer-inner contrast). ``video_weight`` x the video-level class score is added to any of them.

    NMS, per class: ``hard`` drops segments with tIoU ``>= nms_tiou`` with a better one; ``soft`` is Gaussian
    Soft-NMS (score x exp(-tIoU^2 / ``soft_sigma``), dropped below ``soft_floor``). ``top_k`` caps the detections
    per video after NMS. ``nms_tiou_offset`` ties the NMS threshold to the evaluation's: a run's evaluation then
    groups once per evaluation tIoU ``t`` with NMS at ``t + nms_tiou_offset`` (:meth:`at_evaluation_tiou`, the
    :class:`NmsPerTiou` protocol), and
    ``nms_tiou`` is what detection without an evaluation threshold (``tools/detect.py``) uses.
    """

    class_threshold: float | None = None
    class_ratio: float | None = None
    video_score: VideoScore = "given"
    video_topk_divisor: int = 12
    resolution: Resolution = "snippet"
    thresholds: tuple[float, ...] = (0.5,)
    threshold_reference: ThresholdReference = "absolute"
    strict: bool = False
    actionness_thresholds: tuple[float, ...] = ()
    min_snippets: int = 1
    scoring: Scoring = "mean"
    inflation: float = 0.25
    video_weight: float = 0.0
    nms: NmsKind = "hard"
    nms_tiou: float = 0.5
    soft_sigma: float = 0.5
    soft_floor: float = 0.001
    top_k: int | None = None
    nms_tiou_offset: float | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.thresholds or self.actionness_thresholds, "needs thresholds or actionness_thresholds"),
            (self.scoring in ("mean", "max", "outer_inner"), f"unknown scoring {self.scoring!r}"),
            (self.nms in ("none", "hard", "soft"), f"unknown nms {self.nms!r}"),
            (self.resolution in ("snippet", "frame"), f"unknown resolution {self.resolution!r}"),
            (self.threshold_reference in ("absolute", "mean", "range"),
             f"unknown threshold_reference {self.threshold_reference!r}"),
            (self.min_snippets >= 1, f"min_snippets must be >= 1, got {self.min_snippets}"),
            (self.video_score in ("given", "topk_mean"), f"unknown video_score {self.video_score!r}"),
            (self.video_topk_divisor >= 1, f"video_topk_divisor must be >= 1, got {self.video_topk_divisor}"),
            (self.inflation >= 0, f"inflation must be >= 0, got {self.inflation}"),
            (0 < self.nms_tiou <= 1, f"nms_tiou must be in (0, 1], got {self.nms_tiou}"),
            (self.soft_sigma > 0, f"soft_sigma must be > 0, got {self.soft_sigma}"),
            (self.top_k is None or self.top_k >= 1, f"top_k must be >= 1, got {self.top_k}"),
            (self.nms_tiou_offset is None or self.nms == "hard",
             "nms_tiou_offset needs nms: hard (set nms_tiou_offset: null with another nms)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"PostprocessConfig: {message}")

    @property
    def needs_video_scores(self) -> bool:
        """Whether the model must pass ``video_scores`` (a ``topk_mean`` recipe computes its own)."""
        return self.video_score == "given" and self.uses_video_scores

    @property
    def uses_video_scores(self) -> bool:
        return self.video_weight != 0 or self.class_threshold is not None or self.class_ratio is not None

    def at_evaluation_tiou(self, tiou: float) -> "PostprocessConfig":
        """The recipe for an evaluation at ``tiou``: NMS at ``tiou + nms_tiou_offset`` (itself without an offset).
        An NMS threshold of 0 or below (offset -0.1 at tIoU 0.1) suppresses any overlap but keeps disjoint segments."""
        if self.nms_tiou_offset is None:
            return self
        return NmsPerTiou(self.nms_tiou_offset).recipe_at(self, tiou)

    @property
    def protocol(self) -> "EvaluationProtocol":
        """How a run's evaluation groups its test scores with this recipe: :class:`NmsPerTiou` when
        ``nms_tiou_offset`` is set (the way a config states it), else :data:`STANDARD`."""
        return STANDARD if self.nms_tiou_offset is None else NmsPerTiou(self.nms_tiou_offset)


@dataclass(frozen=True)
class EvaluationProtocol:
    """The standard protocol: a run's test scores are grouped once, with the run's recipe, and that one set of
    detections is evaluated at every tIoU. A protocol's :meth:`groupings` say which recipe is evaluated at which
    tIoUs; the run evaluates each grouping and records one mAP per tIoU."""

    def groupings(self, post: PostprocessConfig, tious) -> list[tuple[PostprocessConfig, tuple[float, ...]]]:
        return [(post, tuple(float(t) for t in tious))]

    def note(self, post: PostprocessConfig) -> str | None:
        """What ``results.json`` says about the evaluation (None: nothing to say)."""
        return None


STANDARD = EvaluationProtocol()


@dataclass(frozen=True)
class NmsPerTiou(EvaluationProtocol):
    """NMS tied to the evaluation threshold (e.g. "0.1 lower than the IoU threshold used during the evaluation"):
    the scores are grouped once per evaluation tIoU ``t`` with hard NMS at ``t + offset``, and each grouping is
    evaluated at ``t`` alone. ``detections.json`` stays the recipe's own grouping (its ``nms_tiou``, what detection
    on new videos uses)."""

    offset: float = -0.1

    def recipe_at(self, post: PostprocessConfig, tiou: float) -> PostprocessConfig:
        return replace(post, nms_tiou=min(max(float(tiou) + self.offset, 1e-9), 1.0), nms_tiou_offset=None)

    def groupings(self, post: PostprocessConfig, tious) -> list[tuple[PostprocessConfig, tuple[float, ...]]]:
        return [(self.recipe_at(post, t), (float(t),)) for t in tious]

    def note(self, post: PostprocessConfig) -> str | None:
        return (f"NMS at each evaluation tIoU {self.offset:+g}; detections.json is the grouping with NMS at "
                f"{post.nms_tiou} (what detection on new videos uses)")


# The named recipes: each method registers its paper's presets with its record (``clicktal.models.register_method``),
# so they are there once the methods are imported (the experiment schema imports them).
PRESETS: Registry[PostprocessConfig] = Registry("post-processing preset")

__all__ = ["PostprocessConfig", "EvaluationProtocol", "STANDARD", "NmsPerTiou", "PRESETS"]

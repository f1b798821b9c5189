"""Which cheap labels a run trains from (``data.labels``), read or simulated into one :class:`Supervision` per video.

Any combination of kinds, each with its own source:

* ``action_clicks``: one of the human annotator files drawn at random per video (SF-Net, Appendix A.3), one fixed
  annotator, or one click per instance simulated ``uniform`` within it or ``gaussian`` near its centre (SF-Net
  Table 2); ``none`` for no clicks;
* ``background_clicks``: a human file (BackTAL's CSV, one annotator per run) or one simulated click per background
  gap (BackTAL Sec. 4.2);
* ``segments``: labelled segments simulated one or two per instance as Ding et al. do, or a user's own file in the
  ActivityNet schema;
* ``boundaries``: the full ground-truth boundaries ("Full" in SF-Net's Table 3, FSN's supervision);
* ``video_labels``: the classes present in each video (weak supervision);
* ``frame_targets``: per-frame class targets at frame resolution, from the boundaries, for models that predict frames.

Every source draws from its own seeded stream, so adding one kind never changes the draws of another. A label file
that gives no label to any video of the training subset is refused, with the reasons its labels were skipped: it
would silently turn the run into weaker supervision. Labels past their video's end are checked by
``beyond_video`` (see :class:`LabelConfig`).
:func:`label_statistics` counts what each video got and how much of it lies where the ground truth says it should.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import numpy as np

from clicktal.pipeline.core.config import ConfigError
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.annotations import (DEFAULT_TOLERANCE_FRACTION, DEFAULT_TOLERANCE_S, ActionClick,
                                                AnnotationError, GroundTruth, LengthCheck, ReadReport, Segment,
                                                read_action_clicks, read_background_clicks, read_labelled_segments)
from clicktal.pipeline.data.stats import inside_instances
from clicktal.pipeline.data.supervision import (Supervision, build_supervision, simulate_action_clicks,
                                                simulate_background_clicks, simulate_labelled_segments)

# one random stream per kind of label: np.random.default_rng([seed, STREAM])
ACTION_CLICK_STREAM = 0xC11C  # pinned: SF-Net results depend on its draws
BACKGROUND_CLICK_STREAM = 0xBC1C
SEGMENT_STREAM = 0x5E65


@dataclass
class ActionClickConfig:
    """``random_annotator``: for every video one of ``files`` (one per human annotator) drawn at random (seeded);
    ``annotator``: always ``files[annotator]``; ``uniform`` / ``gaussian``: one simulated click per ground-truth
    instance (``gaussian_sigma_fraction`` of the instance length around its centre); ``none``: no clicks."""

    source: Literal["random_annotator", "annotator", "uniform", "gaussian", "none"] = "none"
    files: list[str] = field(default_factory=list)
    annotator: int = 0
    gaussian_sigma_fraction: float = 1 / 6


@dataclass
class BackgroundClickConfig:
    """``annotator``: ``files[annotator]`` (BackTAL's CSVs; one annotator for the whole run); ``simulated``: one
    uniform click in each background gap longer than ``min_gap_s``; ``none``: no background clicks."""

    source: Literal["none", "annotator", "simulated"] = "none"
    files: list[str] = field(default_factory=list)
    annotator: int = 0
    min_gap_s: float = 0.0

    def __post_init__(self) -> None:
        if self.min_gap_s < 0:
            raise ConfigError(f"min_gap_s must be >= 0, got {self.min_gap_s}")


@dataclass
class SegmentLabelConfig:
    """``simulated``: ``per_instance`` labelled segments inside each instance (Ding et al.: 1, or 2 with everything
    between them labelled); ``file``: a user's own labelled segments in the ActivityNet schema; ``none``."""

    source: Literal["none", "simulated", "file"] = "none"
    per_instance: int = 1
    file: str = ""

    def __post_init__(self) -> None:
        if self.per_instance not in (1, 2):
            raise ConfigError(f"per_instance must be 1 (one-segment) or 2 (two-segment: two labelled "
                              f"segments and everything between them), got {self.per_instance!r}")


@dataclass
class LabelConfig:
    """The labels of a run; ``seed`` None uses the run's seed.

    ``beyond_video``: what a click or labelled segment read from a file gets when it lies past its video's length
    (the later of the stated duration and the last annotated end) by more than ``beyond_video_tolerance_fraction``
    of that length plus ``beyond_video_tolerance_s``: ``error`` refuses the file naming the line, video, time and
    length; ``drop`` drops it and counts it in the file's report. Within the tolerance it is kept and counted. The
    defaults (20 % + 1 s) keep the released THUMOS14 files, whose ground truth states frames / 30 as the duration
    of some 25 fps videos (:class:`~clicktal.pipeline.data.annotations.LengthCheck`).
    """

    action_clicks: ActionClickConfig = field(default_factory=ActionClickConfig)
    background_clicks: BackgroundClickConfig = field(default_factory=BackgroundClickConfig)
    segments: SegmentLabelConfig = field(default_factory=SegmentLabelConfig)
    boundaries: bool = False
    video_labels: bool = True
    frame_targets: bool = False
    seed: int | None = None
    beyond_video: Literal["error", "drop"] = "error"
    beyond_video_tolerance_s: float = DEFAULT_TOLERANCE_S
    beyond_video_tolerance_fraction: float = DEFAULT_TOLERANCE_FRACTION

    def __post_init__(self) -> None:
        if self.frame_targets and not self.boundaries:
            raise ConfigError("frame_targets needs boundaries: true (the per-frame targets are made from the full "
                              "ground-truth boundaries)")
        try:
            self.length_check()
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def length_check(self) -> LengthCheck:
        """What the label-file readers do with labels past a video's end."""
        return LengthCheck(self.beyond_video, self.beyond_video_tolerance_s, self.beyond_video_tolerance_fraction)


@dataclass
class LabelSet:
    """The supervision of every training video and the reports of the files read for it."""

    supervision: dict[str, Supervision]
    reports: list[ReadReport] = field(default_factory=list)


def _need_files(files: Sequence[str], where: str, source: str) -> None:
    if not files:
        raise ValueError(f"{where} source {source!r} needs data.labels.{where}.files (one per annotator)")


def _annotator_file(files: Sequence[str], annotator: int, where: str) -> str:
    """``files[annotator]``, or an error naming the config key ``where`` (e.g. ``action_clicks``)."""
    _need_files(files, where, "annotator")
    if not 0 <= annotator < len(files):
        raise ValueError(f"data.labels.{where}.annotator {annotator} is not an index into {len(files)} files")
    return files[annotator]


def _per_video(videos, chosen: dict[str, list]) -> dict[str, tuple]:
    """``chosen`` restricted to ``videos``, every one of them present (empty when nothing was chosen for it)."""
    return {vid: tuple(chosen.get(vid, ())) for vid in sorted(videos)}


def _read_labels(reader, path: str, gt: GroundTruth, subset: str, length: LengthCheck
                 ) -> tuple[dict[str, list], ReadReport]:
    """``reader(path, gt, length=length)`` (a label-file reader's labels and report) when it gives a label to at
    least one video of ``subset`` (the training subset); otherwise an error naming the file and why: empty, or
    every label skipped or on videos of other subsets."""
    chosen, report = reader(path, gt, length=length)
    videos = gt.subset(subset)
    if any(chosen.get(vid) for vid in videos):
        return chosen, report
    why = report.skip_reasons()
    elsewhere = Counter(gt.videos[vid].subset for vid, v in chosen.items() for _ in v)
    if elsewhere:
        why.append(f"{sum(elsewhere.values())} on videos of other subsets ("
                   + ", ".join(f"{n} in {sub!r}" for sub, n in sorted(elsewhere.items())) + ")")
    raise AnnotationError(f"{report.source}: 0 {report.unit} kept for the {len(videos)} videos of training subset "
                          f"{subset!r}: " + ("; ".join(why) if why else f"the file holds no {report.unit}")
                          + " (the run would silently train on weaker labels; fix the file or the config)")


def choose_action_clicks(gt: GroundTruth, subset: str, cfg: ActionClickConfig, seed: int,
                         length: LengthCheck = LengthCheck()
                         ) -> tuple[dict[str, tuple[ActionClick, ...]], list[ReadReport]]:
    """Action clicks per video of ``subset`` from the configured source, and the reports of the files read (each
    must give a click to some video of ``subset``; ``length`` checks clicks past a video's end)."""
    videos = gt.subset(subset)
    rng = np.random.default_rng([seed, ACTION_CLICK_STREAM])
    if cfg.source == "none":
        return {}, []
    if cfg.source in ("uniform", "gaussian"):
        return {vid: simulate_action_clicks(videos[vid], rng, mode=cfg.source,
                                            sigma_fraction=cfg.gaussian_sigma_fraction) for vid in sorted(videos)}, []
    if cfg.source == "annotator":
        chosen, report = _read_labels(read_action_clicks, _annotator_file(cfg.files, cfg.annotator, "action_clicks"),
                                      gt, subset, length)
        return _per_video(videos, chosen), [report]
    _need_files(cfg.files, "action_clicks", cfg.source)
    read = [_read_labels(read_action_clicks, f, gt, subset, length) for f in cfg.files]
    per_file, reports = [r[0] for r in read], [r[1] for r in read]
    # random_annotator: one annotator per video, drawn in sorted video order so a seed reproduces the draw
    picks = rng.integers(0, len(per_file), size=len(videos))
    return {vid: tuple(per_file[int(k)].get(vid, ())) for vid, k in zip(sorted(videos), picks)}, reports


def choose_background_clicks(gt: GroundTruth, subset: str, cfg: BackgroundClickConfig, seed: int,
                             length: LengthCheck = LengthCheck()
                             ) -> tuple[dict[str, tuple[float, ...]], list[ReadReport]]:
    """Background clicks per video of ``subset`` from the configured source, and the reports of the files read (as
    :func:`choose_action_clicks`)."""
    videos = gt.subset(subset)
    if cfg.source == "none":
        return {}, []
    if cfg.source == "simulated":
        rng = np.random.default_rng([seed, BACKGROUND_CLICK_STREAM])
        return {vid: simulate_background_clicks(videos[vid], rng, min_gap_s=cfg.min_gap_s)
                for vid in sorted(videos)}, []
    chosen, report = _read_labels(read_background_clicks,
                                  _annotator_file(cfg.files, cfg.annotator, "background_clicks"), gt, subset, length)
    return _per_video(videos, chosen), [report]


def choose_labelled_segments(gt: GroundTruth, subset: str, cfg: SegmentLabelConfig, seed: int,
                             geometry: FeatureGeometry, length: LengthCheck = LengthCheck(), *,
                             per_video: Mapping[str, FeatureGeometry] | None = None
                             ) -> tuple[dict[str, tuple[Segment, ...]], list[ReadReport]]:
    """Labelled segments per video of ``subset`` from the configured source (simulated ones are snippets of
    ``geometry``, or of the video's own in ``per_video``), and the reports of the files read (as
    :func:`choose_action_clicks`)."""
    videos = gt.subset(subset)
    if cfg.source == "none":
        return {}, []
    if cfg.source == "simulated":
        rng = np.random.default_rng([seed, SEGMENT_STREAM])
        return {vid: simulate_labelled_segments(videos[vid], rng, (per_video or {}).get(vid, geometry),
                                                per_instance=cfg.per_instance) for vid in sorted(videos)}, []
    if not cfg.file:
        raise ValueError("labelled-segment source 'file' needs data.labels.segments.file (ActivityNet schema)")
    chosen, report = _read_labels(read_labelled_segments, cfg.file, gt, subset, length)
    return _per_video(videos, chosen), [report]


def training_supervision(gt: GroundTruth, subset: str, cfg: LabelConfig, *, seed: int,
                         geometry: FeatureGeometry, per_video: Mapping[str, FeatureGeometry] | None = None
                         ) -> LabelSet:
    """:class:`Supervision` for every video of ``subset`` with the configured labels. ``geometry`` is the features'
    (simulated labelled segments are snippets of it; of each video's own in ``per_video`` where the layout gives
    every video its grid). ``frame_targets`` adds nothing here: the per-frame targets
    are made from the records' boundaries, which it requires, when the videos are read
    (:func:`~clicktal.pipeline.data.datasets.make_item`)."""
    seed = seed if cfg.seed is None else cfg.seed
    length = cfg.length_check()
    clicks, reports = choose_action_clicks(gt, subset, cfg.action_clicks, seed, length)
    background, bg_reports = choose_background_clicks(gt, subset, cfg.background_clicks, seed, length)
    segments, seg_reports = choose_labelled_segments(gt, subset, cfg.segments, seed, geometry, length,
                                                     per_video=per_video)
    sup = build_supervision(gt, subset=subset, action_clicks=clicks, background_clicks=background,
                            labelled_segments=segments, with_boundaries=cfg.boundaries,
                            with_video_labels=cfg.video_labels)
    return LabelSet(sup, reports + bg_reports + seg_reports)


# ---------------------------------------------------------------------------------------------------- statistics

LABEL_KINDS = ("action_clicks", "background_clicks", "labelled_segments", "boundaries", "video_labels")


def _placed(count: int, inside: np.ndarray) -> dict[str, int]:
    return {"count": count, "inside": int(inside.sum()), "outside": int(count - inside.sum())}


def video_label_statistics(sup: Supervision, instances: Sequence[Segment]) -> dict[str, dict[str, int]]:
    """What one video got, against its ground-truth ``instances`` (see :func:`label_statistics`)."""
    clicks, segs = sup.action_clicks, sup.labelled_segments
    return {
        "action_clicks": _placed(len(clicks), inside_instances([c.time_s for c in clicks], instances,
                                                               [c.label for c in clicks])),
        "background_clicks": _placed(len(sup.background_clicks), inside_instances(sup.background_clicks, instances)),
        "labelled_segments": _placed(len(segs), inside_instances([(s.start_s + s.end_s) / 2 for s in segs],
                                                                 instances, [s.label for s in segs])),
        "boundaries": {"count": len(sup.boundaries or ())},
        "video_labels": {"count": len(sup.video_labels)},
    }


def label_statistics(supervision: dict[str, Supervision], gt: GroundTruth) -> dict:
    """How many labels of each kind every video got, and how many lie where the ground truth says they should.

    Per kind a ``count``; for the placed kinds also ``inside`` / ``outside``: action clicks inside an instance of
    their own class or not; background clicks inside any instance (misplaced) or not; labelled segments whose middle
    lies in an instance of their class or not. ``boundaries`` counts segments, ``video_labels`` classes. A video
    absent from ``gt`` has no instances.
    JSON-serialisable: ``{"totals": {"videos": N, kind: {...}}, "per_video": {video: {kind: {...}}}}``.
    """
    per_video = {}
    for vid in sorted(supervision):
        video = gt.videos.get(vid)
        per_video[vid] = video_label_statistics(supervision[vid], video.segments if video else ())
    totals: dict = {"videos": len(per_video)}
    for kind in LABEL_KINDS:
        keys = ("count", "inside", "outside") if kind in ("action_clicks", "background_clicks",
                                                          "labelled_segments") else ("count",)
        totals[kind] = {k: sum(v[kind][k] for v in per_video.values()) for k in keys}
    return {"totals": totals, "per_video": per_video}


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "0.0%"


def format_label_summary(stats: dict) -> str:
    """A few console lines from :func:`label_statistics`: one per kind the videos got."""
    t = stats["totals"]
    n = t["videos"]
    lines = [f"labels of {n} training videos:"]
    ac, bc, ls = t["action_clicks"], t["background_clicks"], t["labelled_segments"]
    if ac["count"]:
        lines.append(f"  action clicks      {ac['count']:6d}  ({ac['outside']} outside an instance of their class, "
                     f"{_share(ac['outside'], ac['count'])})")
    if bc["count"]:
        lines.append(f"  background clicks  {bc['count']:6d}  ({bc['inside']} inside an action, "
                     f"{_share(bc['inside'], bc['count'])})")
    if ls["count"]:
        lines.append(f"  labelled segments  {ls['count']:6d}  ({ls['outside']} with their middle outside an "
                     f"instance of their class, {_share(ls['outside'], ls['count'])})")
    if t["boundaries"]["count"]:
        lines.append(f"  boundaries         {t['boundaries']['count']:6d}  (full supervision)")
    if t["video_labels"]["count"]:
        with_labels = sum(1 for v in stats["per_video"].values() if v["video_labels"]["count"])
        lines.append(f"  video labels       {t['video_labels']['count']:6d}  (on {with_labels} of {n} videos)")
    if len(lines) == 1:
        lines.append("  none")
    return "\n".join(lines)


__all__ = ["ActionClickConfig", "BackgroundClickConfig", "SegmentLabelConfig", "LabelConfig", "LabelSet",
           "choose_action_clicks", "choose_background_clicks", "choose_labelled_segments", "training_supervision",
           "label_statistics", "video_label_statistics", "format_label_summary", "LABEL_KINDS"]

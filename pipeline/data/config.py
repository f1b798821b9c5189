"""The ``data`` section of an experiment config (:class:`DataConfig`), apart from the datasets it opens, so that a
config is checked without importing torch (:mod:`~clicktal.pipeline.data.datasets` builds the tensors)."""
from __future__ import annotations

from dataclasses import dataclass, field

from clicktal.pipeline.data.formats import FeatureFormat, FeatureLayoutConfig
from clicktal.pipeline.data.labels import LabelConfig
from clicktal.pipeline.data.normalize import NormalizeKind
from clicktal.pipeline.data.sampling import SamplingConfig


@dataclass
class DataConfig:
    """Features, labels, sampling and the train/test subsets.

    ``features``: a feature folder (``tools/train_localizer.py --features`` overrides it) in the layout
    ``feature_format`` (``auto``: recognised; :mod:`~clicktal.pipeline.data.formats`: the cache, the synthesizer's
    folder, W-TALC's joint file, BaS-Net's, BackTAL's and ActionFormer's per-video files), with ``feature_layout``
    stating what the layout does not (grid, RGB width). ``ground_truth``: ActivityNet-schema file (ActionFormer's
    annotation JSON included); empty means the synthesizer's ``annotations.json`` or the W-TALC release's arrays.
    ``sampling``: the temporal sampling of training and of validation/inference (default: whole videos).
    ``val_fraction``: share of the training subset held out for validation (never the test subset).
    ``accept_changed_sources``: use features whose source video file was replaced since extraction (refused by
    default, naming the video). ``normalize``: ``none`` (the features as stored) or ``standardize`` (per dimension,
    with the mean and std of the training videos; :mod:`~clicktal.pipeline.data.normalize`). Relative paths are
    taken from the current directory.
    """

    features: str = ""
    feature_format: FeatureFormat = "auto"
    feature_layout: FeatureLayoutConfig = field(default_factory=FeatureLayoutConfig)
    ground_truth: str = ""
    train_subset: str = "validation"
    test_subset: str = "test"
    ambiguous: str = ""  # THUMOS14's ambiguous test segments, used by evaluation when given
    labels: LabelConfig = field(default_factory=LabelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    val_fraction: float = 0.0
    preload: bool = True
    accept_changed_sources: bool = False
    normalize: NormalizeKind = "none"

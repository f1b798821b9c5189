"""SF-Net's typed config (``model.params`` of a config naming ``sfnet``), apart from the network in
:mod:`clicktal.models.sfnet` so that a config is checked without importing torch."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from clicktal.pipeline.core.postprocess import PostprocessConfig

from .registry import LabelNeed, Method


@dataclass
class MiningConfig:
    """Action-frame mining (Algorithm 1). ``score``: which score Algorithm 1's threshold compares, the softmax
    probability (default: ``xi`` then means "at least xi of the anchor's confidence", which is what the text says)
    or the raw activation ``C`` (literal reading; it flips meaning when the anchor's activation is negative).
    ``argmax_over``: Algorithm 1 takes the argmax over all of C's columns (``all``); the code over the action
    columns only (``actions``). Sec. 3.3 words the test as "the same predicted label as the anchor frame";
    with the stop at the first failure, Algorithm 1's chain of agreeing neighbours implies exactly that.

    ``scores_from``: online mining reads a forward pass of the batch in eval mode, without dropout
    (``eval_pass``, default: Algorithm 1 compares the network's predictions, and dropout 0.7 on the training pass
    halves the yield), or the training pass itself (``training_pass``, this project's earlier behaviour).
    ``keep``: online mining keeps every label it mines (per video, in native snippets) and applies them to later
    batches too, as the authors' code keeps its one-time mining; contiguous crops only; training mode only (a
    validation pass mines for its own loss and keeps nothing).
    ``past`` and ``blocked_by_mined``: the authors' ``anchor_expand`` (train.py) compares the predicted class at
    ``t + j s`` and ``t + (j + 1) s`` with the one at the fixed ``t + s`` instead of ``t + (j - 1) s``
    (``first_step``), and stops at any labelled snippet, those it has mined for earlier anchors included."""

    enabled: bool = True
    radius: int = 5
    xi: float = 0.9
    start_iteration: int = 0
    mode: Literal["online", "once"] = "online"
    score: Literal["probability", "activation"] = "probability"
    argmax_over: Literal["all", "actions"] = "all"
    stop_at_failure: bool = True
    reinit_after: bool = False
    scores_from: Literal["eval_pass", "training_pass"] = "eval_pass"
    keep: bool = False
    past: Literal["previous", "first_step"] = "previous"
    blocked_by_mined: bool = False


@dataclass
class SFNetInferenceConfig:
    """How SF-Net's output becomes the frame scores that post-processing groups (paper Sec. 3.4, Fig. 3).

    ``score_space``: the per-class sequence is ``P(c) + w * sigma(A)`` with softmax probabilities (``probability``,
    default; both parts in [0, 1]) or ``C_c + w * A`` with raw activations (``activation``, the authors' code).
    ``actionness_weight`` ``w``: 1 (the paper adds the two scores; the code uses 2). Video-level scores (the paper
    pools and thresholds the classification score, after STPN): the top ``ceil(T / video_topk_divisor)``
    activations per class are averaged (8 as in training, Eq. 5, with ``video_topk_rule`` ``ceil``; the code's eval.py
    uses ``max(int(T / 12), 1)``: divisor 12, rule ``int``); ``video_score``
    ``softmax`` turns them into a distribution over the action classes (default), ``sigmoid`` scores each class on its
    own (a video holding many classes does not spread one unit of probability over them), ``pooled_activation``
    keeps the averaged activations (the code's ``cs``, which its ``max + video score`` segment scoring adds)."""

    score_space: Literal["probability", "activation"] = "probability"
    actionness_weight: float = 1.0
    video_topk_divisor: float = 8.0
    video_topk_rule: Literal["ceil", "int"] = "ceil"
    video_score: Literal["softmax", "sigmoid", "pooled_activation"] = "softmax"


@dataclass
class SFNetConfig:
    """SF-Net's architecture, losses and inference; defaults are the paper's (THUMOS14 ``eta = 5``)."""

    two_stream: bool = True
    hidden_dim: int | None = None
    conv_kernel: int = 3
    dropout: float = 0.7
    frame_loss: bool = True
    background: bool = True
    eta: float = 5.0
    background_norm: Literal["num_classes", "num_classes_plus_one"] = "num_classes"
    actionness: bool = True
    actionness_negatives: Literal["mined_background", "top_actionness"] = "mined_background"
    actionness_gate: float | None = None
    video_loss: bool = True
    topk_divisor: float = 8.0
    video_min_length: int = 0
    video_target: Literal["clicks", "click_classes", "video_labels"] = "clicks"
    actionness_fusion_init: float | None = None
    alpha: float = 1.0
    beta: float = 1.0
    stream_losses: bool = True
    centre_loss: bool = False
    gamma: float = 0.1
    centre_rate: float = 0.5
    centre_update: Literal["wen", "code_sgd"] = "wen"
    centre_lr: float = 0.1
    centre_multi_class_from: int = 500
    mining: MiningConfig = field(default_factory=MiningConfig)
    inference: SFNetInferenceConfig = field(default_factory=SFNetInferenceConfig)

    def __post_init__(self) -> None:
        if self.actionness and self.actionness_negatives == "mined_background" and not self.background:
            raise ValueError("actionness with actionness_negatives 'mined_background' needs background: true "
                             "(or actionness_negatives: top_actionness)")
        if self.mining.enabled and not self.frame_loss:
            raise ValueError("mining.enabled needs frame_loss: true (mined snippets feed L_frame)")
        if not (self.frame_loss or self.video_loss):
            raise ValueError("at least one of frame_loss and video_loss must be on")
        if self.centre_loss and not 0 < self.centre_rate <= 1:
            raise ValueError("centre_rate must be in (0, 1]")
        if self.centre_loss and self.centre_update == "code_sgd" and (self.centre_lr <= 0 or self.beta <= 0):
            raise ValueError("centre_update code_sgd needs centre_lr > 0 and beta > 0 (it scales by 1 / beta)")
        if self.video_min_length < 0:
            raise ValueError(f"video_min_length must be >= 0, got {self.video_min_length}")
        if self.eta < 0 or self.topk_divisor <= 0 or self.mining.radius < 0:
            raise ValueError("eta must be >= 0, topk_divisor > 0, mining.radius >= 0")


# The method: SF-Net's record (``clicktal.models`` registers it as ``sfnet``) and its paper's presets.
SFNET = Method(
    SFNetConfig, "clicktal.models.sfnet:build_sfnet",
    needs=(LabelNeed(("action_clicks", "segments", "boundaries"),
                     "its frame loss and action mining start from labelled action snippets",
                     when=lambda cfg: cfg.frame_loss),),
    targets=("video_labels", "actions", "anchors", "truth"),  # truth: the n_mined_true diagnostic only, never a loss
    presets={
        # SF-Net (Ma et al., ECCV 2020), paper Sec. 3.4: for each predicted class, an interval where class score +
        # actionness exceeds the threshold at every frame is a segment; its confidence is the highest frame score
        # inside. The paper gives no threshold value, class rule or minimum length; those come from github
        # Flowerfan/SF-Net: eval.py generate_segment (threshold = mean of the combined score over the video with main.py
        # threshold_type='mean' and options.py --adjust-mean 1, compared with '>'; classes with cs > max(cs) / 1.5 and
        # cs > 0, cs the mean of the top max(T // 12, 1) class scores, which the model passes as video_scores; segments
        # of >= 2 snippets; no NMS). The model combines the scores: the paper sums class score and actionness, the code
        # weights actionness by options.py --actionness-weight 2.0.
        "sfnet": PostprocessConfig(
            class_ratio=1 / 1.5, thresholds=(1.0,), threshold_reference="mean", strict=True, min_snippets=2,
            scoring="max", nms="none"),
        # The code's variant (eval.py generate_segment): aggr_score = max(score inside) + cs[i], the video-level score.
        "sfnet_code": PostprocessConfig(
            class_ratio=1 / 1.5, thresholds=(1.0,), threshold_reference="mean", strict=True, min_snippets=2,
            scoring="max", video_weight=1.0, nms="none"),
        # The code's other evaluator, detectionMAP.py getLocMAP (inherited from W-TALC): half-range threshold max - (max
        # - min) * 0.5 per class and video, classes with cs > max(cs) / 2 and cs > 0 (cs the mean of the top T // 8
        # activations, which the model passes as video_scores), max + cs, segments of >= 2 snippets, no NMS; its
        # filter_segments drops detections overlapping the THUMOS14 ambiguous segments: the evaluator's ``ambiguous``
        # option.
        "sfnet_code_half_range": PostprocessConfig(
            class_ratio=1 / 2, thresholds=(0.5,), threshold_reference="range", strict=True, min_snippets=2,
            scoring="max", video_weight=1.0, nms="none"),
    })

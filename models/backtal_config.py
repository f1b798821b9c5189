"""BackTAL's typed config (``model.params`` of a config naming ``backtal``), apart from the network in
:mod:`clicktal.models.backtal` so that a config is checked without importing torch."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from clicktal.pipeline.core.postprocess import PostprocessConfig

from .registry import LabelNeed, Method

Pass = Literal["base", "supp"]


@dataclass
class BackTALInferenceConfig:
    """How :meth:`~clicktal.models.backtal.BackTAL.frame_scores` presents a video (Sec. 3.5: the CAS of the
    confident classes is thresholded; "the same inference paradigm with BaS-Net").

    ``cas``: the per-class sequence grouped by the ``backtal`` post-processing preset (thresholds 0:0.025:0.25, see
    pipeline/postprocess/grouping.py). ``logits`` (default): the suppressed CAS itself through BaS-Net's
    ``utils.minmax_norm`` (per class ``(x - relu(min)) / (relu(max) - relu(min))``, not clipped, so negative logits
    stay below every threshold), which github Pilhyeon/BaSNet-pytorch test.py and VividLe/BackTAL
    lib/post_process/functions.py ``evaluate_score`` both apply to the CAS before grouping; ``softmax``: the
    softmax over the C + 1 columns, plain min-max normalised per class (an alternative, not either code's).
    ``actionness``: ``feature_magnitude`` = the L2 norm of the suppressed pass's first-layer features
    (functions.py ``localize_actions``, THUMOS14 only: ``feature_supp_1``), min-max normalised over the video, the
    signal the preset groups at 0.3:0.075:0.8; ``none`` gives None (then drop the preset's
    ``actionness_thresholds``)."""

    cas: Literal["logits", "softmax"] = "logits"
    actionness: Literal["feature_magnitude", "none"] = "feature_magnitude"


@dataclass
class BackTALConfig:
    """BackTAL's network, losses and inference. Defaults are the paper's THUMOS14 settings; the fields the paper does
    not fix, and why they are set as they are (docs/backtal.md has the table, and the ``code`` values of
    configs/backtal_code_thumos14.yaml traced to github VividLe/BackTAL):

    * ``hidden_dim`` 2048, ``attention_hidden`` 512, ``dropout`` 0.7 after the second layer, LeakyReLU (slope
      0.01), biases on: BaS-Net's model.py, which the paper follows ("we follow BaS-Net to set
      hyper-parameters"). ``conv_bias`` false is the BackTAL code (its ``AttentionConv1d`` uses the weight only);
    * ``topk_divisor`` 8 with the floor rule: Sec. 4.1 (``k = floor(T / 8)``);
    * ``frame_loss`` (Eq. 3), ``separation`` (Eq. 5-8), ``affinity`` (Eq. 9-16: embedding, L_aff and the masked
      convolution) switch the terms for Table 7's rows: all off = baseline, ``frame_loss`` = "+ background click",
      ``+ separation`` = "+ score separation", ``+ affinity`` = full BackTAL; ``affinity_mask`` false keeps L_aff
      but convolves without the mask (an extra row, not in the paper). L_frame acts on every click the run's labels
      give: background clicks (column 0) and, for Table 6's rows, action clicks (their class's column);
    * ``frame_average``: ``video`` (Eq. 3's 1 / N_frame per video, then over the videos with a click) or ``click``
      (one mean over every clicked snippet of the batch: the code's ``nn.CrossEntropyLoss(ignore_index=-100)``);
    * ``separation_form``: ``eq8`` = ``-log p_act_hat - log(1 - p_bg_hat)`` as printed (twice ``-log p_act_hat``,
      since the two-way softmax makes ``1 - p_bg_hat = p_act_hat``); ``act`` = ``-log p_act_hat`` once, the code's
      loss.py (cross-entropy with the label ``[1, 0]``). Both on the logits (the CAS before any softmax, as
      ``s_t^c`` is in Eq. 5-6 and in the code);
    * ``loss_passes``: the paper has one CAS S; with BaS-Net's two passes it does not say on which L_frame and
      L_sep act. ``base`` (default, and the code: ``loss_click_base`` and the separation read ``cas_base``): the
      base pass's label has background present, so a background-click loss agrees with it; on the suppressed
      pass it contradicts BaS-Net's label ``[0, y]`` (the clicked snippets are the ones the attention suppresses,
      and a high background score there becomes the suppressed pass's top-k background score). ``both`` sums over
      the two passes; measured on synthetic THUMOS14-structured features it stalls video classification
      (docs/backtal.md); ``supp`` uses the suppressed pass only;
    * ``pseudo_pass``: the CAS whose top-k gives the pseudo action frames of L_aff (detached: they are labels):
      ``supp``, the CAS used at inference and the code's ``cas_supp``; L_sep's ``p_act`` uses the top-k of the pass
      it is computed on;
    * ``embed_hidden``: 0 = the paper's single temporal convolution ``Conv1d(D, D_emb, h)``; the code has two
      (``D -> 512``, LeakyReLU, ``512 -> 32``, both kernel 3: ``EmbeddingModule``);
    * ``affinity_mining``: ``hardest_pair`` = Eq. 10-12 as printed, one max over all pairs of a kind per video;
      ``per_anchor`` = the code's ``EmbeddingLoss``: each frame's hardest partner, the hinge averaged over the
      frames, with the action-background term taken in both directions (four terms; self-pairs included, as the
      code's similarity matrices include their diagonal);
    * ``affinity_tile``: how the mask meets the convolution's input. ``per_tap`` (Eq. 15): neighbour ``t - h//2 + i``
      of every channel is scaled by ``a[i, t]``. ``channel_thirds``: the authors' ``AttentionConv1d``
      (network.py ``cal_local_attenttion`` and ``forward``) builds the similarity tile tap-major (block ``i`` of
      ``C_in`` rows = ``a[i]``) but multiplies it into ``nn.Unfold``'s channel-major ``[C_in * h, T]`` layout
      (row ``c * h + k``), so entry (channel c, tap k) is scaled by ``a[(c * h + k) // C_in]``: roughly the first
      third of the input channels by the left similarity, the middle third by the centre one, the last by the right;
    * ``pseudo_action_set``: ``union`` = the union of the labelled classes' top-k snippets without the clicked ones
      (footnote 3: a snippet has one pseudo label; Eq. 10-12 pair frames, not list entries); ``list`` = the code's
      (loss.py ``EmbeddingLoss``: ``mask_list.extend(topk)`` per class): duplicates across classes and clicked
      snippets kept;
    * ``affinity_kernel`` h = 3 (Sec. 3.4's h, the kernel of the masked convolutions) and the masked layers: both
      kernel-3 layers of the classification network, in both passes (the paper says "temporal convolution" without
      naming one; the code masks both, ``BaseModule``); the kernel-1 classifier has no neighbours to weight. The
      mask is the raw cosine (Eq. 9, 15), not clipped, and not detached (the paper trains end to end;
      ``detach_affinity`` stops its gradient);
    * ``attention_l1``: BaS-Net's (and the code's ``C_LOSS_NORM``) penalty, 1e-4 x the L1 norm of the attention
      over time, mean over videos; Eq. 4 has none, so 0;
    * averaging: L_sep over (video, class) pairs per video then over videos with a click (the code's order; with
      one class per video it is the plain mean); L_aff terms over the videos that have a pair of that kind.
    """

    hidden_dim: int = 2048
    attention_hidden: int = 512
    dropout: float = 0.7
    conv_bias: bool = True
    topk_divisor: float = 8.0
    frame_loss: bool = True
    frame_average: Literal["video", "click"] = "video"
    separation: bool = True
    separation_form: Literal["eq8", "act"] = "eq8"
    affinity: bool = True
    affinity_mask: bool = True
    affinity_mining: Literal["hardest_pair", "per_anchor"] = "hardest_pair"
    affinity_tile: Literal["per_tap", "channel_thirds"] = "per_tap"
    pseudo_action_set: Literal["union", "list"] = "union"
    detach_affinity: bool = False
    lambda_sep: float = 1.0
    beta: float = 0.8
    embed_dim: int = 32
    embed_hidden: int = 0
    tau_same: float = 0.5
    tau_diff: float = 0.1
    affinity_kernel: int = 3
    loss_passes: Literal["both", "base", "supp"] = "base"
    pseudo_pass: Pass = "supp"
    attention_l1: float = 0.0
    inference: BackTALInferenceConfig = field(default_factory=BackTALInferenceConfig)

    def __post_init__(self) -> None:
        if self.affinity_kernel % 2 != 1 or self.affinity_kernel < 1:
            raise ValueError(f"affinity_kernel must be odd, got {self.affinity_kernel}")
        if self.topk_divisor <= 0 or self.embed_dim < 1 or self.hidden_dim < 1 or self.embed_hidden < 0:
            raise ValueError("topk_divisor must be > 0, embed_dim and hidden_dim >= 1, embed_hidden >= 0")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.attention_l1 < 0:
            raise ValueError(f"attention_l1 must be >= 0, got {self.attention_l1}")

    @property
    def passes(self) -> tuple[str, ...]:
        return ("base", "supp") if self.loss_passes == "both" else (self.loss_passes,)


# The method: BackTAL's record (``clicktal.models`` registers it as ``backtal``) and its paper's preset.
BACKTAL = Method(
    BackTALConfig, "clicktal.models.backtal:build_backtal",
    needs=(LabelNeed(("background_clicks", "action_clicks"), "L_frame (frame_loss) acts on clicked snippets",
                     when=lambda cfg: cfg.frame_loss),
           LabelNeed(("background_clicks",), "L_sep (separation) contrasts the background-clicked snippets",
                     when=lambda cfg: cfg.separation),
           LabelNeed(("video_labels",), "the video-level classification loss")),
    targets=("video_labels", "background", "clicks"),
    presets={
        # BackTAL (Yang et al., TPAMI 2021): Sec. 4.1 sets tau_cls = 0.25 and adopts "the same inference paradigm with
        # BaS-Net"; Sec. 3.5 thresholds the class activation sequence of the confident classes and scores each instance
        # by AutoLoc's outer-inner contrast. The paper states neither the thresholds, the inflation, the weight of the
        # video score nor NMS; github VividLe/BackTAL experiments/THUMOS14.yaml does: ACT_THRESH 0:0.025:0.25
        # (exclusive), OUTER_LAMBDA 0.25, CONF_GAMMA 0.2 (score = inner - outer + 0.2 x video score, as BaS-Net's
        # get_proposal_oic gamma=0.2), NMS_THRESHOLD 0.55; lib/post_process/functions.py adds (for THUMOS14) proposals
        # from the min-max normalised feature magnitudes at 0.3:0.075:0.8 (the model passes them as ``actionness``),
        # groups the CAS resized to the frame count, and keeps positions with score >= th and > 0 (hence strict:
        # identical at th = 0, elsewhere up to exact ties). Left out on purpose: the code's outer region is one frame
        # short on the right and reads the thresholded CAS, and its NMS adds 1 (second) to every length; here the outer
        # region is symmetric and NMS uses plain tIoU.
        "backtal": PostprocessConfig(
            class_threshold=0.25, resolution="frame", thresholds=tuple(round(0.025 * i, 3) for i in range(10)),
            strict=True, actionness_thresholds=tuple(round(0.3 + 0.075 * i, 3) for i in range(7)),
            scoring="outer_inner", inflation=0.25, video_weight=0.2, nms="hard", nms_tiou=0.55),
    })

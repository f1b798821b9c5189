"""A method defined outside the clicktal package, as a user writes one (docs/engine.md, "How to add a method"):
its typed config, its target kind, its network, its loss, its post-processing preset and the labels it needs,
registered through the public API. A config lists this file under ``imports:`` (tests/test_plugin_method.py).

The target kind ``click_window``: each action click (``data.labels.action_clicks``) spread over its snippet and the
snippets either side, ``[T, C]`` multi-hot. The network: one temporal convolution and a per-snippet classifier. The
loss: the video-level binary cross-entropy of the top-k mean of each class's scores against the video labels, plus
the binary cross-entropy of the snippets a click window covers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clicktal.models import FrameScores, LabelNeed, Localizer, LocalizerOutput, Method, register_method
from clicktal.pipeline.core.postprocess import PostprocessConfig
from clicktal.pipeline.data.targets import BuildContext, TargetKind, register_target_kind


def click_windows(ctx: BuildContext) -> np.ndarray:
    """``[T, C]``: 1 on each action click's snippet and its neighbours either side, in the click's class column."""
    out = np.zeros((ctx.num_snippets, ctx.num_classes), np.float32)
    for click in ctx.supervision.action_clicks:
        if click.label in ctx.index:
            t = ctx.geometry.index_of(click.time_s, ctx.num_snippets)
            out[max(t - 1, 0):t + 2, ctx.index[click.label]] = 1.0
    return out


# a window is a labelled span: it moves with a sample's grid as the dense kinds do; the batch gets its row mask
register_target_kind(TargetKind("click_window", click_windows, "dense", row_mask=True))


@dataclass
class PointNetConfig:
    """``hidden_dim`` of the convolution, ``topk_divisor`` of the video score (k = ceil(T / divisor)),
    ``click_weight`` of the click term."""

    hidden_dim: int = 16
    topk_divisor: float = 8.0
    click_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.hidden_dim < 1 or self.topk_divisor <= 0:
            raise ValueError("hidden_dim must be >= 1 and topk_divisor > 0")


class PointNet(Localizer):
    has_background = False

    def __init__(self, *, config: PointNetConfig, input_dim: int, num_classes: int):
        super().__init__()
        self.config, self.num_classes = config, num_classes
        self.conv = nn.Conv1d(input_dim, config.hidden_dim, 3, padding=1)
        self.classifier = nn.Linear(config.hidden_dim, num_classes)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> LocalizerOutput:
        h = F.relu(self.conv(features.transpose(1, 2))).transpose(1, 2)
        return LocalizerOutput(self.classifier(h), None, mask)

    def _video_logits(self, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, C]``: the mean of each class's top ceil(T / divisor) valid scores."""
        k = int(torch.ceil(mask.sum(1).max() / self.config.topk_divisor).clamp(min=1))
        masked = scores.masked_fill(~mask[..., None], float("-inf"))
        top = masked.topk(min(k, scores.shape[1]), dim=1).values
        return top.masked_fill(torch.isinf(top), 0.0).mean(1)

    def losses(self, output: LocalizerOutput, batch, *, iteration: int) -> dict[str, torch.Tensor]:
        scores, mask = output.class_scores, output.mask.bool()
        labels = batch.targets["video_labels"].to(scores.device).float()
        video = F.binary_cross_entropy_with_logits(self._video_logits(scores, mask), labels)
        covered = batch.masks["click_window"].to(scores.device) & mask
        if covered.any():
            targets = batch.targets["click_window"].to(scores.device)[covered]
            click = F.binary_cross_entropy_with_logits(scores[covered], targets)
        else:
            click = scores.sum() * 0
        return {"total": video + self.config.click_weight * click, "video": video, "click": click}

    def frame_scores(self, output: LocalizerOutput, index: int = 0) -> FrameScores:
        valid = output.mask[index].bool()
        scores = output.class_scores[index][valid]
        probs = torch.sigmoid(scores)
        video = torch.sigmoid(self._video_logits(scores[None], valid[valid][None]))[0]
        return FrameScores(scores=probs.cpu().numpy(), video_scores=video.cpu().numpy(),
                           class_probs=probs.cpu().numpy())


def build_point_net(*, config: PointNetConfig, input_dim: int, num_classes: int, streams=None,
                    geometry=None) -> PointNet:
    return PointNet(config=config, input_dim=input_dim, num_classes=num_classes)


register_method("plugin_points", Method(
    PointNetConfig, build_point_net,
    needs=(LabelNeed(("action_clicks",), "the click term reads the clicked snippets"),),
    targets=("video_labels", "click_window"),
    presets={
        # the plugin's own recipe: classes whose video score is >= 0.2, runs of probability >= 0.3 / 0.5 / 0.7,
        # mean score inside plus the video score, class-wise NMS at 0.5
        "plugin_points": PostprocessConfig(class_threshold=0.2, thresholds=(0.3, 0.5, 0.7), scoring="mean",
                                           video_weight=1.0, nms="hard", nms_tiou=0.5),
    }))

"""FSN / WFSN (models/fsn.py): upsampling onto frames, the temporal CNN's receptive field, the losses of Eq. 4 and
Sec. 3.4, late fusion, WFSN's pooling against its per-snippet inference, the fsn preset's per-tIoU NMS, and a short
run of each on 5-frame synthetic features."""
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clicktal.models import build_localizer
from clicktal.models.blocks import upsample_to_frames
from clicktal.models.fsn import FSNConfig, TemporalClassifier
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.postprocess.grouping import PRESETS, detect_segments
from clicktal.pipeline.runs.schema import ExperimentConfig

REPO = Path(__file__).resolve().parents[2]
TSN = FeatureGeometry(fps=25, window=5, stride=5)
STREAMS = {"rgb": (0, 8), "flow": (8, 16)}


def build(name="fsn", geometry=TSN, **params):
    model, _ = build_localizer(name, {"hidden_dim": 16, "dropout": 0.0, **params}, input_dim=16, num_classes=3,
                               streams=STREAMS, geometry=geometry)
    return model.eval()


def frame_batch(targets: torch.Tensor, mask: torch.Tensor) -> SimpleNamespace:
    """What FSN's loss reads of a batch: the ``frames`` targets ``[B, F, K + 1]`` and their mask ``[B, F]``."""
    return SimpleNamespace(targets={"frames": targets}, masks={"frames": mask})


def video_batch(labels: torch.Tensor) -> SimpleNamespace:
    """What WFSN's loss reads of a batch: ``video_labels [B, K]``."""
    return SimpleNamespace(targets={"video_labels": labels}, masks={})


# ------------------------------------------------------------------------------------------------ upsampling


def test_upsampling_puts_each_snippet_score_on_its_centre_frame():
    x = torch.tensor([[[0.0], [10.0], [20.0], [30.0]]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    up = upsample_to_frames(x, mask, TSN)[0, :, 0]
    assert up.shape == (20,)
    assert up[[2, 7, 12, 17]].tolist() == [0.0, 10.0, 20.0, 30.0]  # snippet i's centre frame is 5 i + 2
    assert up[:3].tolist() == [0.0, 0.0, 0.0] and up[17:].tolist() == [30.0] * 3  # constant past the outer centres
    assert up[3].item() == pytest.approx(2.0) and up[4].item() == pytest.approx(4.0)  # linear in between
    # window == stride: the same as the parameter-free linear upsampling of FCN / F.interpolate
    ref = F.interpolate(x.transpose(1, 2), scale_factor=5, mode="linear", align_corners=False)[0, 0]
    assert torch.allclose(up, ref, atol=1e-5)


def test_upsampling_follows_overlapping_snippets_and_never_reads_padding():
    # 16-frame snippets every 8 frames: snippet i is centred at frame 8 i + 8, not 8 i + 4
    g = FeatureGeometry(fps=25, window=16, stride=8)
    x = torch.arange(5, dtype=torch.float32)[None, :, None]
    mask = torch.tensor([[True, True, True, False, False]])
    up = upsample_to_frames(x, mask, g)[0, :, 0]
    n = torch.arange(40, dtype=torch.float32)
    expect = ((n + 0.5 - 8) / 8).clamp(0, 2)  # clamped at the last *valid* snippet, 2
    assert torch.allclose(up[:24], expect[:24]) and up[24:].abs().sum() == 0  # padded snippets' frames are zero
    alone = upsample_to_frames(x[:, :3], mask[:, :3], g)[0, :, 0]
    assert torch.equal(up[:24], alone)  # batching with padding changes nothing


# ------------------------------------------------------------------------------------------------ network


def test_temporal_cnn_receptive_field_is_what_the_dilations_imply():
    torch.manual_seed(0)  # with 8 random ReLU units a snippet's gradient can vanish by chance: fixed weights
    cfg = FSNConfig(hidden_dim=8, dropout=0.0)
    assert cfg.receptive_field == 1 + 2 * (1 + 2 + 4) == 15
    head = TemporalClassifier(config=cfg, in_dim=4, outputs=3).eval()
    x = torch.randn(1, 41, 4, requires_grad=True)
    head(x, torch.ones(1, 41, dtype=torch.bool))[0, 20].sum().backward()
    seen = torch.nonzero(x.grad[0].abs().sum(1) > 0).flatten().tolist()
    assert seen == list(range(20 - 7, 20 + 8))  # every snippet of the span, none outside it
    flat = FSNConfig(temporal_cnn=False)
    assert flat.receptive_field == 1
    head = TemporalClassifier(config=flat, in_dim=4, outputs=3)
    x = torch.randn(1, 9, 4, requires_grad=True)
    head(x, torch.ones(1, 9, dtype=torch.bool))[0, 4].sum().backward()
    assert torch.nonzero(x.grad[0].abs().sum(1) > 0).flatten().tolist() == [4]


def test_late_fusion_weights_the_stream_logits_and_trains_each_stream_by_its_own_loss():
    model = build(fusion_weights=[1.0, 1.5])
    x, mask = torch.randn(2, 7, 16), torch.ones(2, 7, dtype=torch.bool)
    out = model(x, mask)
    assert set(out.aux) == {"logits_rgb", "logits_flow"}
    fused = (out.aux["logits_rgb"] + 1.5 * out.aux["logits_flow"]) / 2.5
    assert torch.allclose(out.class_scores, fused)
    targets = torch.zeros(2, 35, 4)
    targets[..., 0] = 1
    losses = model.losses(out, frame_batch(targets, torch.ones(2, 35, dtype=torch.bool)),
                          iteration=0)
    assert torch.allclose(losses["total"], losses["rgb"] + losses["flow"])
    losses["rgb"].backward()
    assert all(p.grad is None for p in model.heads["flow"].parameters())
    # the flow head sees only the flow columns
    x2 = x.clone()
    x2[..., :8] = 0
    assert torch.allclose(model(x2, mask).aux["logits_flow"], out.aux["logits_flow"])


def test_early_fusion_and_single_streams_read_the_right_columns():
    early = build(fusion="early")
    assert list(early.heads) == ["joint"] and early.heads["joint"].cnn.conv1.in_channels == 16
    rgb = build(streams="rgb")
    assert list(rgb.heads) == ["rgb"] and rgb.heads["rgb"].cnn.conv1.in_channels == 8
    with pytest.raises(ValueError, match=r"needs the feature stream\(s\) \['flow'\]"):
        build_localizer("fsn", {"streams": "flow"}, input_dim=16, num_classes=3, streams=None, geometry=TSN)
    with pytest.raises(ValueError, match="no whole frames per snippet"):
        build(geometry=FeatureGeometry(fps=25, window=16, stride=7.5))


# ------------------------------------------------------------------------------------------------ losses


def test_frame_loss_is_eq4_summed_over_valid_frames_and_averaged_over_the_batch():
    model = build()
    out = model(torch.zeros(2, 7, 16), torch.tensor([[True] * 7, [True] * 3 + [False] * 4]))
    for head in out.aux.values():
        head.zero_()  # uniform softmax: each frame costs log(K + 1)
    targets = torch.zeros(2, 35, 4)
    targets[:, :, 2] = 1
    frame_mask = torch.zeros(2, 35, dtype=torch.bool)
    frame_mask[0], frame_mask[1, :15] = True, True
    batch = frame_batch(targets, frame_mask)
    losses = model.losses(out, batch, iteration=0)
    assert losses["rgb"].item() == pytest.approx((35 + 15) * math.log(4) / 2)
    mean = build(frame_loss="mean").losses(out, batch, iteration=0)
    assert mean["rgb"].item() == pytest.approx(math.log(4))


def test_frame_loss_reads_the_upsampled_scores_of_each_frame():
    model = build(streams="rgb")
    out = model(torch.zeros(1, 2, 16), torch.ones(1, 2, dtype=torch.bool))
    logits = torch.tensor([[[5.0, 0, 0, 0], [0, 0, 0, 5.0]]])
    out.aux["logits_rgb"] = logits
    targets = torch.zeros(1, 10, 4)
    targets[0, :5, 0], targets[0, 5:, 3] = 1, 1  # background on snippet 0's frames, class 3 on snippet 1's
    loss = model.losses(out, frame_batch(targets, torch.ones(1, 10, dtype=torch.bool)),
                        iteration=0)["rgb"]
    up = upsample_to_frames(logits, torch.ones(1, 2, dtype=torch.bool), TSN)[0].log_softmax(-1)
    assert loss.item() == pytest.approx(-(up[:5, 0].sum() + up[5:, 3].sum()).item())


def test_wfsn_video_loss_pools_over_time_with_gmp_or_gap():
    model = build("wfsn", streams="rgb")
    logits = torch.tensor([[[1.0, 0.0, 0.0], [3.0, 0.0, 2.0], [0.0, 0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    out = model(torch.zeros(1, 3, 16), mask)
    out.aux["logits_rgb"] = logits
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    gmp = model.losses(out, video_batch(labels), iteration=0)["rgb"]
    expect = -(0.5 * torch.tensor([3.0, 0.0, 2.0]).log_softmax(-1)[[0, 2]]).sum()  # multi-hot / its sum
    assert gmp.item() == pytest.approx(expect.item())
    gap_model = build("wfsn", streams="rgb", pooling="avg")
    gap = gap_model.losses(out, video_batch(labels), iteration=0)["rgb"]
    expect = -(0.5 * torch.tensor([2.0, 0.0, 1.0]).log_softmax(-1)[[0, 2]]).sum()  # padding is not averaged
    assert gap.item() == pytest.approx(expect.item())


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_wfsn_pooling_and_per_snippet_inference_agree_on_a_constant_input(pooling):
    x = torch.randn(1, 1, 16).expand(1, 40, 16)
    mask = torch.ones(1, 40, dtype=torch.bool)
    flat = build("wfsn", pooling=pooling, temporal_cnn=False)
    fs = flat.frame_scores(flat(x, mask))
    assert fs.scores.shape == (200, 3)  # one row per frame, K columns (no background)
    assert np.allclose(fs.class_probs, fs.video_scores[None], atol=1e-6)
    # with the temporal CNN, every snippet beyond the receptive field's reach of the ends scores the same
    deep = build("wfsn", pooling=pooling)
    probs = deep.frame_scores(deep(x, mask)).class_probs
    inner = probs[7 * 5 + 2:(40 - 8) * 5 + 3]  # from the centre of snippet 7 to that of snippet 32
    assert np.allclose(inner, inner[:1], atol=1e-6)


def test_fsn_frame_scores_drop_the_background_column_and_pass_1_minus_its_probability_as_actionness():
    model = build()
    out = model(torch.randn(1, 6, 16), torch.ones(1, 6, dtype=torch.bool))
    fs = model.frame_scores(out)
    assert fs.scores.shape == (30, 3) and np.all(fs.scores.sum(1) < 1)  # background holds the rest
    assert np.allclose(fs.video_scores, fs.scores.max(0))
    frame_logits = upsample_to_frames(out.class_scores, out.mask, TSN)[0]
    p_bg = frame_logits.softmax(-1)[:, 0].detach().numpy()
    assert fs.actionness.shape == (30,) and np.allclose(fs.actionness, 1 - p_bg, atol=1e-6)
    assert np.allclose(fs.actionness, fs.scores.sum(1), atol=1e-6)


def test_wfsn_frame_signal_is_the_upsampled_logits_or_their_softmax():
    model = build("wfsn")
    out = model(torch.randn(1, 6, 16), torch.ones(1, 6, dtype=torch.bool))
    logits = upsample_to_frames(out.class_scores, out.mask, TSN)[0].detach().numpy()
    fs = model.frame_scores(out)
    assert model.config.frame_signal == "logits" and np.allclose(fs.scores, logits, atol=1e-6)
    assert np.allclose(fs.class_probs.sum(1), 1, atol=1e-6) and fs.actionness is None  # no background class
    model.config.frame_signal = "softmax"
    assert np.allclose(model.frame_scores(out).scores, fs.class_probs)


# ------------------------------------------------------------------------------------------------ windows


class Videos:
    """The dataset interface the window sampler reads."""

    def __init__(self, items):
        self.items = {it.video_id: it for it in items}

    def __iter__(self):
        return iter(self.items.values())

    def __len__(self):
        return len(self.items)

    def item(self, vid):
        return self.items[vid]


def test_fsn_config_windows_keep_five_action_frames_and_balance_the_classes():
    from clicktal.pipeline.core.config import load_config
    from clicktal.pipeline.data.annotations import Segment
    from clicktal.pipeline.data.datasets import make_item, sample_batch
    from clicktal.pipeline.data.sampling import Sampler
    from clicktal.pipeline.data.supervision import Supervision

    def video(vid, start_s, end_s, label, T=60):
        sup = Supervision(vid, T * 0.2, frozenset([label]), boundaries=(Segment(start_s, end_s, label),))
        return make_item(vid, np.zeros((T, 4), np.float32), TSN, sup, ["A", "B"], with_frame_labels=True)

    # A: one instance of exactly 5 frames (1.4-1.6 s, snippet 7); B: a long instance filling many windows
    data = Videos([video("a", 1.4, 1.6, "A"), video("b", 2.0, 10.0, "B")])
    cfg = load_config(ExperimentConfig, REPO / "configs/fsn_thumos14.yaml")
    sampler = Sampler(cfg.data.sampling)
    windows, prob = sampler.window_index(data)
    starts_a = sorted(start for vid, start in windows if vid == "a")
    assert starts_a == list(range(1, 8))  # every 35-frame window holding the 5 frames, and no other
    for vid, start in windows:
        frames = data.item(vid).targets["frames"][start * 5:(start + 7) * 5]
        assert len(frames) == 35 and frames[:, 1:].any(axis=1).sum() >= 5
    batch = sample_batch(data, 4000, np.random.default_rng(0), sampler)
    share_a = float(np.mean([t[:, 1].sum() > 0 for t in batch.targets["frames"].numpy()]))
    assert len(windows) - len(starts_a) > 5 * len(starts_a)  # B has many more windows ...
    assert 0.45 < share_a < 0.55  # ... but both classes are drawn equally often
    assert batch.targets["frames"].shape == (4000, 35, 3)


# ------------------------------------------------------------------------------------------------ preset


def test_fsn_literal_preset_thresholds_0_to_1_and_nms_at_the_evaluation_tiou_minus_0_1():
    post = PRESETS.get("fsn_literal")
    assert post.thresholds == tuple(round(0.1 * i, 1) for i in range(11))
    assert post.at_evaluation_tiou(0.5).nms_tiou == pytest.approx(0.4)
    assert post.at_evaluation_tiou(0.7).nms_tiou == pytest.approx(0.6)
    # at tIoU 0.1 the rule gives 0: any overlap is suppressed, disjoint segments stay
    frames = TSN.frames()
    scores = np.zeros((100, 1))
    scores[10:30], scores[15:25], scores[60:70] = 0.45, 0.95, 0.65
    at = lambda t: detect_segments(scores, frames, ["A"], "v", post.at_evaluation_tiou(t))
    spans = lambda dets: sorted((round(d.start_s * 25), round(d.end_s * 25)) for d in dets)
    assert (15, 25) in spans(at(0.5)) and (10, 30) in spans(at(0.7))
    assert spans(at(0.1)) == [(15, 25), (60, 70)]


# ------------------------------------------------------------------------------------------------ runs


@pytest.fixture
def tsn_run(tmp_path):
    from clicktal.pipeline.core.config import load_config, merge_overrides
    from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features
    from clicktal.pipeline.runs.experiments import run_experiment

    gt = random_ground_truth(n_videos=10, seed=3)
    synthesize_features(gt, tmp_path / "feats", dim=16, seed=3, geometry=TSN)

    def run(config: str, overrides: dict):
        base = {"data": {"features": str(tmp_path / "feats"), "ground_truth": str(gt.write(tmp_path / "gt.json")),
                         "train_subset": "training", "test_subset": "test", "ambiguous": ""},
                "model": {"params": {"hidden_dim": 64, "dropout": 0.0}},
                "train": {"iterations": 150, "checkpoint_every": 150, "progress": False, "num_threads": 1,
                          "optimizer": {"name": "adam", "lr": 0.001}}}
        cfg = load_config(ExperimentConfig, REPO / config, merge_overrides(base, overrides))
        res = run_experiment(cfg, tmp_path / cfg.name)
        return res, json.loads((tmp_path / cfg.name / "results.json").read_text())

    return run


def test_fsn_run_evaluates_once_per_tiou_and_reports_frame_map(tsn_run):
    # 400 steps: at 150 the 5-video model still gives 1 - P(bg) > 0.1 over whole videos and its class rule errs
    res, results = tsn_run("configs/fsn_thumos14.yaml", {"train": {"iterations": 400, "checkpoint_every": 400}})
    ev = results["evaluation"]
    assert ev["tiou_thresholds"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert ev["nms_tiou"] == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6])
    assert [results["mAP"][f"{t:.2f}"] for t in ev["tiou_thresholds"]] == ev["mAP"]
    assert results["average_mAP"] == pytest.approx(np.mean(ev["mAP"]))
    frame = results["frame_mAP"]
    # chance is the share of each class's frames, about 0.06 here; 150 steps learn well above it
    assert 0.12 < frame["mAP"] <= 1 and frame["videos"] == 5 and res.average > 0.1


def test_wfsn_run_trains_on_100_segments_and_scores_every_frame(tsn_run):
    res, results = tsn_run("configs/wfsn_thumos14.yaml", {"data": {"sampling": {"train": {"count": 20}}}})
    assert results["evaluation"]["nms_tiou"][0] == pytest.approx(1e-9)
    assert results["frame_mAP"]["videos"] > 0 and results["n_detections"] > 0

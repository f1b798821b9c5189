"""SF-Net's ActionMiner: proposing labels changes nothing, only a training step keeps them, the labels a batch mines
reach its other crops of the same video at once, and the trainer checkpoints the kept labels beside the weights (and
resumes from checkpoints that held them in the model's state dict)."""
import numpy as np
import pytest
import torch

from clicktal.models import build_localizer
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.datasets import DataConfig, VideoItem, collate, load_data
from clicktal.pipeline.data.labels import ActionClickConfig, LabelConfig
from clicktal.pipeline.data.sampling import Sampler, SamplerConfig, SamplingConfig
from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features
from clicktal.pipeline.runs.engine import Trainer, load_checkpoint, validation_losses
from clicktal.pipeline.runs.schema import OptimConfig, TrainConfig

STREAMS = {"rgb": (0, 3), "flow": (3, 6)}


def sfnet(**mining):
    torch.manual_seed(0)
    model, _ = build_localizer("sfnet", {"mining": {"radius": 3, "xi": 0.0, **mining}}, input_dim=6, num_classes=2,
                               streams=STREAMS)
    return model


def two_crops():
    """One 30-snippet video, constant in time (every snippet predicts the same class), clicked at snippet 10, as two
    crops: 0-19 (holding the click) and 12-29 (without it)."""
    T = 30
    targets = np.zeros((T, 2), np.float32)
    targets[10, 0] = 1
    item = VideoItem("v", np.tile(np.linspace(0.5, 1.0, 6, dtype=np.float32), (T, 1)), geometry=FeatureGeometry(),
                     targets={"video_labels": np.array([1.0, 0.0], np.float32), "actions": targets,
                              "anchors": targets.sum(1) > 0, "background": np.zeros(T, bool)})
    return collate([item.sample(np.arange(0, 20)), item.sample(np.arange(12, 30))])


def test_a_training_batch_shares_what_it_mines_with_its_other_crops_and_the_step_keeps_it():
    batch = two_crops()
    model = sfnet(keep=True)
    model.train()
    out = model(batch.features, batch.mask)
    terms = model.losses(out, batch, iteration=0)
    # radius 3 around the click: 7 8 9 11 12 13 in the first crop; 12 and 13 (its first two snippets) in the second
    assert terms["n_mined"] == 8 and terms["n_clicks"] == 1
    assert model.miner.kept == {}  # the losses keep nothing
    model.after_step(out, batch, iteration=0)
    assert sorted(model.training_state()["mined"]["v"]) == [[t, 1] for t in (7, 8, 9, 11, 12, 13)]
    model.after_step(out, batch, iteration=0)  # the same labels again: kept once
    assert len(model.miner.kept["v"]) == 6


def test_a_validation_pass_mines_for_its_own_loss_without_sharing_or_keeping():
    batch = two_crops()
    model = sfnet(keep=True).eval()
    with torch.no_grad():
        terms = model.losses(model(batch.features, batch.mask), batch, iteration=0)
    assert terms["n_mined"] == 6  # the first crop's own; nothing reaches the second crop
    assert model.miner.kept == {}


def test_without_keep_a_training_step_keeps_nothing():
    batch = two_crops()
    model = sfnet(keep=False)
    model.train()
    out = model(batch.features, batch.mask)
    assert model.losses(out, batch, iteration=0)["n_mined"] == 6
    model.after_step(out, batch, iteration=0)
    assert model.training_state() == {"mined": {}}


def test_propose_changes_no_state_and_the_state_round_trips():
    batch = two_crops()
    model = sfnet(keep=True)
    model.load_training_state({"mined": {"v": [[np.int64(25), 1]], "other": [[3, 2]]}})
    assert model.miner.kept == {"v": [[25, 1]], "other": [[3, 2]]}  # plain ints, as a checkpoint holds them
    model.train()
    out = model(batch.features, batch.mask)
    labels = model.miner.propose(model, out, batch, batch.masks["actions"] & out.mask, iteration=0)
    assert bool(labels.mined[1, 25 - 12]) and labels.found.any()  # the kept label reaches the second crop
    assert model.miner.kept == {"v": [[25, 1]], "other": [[3, 2]]}
    clone = sfnet(keep=True)
    clone.load_training_state(model.training_state())
    assert clone.miner.kept == model.miner.kept
    clone.load_training_state({})
    assert clone.miner.kept == {}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("miner")
    gt = random_ground_truth(n_videos=10, seed=1)
    synthesize_features(gt, root / "feats", dim=8, seed=1)
    cfg = DataConfig(features=str(root / "feats"), ground_truth=str(gt.write(root / "gt.json")),
                     train_subset="training", test_subset="test", val_fraction=0.3,
                     labels=LabelConfig(ActionClickConfig(source="uniform")),
                     sampling=SamplingConfig(train=SamplerConfig(kind="crop", length=40)))
    return load_data(cfg, seed=0), cfg


def kept_sfnet(bundle):
    torch.manual_seed(123)
    model, _ = build_localizer("sfnet", {"dropout": 0.0, "mining": {"keep": True, "xi": 0.0}}, input_dim=8,
                               num_classes=len(bundle.classes), streams={"rgb": (0, 4), "flow": (4, 8)})
    return model


def train_cfg(**kw):
    return TrainConfig(**{**dict(iterations=6, batch_size=3, seed=5, checkpoint_every=3, progress=False,
                                 num_threads=1, optimizer=OptimConfig(lr=1e-2)), **kw})


def test_the_trainer_checkpoints_the_kept_labels_and_validation_keeps_none(data, tmp_path):
    bundle, dcfg = data
    model = kept_sfnet(bundle)
    val_mined = []

    def validator(m, it):
        scores = validation_losses(m, bundle.val, it)
        val_mined.append(scores["n_mined"])
        return scores

    Trainer(model, bundle.train, train_cfg(validate_every=2), tmp_path / "run", sampler=Sampler(dcfg.sampling),
            validator=validator).fit()
    ck = load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    kept = ck["method_state"]["mined"]
    assert kept and kept == model.miner.kept and "_extra_state" not in ck["model"]
    assert max(val_mined) > 0  # the held-out videos were mined for their loss ...
    assert set(kept) <= set(bundle.train.ids) and not set(kept) & set(bundle.val.ids)  # ... and none kept


def test_a_checkpoint_holding_the_kept_labels_in_the_state_dict_resumes_exactly(data, tmp_path):
    # checkpoints written before the miner kept its labels as training state held them as the model's extra state
    bundle, dcfg = data
    Trainer(kept_sfnet(bundle), bundle.train, train_cfg(), tmp_path / "a", sampler=Sampler(dcfg.sampling)).fit()
    Trainer(kept_sfnet(bundle), bundle.train, train_cfg(), tmp_path / "b",
            sampler=Sampler(dcfg.sampling)).fit(stop_after=3)
    path = tmp_path / "b" / "checkpoint_last.pt"
    ck = load_checkpoint(path)
    assert ck["method_state"]["mined"]  # something to carry over
    ck["model"]["_extra_state"] = ck.pop("method_state")
    torch.save(ck, path)
    torch.manual_seed(999)
    Trainer(kept_sfnet(bundle), bundle.train, train_cfg(), tmp_path / "b",
            sampler=Sampler(dcfg.sampling)).fit(resume=True)
    a, b = (load_checkpoint(tmp_path / run / "checkpoint_last.pt") for run in ("a", "b"))
    assert a["method_state"] == b["method_state"]
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())

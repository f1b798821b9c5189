"""The training engine: exact resume, NaN guard, logs, checkpoints, selection rules."""
import csv
import json

import pytest
import torch
import yaml

from clicktal.models import build_localizer
from clicktal.models.base import Localizer, LocalizerOutput
from clicktal.pipeline.data.sampling import Sampler, SamplerConfig, SamplingConfig
from clicktal.pipeline.data.datasets import DataConfig, load_data
from clicktal.pipeline.data.labels import ActionClickConfig, LabelConfig
from clicktal.pipeline.runs.engine import NonFiniteLossError, Trainer, load_checkpoint, make_optimizer
from clicktal.pipeline.runs.schema import ExperimentConfig, OptimConfig, TrainConfig
from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features

CROP = Sampler(SamplingConfig(train=SamplerConfig(kind="crop", length=40)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    gt = random_ground_truth(n_videos=10, seed=1)
    synthesize_features(gt, root / "feats", dim=8, seed=1)
    cfg = DataConfig(features=str(root / "feats"), ground_truth=str(gt.write(root / "gt.json")),
                     train_subset="training", test_subset="test",
                     labels=LabelConfig(ActionClickConfig(source="uniform")),
                     sampling=SamplingConfig(train=SamplerConfig(kind="crop", length=40)))
    return load_data(cfg, seed=0), cfg


def sfnet(bundle, **params):
    torch.manual_seed(123)
    m, _ = build_localizer("sfnet", params, input_dim=8, num_classes=len(bundle.classes),
                           streams={"rgb": (0, 4), "flow": (4, 8)})
    return m


def train_cfg(**kw):
    base = dict(iterations=8, batch_size=3, seed=5, checkpoint_every=3, progress=False, num_threads=1,
                optimizer=OptimConfig(lr=1e-2))
    base.update(kw)
    return TrainConfig(**base)


PARAMS = {"mining": {"mode": "once", "start_iteration": 2, "reinit_after": True, "xi": 0.5}}


def test_resume_after_a_kill_equals_an_uninterrupted_run(data, tmp_path):
    (bundle, dcfg) = data
    full = Trainer(sfnet(bundle, **PARAMS), bundle.train, train_cfg(), tmp_path / "a", sampler=Sampler(dcfg.sampling))
    full.fit()

    class Killed(Exception):
        pass

    def kill(model, it):  # dies at iteration 5, after the checkpoint of iteration 3
        raise Killed

    part = Trainer(sfnet(bundle, **PARAMS), bundle.train, train_cfg(validate_every=5), tmp_path / "b",
                   sampler=Sampler(dcfg.sampling), validator=kill)
    with pytest.raises(Killed):
        part.fit()
    assert load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")["iteration"] == 3
    torch.manual_seed(999)  # a fresh process: different global RNG, different initial weights
    resumed = Trainer(sfnet(bundle, **PARAMS), bundle.train, train_cfg(validate_every=5), tmp_path / "b",
                      sampler=Sampler(dcfg.sampling))  # the killed run's config (no validator: nothing validates)
    resumed.fit(resume=True)
    a = load_checkpoint(tmp_path / "a" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")
    assert a["iteration"] == b["iteration"] == 8
    for k, v in a["model"].items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, b["model"][k]), k
    assert a["method_state"] == b["method_state"] and a["method_state"]["mined"]  # the mined labels too
    rows_a = [json.loads(x) for x in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows_b] == list(range(1, 9))  # rows 4-5 of the killed run were replaced
    assert [r["total"] for r in rows_a] == [r["total"] for r in rows_b]


@pytest.mark.parametrize("train", [
    SamplerConfig(kind="crop", length=40), SamplerConfig(kind="resize", length=30),
    SamplerConfig(kind="segments", count=12), SamplerConfig(kind="windows", length=7, stride=3)])
def test_stop_after_then_resume_equals_uninterrupted(data, tmp_path, train):
    bundle, dcfg = data
    for run, kw in (("a", {}), ("b", {"stop_after": 3}), ("b", {"resume": True})):
        sampler = Sampler(SamplingConfig(train=train))  # a fresh sampler, as in a new process
        Trainer(sfnet(bundle), bundle.train, train_cfg(iterations=6), tmp_path / run, sampler=sampler).fit(**kw)
    a = load_checkpoint(tmp_path / "a" / "checkpoint_last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))


class NaNAt(Localizer):
    """A tiny localizer whose 'video' loss term goes NaN at a chosen iteration."""

    num_classes = 2

    def __init__(self, bad_iteration):
        super().__init__()
        self.lin = torch.nn.Linear(8, 2)
        self.bad = bad_iteration

    def forward(self, features, mask):
        return LocalizerOutput(self.lin(features), None, mask)

    def losses(self, output, batch, *, iteration):
        frame = output.class_scores.pow(2).mean()
        video = frame * (float("nan") if iteration == self.bad else 1.0)
        return {"frame": frame, "video": video, "total": frame + video}


def test_nan_guard_names_iteration_and_term(data, tmp_path):
    bundle, _ = data
    with pytest.raises(NonFiniteLossError, match=r"iteration 3: loss term 'video' is nan"):
        Trainer(NaNAt(3), bundle.train, train_cfg(), tmp_path / "nan").fit()


def test_logs_checkpoint_and_config_are_written(data, tmp_path):
    bundle, _ = data
    cfg = ExperimentConfig(name="unit")
    t = Trainer(sfnet(bundle), bundle.train, train_cfg(iterations=4), tmp_path / "r", sampler=CROP,
                resolved_config=cfg, metadata={"classes": bundle.classes})
    res = t.fit()
    assert res.selected == "last" and res.iterations == 4
    rows = list(csv.DictReader((tmp_path / "r" / "train_log.csv").open()))
    assert len(rows) == 4
    for term in ("frame_action", "frame_background", "frame", "video", "actionness", "total", "grad_norm", "lr"):
        assert term in rows[0]
    ck = load_checkpoint(tmp_path / "r" / "checkpoint_last.pt")
    assert {"iteration", "model", "optimizer", "rng", "config", "meta"} <= set(ck)
    assert ck["meta"]["classes"] == bundle.classes
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["name"] == "unit" and saved["train"]["iterations"] == cfg.train.iterations


def test_validation_selection_needs_a_heldout_set(data, tmp_path):
    bundle, _ = data
    with pytest.raises(ValueError, match="held-out"):
        Trainer(sfnet(bundle), bundle.train, train_cfg(select="val_loss"), tmp_path / "x")


def test_best_checkpoint_follows_the_validator(data, tmp_path):
    bundle, _ = data
    scores = {2: 0.5, 4: 0.2, 6: 0.4}
    t = Trainer(sfnet(bundle), bundle.train, train_cfg(iterations=6, validate_every=2, select="val_loss"),
                tmp_path / "v", sampler=CROP, validator=lambda m, it: {"val_loss": scores[it]})
    res = t.fit()
    assert res.selected == "val_loss@4" and load_checkpoint(res.checkpoint)["iteration"] == 4
    assert len((tmp_path / "v" / "val_log.jsonl").read_text().splitlines()) == 3


def test_optimizers_from_config():
    m = torch.nn.Linear(2, 2)
    assert isinstance(make_optimizer(m, OptimConfig(name="sgd", lr=0.1, momentum=0.5)), torch.optim.SGD)
    opt = make_optimizer(m, OptimConfig())
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == 1e-3


def test_a_seeded_experiment_reproduces_its_initial_and_final_weights(data, tmp_path):
    from clicktal.pipeline.runs.experiments import run_experiment

    _, data_cfg = data
    cfg = ExperimentConfig(name="twice", data=data_cfg, train=train_cfg(iterations=3, checkpoint_every=3))
    weights = []
    for run in ("a", "b"):
        torch.manual_seed(hash(run) % 1000)  # whatever the global state before, the run's seed decides
        run_experiment(cfg, tmp_path / run, evaluate=False)
        weights.append(load_checkpoint(tmp_path / run / "checkpoint_last.pt", "cpu")["model"])
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


def test_validation_losses_average_every_term_over_the_held_out_videos(data):
    from clicktal.pipeline.data.datasets import collate
    from clicktal.pipeline.runs.engine import validation_losses

    bundle, _ = data
    model = sfnet(bundle)
    terms = validation_losses(model, bundle.train, 0)
    assert {"total", "frame", "video", "actionness"} <= set(terms)
    with torch.no_grad():
        per_video = [float(model.losses(model(b.features, b.mask), b, iteration=0)["frame"])
                     for b in (collate([item]) for item in bundle.train)]
    assert terms["frame"] == pytest.approx(sum(per_video) / len(per_video), rel=1e-6)

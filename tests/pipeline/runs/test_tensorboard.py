"""TensorBoard event files in the run folder, read back with TensorBoard's own reader: every loss term of every
iteration, the learning rate, gradient norm, validation scores and the mining yield; a resumed run neither repeats
nor loses a step; ``train.tensorboard: false`` writes none."""
import json
import shutil

import pytest
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from clicktal.pipeline.core.config import merge_overrides
from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features
from clicktal.pipeline.runs import engine
from clicktal.pipeline.runs.experiments import apply_overrides, run_experiment
from clicktal.pipeline.runs.schema import ExperimentConfig


def scalars(run) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the run folder's event files as TensorBoard shows it: tag -> [(step, value)]."""
    acc = EventAccumulator(str(run), size_guidance={SCALARS: 0})  # 0: keep every event, no sampling
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def validated(tmp_path_factory, train_small_run):
    """A 4-iteration SF-Net run validating every 2 iterations on held-out videos, mining from iteration 1."""
    return train_small_run(tmp_path_factory.mktemp("tensorboard"), seed=5, n_videos=12,
                           data={"val_fraction": 0.25}, train={"validate_every": 2},
                           model={"name": "sfnet", "params": {"mining": {"start_iteration": 1}}})


def test_every_loss_term_the_learning_rate_and_validation_are_in_the_event_file(validated):
    root, _ = validated
    run = root / "run"
    got, train, val = scalars(run), rows(run / "train_log.jsonl"), rows(run / "val_log.jsonl")
    terms = [k for k in train[0] if k not in ("iteration", "grad_norm", "lr", "seconds")]
    assert {"total", "n_mined", "n_clicks"} <= set(terms)
    steps = [r["iteration"] for r in train]
    for term in terms:  # every key of the losses dict, every iteration, the logged value
        assert got[f"loss/{term}"] == [(r["iteration"], pytest.approx(r[term], rel=1e-6)) for r in train], term
    for name in ("lr", "grad_norm", "seconds"):
        assert got[f"train/{name}"] == [(r["iteration"], pytest.approx(r[name], rel=1e-6)) for r in train], name
    assert [s for s, _ in got["mining/yield"]] == [r["iteration"] for r in train if r["n_clicks"]]
    assert [v for _, v in got["mining/yield"]] == pytest.approx([r["n_mined"] / r["n_clicks"] for r in train
                                                                 if r["n_clicks"]], rel=1e-6)
    assert any(v > 0 for _, v in got["mining/yield"])  # mining ran: a yield that is not only zeros
    assert [r["iteration"] for r in val] == [2, 4] and steps == [1, 2, 3, 4]
    for name in ("val_map", "val_loss"):
        assert got[f"val/{name[4:]}"] == [(r["iteration"], pytest.approx(r[name], rel=1e-6)) for r in val], name


def config(root, **train) -> ExperimentConfig:
    gt = random_ground_truth(n_videos=8, seed=6)
    synthesize_features(gt, root / "feats", dim=8, seed=6)
    base = {"data": {"features": str(root / "feats"), "ground_truth": str(gt.write(root / "gt.json")),
                     "train_subset": "training", "test_subset": "test",
                     "labels": {"action_clicks": {"source": "uniform"}}},
            "train": {"iterations": 8, "batch_size": 2, "checkpoint_every": 2, "progress": False, "num_threads": 1}}
    return apply_overrides(ExperimentConfig(), merge_overrides(base, {"train": train}))


def test_a_resumed_run_neither_repeats_nor_loses_a_step(tmp_path):
    """Killed after logging iterations 5 and 6 but before the checkpoint at 6: the resume from 4 logs them again,
    and TensorBoard shows each step once, with the values of the run's log."""
    run = tmp_path / "run"
    cfg = config(tmp_path)
    run_experiment(cfg, run, stop_after=4, evaluate=False)
    at_4 = tmp_path / "checkpoint_at_4.pt"
    shutil.copy(run / "checkpoint_last.pt", at_4)
    run_experiment(cfg, run, resume=True, stop_after=6, evaluate=False)
    assert [s for s, _ in scalars(run)["loss/total"]] == [1, 2, 3, 4, 5, 6]
    shutil.copy(at_4, run / "checkpoint_last.pt")  # the kill: steps 5 and 6 are logged, their checkpoint is not
    run_experiment(cfg, run, resume=True, evaluate=False)
    assert len(list(run.glob("events.out.tfevents.*"))) == 3  # one file per fit, appended to the folder
    got, train = scalars(run), rows(run / "train_log.jsonl")
    assert [r["iteration"] for r in train] == list(range(1, 9))
    for tag, term in (("loss/total", "total"), ("train/grad_norm", "grad_norm")):
        assert got[tag] == [(r["iteration"], pytest.approx(r[term], rel=1e-6)) for r in train], tag


def test_every_step_is_on_disk_before_its_checkpoint(tmp_path, monkeypatch):
    """What a kill after a checkpoint leaves: the events of every iteration up to it (a resume logs none again)."""
    seen, save = [], engine.atomic_torch_save

    def save_and_look(state, path):
        if path.name == "checkpoint_last.pt":
            seen.append((state["iteration"], [s for s, _ in scalars(path.parent)["loss/total"]]))
        save(state, path)

    monkeypatch.setattr(engine, "atomic_torch_save", save_and_look)
    run_experiment(config(tmp_path), tmp_path / "run", evaluate=False)
    assert seen == [(k, list(range(1, k + 1))) for k in (2, 4, 6, 8)]


def test_tensorboard_off_writes_no_event_file_and_a_resume_may_turn_it_on(tmp_path):
    run = tmp_path / "run"
    run_experiment(config(tmp_path, tensorboard=False), run, stop_after=4, evaluate=False)
    assert not list(run.glob("events.out.tfevents.*")) and (run / "checkpoint_last.pt").exists()
    run_experiment(config(tmp_path, tensorboard=True), run, resume=True, evaluate=False)  # bookkeeping: allowed
    assert [s for s, _ in scalars(run)["loss/total"]] == [5, 6, 7, 8]


def test_overwriting_a_run_removes_its_event_files_and_run_log(tmp_path):
    run = tmp_path / "run"
    run_experiment(config(tmp_path, iterations=2), run, evaluate=False)
    first = set(run.glob("events.out.tfevents.*"))
    (run / "run.log").write_text("the replaced run's line\n")
    run_experiment(config(tmp_path, iterations=3), run, overwrite=True, evaluate=False)
    events = set(run.glob("events.out.tfevents.*"))
    assert len(events) == 1 and not events & first
    assert [s for s, _ in scalars(run)["loss/total"]] == [1, 2, 3]
    assert "the replaced run's line" not in (run / "run.log").read_text()

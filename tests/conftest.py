"""Shared fixtures. Tests read the real files in ../shared/benchkit (present on every developer and CI machine)."""
import importlib.util
import os
from pathlib import Path

import pytest

BENCHKIT = Path(os.environ.get("CLICKTAL_BENCHKIT", Path(__file__).resolve().parents[2] / "shared" / "benchkit"))


@pytest.fixture(scope="session")
def benchkit() -> Path:
    if not BENCHKIT.is_dir():
        pytest.fail(f"the shared benchkit is missing at {BENCHKIT} (set CLICKTAL_BENCHKIT)")
    return BENCHKIT


TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture(scope="session")
def load_tool():
    """Load a tools/*.py front end as a module, to call its ``main(argv)`` in-process."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"clicktal_tool_{name}", TOOLS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(autouse=True)
def _no_weight_downloads(monkeypatch):
    """No test reaches the canonical weight addresses: downloads are forbidden unless a test serves its own weights
    (and removes this)."""
    monkeypatch.setenv("CLICKTAL_OFFLINE", "1")


@pytest.fixture
def tiny_run(tmp_path):
    """Train and evaluate a short run on generated features (12 videos, 16-d, seed 4) with the config ``overrides``
    merged over a small CPU setup; returns the result and the training log's rows."""
    import json

    from clicktal.pipeline.core.config import merge_overrides
    from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features
    from clicktal.pipeline.runs.experiments import apply_overrides, run_experiment
    from clicktal.pipeline.runs.schema import ExperimentConfig

    def run(overrides: dict):
        gt = random_ground_truth(n_videos=12, seed=4)
        synthesize_features(gt, tmp_path / "feats", dim=16, seed=4)
        base = {"data": {"features": str(tmp_path / "feats"), "ground_truth": str(gt.write(tmp_path / "gt.json")),
                         "train_subset": "training", "test_subset": "test"},
                "train": {"batch_size": 4, "seed": 0, "progress": False, "num_threads": 1,
                          "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 5e-4}}}
        merged = merge_overrides(base, overrides)
        merged["train"].setdefault("checkpoint_every", merged["train"]["iterations"])
        res = run_experiment(apply_overrides(ExperimentConfig(), merged), tmp_path / "run")
        log = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
        return res, [json.loads(line) for line in log]

    return run


def _train_small_run(root: Path, *, seed: int, n_videos: int = 10, data: dict | None = None,
                     train: dict | None = None, **sections):
    """Train a short SF-Net run on generated features (``n_videos`` videos, 8-d, ``seed``) in ``root / "run"``:
    uniform simulated clicks, no ambiguous segments, batch 2, 4 iterations, the sections given merged over that.
    Returns ``(root, result)``."""
    from clicktal.pipeline.core.config import merge_overrides
    from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features
    from clicktal.pipeline.runs.experiments import apply_overrides, run_experiment
    from clicktal.pipeline.runs.schema import ExperimentConfig

    gt = random_ground_truth(n_videos=n_videos, seed=seed)
    synthesize_features(gt, root / "feats", dim=8, seed=seed)
    base = {"data": {"features": str(root / "feats"), "ground_truth": str(gt.write(root / "gt.json")),
                     "train_subset": "training", "test_subset": "test",
                     "labels": {"action_clicks": {"source": "uniform"}}},
            "train": {"iterations": 4, "batch_size": 2, "progress": False, "num_threads": 1},
            "evaluation": {"use_ambiguous": False}}
    cfg = merge_overrides(base, {"data": data or {}, "train": train or {}, **sections})
    return root, run_experiment(apply_overrides(ExperimentConfig(), cfg), root / "run")


@pytest.fixture(scope="session")
def train_small_run():
    """:func:`_train_small_run`, for module-scoped fixtures that share one trained run."""
    return _train_small_run

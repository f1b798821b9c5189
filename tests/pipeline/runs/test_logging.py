"""Messages through ``logging``: a run's console output also lands in ``run.log`` in its folder (appended on
resume), progress is a log line every 5 % when the output is not a terminal, and the tools' ``--quiet`` /
``--verbose`` choose what the console shows (warnings on stderr, the rest on stdout)."""
import logging
import re

import pytest
import yaml

from clicktal.pipeline.core.config import merge_overrides
from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features
from clicktal.pipeline.runs import engine
from clicktal.pipeline.runs.experiments import apply_overrides, run_experiment
from clicktal.pipeline.runs.schema import ExperimentConfig

PROGRESS = re.compile(r"iteration (\d+)/(\d+) \(\d+ %\): loss [-\d.e+]+, [\d.e+]+ it/s, \d+ s left")


def settings(root, **train) -> dict:
    gt = random_ground_truth(n_videos=8, seed=7)
    synthesize_features(gt, root / "feats", dim=8, seed=7)
    base = {"data": {"features": str(root / "feats"), "ground_truth": str(gt.write(root / "gt.json")),
                     "train_subset": "training", "test_subset": "test",
                     "labels": {"action_clicks": {"source": "uniform"}}},
            "train": {"iterations": 8, "batch_size": 2, "checkpoint_every": 4, "progress": False,
                      "num_threads": 1, "tensorboard": False},
            "evaluation": {"use_ambiguous": False}}
    return merge_overrides(base, {"train": train})


def config(root, **train) -> ExperimentConfig:
    return apply_overrides(ExperimentConfig(), settings(root, **train))


@pytest.fixture
def info(caplog):
    """clicktal's loggers at INFO, as the tools set them."""
    caplog.set_level(logging.INFO, logger="clicktal")
    return caplog


def test_run_log_holds_the_run_s_lines_and_a_resume_appends_to_it(tmp_path, info):
    run = tmp_path / "run"
    run_experiment(config(tmp_path), run, stop_after=4, evaluate=False)
    first = (run / "run.log").read_text()
    assert "labels of" in first and "training iterations 1-4 of 8" in first  # before and during training
    assert [m.group(1) for m in PROGRESS.finditer(first)] == ["1", "2", "3", "4"]  # 5 % of 8: every iteration
    run_experiment(config(tmp_path), run, resume=True, evaluate=False)
    text = (run / "run.log").read_text()
    assert text.startswith(first) and "training iterations 5-8 of 8 on cpu (resumed at iteration 4)" in text
    assert [m.group(1) for m in PROGRESS.finditer(text)] == [str(i) for i in range(1, 9)]
    assert all(record.getMessage() in text for record in info.records)  # all that was logged


def test_a_run_refused_writes_no_run_log(tmp_path, info):
    run = tmp_path / "run"
    run_experiment(config(tmp_path, iterations=2), run, evaluate=False)
    (run / "run.log").unlink()
    with pytest.raises(ValueError, match="already holds"):
        run_experiment(config(tmp_path, iterations=2), run, evaluate=False)
    assert not (run / "run.log").exists()


def test_progress_off_a_terminal_is_a_log_line_every_5_percent(tmp_path, info, capsys):
    assert not engine._on_terminal()  # pytest's captured output is no terminal
    run_experiment(config(tmp_path, iterations=40, progress=True), tmp_path / "run", evaluate=False)
    lines = [PROGRESS.fullmatch(r.getMessage()) for r in info.records if r.name == "clicktal.pipeline.runs.engine"]
    assert [m.group(1) for m in lines if m] == [str(i) for i in range(2, 41, 2)]  # 5 % of 40 iterations
    assert "train:" not in capsys.readouterr().err  # no bar


def test_progress_on_a_terminal_is_a_bar_not_lines(tmp_path, info, capsys, monkeypatch):
    monkeypatch.setattr(engine, "_on_terminal", lambda: True)
    run_experiment(config(tmp_path, iterations=4, progress=True), tmp_path / "run", evaluate=False)
    assert not [r for r in info.records if PROGRESS.fullmatch(r.getMessage())]
    assert "train:" in capsys.readouterr().err  # tqdm's bar, on stderr


def test_the_tool_shows_info_on_stdout_warnings_on_stderr_and_quiet_keeps_run_log(tmp_path, capsys, load_tool):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(settings(tmp_path, iterations=4)))
    run = tmp_path / "run"
    run.mkdir()
    (run / ".detections.json.a1b2c3d4.tmp").write_text("")  # a killed run's temp file: removed with a warning
    tool = load_tool("train_localizer")
    assert tool.main(["--config", str(path), "--out", str(run)]) == 0
    out, err = capsys.readouterr()
    assert "labels of" in out and len(PROGRESS.findall(out)) == 4 and "mAP@0.5" in out
    assert err.startswith("warning: ") and "removed 1 temp file(s)" in err and "removed" not in out
    assert not any(isinstance(h, engine.ConsoleHandler) for h in logging.getLogger().handlers)  # restored
    assert tool.main(["--config", str(path), "--out", str(run), "--overwrite", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert not PROGRESS.search(out) and "labels of" not in out and "mAP@0.5" in out  # the tool's own result stays
    log = (run / "run.log").read_text()
    assert len(PROGRESS.findall(log)) == 4 and "replaced a run (trained to iteration 4" in log

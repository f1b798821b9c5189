"""Faults of the training / inference layer get a named answer, and no run records a lie: a log line cut short by
a kill, a changed config on resume, bad config values at load time, a full disk, leftovers of killed runs, file
modes, infer's counts and detections outside their video."""
import errno
import json
import os
import stat
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from clicktal.pipeline.core.config import ConfigError, config_to_dict, load_config
from clicktal.pipeline.core.files import DiskFullError, atomic_write
from clicktal.pipeline.data.annotations import GroundTruth, Segment, VideoAnnotation
from clicktal.pipeline.data.detections import Detection, write_detections
from clicktal.pipeline.evaluation.detection import EvaluationWarning, evaluate_detections
from clicktal.pipeline.runs.engine import CheckpointError, ResumeError, load_checkpoint
from clicktal.pipeline.runs.experiments import apply_overrides, run_experiment
from clicktal.pipeline.runs.schema import ExperimentConfig, resume_conflicts


def config(root, **train) -> dict:
    return {
        "name": "faults",
        "data": {"features": str(root / "feats"), "ground_truth": str(root / "gt.json"), "train_subset": "training",
                 "test_subset": "test", "labels": {"action_clicks": {"source": "uniform"}},
                 "sampling": {"train": {"kind": "crop", "length": 40}}},
        "model": {"name": "sfnet", "params": {"mining": {"start_iteration": 3}}},
        "train": {"iterations": 6, "batch_size": 3, "seed": 5, "checkpoint_every": 2, "progress": False,
                  "num_threads": 1, **train},
        "postprocess": {"preset": "sfnet", "params": {"class_ratio": None, "class_threshold": 0.1}},
        "evaluation": {"use_ambiguous": False},
    }


def experiment(root, **train) -> ExperimentConfig:
    return apply_overrides(ExperimentConfig(), config(root, **train))


def stopped_run(root, out, at=4, **train):
    """A run killed after its checkpoint at iteration ``at``."""
    run_experiment(experiment(root, **train), out, stop_after=at, log=lambda *_: None)
    return out


def weights(path):
    return load_checkpoint(path)["model"]


def same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))


def log_rows(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def write_yaml(path, cfg):
    path.write_text(yaml.safe_dump(cfg))
    return path


# ------------------------------------------------------------------------------- 3. a log line cut short


def test_resume_cuts_a_half_written_last_log_line(data, tmp_path):
    full = tmp_path / "full"
    run_experiment(experiment(data), full, evaluate=False, log=lambda *_: None)
    run = stopped_run(data, tmp_path / "run")
    with (run / "train_log.jsonl").open("a") as f:  # kill -9 (or a full disk) during the append of row 5
        f.write('{"iteration": 5, "frame_action": 0.12')
    notes = []
    run_experiment(experiment(data), run, resume=True, evaluate=False, log=notes.append)
    assert any("train_log.jsonl: line 5 is cut short" in n for n in notes)
    assert [r["iteration"] for r in log_rows(run)] == list(range(1, 7))
    assert [r["total"] for r in log_rows(run)] == [r["total"] for r in log_rows(full)]
    assert same_weights(weights(full / "checkpoint_last.pt"), weights(run / "checkpoint_last.pt"))


KILL_DURING_LOG_WRITE = """
import json, os, signal, sys
from clicktal.pipeline.core.config import load_config
from clicktal.pipeline.runs import engine
from clicktal.pipeline.runs.experiments import run_experiment
from clicktal.pipeline.runs.schema import ExperimentConfig

write = engine._Log.write
def half_then_kill(self, row):
    if self.jsonl.name == "train_log.jsonl" and row["iteration"] == 5:
        with self.jsonl.open("a") as f:
            f.write(json.dumps(row)[:25])
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of the append
    write(self, row)
engine._Log.write = half_then_kill
run_experiment(load_config(ExperimentConfig, sys.argv[1]), sys.argv[2], evaluate=False, log=lambda *_: None)
"""


def test_a_real_kill_9_during_a_log_write_resumes_exactly(data, tmp_path):
    import signal
    import subprocess
    import sys

    full = tmp_path / "full"
    run_experiment(experiment(data), full, evaluate=False, log=lambda *_: None)
    cfg = write_yaml(tmp_path / "cfg.yaml", config(data))
    run = tmp_path / "run"
    child = subprocess.run([sys.executable, "-c", KILL_DURING_LOG_WRITE, str(cfg), str(run)], capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    assert not (run / "train_log.jsonl").read_text().endswith("\n")  # the half line is there
    notes = []
    run_experiment(experiment(data), run, resume=True, evaluate=False, log=notes.append)
    assert any("train_log.jsonl: line 5 is cut short" in n for n in notes)
    assert [r["total"] for r in log_rows(run)] == [r["total"] for r in log_rows(full)]
    assert same_weights(weights(full / "checkpoint_last.pt"), weights(run / "checkpoint_last.pt"))


def test_a_malformed_line_before_the_last_is_an_error_naming_file_and_line(data, tmp_path):
    run = stopped_run(data, tmp_path / "run")
    lines = (run / "train_log.jsonl").read_text().splitlines()
    lines[1] = lines[1][:10]
    (run / "train_log.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(CheckpointError, match=r"train_log\.jsonl: line 2: not a log row"):
        run_experiment(experiment(data), run, resume=True, evaluate=False, log=lambda *_: None)


def test_a_truncated_or_incomplete_checkpoint_is_named(data, tmp_path):
    run = stopped_run(data, tmp_path / "run")
    ck_path = run / "checkpoint_last.pt"
    good = ck_path.read_bytes()
    ck_path.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=rf"{ck_path}: not a readable checkpoint"):
        run_experiment(experiment(data), run, resume=True, evaluate=False, log=lambda *_: None)
    ck_path.write_bytes(good)
    ck = torch.load(ck_path, weights_only=False)
    del ck["optimizer"], ck["rng"]["numpy"]
    torch.save(ck, ck_path)
    with pytest.raises(CheckpointError, match=rf"{ck_path}: cannot resume from it: missing optimizer, rng\.numpy"):
        run_experiment(experiment(data), run, resume=True, evaluate=False, log=lambda *_: None)


# ------------------------------------------------------------------------------- 4. a changed config on resume


def test_a_changed_seed_is_refused_naming_the_key_and_nothing_is_written(data, tmp_path):
    run = stopped_run(data, tmp_path / "run")
    files = lambda: {p.name: p.read_bytes() for p in run.iterdir() if p.name != ".run.lock"}  # the lock names its holder
    before = files()
    cfg = experiment(data, seed=6, batch_size=2)
    with pytest.raises(ResumeError, match=r"checkpoint_last\.pt: refusing to resume .*train\.batch_size: 3 -> 2; "
                                          r"train\.seed: 5 -> 6") as err:
        run_experiment(cfg, run, resume=True, evaluate=False, log=lambda *_: None)
    assert "train.iterations may grow" in str(err.value)
    assert files() == before  # config.yaml, labels.json, logs untouched


def test_a_model_or_label_change_is_refused(data, tmp_path):
    run = stopped_run(data, tmp_path / "run")
    cfg = apply_overrides(experiment(data), {"model": {"params": {"eta": 2.0}},
                                             "data": {"labels": {"action_clicks": {"source": "gaussian"}}}})
    with pytest.raises(ResumeError, match=r"data\.labels\.action_clicks\.source: 'uniform' -> 'gaussian'; "
                                          r"model\.params\.eta"):
        run_experiment(cfg, run, resume=True, evaluate=False, log=lambda *_: None)


def test_a_model_option_added_since_the_run_resumes_at_its_default_and_is_refused_otherwise(data, tmp_path):
    run = stopped_run(data, tmp_path / "run")
    ck = torch.load(run / "checkpoint_last.pt", weights_only=False)
    del ck["config"]["model"]["params"]["video_min_length"]  # a run saved before the option existed
    torch.save(ck, run / "checkpoint_last.pt")
    changed = apply_overrides(experiment(data), {"model": {"params": {"video_min_length": 5}}})
    with pytest.raises(ResumeError, match=r"model\.params\.video_min_length: 0 -> 5"):
        run_experiment(changed, run, resume=True, evaluate=False, log=lambda *_: None)
    res = run_experiment(experiment(data), run, resume=True, evaluate=False, log=lambda *_: None)
    assert res.iterations == 6


def test_a_longer_schedule_resumes_into_the_run_trained_that_long(data, tmp_path):
    long = tmp_path / "long"
    run_experiment(experiment(data, iterations=8), long, evaluate=False, log=lambda *_: None)
    run = tmp_path / "run"
    run_experiment(experiment(data), run, evaluate=False, log=lambda *_: None)  # finished at 6
    # a longer schedule, and what never changes training: progress, checkpoints, post-processing
    cfg = apply_overrides(experiment(data, iterations=8, checkpoint_every=4, progress=True),
                          {"postprocess": {"preset": "sfnet_code"}})
    res = run_experiment(cfg, run, resume=True, evaluate=False, log=lambda *_: None)
    assert res.iterations == 8 and [r["iteration"] for r in log_rows(run)] == list(range(1, 9))
    assert same_weights(weights(long / "checkpoint_last.pt"), weights(run / "checkpoint_last.pt"))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["iterations"] == 8 and saved["postprocess"]["preset"] == "sfnet_code"
    with pytest.raises(ResumeError, match=r"checkpoint is at iteration 8, past train\.iterations 7"):
        run_experiment(experiment(data, iterations=7), run, resume=True, evaluate=False, log=lambda *_: None)


def test_where_it_runs_may_change_on_resume():
    saved = config_to_dict(experiment(Path("/data")))
    moved = config_to_dict(experiment(Path("/data"), num_threads=2, device="cpu"))  # may round floats differently
    assert resume_conflicts(saved, moved) == []
    assert resume_conflicts(saved, config_to_dict(experiment(Path("/elsewhere")))) == [
        ("data.features", "/data/feats", "/elsewhere/feats"), ("data.ground_truth", "/data/gt.json",
                                                                "/elsewhere/gt.json")]


def test_post_processing_may_not_change_when_the_run_validates_with_it(data, tmp_path):
    cfg = apply_overrides(experiment(data, validate_every=2), {"data": {"val_fraction": 0.2}})
    run_experiment(cfg, tmp_path / "run", stop_after=2, log=lambda *_: None)
    changed = apply_overrides(cfg, {"postprocess": {"preset": "sfnet_code"}})
    with pytest.raises(ResumeError, match=r"postprocess\.preset: 'sfnet' -> 'sfnet_code'"):
        run_experiment(changed, tmp_path / "run", resume=True, evaluate=False, log=lambda *_: None)


# ------------------------------------------------------------------------------- 5. config errors at load time


@pytest.mark.parametrize("section, values, key", [
    ("postprocess", {"preset": "sfnett"}, r"postprocess\.preset: unknown post-processing preset 'sfnett'"),
    ("postprocess", {"params": {"min_snippets": 0}}, r"postprocess\.params: .*min_snippets must be >= 1"),
    ("model", {"name": "sfnett"}, r"model\.name: unknown localizer 'sfnett'; known: .*sfnet"),
    ("model", {"params": {"mining": {"xi": "high"}}}, r"model\.params\.mining\.xi: expected a number"),
    ("train", {"iterations": 0}, r"train\.iterations: must be >= 1, got 0"),
    ("train", {"batch_size": 0}, r"train\.batch_size: must be >= 1"),
    ("train", {"select": "val_loss"}, r"train\.select: 'val_loss' needs a held-out validation set"),
    ("train", {"optimizer": {"lr": -1}}, r"train\.optimizer\.lr: must be a positive number"),
    ("evaluation", {"average_over": [0.1, 0.95]}, r"evaluation\.average_over\[1\]: 0\.95 is not among"),
])
def test_bad_values_fail_at_load_naming_key_and_file(data, tmp_path, section, values, key):
    cfg = config(data)
    cfg[section].update(values)
    path = write_yaml(tmp_path / "bad.yaml", cfg)
    with pytest.raises(ConfigError, match=rf"^{path}: {key}"):
        load_config(ExperimentConfig, path)


@pytest.mark.parametrize("override, key", [
    ("postprocess.preset=sfnett", "postprocess.preset"), ("model.name=sfnett", "model.name"),
    ("train.iterations=0", "train.iterations"), ("train.batch_size=0", "train.batch_size")])
def test_train_localizer_refuses_bad_values_before_training(data, tmp_path, capsys, load_tool, override, key):
    path = write_yaml(tmp_path / "cfg.yaml", config(data))
    out = tmp_path / "run"
    assert load_tool("train_localizer").main(["--config", str(path), "--out", str(out), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: command line: ") and key in err
    assert not out.exists()  # nothing trained, nothing saved


def test_train_localizer_names_the_file_of_a_bad_yaml_value(data, tmp_path, capsys, load_tool):
    cfg = config(data)
    cfg["postprocess"]["preset"] = "sfnett"
    path = write_yaml(tmp_path / "cfg.yaml", cfg)
    assert load_tool("train_localizer").main(["--config", str(path), "--out", str(tmp_path / "run")]) == 2
    assert f"error: {path}: postprocess.preset: unknown post-processing preset" in capsys.readouterr().err


# ------------------------------------------------------------------------------- 6. a full disk


def test_atomic_write_names_the_path_of_a_full_disk_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "detections.json"
    target.write_text("old")

    def full(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match=rf"{target}: cannot write it: the disk is full") as err:
        atomic_write(target, full)
    assert err.value.errno == errno.ENOSPC and isinstance(err.value, OSError)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["detections.json"]


def test_a_full_disk_at_fsync_and_a_quota_are_named_too(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DiskFullError, match=r"cache\.npy: cannot write it: the disk quota is exceeded"):
        atomic_write(tmp_path / "cache.npy", lambda f: f.write(b"x" * 100))
    assert list(tmp_path.iterdir()) == []


class _FullFile:
    """A file whose writes fail with ENOSPC after ``room`` bytes (what torch's zip writer sees on a full disk)."""

    def __init__(self, f, room):
        self._f, self.room = f, room

    def write(self, b):
        self.room -= len(b)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._f.write(b)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def fill_disk_for(monkeypatch, marker: str, room: int = 1000):
    """Make every atomic write of a file named ``marker`` hit a full disk."""
    real = os.fdopen

    def fdopen(fd, *args, **kw):
        f = real(fd, *args, **kw)
        return _FullFile(f, room) if marker in os.readlink(f"/proc/self/fd/{fd}") else f

    monkeypatch.setattr(os, "fdopen", fdopen)


def test_training_on_a_full_disk_exits_4_naming_the_checkpoint(data, tmp_path, capsys, load_tool, monkeypatch):
    path = write_yaml(tmp_path / "cfg.yaml", config(data))
    out = tmp_path / "run"
    fill_disk_for(monkeypatch, ".checkpoint_last.pt.")
    assert load_tool("train_localizer").main(["--config", str(path), "--out", str(out)]) == 4
    err = capsys.readouterr().err
    assert err == f"error: {out / 'checkpoint_last.pt'}: cannot write it: the disk is full " \
                  f"(no space left on the file system of {out}); free some space and run again\n"
    assert not list(out.glob(".*.tmp")) and not (out / "checkpoint_last.pt").exists()


# ------------------------------------------------------------------------------- 8. leftovers and small lies


def test_stale_checkpoint_temp_files_are_swept_at_resume(data, tmp_path):
    run = stopped_run(data, tmp_path / "run")
    stale = [run / ".checkpoint_last.pt.k9x2ab_q.tmp", run / ".checkpoint_best.pt.zz81mm0p.tmp",
             run / ".detections.json.a1b2c3d4.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    keep = run / ".notes.tmp"  # not an atomic write's temp file of the run
    keep.write_text("mine")
    notes = []
    run_experiment(experiment(data), run, resume=True, evaluate=False, log=notes.append)
    assert not any(p.exists() for p in stale) and keep.exists()
    assert any("removed 2 temp file(s)" in n and ".checkpoint_last.pt.k9x2ab_q.tmp" in n for n in notes)
    assert any("removed 1 temp file(s)" in n and ".detections.json.a1b2c3d4.tmp" in n for n in notes)


def test_resume_with_only_the_run_folder(data, tmp_path, capsys, load_tool):
    run = stopped_run(data, tmp_path / "run")
    train = load_tool("train_localizer")
    assert train.main(["--out", str(run), "--resume"]) == 0
    assert json.loads((run / "results.json").read_text())["iterations"] == 6
    assert [r["iteration"] for r in log_rows(run)] == list(range(1, 7))
    capsys.readouterr()
    assert train.main(["--out", str(run), "--resume", "--set", "train.seed=9"]) == 2
    assert "train.seed: 5 -> 9" in capsys.readouterr().err
    assert train.main(["--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "is not a run folder" in capsys.readouterr().err


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomically_written_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "shared.npy", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.npy").stat().st_mode) == mode


def test_infer_counts_videos_with_and_without_detections(data, tmp_path, capsys, load_tool):
    run = tmp_path / "run"
    run_experiment(experiment(data), run, evaluate=False, log=lambda *_: None)
    infer = load_tool("infer")
    videos = ["synth_0006", "synth_0007", "synth_0008"]
    assert infer.main(["--run", str(run), "--features", str(data / "feats"), "--out", str(tmp_path / "d.json"),
                       "--videos", *videos, "--set", "class_threshold=2.0"]) == 0  # no class passes
    assert "0 detections on 0 videos; 3 of the 3 videos got none" in capsys.readouterr().out
    assert infer.main(["--run", str(run), "--features", str(data / "feats"), "--out", str(tmp_path / "d.json"),
                       "--videos", *videos]) == 0
    printed = capsys.readouterr().out
    got = json.loads((tmp_path / "d.json").read_text())["results"]
    n = sum(len(v) for v in got.values())
    with_dets = sum(1 for v in got.values() if v)
    assert f"{n} detections on {with_dets} videos; {3 - with_dets} of the 3 videos got none" in printed


def test_detections_outside_their_video_are_evaluated_as_given_with_a_warning(tmp_path, capsys, load_tool):
    gt = GroundTruth({"v": VideoAnnotation("v", "test", 10.0, [Segment(0.0, 5.0, "A"), Segment(6.0, 10.0, "A")])},
                     source="gt")
    dets = [Detection("v", "A", -1.0, 5.0, 0.9), Detection("v", "A", 6.0, 11.0, 0.8),
            Detection("v", "A", 2.0, 3.0, 0.1)]
    with pytest.warns(EvaluationWarning, match=r"2 of the evaluated detections reach outside \[0, duration\]"):
        res = evaluate_detections(gt, dets, [0.5], subset="test")
    assert res.n_outside_video == 2 and res.mAP == (1.0,)  # matched as given, as the official code does
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert evaluate_detections(gt, dets[2:], [0.5], subset="test").n_outside_video == 0
    write_detections(tmp_path / "d.json", dets)
    assert load_tool("evaluate").main(["--gt", str(gt.write(tmp_path / "gt.json")), "--pred",
                                       str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr()
    assert "warning: 2 reach outside [0, duration] of their video (evaluated as given" in out.out
    assert "EvaluationWarning" not in out.err


def test_infer_on_a_full_disk_exits_4_naming_the_file(data, tmp_path, capsys, load_tool, monkeypatch):
    run = tmp_path / "run"
    run_experiment(experiment(data), run, evaluate=False, log=lambda *_: None)
    fill_disk_for(monkeypatch, ".d.json.", room=10)
    code = load_tool("infer").main(["--run", str(run), "--features", str(data / "feats"),
                                    "--out", str(tmp_path / "d.json"), "--videos", "synth_0006"])
    err = capsys.readouterr().err
    assert code == 4 and "d.json" in err and "disk is full" in err
    assert not list(tmp_path.glob(".d.json.*"))

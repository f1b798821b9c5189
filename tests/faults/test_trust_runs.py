"""Trust the files, keep every result (training / inference side): a checkpoint that carries code is refused before
it runs, a finished run is never replaced unasked, one writer per run folder, features of replaced videos and
ground-truth videos without features are named, test features are checked before training, and each fault is
one line with a documented exit code."""
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from clicktal.pipeline.data.cache import FeatureCache
from clicktal.pipeline.data.provenance import source_fingerprint
from clicktal.pipeline.runs.engine import load_checkpoint
from clicktal.pipeline.runs.experiments import apply_overrides, run_experiment
from clicktal.pipeline.runs.schema import ExperimentConfig

ROOT = Path(__file__).resolve().parents[2]


def config(features, gt, **train) -> dict:
    return {
        "name": "trust",
        "data": {"features": str(features), "ground_truth": str(gt), "train_subset": "training",
                 "test_subset": "test", "labels": {"action_clicks": {"source": "uniform"}},
                 "sampling": {"train": {"kind": "crop", "length": 40}}},
        "model": {"name": "sfnet", "params": {"mining": {"start_iteration": 3}}},
        "train": {"iterations": 4, "batch_size": 3, "seed": 5, "checkpoint_every": 2, "progress": False,
                  "num_threads": 1, **train},
        "postprocess": {"preset": "sfnet", "params": {"class_ratio": None, "class_threshold": 0.1}},
        "evaluation": {"use_ambiguous": False},
    }


def write_config(path: Path, features, gt, **train) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config(features, gt, **train)))
    return path


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    run_experiment(apply_overrides(ExperimentConfig(), config(data / "feats", data / "gt.json")), run,
                   log=lambda *_: None)
    return run


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


# ------------------------------------------------------------------------------------ a checkpoint with code
class _Payload:
    """Pickles as a call of ``os.system`` that would write a marker file when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def poison(checkpoint: Path, marker: Path) -> None:
    """Rewrite a real checkpoint with a payload beside its tensors (what a shared run folder could hold). The test
    wrote this checkpoint itself, so it reads it unrestricted (checkpoints of older versions hold numpy arrays)."""
    ck = torch.load(checkpoint, weights_only=False)
    ck["meta"]["note"] = _Payload(marker)
    torch.save(ck, checkpoint)


def refused(capsys, code: int, checkpoint: Path, marker: Path) -> None:
    err = capsys.readouterr().err.strip()
    assert not marker.exists(), "the pickle payload ran"
    assert code == 2
    assert len(err.splitlines()) == 1 and str(checkpoint) in err and "refused" in err and "Traceback" not in err


def test_a_checkpoint_carrying_code_is_refused_by_infer_before_it_runs(trained, data, tmp_path, capsys, load_tool):
    run = copy_run(trained, tmp_path / "run")
    marker = tmp_path / "PAYLOAD_RAN"
    poison(run / "checkpoint_last.pt", marker)
    code = load_tool("infer").main(["--run", str(run), "--features", str(data / "feats"),
                                    "--out", str(tmp_path / "d.json")])
    refused(capsys, code, run / "checkpoint_last.pt", marker)


def test_a_checkpoint_carrying_code_is_refused_by_detect_before_it_runs(trained, tmp_path, capsys, load_tool):
    run = copy_run(trained, tmp_path / "run")
    marker = tmp_path / "PAYLOAD_RAN"
    poison(run / "checkpoint_last.pt", marker)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not decoded: the run is refused first")
    code = load_tool("detect").main([str(video), "--run", str(run), "--out", str(tmp_path / "d.json")])
    refused(capsys, code, run / "checkpoint_last.pt", marker)


def test_a_checkpoint_carrying_code_is_refused_by_eval_only_and_resume(trained, tmp_path, capsys, load_tool):
    tool = load_tool("train_localizer")
    for flags in (["--eval-only"], ["--resume"]):
        run = copy_run(trained, tmp_path / flags[0].strip("-"))
        marker = tmp_path / f"PAYLOAD_RAN_{flags[0].strip('-')}"
        poison(run / "checkpoint_last.pt", marker)
        code = tool.main(["--out", str(run), *flags] + (["--set", "train.iterations=6"] if "--resume" in flags else []))
        refused(capsys, code, run / "checkpoint_last.pt", marker)


def test_a_checkpoint_of_the_earlier_format_still_loads_and_resumes_exactly(data, tmp_path):
    """Checkpoints written before this change held the numpy RNG state as a numpy array: they load through the
    restricted unpickler (numpy's array constructor allowed, nothing else) and resume bit for bit."""
    cfg = apply_overrides(ExperimentConfig(), config(data / "feats", data / "gt.json", iterations=6))
    full = tmp_path / "full"
    run_experiment(cfg, full, evaluate=False, log=lambda *_: None)
    run = tmp_path / "run"
    run_experiment(cfg, run, stop_after=4, evaluate=False, log=lambda *_: None)
    ck = torch.load(run / "checkpoint_last.pt", weights_only=True)
    state = ck["rng"]["numpy"]
    assert isinstance(state["keys"], torch.Tensor)  # today's format: plain values and tensors
    ck["rng"]["numpy"] = (state["bit_generator"], state["keys"].numpy().astype(np.uint32), state["pos"],
                          state["has_gauss"], state["cached_gaussian"])
    torch.save(ck, run / "checkpoint_last.pt")
    run_experiment(cfg, run, resume=True, evaluate=False, log=lambda *_: None)
    a, b = load_checkpoint(full / "checkpoint_last.pt")["model"], load_checkpoint(run / "checkpoint_last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))


def test_every_unpickling_path_of_the_package_is_restricted():
    """Each place the package could unpickle, listed with why it is safe; a new one fails this test until it is
    reviewed and added here."""
    reviewed = {
        ("pipeline/core/safe_pickle.py", "pickle.Unpickler"): "NumpyOnlyUnpickler: numpy arrays in plain containers",
        ("pipeline/core/safe_pickle.py", "pickle._Unpickler"): "the same globals; byte strings indexed, not built",
        ("pipeline/core/safe_pickle.py", "np.load"): "allow_pickle left False (object arrays: the unpickler)",
        ("pipeline/core/safe_pickle.py", "numpy.load"): "named in a docstring only",
        ("pipeline/data/layouts.py", "np.load"): "allow_pickle=False (per-video .npy and .npz files)",
        ("pipeline/runs/raw.py", "np.load"): "allow_pickle=False (a run's raw outputs)",
        ("extractors/weights.py", "torch.load"): "weights_only=True",
        ("pipeline/runs/engine.py", "torch.load"): "weights_only=True, numpy's array constructor allowed",
        ("pipeline/data/cache.py", "np.load"): "allow_pickle left False",
        ("extractors/flowio.py", "np.load"): "allow_pickle left False",
    }
    patterns = ("pickle.load", "pickle.Unpickler", "pickle._Unpickler", "torch.load", "np.load", "numpy.load", "yaml.load", "joblib.load",
                "dill", "cloudpickle", "marshal.load", "shelve")
    found = set()
    for folder in ("pipeline", "extractors", "models", "tools"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text()
            for pattern in patterns:
                if pattern in text:
                    found.add((str(path.relative_to(ROOT)), pattern))
            assert "weights_only=False" not in text and "allow_pickle=True" not in text and "yaml.load(" not in text, path
            assert "pickle.loads" not in text and "pickle.load(" not in text, path
    assert found == set(reviewed), f"unreviewed unpickling paths: {sorted(found - set(reviewed))}"
    engine = (ROOT / "pipeline/runs/engine.py").read_text()
    assert engine.count("torch.load(") == 1 and "weights_only=True" in engine


# ------------------------------------------------------------------------------------ the run folder
def test_training_into_a_finished_run_is_refused_unless_overwrite(data, tmp_path, capsys, load_tool):
    cfg = write_config(tmp_path / "c.yaml", data / "feats", data / "gt.json")
    run = tmp_path / "run"
    tool = load_tool("train_localizer")
    assert tool.main(["--config", str(cfg), "--out", str(run)]) == 0
    files = lambda: {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".run.lock"}
    before = files()
    capsys.readouterr()
    assert tool.main(["--config", str(cfg), "--out", str(run), "--seed", "9"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(run) in err and "iteration 4" in err and "--overwrite" in err
    assert files() == before  # nothing replaced
    assert tool.main(["--config", str(cfg), "--out", str(run), "--seed", "9", "--overwrite"]) == 0
    assert "replaced a run (trained to iteration 4" in capsys.readouterr().out
    assert load_checkpoint(run / "checkpoint_last.pt")["config"]["train"]["seed"] == 9


_HOLD = textwrap.dedent("""
    import sys, time
    from clicktal.pipeline.core.locks import FolderLock
    with FolderLock(sys.argv[1], what="training"):
        print("held", flush=True)
        time.sleep(60)
""")


def test_a_second_training_on_one_run_folder_is_refused_naming_the_first(data, tmp_path, capsys, load_tool):
    cfg = write_config(tmp_path / "c.yaml", data / "feats", data / "gt.json")
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        tool = load_tool("train_localizer")
        assert tool.main(["--config", str(cfg), "--out", str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(run) in err and f"pid {holder.pid}" in err
        assert not (run / "train_log.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # a killed holder's lock is freed by the kernel: the next training goes ahead
    assert tool.main(["--config", str(cfg), "--out", str(run)]) == 0


# ------------------------------------------------------------------------------------ what the data holds
def cache_with_sources(data: Path, dest: Path) -> tuple[Path, Path]:
    """A copy of the features whose sidecars record a real source file each (``dest/videos/<id>.mp4``)."""
    shutil.copytree(data / "feats", dest / "feats")
    cache = FeatureCache(dest / "feats")
    (dest / "videos").mkdir()
    for vid in cache.video_ids():
        video = dest / "videos" / f"{vid}.mp4"
        video.write_bytes(random.Random(vid).randbytes(4096))
        meta = json.loads(cache.meta_path(vid).read_text())
        meta["source"] = {"path": str(video.resolve()), **source_fingerprint(video)}
        cache.meta_path(vid).write_text(json.dumps(meta))
    return dest / "feats", dest / "videos"


def test_features_of_a_replaced_source_video_are_refused_by_training_and_infer(data, trained, tmp_path, capsys,
                                                                               load_tool):
    feats, videos = cache_with_sources(data, tmp_path)
    (videos / "synth_0007.mp4").write_bytes(b"another video" * 100)
    cfg = write_config(tmp_path / "c.yaml", feats, data / "gt.json")
    tool = load_tool("train_localizer")
    assert tool.main(["--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "synth_0007" in err and "size changed" in err
    assert not (tmp_path / "run" / "train_log.jsonl").exists()
    assert load_tool("infer").main(["--run", str(trained), "--features", str(feats), "--out",
                                    str(tmp_path / "d.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "synth_0007" in err and not (tmp_path / "d.json").exists()
    # accepted on request, and the run records it
    assert tool.main(["--config", str(cfg), "--out", str(tmp_path / "run"),
                      "--set", "data.accept_changed_sources=true"]) == 0
    assert "synth_0007" in json.loads((tmp_path / "run" / "results.json").read_text())["changed_sources"]
    assert "accept_changed_sources: true" in (tmp_path / "run" / "config.yaml").read_text()
    assert load_tool("infer").main(["--run", str(trained), "--features", str(feats), "--out",
                                    str(tmp_path / "d.json"), "--accept-changed-sources"]) == 0


def test_ground_truth_videos_without_features_are_counted_and_named(data, tmp_path, capsys):
    shutil.copytree(data / "feats", tmp_path / "feats")
    gt = json.loads((data / "gt.json").read_text())["database"]
    test_videos = sorted(v for v, e in gt.items() if e["subset"] == "test")
    for vid in test_videos[:1]:
        (tmp_path / "feats" / f"{vid}.npy").unlink()
    notes = []
    cfg = apply_overrides(ExperimentConfig(), config(tmp_path / "feats", data / "gt.json"))
    run_experiment(cfg, tmp_path / "run", log=notes.append)
    said = [n for n in notes if "no features" in str(n)]
    assert len(said) == 1 and f"1 of the {len(test_videos)} 'test' videos ({test_videos[0]})" in said[0]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["test_videos_without_features"] == test_videos[:1]
    assert json.loads((tmp_path / "run" / "run_meta.json").read_text())["videos_without_features"] == {
        "test": test_videos[:1]}


def test_a_whole_subset_without_features_is_refused(data, tmp_path, capsys, load_tool):
    shutil.copytree(data / "feats", tmp_path / "feats")
    gt = json.loads((data / "gt.json").read_text())["database"]
    for vid in (v for v, e in gt.items() if e["subset"] == "test"):
        (tmp_path / "feats" / f"{vid}.npy").unlink()
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "feats", data / "gt.json")
    assert load_tool("train_localizer").main(["--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no video of subset 'test' has features" in err


def test_a_nan_in_a_test_video_is_found_before_training(data, tmp_path, capsys, load_tool):
    shutil.copytree(data / "feats", tmp_path / "feats")
    gt = json.loads((data / "gt.json").read_text())["database"]
    vid = sorted(v for v, e in gt.items() if e["subset"] == "test")[0]
    arr = np.load(tmp_path / "feats" / f"{vid}.npy")
    arr[3, 2] = np.nan
    np.save(tmp_path / "feats" / f"{vid}.npy", arr)
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "feats", data / "gt.json")
    t0 = time.perf_counter()
    assert load_tool("train_localizer").main(["--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{vid}.npy" in err and "NaN" in err
    assert not (tmp_path / "run" / "train_log.jsonl").exists()  # no iteration ran


def test_a_damaged_feature_file_is_one_line_from_train_infer_and_detect(data, trained, tmp_path, capsys, load_tool):
    shutil.copytree(data / "feats", tmp_path / "feats")
    (tmp_path / "feats" / "synth_0006.npy").write_bytes(b"\x93NUMPY garbage")
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "feats", data / "gt.json")
    assert load_tool("train_localizer").main(["--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "synth_0006.npy" in err
    assert load_tool("infer").main(["--run", str(trained), "--features", str(tmp_path / "feats"), "--out",
                                    str(tmp_path / "d.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "synth_0006.npy" in err


def test_infer_on_a_folder_without_features_is_an_error(trained, tmp_path, capsys, load_tool):
    (tmp_path / "plain").mkdir()
    for i in range(3):
        np.save(tmp_path / "plain" / f"v{i}.npy", np.zeros((5, 8), np.float32))
    for folder, found in ((tmp_path / "plain", "3 .npy file(s) without"), (tmp_path / "empty", "no .npy file")):
        folder.mkdir(exist_ok=True)
        code = load_tool("infer").main(["--run", str(trained), "--features", str(folder), "--out",
                                        str(tmp_path / "d.json")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and str(folder) in err and found in err


def test_an_unwritable_output_is_refused_before_any_work(trained, data, tmp_path, capsys, load_tool, monkeypatch):
    import clicktal.pipeline.runs.inference as inference

    def never(*_, **__):
        raise AssertionError("detection ran before the output was checked")

    monkeypatch.setattr(inference, "infer_videos", never)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "d.json"  # its parent is a file: cannot be created, even as root
    assert load_tool("infer").main(["--run", str(trained), "--features", str(data / "feats"), "--out",
                                    str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out.parent) in err
    video = tmp_path / "v.mp4"
    video.write_bytes(b"never decoded")
    assert load_tool("detect").main([str(video), "--run", str(trained), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out.parent) in err


def test_a_yaml_error_in_a_set_value_is_one_line(data, tmp_path, capsys, load_tool):
    cfg = write_config(tmp_path / "c.yaml", data / "feats", data / "gt.json")
    code = load_tool("train_localizer").main(["--config", str(cfg), "--out", str(tmp_path / "run"),
                                              "--set", "train.iterations=[1,"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "train.iterations" in err and "Traceback" not in err


def test_an_untrained_run_is_not_written_over_a_run_unasked(trained, tmp_path):
    from clicktal.pipeline.runs.engine import RunExistsError
    from clicktal.pipeline.runs.inference import load_run, write_untrained_run

    run = copy_run(trained, tmp_path / "run")
    loaded = load_run(run)
    before = (run / "checkpoint_last.pt").read_bytes()
    kw = dict(classes=loaded.classes, contract=loaded.contract, extraction=None, buffers={}, note="untrained")
    with pytest.raises(RunExistsError, match=r"already holds a run \(trained to iteration 4"):
        write_untrained_run(run, loaded.config, **kw)
    assert (run / "checkpoint_last.pt").read_bytes() == before
    write_untrained_run(run, loaded.config, overwrite=True, **kw)
    assert load_checkpoint(run / "checkpoint_last.pt")["iteration"] == 0
    assert not (run / "results.json").exists()  # the replaced run's results do not outlive it

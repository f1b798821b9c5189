"""A run saves the raw per-video outputs of its test and held-out videos (``raw/<subset>.npz`` + index); they regroup
into exactly the run's detections without a forward pass, and under another inference config without touching the
loaded run."""
import dataclasses
import json

import numpy as np
import pytest

from clicktal.pipeline.data.detections import read_detections
from clicktal.pipeline.runs import experiments
from clicktal.pipeline.runs.experiments import evaluate_run
from clicktal.pipeline.runs.inference import load_run
from clicktal.pipeline.runs.raw import (HELDOUT, RawOutputError, clear_raw, load_raw, raw_path, regroup, rescore,
                                        with_inference)
from clicktal.pipeline.runs.schema import postprocess_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_small_run):
    return train_small_run(
        tmp_path_factory.mktemp("raw"), seed=6, n_videos=12, data={"val_fraction": 0.25},
        train={"iterations": 6, "seed": 1, "validate_every": 6},
        postprocess={"preset": "sfnet", "params": {"class_ratio": None, "class_threshold": 0.05}})


def test_the_run_saves_the_test_and_held_out_videos_numeric_arrays_only(trained):
    root, _ = trained
    meta = json.loads((root / "run" / "run_meta.json").read_text())
    database = json.loads((root / "gt.json").read_text())["database"]
    test, held = load_raw(root / "run", "test"), load_raw(root / "run", HELDOUT)
    assert list(held.videos) == meta["heldout_videos"]
    assert sorted(test.videos) == sorted(v for v, d in database.items() if d["subset"] == "test")
    with np.load(raw_path(root / "run", "test"), allow_pickle=False) as z:  # no object arrays anywhere
        arrays = {k: z[k] for k in z.files}
    vid = next(iter(test.videos))
    T, C = test.videos[vid].samples[0].grid.num_native, len(test.classes)
    assert arrays[f"{vid}/class_scores"].shape == (T, C + 1)  # SF-Net: a background column; the whole video
    assert arrays[f"{vid}/actionness"].shape == (T,)
    assert arrays[f"{vid}/frame_scores/scores"].shape == (T, C)
    assert arrays[f"{vid}/frame_scores/scores"].dtype == np.float64  # as grouped, not rounded
    assert not any("hidden" in k or k.startswith(f"{vid}/aux/class_scores") for k in arrays)  # [T, K] aux: not kept
    index = json.loads(raw_path(root / "run", "test").with_suffix(".json").read_text())
    assert index["checkpoint"] == "checkpoint_last.pt" and index["iteration"] == 6
    assert index["videos"][vid]["duration_s"] == pytest.approx(database[vid]["duration"])


def test_regrouping_with_the_runs_own_postprocessing_gives_its_detections_json(trained):
    root, result = trained
    run = load_run(root / "run")
    dets = regroup(run, "test", postprocess_config(run.config.postprocess))
    assert dets and dets == read_detections(root / "run" / "detections.json")
    assert regroup(run, "test", postprocess_config(run.postprocess("sfnet_code"))) != dets


def test_another_inference_config_rescores_without_changing_the_loaded_run(trained):
    root, _ = trained
    run = load_run(root / "run")
    own = run.model.config
    post = postprocess_config(run.config.postprocess)
    sigmoid = dataclasses.replace(own.inference, video_score="sigmoid")
    strict = postprocess_config(run.postprocess(overrides={"class_threshold": 0.5}))
    changed = regroup(run, "test", strict, inference=sigmoid)
    assert run.model.config is own and run.model.config.inference.video_score == "softmax"
    assert {(d.video, d.label) for d in changed} != {(d.video, d.label) for d in regroup(run, "test", strict)}
    raw = load_raw(root / "run", "test")
    sig = rescore(with_inference(run, sigmoid), raw.videos)
    assert not any(np.allclose(sig[v].scores.video_scores, raw.videos[v].scores.video_scores) for v in raw.videos)
    assert all(np.array_equal(sig[v].scores.scores, raw.videos[v].scores.scores) for v in raw.videos)
    # the saved model outputs make the saved frame scores again under the run's own config
    again = rescore(run, raw.videos)
    for vid, v in raw.videos.items():
        for name in ("scores", "video_scores", "class_probs", "actionness"):
            assert np.allclose(getattr(again[vid].scores, name), getattr(v.scores, name), atol=1e-6)
    assert regroup(run, "test", post, inference=own.inference) == regroup(run, "test", post)
    with pytest.raises(TypeError, match="SFNetInferenceConfig"):
        regroup(run, "test", post, inference=post)


def test_outputs_of_other_weights_are_refused(trained):
    root, _ = trained
    run = dataclasses.replace(load_run(root / "run"), iteration=5)
    with pytest.raises(RawOutputError, match="checkpoint_last.pt at iteration 6"):
        regroup(run, "test", postprocess_config(run.config.postprocess))


@pytest.mark.parametrize("damage", ["missing", "truncated", "bytes", "index"])
def test_a_missing_or_corrupt_raw_file_is_one_line_naming_it(trained, tmp_path, damage):
    import shutil

    root, _ = trained
    run_dir = tmp_path / "run"
    shutil.copytree(root / "run", run_dir)
    npz = raw_path(run_dir, "test")
    data = npz.read_bytes()
    if damage == "missing":
        npz.unlink()
    elif damage == "truncated":
        npz.write_bytes(data[: len(data) // 2])
    elif damage == "bytes":
        npz.write_bytes(data[:100] + bytes(255 - b for b in data[100:200]) + data[200:])
    else:
        npz.with_suffix(".json").write_text("{not json")
    with pytest.raises(RawOutputError) as err:
        load_raw(run_dir, "test")
    message = str(err.value)
    assert "\n" not in message and str(npz if damage != "missing" else npz) in message
    with pytest.raises(RawOutputError):
        regroup(load_run(run_dir), "test", postprocess_config(load_run(run_dir).config.postprocess))


def test_evaluate_run_regroups_saved_outputs_without_a_forward_pass(trained, tmp_path, monkeypatch):
    import shutil

    root, result = trained
    run_dir = tmp_path / "run"
    shutil.copytree(root / "run", run_dir)
    before = (run_dir / "results.json").read_text()

    def never(*_, **__):
        raise AssertionError("a forward pass")

    monkeypatch.setattr(experiments, "score_videos", never)
    notes = []
    again = evaluate_run(run_dir, write=False, log=notes.append)
    assert again.average == pytest.approx(result.average, abs=1e-12) and again.mAP == result.mAP
    assert again.record["scores_from"] == str(raw_path(run_dir, "test")) and any("no forward pass" in n for n in notes)
    other = evaluate_run(run_dir, preset="sfnet_code", write=False, log=notes.append)
    assert other.record["postprocess"] == {"preset": "sfnet_code",
                                           "params": {"class_ratio": None, "class_threshold": 0.05}}
    assert other.record["n_detections"] != again.record["n_detections"] or other.mAP != again.mAP
    assert (run_dir / "results.json").read_text() == before  # write=False: the run folder is left as it is
    monkeypatch.undo()
    clear_raw(run_dir)
    assert not (run_dir / "raw").exists()
    rescored = evaluate_run(run_dir, log=notes.append)  # no raw outputs: scored again, and saved
    assert rescored.mAP == pytest.approx(result.mAP, abs=1e-12) and raw_path(run_dir, "test").is_file()


def test_tiled_inference_saves_every_tile_and_regroups_exactly(tiny_run, tmp_path):
    """Overlapping inference tiles: each tile's output is saved with its positions; the saved outputs make the
    grouped scores again, and regrouping gives the run's detections."""
    tiny_run({"data": {"labels": {"action_clicks": {"source": "uniform"}},
                       "sampling": {"inference": {"kind": "windows", "length": 16, "stride": 10}}},
              "train": {"iterations": 3}, "evaluation": {"use_ambiguous": False}})
    run = load_run(tmp_path / "run")
    raw = load_raw(tmp_path / "run", "test")
    vid, video = max(raw.videos.items(), key=lambda kv: len(kv[1].samples))
    assert len(video.samples) > 2 and all(len(s.class_scores) == 16 for s in video.samples[:-1])
    assert np.array_equal(video.samples[1].grid.positions, np.arange(10, 26))
    again = rescore(run, raw.videos)
    assert all(np.allclose(again[v].scores.scores, raw.videos[v].scores.scores, atol=1e-6) for v in raw.videos)
    post = postprocess_config(run.config.postprocess)
    dets = regroup(run, "test", post)
    assert dets and dets == read_detections(tmp_path / "run" / "detections.json")

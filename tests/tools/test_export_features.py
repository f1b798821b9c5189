"""clicktal-export writes a feature cache in ActionFormer's layout that ActionFormer's reader reads back identically,
resumes, refuses to overwrite, and fails with one line and a documented exit status."""
import json

import numpy as np
import pytest

from clicktal.pipeline.core.files import DiskFullError
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.annotations import load_ground_truth
from clicktal.pipeline.data.cache import CacheSource, FeatureCache, FeatureMeta
from clicktal.pipeline.data.layouts import ActionFormerSource, BasnetSource, ExportError, export_actionformer
from clicktal.tools.export_features import main

GEOMETRY = FeatureGeometry(25, 16, 16)
STREAMS = {"rgb": (0, 8), "flow": (8, 12)}
DURATIONS = {"video_test_1": 6.2, "video_test_2": 3.0, "video_validation_3": 4.1}


def write_cache(root, geometry=GEOMETRY, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {}
    for vid, duration in DURATIONS.items():
        x = rng.standard_normal((geometry.snippet_count(duration), 12)).astype(np.float32)
        FeatureCache(root).write(vid, x, FeatureMeta(geometry, STREAMS, extractor="i3d",
                                                     source={"duration_s": duration}))
        arrays[vid] = x
    return arrays


def write_gt(path):
    path.write_text(json.dumps({"database": {
        "video_test_1": {"subset": "Test", "duration": 6.25, "annotations": [
            {"segment": [1.0, 2.5], "label": "Diving"}, {"segment": [3.0, 4.0], "label": "BaseballPitch"}]},
        "video_validation_3": {"subset": "Validation", "duration": 4.0, "annotations": [
            {"segment": [0.5, 1.0], "label": "CliffDiving"}]},
        "video_test_99": {"subset": "Test", "duration": 9.0, "annotations": []}}}))
    return path


def run(capsys, *argv):
    status = main([str(a) for a in argv] + ["--no-progress"])
    out, err = capsys.readouterr()
    return status, out, err


def test_round_trip_through_actionformers_reader(tmp_path, capsys):
    arrays = write_cache(tmp_path / "cache")
    gt = write_gt(tmp_path / "gt.json")
    out = tmp_path / "af"
    status, stdout, err = run(capsys, tmp_path / "cache", "--out", out, "--gt", gt)
    assert status == 0, err
    assert "3 videos: wrote 3, skipped 0" in stdout and "1 ground-truth videos have no features" in stdout
    config = json.loads((out / "export.json").read_text())
    af = config["actionformer"]
    assert (af["feat_stride"], af["num_frames"], af["default_fps"], af["input_dim"]) == (16, 16, 25, 12)
    assert config["opentad"]["offset_frames"] == 8 and config["geometry"] == GEOMETRY.to_dict()
    assert config["streams"] == {"rgb": [0, 8], "flow": [8, 12]}
    src = ActionFormerSource(out, annotations=out / af["json_file"], feat_stride=af["feat_stride"],
                             num_frames=af["num_frames"], rgb_dim=config["streams"]["rgb"][1])
    assert src.ids() == sorted(arrays) and src.problems() == []
    cache = CacheSource(tmp_path / "cache")
    for vid, x in arrays.items():
        y, meta = src.load(vid)
        assert y.dtype == np.float32 and np.array_equal(x, y)
        assert meta.geometry == cache.meta(vid).geometry and meta.streams == cache.meta(vid).streams
        i = np.arange(len(x))  # ActionFormer's seconds are the cache's snippet centres
        np.testing.assert_array_equal((i * af["feat_stride"] + 0.5 * af["num_frames"]) / meta.geometry.fps,
                                      cache.meta(vid).geometry.centre_s(i))


def test_annotation_json_is_actionformers(tmp_path, capsys):
    write_cache(tmp_path / "cache")
    gt = write_gt(tmp_path / "gt.json")
    assert run(capsys, tmp_path / "cache", "--out", tmp_path / "af", "--gt", gt)[0] == 0
    db = json.loads((tmp_path / "af/annotations.json").read_text())["database"]
    assert set(db) == set(DURATIONS)
    v1 = db["video_test_1"]
    assert (v1["subset"], v1["duration"], v1["fps"]) == ("Test", 6.25, 25)  # the ground truth's duration
    # label ids: the ground truth's classes sorted (THUMOS14's order: CliffDiving 4 of the 20)
    assert v1["annotations"] == [
        {"label": "Diving", "segment": [1.0, 2.5], "segment(frames)": [25.0, 62.5], "label_id": 2},
        {"label": "BaseballPitch", "segment": [3.0, 4.0], "segment(frames)": [75.0, 100.0], "label_id": 0}]
    assert db["video_validation_3"]["annotations"][0]["label_id"] == 1
    assert db["video_validation_3"]["subset"] == "Validation"
    # not in the ground truth: the cache's duration, no annotations, the default subset
    assert db["video_test_2"] == {"subset": "Test", "duration": 3.0, "fps": 25, "annotations": []}
    label_ids = json.loads((tmp_path / "af/export.json").read_text())["label_ids"]
    assert label_ids == {"BaseballPitch": 0, "CliffDiving": 1, "Diving": 2}
    assert load_ground_truth(tmp_path / "af/annotations.json").videos["video_test_1"].duration_s == 6.25


def test_rerun_skips_identical_files_and_refuses_changed_ones(tmp_path, capsys):
    write_cache(tmp_path / "cache")
    out = tmp_path / "af"
    assert run(capsys, tmp_path / "cache", "--out", out)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    status, stdout, _ = run(capsys, tmp_path / "cache", "--out", out)
    assert status == 0 and "wrote 0, skipped 3" in stdout
    arrays = write_cache(tmp_path / "cache", seed=1)  # the features change
    status, stdout, err = run(capsys, tmp_path / "cache", "--out", out)
    assert status == 2 and stdout == ""
    assert err.count("\n") == 1 and "3 existing files differ" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written
    status, stdout, _ = run(capsys, tmp_path / "cache", "--out", out, "--overwrite")
    assert status == 0 and "wrote 3, skipped 0" in stdout
    assert np.array_equal(np.load(out / "video_test_2.npy"), arrays["video_test_2"])


def test_resumes_after_an_interrupted_export(tmp_path, capsys):
    write_cache(tmp_path / "cache")
    out = tmp_path / "af"
    assert run(capsys, tmp_path / "cache", "--out", out)[0] == 0
    (out / "video_test_2.npy").unlink()
    (out / "export.json").unlink()
    status, stdout, _ = run(capsys, tmp_path / "cache", "--out", out)
    assert status == 0 and "wrote 1, skipped 2" in stdout and (out / "export.json").is_file()


def test_missing_folder_is_exit_2_with_one_line(tmp_path, capsys):
    status, stdout, err = run(capsys, tmp_path / "nope", "--out", tmp_path / "af")
    assert status == 2 and stdout == "" and err.count("\n") == 1 and "nope" in err
    assert not (tmp_path / "af").exists()


def test_bad_ground_truth_and_nan_features_are_exit_2(tmp_path, capsys):
    write_cache(tmp_path / "cache")
    bad = tmp_path / "gt.json"
    bad.write_text("{")
    status, _, err = run(capsys, tmp_path / "cache", "--out", tmp_path / "af", "--gt", bad)
    assert status == 2 and "gt.json" in err and err.count("\n") == 1
    x = np.load(tmp_path / "cache/video_test_1.npy")
    x[1, 2] = np.nan
    np.save(tmp_path / "cache/video_test_1.npy", x)
    status, _, err = run(capsys, tmp_path / "cache", "--out", tmp_path / "af")
    assert status == 2 and "video_test_1.npy" in err and "NaN" in err and err.count("\n") == 1


def test_full_disk_is_exit_4(tmp_path, capsys, monkeypatch):
    write_cache(tmp_path / "cache")

    def full(path, write):
        raise DiskFullError(path)

    monkeypatch.setattr("clicktal.pipeline.data.layouts.atomic_write", full)
    status, _, err = run(capsys, tmp_path / "cache", "--out", tmp_path / "af")
    assert status == 4 and "disk is full" in err and err.count("\n") == 1


def test_only_one_fixed_whole_frame_geometry_is_exportable(tmp_path):
    write_cache(tmp_path / "cache")
    FeatureCache(tmp_path / "cache").write("video_other", np.zeros((3, 12), np.float32),
                                           FeatureMeta(FeatureGeometry(30, 16, 16), STREAMS))
    with pytest.raises(ExportError, match="video video_test_1 has geometry .*, video video_other .* one feat_stride, num_frames"):
        export_actionformer(CacheSource(tmp_path / "cache"), tmp_path / "af")
    write_cache(tmp_path / "shifted", geometry=FeatureGeometry(25, 16, 16, origin=8))
    with pytest.raises(ExportError, match="not whole frames from frame 0"):
        export_actionformer(CacheSource(tmp_path / "shifted"), tmp_path / "af")
    ann = tmp_path / "af_in.json"
    ann.write_text(json.dumps({"database": {"v": {"subset": "Test", "fps": 30}}}))
    (tmp_path / "af_in").mkdir()
    np.save(tmp_path / "af_in/v.npy", np.zeros((3, 4), np.float32))
    with pytest.raises(ExportError, match="each have their own geometry"):
        export_actionformer(ActionFormerSource(tmp_path / "af_in", annotations=ann), tmp_path / "af")
    with pytest.raises(ExportError, match="source folder itself"):
        export_actionformer(CacheSource(tmp_path / "cache"), tmp_path / "cache")
    assert not (tmp_path / "af").exists()


def test_exports_a_basnet_folder_with_durations_from_the_feature_length(tmp_path):
    rng = np.random.default_rng(2)
    for split, vid in (("train", "video_validation_1"), ("test", "video_test_1")):
        for stream in ("rgb", "flow"):
            path = tmp_path / "bas/features" / split / stream / f"{vid}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, rng.standard_normal((4, 8)).astype(np.float16))
    report = export_actionformer(BasnetSource(tmp_path / "bas"), tmp_path / "af")
    assert report.written == 2 and report.duration_from == {"feature length": 2}
    db = json.loads((tmp_path / "af/annotations.json").read_text())["database"]
    assert db["video_test_1"] == {"subset": "test", "duration": 4 * 16 / 25, "fps": 25, "annotations": []}
    x, _ = BasnetSource(tmp_path / "bas").load("video_test_1")
    assert np.array_equal(np.load(tmp_path / "af/video_test_1.npy"), x)

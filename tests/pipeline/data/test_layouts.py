"""The community's per-video feature layouts read back exactly, map positions to seconds by their projects' own
formulas, and refuse broken files naming them."""
import json
from pathlib import Path

import numpy as np
import pytest

from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.cache import CacheError, FeatureCache, FeatureMeta, NonFiniteFeatures
from clicktal.pipeline.data.layouts import (ActionFormerSource, BacktalNpzSource, BasnetSource, LayoutError,
                                            is_actionformer, is_backtal_npz, is_basnet)

RNG = np.random.default_rng(0)


def feats(rows: int, dim: int = 8, dtype=np.float32) -> np.ndarray:
    return RNG.standard_normal((rows, dim)).astype(dtype)


# ---- builders: one tiny folder per layout -------------------------------------------------------------------------

def make_basnet(root: Path, videos: dict[str, tuple[str, int]] | None = None, streams=("rgb", "flow")) -> dict:
    """``root/features/<split>/<stream>/<video>.npy``; returns video -> {stream: array}."""
    videos = videos or {"video_validation_1": ("train", 5), "video_validation_2": ("train", 3),
                        "video_test_1": ("test", 4)}
    out = {}
    for vid, (split, rows) in videos.items():
        for stream in streams:
            arr = feats(rows, 8 if stream == "rgb" else 6)
            path = root / "features" / split / stream / f"{vid}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, arr)
            out.setdefault(vid, {})[stream] = arr
    return out


def save_npz(path: Path, **members) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **members)


def make_backtal(root: Path) -> dict:
    """``root/{val,test}/<n>.npz`` with BackTAL's members; returns video -> (rgb, flow, fps, duration)."""
    out = {}
    for i, (split, vid, rows, fps, duration) in enumerate([("val", "video_validation_7", 750, 30.0, 171.3),
                                                           ("test", "video_test_3", 12, 25.0, 40.0),
                                                           ("test", "video_test_9", 10, 24.0, 9.5)]):
        rgb, flow = feats(rows), feats(rows, 6)
        save_npz(root / split / f"{i:04d}.npz", feat_spa=rgb, feat_tem=flow, cls_label=np.zeros(20, np.float32),
                 point_label=np.zeros((rows, 21), np.float32), vid_name=np.array(vid), frame_num=np.array(
                     int(fps * duration)), fps=np.array(fps), duration=np.array(duration))
        out[vid] = (rgb, flow, fps, duration)
    return out


def make_actionformer(root: Path, prefix: str = "", ext: str = ".npy") -> tuple[dict, Path]:
    """``root/<prefix><video><ext>`` + an ActionFormer annotation JSON beside the folder."""
    root.mkdir(parents=True, exist_ok=True)
    arrays = {"video_validation_1": feats(9, 12), "video_test_2": feats(7, 12), "video_test_3": feats(5, 12)}
    database = {"video_validation_1": {"subset": "Validation", "duration": 20.0, "fps": 30.0, "annotations": []},
                "video_test_2": {"subset": "Test", "duration": 10.5, "fps": 25.0, "annotations": []},
                "video_test_3": {"subset": "Test", "duration": 6.0, "fps": 24.0, "annotations": []}}
    for vid, arr in arrays.items():
        np.save(root / f"{prefix}{vid}.npy", arr)
        if ext != ".npy":
            (root / f"{prefix}{vid}.npy").rename(root / f"{prefix}{vid}{ext}")
    ann = root.parent / f"{root.name}_annotations.json"
    ann.write_text(json.dumps({"version": "Thumos14-30fps", "database": database}))
    return arrays, ann


def make_cache(root: Path) -> None:
    meta = FeatureMeta(FeatureGeometry(25, 16, 16), {"rgb": (0, 4), "flow": (4, 8)}, extractor="test")
    for vid in ("a", "b"):
        FeatureCache(root).write(vid, feats(3), meta)


def make_synth(root: Path) -> None:
    (root / "features").mkdir(parents=True)
    np.save(root / "features" / "v1.npy", feats(3))
    (root / "annotations.json").write_text(json.dumps(
        {"feature_meta": {"fps": 25, "snippet_frames": 16, "rgb_dim": 4, "dim": 8}, "database": {}}))


def truncate(path: Path, nbytes: int = 8) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - nbytes)


# ---- BaS-Net ------------------------------------------------------------------------------------------------------

def test_basnet_reads_rgb_then_flow_with_thumos_geometry(tmp_path):
    arrays = make_basnet(tmp_path)
    src = BasnetSource(tmp_path)
    assert src.ids() == sorted(arrays) and src.problems() == [] and src.per_video_geometry is False
    for vid, parts in arrays.items():
        x, meta = src.load(vid)
        assert x.dtype == np.float32 and np.array_equal(x, np.concatenate([parts["rgb"], parts["flow"]], axis=1))
        assert meta.streams == {"rgb": (0, 8), "flow": (8, 14)} and meta == src.meta(vid)
        assert meta.extractor == "basnet-i3d" and meta.options["layout"] == "basnet"
        assert "default" in meta.options["geometry_from"]
    assert src.meta("video_test_1").source["subset"] == "test"
    g = src.meta("video_test_1").geometry
    assert g == FeatureGeometry(25, 16, 16)
    np.testing.assert_allclose(g.centre_s(np.arange(4)), (16 * np.arange(4) + 8) / 25)


def test_basnet_geometry_argument_and_split_choice(tmp_path):
    make_basnet(tmp_path)
    src = BasnetSource(tmp_path, geometry=FeatureGeometry(30, 16, 8), splits=["test"])
    assert src.ids() == ["video_test_1"]
    meta = src.meta("video_test_1")
    assert meta.geometry == FeatureGeometry(30, 16, 8) and meta.options["geometry_from"] == "the geometry argument"
    with pytest.raises(LayoutError, match="no split folder val"):
        BasnetSource(tmp_path, splits=["val"])


def test_basnet_rgb_only_folder_is_one_memory_mapped_stream(tmp_path):
    arrays = make_basnet(tmp_path, streams=("rgb",))
    src = BasnetSource(tmp_path)
    x, meta = src.load("video_test_1")
    assert isinstance(x, np.memmap) and np.array_equal(x, arrays["video_test_1"]["rgb"])
    assert meta.streams == {"rgb": (0, 8)}


def test_basnet_video_with_one_stream_is_left_out_and_named(tmp_path):
    make_basnet(tmp_path)
    (tmp_path / "features/train/flow/video_validation_2.npy").unlink()
    np.save(tmp_path / "features/test/flow/video_test_only_flow.npy", feats(4, 6))
    src = BasnetSource(tmp_path)
    assert src.ids() == ["video_test_1", "video_validation_1"]
    problems = src.problems()
    assert len(problems) == 2
    assert any("video_validation_2" in p and "no flow" in p for p in problems)
    assert any("video_test_only_flow" in p and "no rgb" in p for p in problems)


def test_basnet_refuses_nan_naming_the_file(tmp_path):
    make_basnet(tmp_path)
    path = tmp_path / "features/train/flow/video_validation_1.npy"
    bad = np.load(path)
    bad[2, 1] = np.nan
    np.save(path, bad)
    with pytest.raises(NonFiniteFeatures, match=str(path)):
        BasnetSource(tmp_path).load("video_validation_1")


def test_basnet_refuses_streams_of_different_lengths_naming_the_video(tmp_path):
    make_basnet(tmp_path)
    np.save(tmp_path / "features/test/flow/video_test_1.npy", feats(5, 6))
    with pytest.raises(LayoutError, match="video video_test_1: its streams differ in length.*rgb 4 rows.*flow 5"):
        BasnetSource(tmp_path).load("video_test_1")


def test_basnet_converts_float16_and_float64(tmp_path):
    make_basnet(tmp_path)
    rgb = feats(4, 8, np.float16)
    flow = RNG.standard_normal((4, 6))  # float64
    np.save(tmp_path / "features/test/rgb/video_test_1.npy", rgb)
    np.save(tmp_path / "features/test/flow/video_test_1.npy", flow)
    x, _ = BasnetSource(tmp_path).load("video_test_1")
    assert x.dtype == np.float32
    assert np.array_equal(x, np.concatenate([rgb.astype(np.float32), flow.astype(np.float32)], axis=1))


def test_basnet_float64_beyond_float32_is_refused_as_inf(tmp_path):
    make_basnet(tmp_path, streams=("rgb",))
    big = np.full((4, 8), 1e300)
    np.save(tmp_path / "features/test/rgb/video_test_1.npy", big)
    with pytest.raises(NonFiniteFeatures, match="inf"):
        BasnetSource(tmp_path).load("video_test_1")


@pytest.mark.parametrize("damage, message", [
    (lambda p: truncate(p), "truncated feature file"),
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), "object"),
    (lambda p: np.save(p, np.zeros((4, 8), np.int32)), "int32 array"),
    (lambda p: np.save(p, np.zeros((0, 8), np.float32)), "empty"),
    (lambda p: p.write_bytes(b"not numpy"), "video_test_1.npy"),
])
def test_basnet_refuses_a_broken_array_naming_the_file(tmp_path, damage, message):
    make_basnet(tmp_path)
    path = tmp_path / "features/test/rgb/video_test_1.npy"
    damage(path)
    with pytest.raises(LayoutError, match=message) as e:
        BasnetSource(tmp_path).load("video_test_1")
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_basnet_checks_a_stated_rgb_dim_and_refuses_hidden_names(tmp_path):
    make_basnet(tmp_path)
    np.save(tmp_path / "features/test/rgb/._video_test_1.npy", feats(4))
    src = BasnetSource(tmp_path, rgb_dim=1024)
    assert any("._video_test_1" in p and "begins with a dot" in p for p in src.problems())
    with pytest.raises(LayoutError, match="8 wide where rgb_dim 1024"):
        src.meta("video_test_1")
    assert BasnetSource(tmp_path, rgb_dim=8).meta("video_test_1").dim == 14


def test_basnet_video_in_two_splits_is_refused(tmp_path):
    make_basnet(tmp_path, {"v": ("train", 3)})
    make_basnet(tmp_path, {"v": ("test", 3)})
    with pytest.raises(LayoutError, match="video v is in two splits"):
        BasnetSource(tmp_path)


# ---- BackTAL npz --------------------------------------------------------------------------------------------------

def test_backtal_reads_spatial_then_temporal_by_vid_name(tmp_path):
    videos = make_backtal(tmp_path)
    src = BacktalNpzSource(tmp_path)
    assert src.ids() == sorted(videos) and src.per_video_geometry is True and src.problems() == []
    for vid, (rgb, flow, fps, duration) in videos.items():
        x, meta = src.load(vid)
        assert np.array_equal(x, np.concatenate([rgb, flow], axis=1)) and x.dtype == np.float32
        assert meta.streams == {"rgb": (0, 8), "flow": (8, 14)} and meta == src.meta(vid)
        assert meta.extractor == "backtal-npz" and meta.source["duration_s"] == duration
        assert meta.source["frame_num"] == int(fps * duration)
    assert src.meta("video_validation_7").source["subset"] == "val"


def test_backtal_geometry_maps_elements_over_the_whole_video(tmp_path):
    videos = make_backtal(tmp_path)
    src = BacktalNpzSource(tmp_path)
    for vid, (rgb, _, fps, duration) in videos.items():
        g, n = src.meta(vid).geometry, rgb.shape[0]
        j = np.arange(n)
        # BackTAL: element j spans [j, j + 1) * duration / n seconds; its centre is (j + 0.5) * duration / n
        np.testing.assert_allclose(g.centre_s(j), (j + 0.5) * duration / n, rtol=1e-12, atol=0)
        np.testing.assert_allclose(g.start_s(j), j * duration / n, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g.end_s(n - 1), duration, rtol=1e-12)
        assert g.fps == fps and g.origin == 0 and g.window == g.stride == pytest.approx(fps * duration / n)
    g = src.meta("video_validation_7").geometry
    assert g.centre_s(749) == pytest.approx(749.5 * 171.3 / 750, rel=1e-12)


def test_backtal_training_files_take_duration_and_fps_from_arguments(tmp_path):
    save_npz(tmp_path / "val/0000.npz", feat_spa=feats(10), feat_tem=feats(10), cls_label=np.zeros(20),
             point_label=np.zeros((10, 21)), vid_name=np.array("video_validation_5"))
    with pytest.raises(LayoutError, match=r"0000\.npz: no 'duration' member and video video_validation_5"):
        BacktalNpzSource(tmp_path)
    with pytest.raises(LayoutError, match=r"0000\.npz: no 'fps' member"):
        BacktalNpzSource(tmp_path, durations={"video_validation_5": 20.0})
    src = BacktalNpzSource(tmp_path, durations={"video_validation_5": 20.0}, default_fps=30)
    meta = src.meta("video_validation_5")
    assert meta.geometry.centre_s(0) == pytest.approx(1.0) and "durations argument" in meta.options["geometry_from"]


def test_backtal_vid_name_bytes_or_absent(tmp_path):
    save_npz(tmp_path / "test/a.npz", feat_spa=feats(4), feat_tem=feats(4), vid_name=np.array(b"video_test_8"),
             fps=np.array(25.0), duration=np.array(8.0))
    save_npz(tmp_path / "test/video_test_9.npz", feat_spa=feats(4), feat_tem=feats(4), fps=np.array([25.0]),
             duration=np.array([8.0]))
    assert BacktalNpzSource(tmp_path).ids() == ["video_test_8", "video_test_9"]


def test_backtal_converts_float16_members(tmp_path):
    rgb = feats(4, 8, np.float16)
    save_npz(tmp_path / "test/a.npz", feat_spa=rgb, feat_tem=feats(4), vid_name=np.array("v"), fps=np.array(25.0),
             duration=np.array(8.0))
    x, _ = BacktalNpzSource(tmp_path).load("v")
    assert x.dtype == np.float32 and np.array_equal(x[:, :8], rgb.astype(np.float32))


def test_backtal_refuses_nan_naming_the_file(tmp_path):
    make_backtal(tmp_path)
    path = tmp_path / "test/0002.npz"
    with np.load(path) as z:
        members = dict(z)
    members["feat_tem"][3, 0] = np.inf
    np.savez(path, **members)
    with pytest.raises(NonFiniteFeatures, match=r"0002\.npz.*stream flow"):
        BacktalNpzSource(tmp_path).load("video_test_9")


def test_backtal_refuses_a_pickled_member_naming_the_file(tmp_path):
    save_npz(tmp_path / "test/a.npz", feat_spa=feats(4), feat_tem=feats(4), fps=np.array(25.0),
             duration=np.array(8.0), vid_name=np.array(["video_test_1"], dtype=object))
    with pytest.raises(LayoutError, match=r"a\.npz: member 'vid_name' holds Python objects"):
        BacktalNpzSource(tmp_path)
    save_npz(tmp_path / "test/a.npz", feat_spa=np.array([{}], dtype=object), feat_tem=feats(4),
             fps=np.array(25.0), duration=np.array(8.0))
    with pytest.raises(LayoutError, match=r"a\.npz: member 'feat_spa'"):
        BacktalNpzSource(tmp_path)


def test_backtal_refuses_truncated_and_incomplete_files(tmp_path):
    make_backtal(tmp_path)
    truncate(tmp_path / "test/0001.npz", 200)
    with pytest.raises(LayoutError, match=r"0001\.npz"):
        BacktalNpzSource(tmp_path)
    (tmp_path / "test/0001.npz").unlink()
    save_npz(tmp_path / "test/0001.npz", feat_spa=feats(4), vid_name=np.array("x"), fps=np.array(25.0),
             duration=np.array(8.0))
    with pytest.raises(LayoutError, match=r"0001\.npz: no member 'feat_tem'"):
        BacktalNpzSource(tmp_path)
    save_npz(tmp_path / "test/0001.npz", feat_spa=feats(4), feat_tem=feats(5), vid_name=np.array("x"),
             fps=np.array(25.0), duration=np.array(8.0))
    with pytest.raises(LayoutError, match="feat_spa has 4 rows and feat_tem 5"):
        BacktalNpzSource(tmp_path)


def test_backtal_same_video_in_two_files_is_refused(tmp_path):
    for name in ("a", "b"):
        save_npz(tmp_path / f"test/{name}.npz", feat_spa=feats(4), feat_tem=feats(4), vid_name=np.array("v"),
                 fps=np.array(25.0), duration=np.array(8.0))
    with pytest.raises(LayoutError, match=r"b\.npz: video v is also in .*a\.npz"):
        BacktalNpzSource(tmp_path)


# ---- ActionFormer -------------------------------------------------------------------------------------------------

def test_actionformer_reads_arrays_with_fps_per_video(tmp_path):
    arrays, ann = make_actionformer(tmp_path / "i3d")
    src = ActionFormerSource(tmp_path / "i3d", annotations=ann, rgb_dim=8)
    assert src.ids() == sorted(arrays) and src.per_video_geometry is True and src.problems() == []
    for vid, arr in arrays.items():
        x, meta = src.load(vid)
        assert isinstance(x, np.memmap) and np.array_equal(x, arr)
        assert meta.streams == {"rgb": (0, 8), "flow": (8, 12)} and meta == src.meta(vid)
        assert meta.extractor == "actionformer" and "fps of" in meta.options["geometry_from"]
    assert src.meta("video_test_2").geometry == FeatureGeometry(25.0, 16, 4)
    assert src.meta("video_test_2").source == {"path": str(tmp_path / "i3d/video_test_2.npy"), "subset": "Test",
                                               "duration_s": 10.5}
    assert src.meta("video_test_3").geometry.fps == 24.0


def test_actionformer_positions_match_its_own_formula(tmp_path):
    arrays, ann = make_actionformer(tmp_path / "i3d")
    for feat_stride, num_frames in ((4, 16), (16, 16), (8, 32)):
        src = ActionFormerSource(tmp_path / "i3d", annotations=ann, feat_stride=feat_stride, num_frames=num_frames)
        for vid, arr in arrays.items():
            g, fps = src.meta(vid).geometry, src.meta(vid).geometry.fps
            i = np.arange(arr.shape[0])
            # libs/datasets/thumos14.py: grid = (seconds * fps - 0.5 * num_frames) / feat_stride, inverted
            assert np.array_equal(g.centre_s(i), (i * feat_stride + 0.5 * num_frames) / fps)
            assert fps == {"video_validation_1": 30.0, "video_test_2": 25.0, "video_test_3": 24.0}[vid]


def test_actionformer_default_fps_wins_and_names_the_streams_without_rgb_dim(tmp_path):
    _, ann = make_actionformer(tmp_path / "i3d")
    src = ActionFormerSource(tmp_path / "i3d", annotations=ann, default_fps=30)
    assert {src.meta(v).geometry.fps for v in src.ids()} == {30.0}
    assert src.meta("video_test_2").streams == {"features": (0, 12)}
    assert ActionFormerSource(tmp_path / "i3d", annotations=None, default_fps=30).ids() == src.ids()
    with pytest.raises(LayoutError, match="annotation JSON .* or a default_fps"):
        ActionFormerSource(tmp_path / "i3d", annotations=None)
    with pytest.raises(LayoutError, match="fewer than rgb_dim 100"):
        ActionFormerSource(tmp_path / "i3d", annotations=ann, rgb_dim=100).meta("video_test_2")


def test_actionformer_video_without_fps_is_refused_naming_it(tmp_path):
    _, ann = make_actionformer(tmp_path / "i3d")
    data = json.loads(ann.read_text())
    del data["database"]["video_test_3"]["fps"]
    ann.write_text(json.dumps(data))
    with pytest.raises(LayoutError, match="1 videos with features have no valid 'fps' \\(video_test_3\\)"):
        ActionFormerSource(tmp_path / "i3d", annotations=ann)
    assert ActionFormerSource(tmp_path / "i3d", annotations=ann, default_fps=24).meta("video_test_3").geometry.fps == 24


def test_actionformer_videos_missing_on_either_side_are_named(tmp_path):
    _, ann = make_actionformer(tmp_path / "i3d")
    (tmp_path / "i3d/video_test_3.npy").unlink()
    np.save(tmp_path / "i3d/video_extra.npy", feats(3, 12))
    src = ActionFormerSource(tmp_path / "i3d", annotations=ann)
    assert src.ids() == ["video_test_2", "video_validation_1"]
    problems = src.problems()
    assert any("video_extra" in p and "not in" in p for p in problems)
    assert any("1 videos have no feature file" in p and "video_test_3" in p for p in problems)


def test_actionformer_prefix_extension_and_refusals(tmp_path):
    arrays, ann = make_actionformer(tmp_path / "i3d", prefix="v_", ext=".feat.npy")
    src = ActionFormerSource(tmp_path / "i3d", annotations=ann, prefix="v_", file_ext=".feat.npy")
    assert src.ids() == sorted(arrays)
    path = tmp_path / "i3d/v_video_test_2.feat.npy"
    bad = arrays["video_test_2"].copy()
    bad[0, 0] = np.nan
    np.save(path.with_suffix(""), bad)  # np.save appends .npy
    with pytest.raises(NonFiniteFeatures, match=str(path)):
        src.load("video_test_2")
    np.save(path.with_suffix(""), np.array([{}], dtype=object), allow_pickle=True)
    with pytest.raises(LayoutError, match=str(path)):
        src.load("video_test_2")
    truncate(tmp_path / "i3d/v_video_test_3.feat.npy")
    with pytest.raises(LayoutError, match="truncated feature file"):
        src.load("video_test_3")


def test_actionformer_bad_annotation_file_is_named(tmp_path):
    make_actionformer(tmp_path / "i3d")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(CacheError, match="bad.json: line 1"):
        ActionFormerSource(tmp_path / "i3d", annotations=bad)


# ---- detection ----------------------------------------------------------------------------------------------------

BUILDERS = {"basnet": make_basnet, "backtal": make_backtal, "actionformer": lambda p: make_actionformer(p),
            "cache": make_cache, "synth": make_synth}
DETECTORS = {"basnet": is_basnet, "backtal": is_backtal_npz, "actionformer": is_actionformer}


@pytest.mark.parametrize("layout", sorted(BUILDERS))
def test_each_detector_recognises_its_own_layout_only(tmp_path, layout):
    root = tmp_path / "root"
    root.mkdir()
    BUILDERS[layout](root)
    assert {name: detect(root) for name, detect in DETECTORS.items()} == {
        name: name == layout for name in DETECTORS}


def test_detectors_are_false_on_a_missing_or_empty_folder(tmp_path):
    for detect in DETECTORS.values():
        assert not detect(tmp_path / "nope") and not detect(tmp_path)

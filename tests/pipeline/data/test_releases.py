import shutil

import numpy as np
import pytest

from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.annotations import load_ground_truth
from clicktal.pipeline.data.cache import CacheError, NonFiniteFeatures
from clicktal.pipeline.data.formats import FeatureLayoutConfig, detect_format, open_features
from clicktal.pipeline.data.releases import WtalcSource, read_release_annotations

DIM = 16


def joint_release(benchkit, folder, *, dataset="Thumos14", annotations="thumos14/sfnet_release/Thumos14-Annotations",
                  seed=0, poison=None):
    """A W-TALC release in ``folder``: the real annotation arrays and a joint file of synthetic rows (one per video
    row, as many snippets as its duration gives at 25 fps / 16 frames; unannotated rows 0 or 2 snippets)."""
    shutil.copytree(benchkit / annotations, folder / f"{dataset}-Annotations")
    rel = read_release_annotations(folder / f"{dataset}-Annotations")
    rng = np.random.default_rng(seed)
    rows = np.empty(len(rel.names), object)
    for i, name in enumerate(rel.names):
        T = FeatureGeometry(25, 16, 16).snippet_count(rel.durations[i]) if name in rel.ground_truth.videos else 2 * (i % 2)
        rows[i] = rng.standard_normal((T, DIM)).astype(np.float32)
        if name == poison:
            rows[i][3, 11] = np.nan
    np.save(folder / f"{dataset}-I3D-JOINTFeatures.npy", rows, allow_pickle=True)
    return rows, rel


def test_the_release_arrays_give_sfnet_s_ground_truth(benchkit):
    rel = read_release_annotations(benchkit / "thumos14/sfnet_release/Thumos14-Annotations")
    gt = rel.ground_truth
    assert len(rel.names) == 2584 and len(rel.classes) == 20  # classlist_20classes, as SF-Net's get_classlist
    # the rows SF-Net trains / tests on: those with segments (W-TALC's 412 less its two unlabelled test videos)
    assert {s: len(gt.subset(s)) for s in gt.subsets()} == {"test": 210, "validation": 200}
    assert rel.unannotated == {"validation": 810, "test": 1364}
    ref = load_ground_truth(benchkit / "thumos14/groundtruth.json")
    assert set(ref.videos) - set(gt.videos) == {"video_test_0000270", "video_test_0001496"}
    same = {vid: sorted((s.start_s, s.end_s, s.label) for s in video.segments) ==
            sorted((s.start_s, s.end_s, s.label) for s in ref.videos[vid].segments) for vid, video in gt.videos.items()}
    # validation: the same instances as the ActivityNet-schema file (in another order); the release's test segments
    # are retimed (SF-Net evaluates against th14_groundtruth.json, not these arrays: docs/own_data.md)
    assert all(same[v] for v in gt.subset("validation")) and not any(same[v] for v in gt.subset("test"))
    gtea = read_release_annotations(benchkit / "gtea/sfnet_release/GTEA-Annotations").ground_truth
    assert {s: len(gtea.subset(s)) for s in gtea.subsets()} == {"training": 21, "validation": 7}


@pytest.fixture(scope="module")
def release(benchkit, tmp_path_factory):
    folder = tmp_path_factory.mktemp("release")
    rows, rel = joint_release(benchkit, folder)
    return folder, rows, rel


def test_the_joint_file_reads_each_video_by_name_at_sfnet_s_geometry(release):
    folder, rows, rel = release
    assert detect_format(folder) == "wtalc"
    source = open_features(folder)
    assert isinstance(source, WtalcSource) and source.dataset == "Thumos14"
    empty = [name for name, row in zip(rel.names, rows) if not len(row)]
    assert len(empty) > 500 and source.empty == empty and len(source.ids()) == 2584 - len(empty)
    meta = source.meta("video_validation_0000051")
    assert meta.geometry == FeatureGeometry(25, 16, 16) and meta.streams == {"rgb": (0, 8), "flow": (8, 16)}
    with pytest.raises(CacheError, match=r"'video_test_0000001' \(its row holds 0 snippets\)"):
        source.load("video_test_0000001")
    for name in ("video_validation_0000051", "video_test_0000002", rel.names[-1]):
        feats, _ = source.load(name)
        assert np.array_equal(feats, rows[rel.names.index(name)])
    assert source.ground_truth() is source.release.ground_truth
    # the index is built once per file in a process
    assert open_features(folder).joint is source.joint


def test_the_grid_and_rgb_width_can_be_stated(release):
    folder, _, _ = release
    source = open_features(folder, format="wtalc", layout=FeatureLayoutConfig(fps=30, rgb_dim=4))
    meta = source.meta("video_validation_0000051")
    assert meta.geometry == FeatureGeometry(30, 16, 16) and meta.streams == {"rgb": (0, 4), "flow": (4, 16)}
    assert meta.options["geometry_from"] == "config"


def test_a_video_with_nan_is_refused_naming_it(benchkit, tmp_path):
    joint_release(benchkit, tmp_path, poison="video_validation_0000051")
    source = open_features(tmp_path)
    with pytest.raises(NonFiniteFeatures, match=r"video video_validation_0000051\).*rows 3.*columns 11.*flow"):
        source.load("video_validation_0000051")
    source.load("video_validation_0000052")


def test_a_joint_file_and_its_arrays_must_agree(benchkit, tmp_path):
    shutil.copytree(benchkit / "gtea/sfnet_release/GTEA-Annotations", tmp_path / "GTEA-Annotations")
    rows = np.empty(3, object)
    for i in range(3):
        rows[i] = np.zeros((4, DIM), np.float32)
    np.save(tmp_path / "GTEA-I3D-JOINTFeatures.npy", rows, allow_pickle=True)
    with pytest.raises(CacheError, match=r"3 videos, but .*videoname.npy lists 28"):
        open_features(tmp_path)
    (tmp_path / "GTEA-I3D-JOINTFeatures.npy").rename(tmp_path / "Other-I3D-JOINTFeatures.npy")
    with pytest.raises(CacheError, match="Other-Annotations/videoname.npy: missing"):
        open_features(tmp_path)

"""`clicktal-demo --own-data DIR`: the example folder of docs/own_data.md loads through the library, is never
overwritten unasked, and (slow) goes through the walkthrough's commands to evaluated detections."""
import json
import subprocess
import sys
from pathlib import Path

import av
import pytest
import yaml

from clicktal.pipeline.core.config import config_to_dict, load_config
from clicktal.pipeline.data.annotations import load_ground_truth, read_action_clicks, read_background_clicks
from clicktal.pipeline.data.labels import choose_action_clicks
from clicktal.pipeline.data.stats import inside_instances
from clicktal.pipeline.runs.schema import ExperimentConfig, _flatten
from clicktal.tools.demo import OWN_CLASSES, main as demo, own_data_paths, own_data_walkthrough

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    out = tmp_path_factory.mktemp("own") / "example"
    assert demo(["--own-data", str(out)]) == 0
    return out


def test_ground_truth_and_videos(example):
    gt = load_ground_truth(example / "annotations.json")
    assert gt.subsets() == ["test", "training"] and not gt.warnings
    assert {v: a.subset for v, a in gt.videos.items()} == {"clip_00": "training", "clip_01": "training",
                                                           "clip_02": "test"}
    assert sorted(gt.classes("test")) == sorted(gt.classes("training")) == sorted(OWN_CLASSES)
    for vid, video in gt.videos.items():
        with av.open(str(example / "videos" / f"{vid}.mp4")) as container:
            stream = container.streams.video[0]
            frames = sum(1 for _ in container.decode(stream))
            assert (stream.width, stream.height, frames) == (160, 120, 250)
        assert video.duration_s == 10.0 and len(video.segments) == 3
        assert all(0 < a.end_s < b.start_s for a, b in zip(video.segments, video.segments[1:]))
    assert not (example / ".writing").exists() and sorted(p.name for p in (example / "videos").iterdir()) == [
        "clip_00.mp4", "clip_01.mp4", "clip_02.mp4"]


def test_clicks_read_back_where_they_belong(example):
    gt = load_ground_truth(example / "annotations.json")
    clicks, report = read_action_clicks(example / "clicks.txt", gt, strict=True)
    assert report.kept == 6 and sorted(clicks) == ["clip_00", "clip_01"]  # one per instance, training videos only
    for vid, cs in clicks.items():
        assert inside_instances([c.time_s for c in cs], gt.videos[vid].segments, [c.label for c in cs]).all()
    assert (example / "background_clicks.csv").read_bytes().startswith(b"\xef\xbb\xbfURLID,URL,TagID,Tag,Start")
    background, report = read_background_clicks(example / "background_clicks.csv", gt, strict=True)
    assert report.kept == 8 and sorted(background) == ["clip_00", "clip_01"]  # the 4 gaps around 3 instances
    for vid, times in background.items():
        assert not inside_instances(times, gt.videos[vid].segments).any()


def test_config_inherits_sfnet_and_changes_only_data_and_schedule(example):
    cfg = load_config(ExperimentConfig, example / "config.yaml")
    assert (cfg.model.name, cfg.postprocess.preset) == ("sfnet", "sfnet")
    assert Path(cfg.data.features) == example / "cache" and Path(cfg.data.ground_truth) == example / "annotations.json"
    assert (cfg.data.train_subset, cfg.data.test_subset) == ("training", "test")
    gt = load_ground_truth(cfg.data.ground_truth)
    clicks, reports = choose_action_clicks(gt, cfg.data.train_subset, cfg.data.labels.action_clicks, cfg.train.seed)
    assert sum(map(len, clicks.values())) == 6 and reports[0].kept == 6
    assert yaml.safe_load((example / "config.yaml").read_text())["_base_"] == str(REPO / "configs" /
                                                                                 "sfnet_thumos14.yaml")
    written = _flatten(config_to_dict(cfg))
    method = _flatten(config_to_dict(load_config(ExperimentConfig, REPO / "configs" / "sfnet_thumos14.yaml")))
    changed = {k for k in written.keys() | method.keys() if written.get(k, "absent") != method.get(k, "absent")}
    assert changed == {"name", "train.iterations", "train.batch_size", "train.checkpoint_every", "train.num_threads",
                       "train.progress", "model.params.mining.start_iteration", "data.features", "data.ground_truth",
                       "data.train_subset", "data.ambiguous", "data.labels.action_clicks.source",
                       "data.labels.action_clicks.files"}
    # what the walkthrough runs is what the demo prints
    assert [c[0] for c in own_data_walkthrough(example)] == ["clicktal-extract", "clicktal-train", "clicktal-detect",
                                                             "clicktal-evaluate"]


def test_a_second_run_refuses_and_overwrite_rewrites_the_same_files(example, capsys):
    before = {p: p.read_bytes() for p in own_data_paths(example)}
    assert demo(["--own-data", str(example)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "already holds videos/clip_00.mp4" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in before} == before
    assert demo(["--own-data", str(example), "--overwrite"]) == 0
    for p in ("annotations.json", "clicks.txt", "background_clicks.csv", "config.yaml"):  # the same seed
        assert (example / p).read_bytes() == before[example / p]


def test_one_existing_file_is_enough_to_refuse(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("mine")
    assert demo(["--own-data", str(tmp_path)]) == 2
    assert "already holds config.yaml;" in capsys.readouterr().err
    assert (tmp_path / "config.yaml").read_text() == "mine" and not (tmp_path / "videos").exists()


def test_an_unwritable_folder_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "plain").write_text("")
    assert demo(["--own-data", str(tmp_path / "plain" / "example")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is a file, not a folder" in err


def test_overwrite_goes_with_own_data():
    with pytest.raises(SystemExit) as e:
        demo(["--overwrite"])
    assert e.value.code == 2


@pytest.mark.slow
def test_the_walkthrough_runs_as_docs_own_data_says(tmp_path):
    """extract -> train -> detect -> evaluate with the installed commands, exactly as docs/own_data.md runs them."""
    example = tmp_path / "own_example"
    bin_dir = Path(sys.executable).parent
    setup = subprocess.run([bin_dir / "clicktal-demo", "--own-data", example], capture_output=True, text=True,
                           timeout=120)
    assert setup.returncode == 0, setup.stderr
    outputs = []
    for cmd in own_data_walkthrough(example):
        assert " ".join(cmd) in setup.stdout  # the demo prints the commands it is run with here
        proc = subprocess.run([bin_dir / cmd[0], *cmd[1:]], capture_output=True, text=True, timeout=300, cwd=REPO)
        assert proc.returncode == 0, f"{cmd[0]}: {proc.stderr[-2000:]}"
        outputs.append(proc.stdout)
    assert sorted(p.stem for p in (example / "cache").glob("clip_*.npy")) == ["clip_00", "clip_01", "clip_02"]
    assert "kept 6 clicks" in outputs[1] and (example / "run" / "checkpoint_last.pt").is_file()
    detections = json.loads((example / "detections.json").read_text())["results"]
    assert set(detections) <= {"clip_02"}
    assert (example / "detections.csv").is_file()
    assert outputs[3].splitlines()[0] == "subset test (1 video): 1 video scored"
    # detect re-extracted the test video and detected as training's own test evaluation did: the same mAP
    trained = json.loads((example / "run" / "results.json").read_text())["mAP"]
    table = dict(line.split() for line in outputs[3].splitlines() if line[:2] == "0." and len(line.split()) == 2)
    assert [float(table[t]) for t in sorted(table)] == pytest.approx([100 * m for m in trained.values()],
                                                                    abs=0.01)

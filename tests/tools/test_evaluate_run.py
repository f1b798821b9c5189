"""``clicktal-evaluate --run``: a trained run re-evaluated with another preset / post-processing fields from its saved
raw outputs (no forward pass), its folder left as it is."""
import json
import shutil

import pytest

from clicktal.pipeline.runs.raw import clear_raw, raw_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_small_run):
    return train_small_run(tmp_path_factory.mktemp("evaluate_run"), seed=8)


def test_another_preset_from_the_saved_raw_outputs(trained, load_tool, capsys, tmp_path, monkeypatch):
    from clicktal.pipeline.runs import experiments

    root, result = trained
    before = {p.name: p.read_bytes() for p in (root / "run").iterdir() if p.is_file()}
    monkeypatch.setattr(experiments, "score_videos", lambda *_, **__: pytest.fail("a forward pass"))
    out = tmp_path / "res.json"
    code = load_tool("evaluate").main(["--run", str(root / "run"), "--preset", "sfnet_code", "--set",
                                       "class_ratio=0.5", "--out", str(out), "--per-class"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert text.splitlines()[0] == f"scores: the raw outputs saved in {raw_path(root / 'run', 'test')} (no forward pass)"
    assert 'post-processing sfnet_code {"class_ratio": 0.5}' in text and "AP (%) per class" in text
    record = json.loads(out.read_text())
    assert record["postprocess"] == {"preset": "sfnet_code", "params": {"class_ratio": 0.5}}
    assert record["scores_from"] == str(raw_path(root / "run", "test"))
    assert f"AVG (mean over 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7): {100 * record['average_mAP']:.2f}" in text
    assert {p.name: p.read_bytes() for p in (root / "run").iterdir() if p.is_file()} == before
    # the run's own post-processing: its own numbers
    assert load_tool("evaluate").main(["--run", str(root / "run"), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["mAP"] == json.loads((root / "run" / "results.json").read_text())["mAP"]


def test_a_run_without_raw_outputs_is_scored_again_and_says_so(trained, load_tool, capsys, tmp_path):
    root, result = trained
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    clear_raw(run)
    assert load_tool("evaluate").main(["--run", str(run)]) == 0
    text = capsys.readouterr().out
    assert "scores: the videos scored again from" in text and not (run / "raw").exists()  # nothing written


@pytest.mark.parametrize("argv, message", [
    (["--run", "RUN", "--gt", "g.json"], "drop --gt"),
    (["--run", "RUN", "--tiou", "0.5"], "drop --tiou"),
    (["--run", "RUN", "--subset", "test", "validation"], "one name"),
    (["--gt", "g.json", "--pred", "p.json", "--preset", "sfnet"], "need --run"),
    (["--pred", "p.json"], "give --gt and --pred"),
])
def test_options_that_do_not_go_with_run_are_refused(load_tool, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        load_tool("evaluate").main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--preset", "nope"], "postprocess.preset"),
    (["--set", "no_such_field=1"], "no_such_field"),
])
def test_a_bad_preset_or_field_is_one_line_exit_2(trained, load_tool, capsys, argv, message):
    root, _ = trained
    assert load_tool("evaluate").main(["--run", str(root / "run"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_a_corrupt_raw_file_is_one_line_naming_it(trained, load_tool, capsys, tmp_path):
    root, _ = trained
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    npz = raw_path(run, "test")
    npz.write_bytes(npz.read_bytes()[:200])
    assert load_tool("evaluate").main(["--run", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(npz) in err

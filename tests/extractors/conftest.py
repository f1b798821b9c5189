"""Generated test videos (PyAV writes them), a small, fast extraction config, and a local weight server (no test
here reaches the internet: downloads are off unless a test serves the weights itself)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from weight_server import WeightServer, i3d_checkpoint

from clicktal.extractors import testvideos as tv
from clicktal.extractors.extract import ExtractionConfig
from clicktal.extractors.fetch import OFFLINE_ENV, URL_BASE_ENV


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    """Missing weights are an error in these tests, never a download from the canonical address."""
    monkeypatch.setenv(OFFLINE_ENV, "1")


@pytest.fixture
def weight_server(monkeypatch):
    """A :class:`~weight_server.WeightServer` on 127.0.0.1 that every download goes to (``$CLICKTAL_WEIGHTS_URL_BASE``),
    downloads allowed."""
    with WeightServer() as server:
        monkeypatch.setenv(URL_BASE_ENV, server.url)
        monkeypatch.delenv(OFFLINE_ENV)
        yield server


@pytest.fixture(scope="session")
def i3d_checkpoints() -> dict[str, bytes]:
    """Generated ``rgb_imagenet.pt`` and ``flow_imagenet.pt`` (random weights, the real layout)."""
    return {"rgb_imagenet.pt": i3d_checkpoint(3), "flow_imagenet.pt": i3d_checkpoint(2)}


# Variable frame rate: intervals alternate 20 ms / 60 ms.
VFR_PTS = [round(sum(0.02 if j % 2 else 0.06 for j in range(1, i + 1)), 6) for i in range(40)]


@pytest.fixture(scope="session")
def fast_config() -> ExtractionConfig:
    """Small frames and TV-L1 at 32 px keep every test to seconds; the conventions (fps, window, flow scaling,
    padding) are the defaults."""
    return ExtractionConfig(random_init=True, resize=48, crop=40, flow_size=32)


@pytest.fixture(scope="session")
def rate_videos(tmp_path_factory) -> dict[str, tuple[Path, list[float]]]:
    """name -> (path, presentation time of every written frame) for constant and variable frame rates."""
    root = tmp_path_factory.mktemp("rates")
    out = {}
    for name, fps, n in (("24", 24, 45), ("25", 25, 47), ("29.97", Fraction(30000, 1001), 50), ("30", 30, 61),
                         ("19.62", Fraction(981, 50), 33)):
        path = tv.write_video(root / f"r{name}.mp4", tv.counter(64, 48), n, fps=fps)
        out[name] = (path, [i / float(fps) for i in range(n)])
    path = tv.write_video(root / "vfr.mkv", tv.counter(64, 48), len(VFR_PTS), fps=25, pts_s=VFR_PTS)
    out["vfr"] = (path, VFR_PTS)
    return out


@pytest.fixture(scope="session")
def moving_video(tmp_path_factory) -> Path:
    """A texture moving 2 px right and 1 px up per frame, 25 fps, 1.2 s."""
    root = tmp_path_factory.mktemp("moving")
    return tv.write_video(root / "moving.mp4", tv.translating(64, 48, dx=2, dy=-1), 30)

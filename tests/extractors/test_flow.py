"""TV-L1 flow: sign and magnitude on a translating pattern, scaling, streaming, workers, snippet alignment."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from clicktal.extractors import flow as F
from clicktal.extractors import testvideos as tv
from clicktal.extractors.decode import Video
from clicktal.extractors.snippets import SnippetAssembler


def decoded(path, n=None):
    with Video(path) as video:
        frames = np.stack(list(video.frames(25.0)))
    return frames if n is None else frames[:n]


def interior(flow: np.ndarray, margin: int = 8) -> np.ndarray:
    return flow[:, margin:-margin, margin:-margin]


def test_translating_pattern_gives_the_right_sign_and_magnitude(moving_video):
    frames = decoded(moving_video, 6)  # 64 x 48 texture moving +2 px in x, -1 px in y per frame
    with F.FlowComputer("cpu") as fc:
        flows = np.concatenate([fc.push(frames), fc.finish(frames.shape[1:3])])
    assert flows.shape == (6, 48, 64, 2) and flows.dtype == np.float32
    dx, dy = np.median(interior(flows)[..., 0]), np.median(interior(flows)[..., 1])
    assert dx == pytest.approx(2 / 20, abs=0.01)  # 2 px right -> +0.1 after /20
    assert dy == pytest.approx(-1 / 20, abs=0.01)  # 1 px up -> -0.05
    np.testing.assert_array_equal(flows[-1], flows[-2])  # the last frame repeats the previous pair


def test_flow_size_keeps_magnitudes_in_resized_pixels(moving_video):
    frames = decoded(moving_video, 4)
    with F.FlowComputer("cpu", flow_size=24) as fc:
        flows = fc.push(frames)
    assert flows.shape == (3, 48, 64, 2)
    assert np.median(interior(flows)[..., 0]) == pytest.approx(0.1, abs=0.02)


def test_clip_scale_and_quantize():
    raw = np.array([[-50.0, -20.0, -10.0, 0.0, 10.0, 20.0, 35.0]], np.float32)
    scaled = F.scale_flow(raw)
    np.testing.assert_allclose(scaled, [[-1, -1, -0.5, 0, 0.5, 1, 1]])
    q = F.quantize_flow(scaled)
    assert q.dtype == np.uint8 and q.min() == 0 and q.max() == 255
    np.testing.assert_allclose(F.dequantize_flow(q), scaled, atol=1 / 127.5)


def test_streaming_and_workers_give_the_same_flow(moving_video):
    frames = decoded(moving_video, 9)
    with F.FlowComputer("cpu", flow_size=32) as fc:
        whole = np.concatenate([fc.push(frames), fc.finish(frames.shape[1:3])])
    with F.FlowComputer("cpu", workers=2, flow_size=32) as fc:
        parts = [fc.push(frames[:4]), fc.push(frames[4:5]), fc.push(frames[5:]), fc.finish(frames.shape[1:3])]
    np.testing.assert_array_equal(whole, np.concatenate(parts))


def test_one_frame_video_has_zero_flow():
    frame = np.zeros((1, 16, 16, 3), np.uint8)
    with F.FlowComputer("cpu") as fc:
        assert fc.push(frame).shape == (0, 16, 16, 2)
        last = fc.finish((16, 16))
    assert last.shape == (1, 16, 16, 2) and not last.any()


def test_snippet_alignment_with_rgb(tmp_path):
    """Frames are static except one jump between frames 16 and 17: the flow of frame 16 (pair (16, 17)) carries
    it, so snippet 1 (frames 16..31) sees the motion and snippet 0 does not."""
    tex = tv.texture(48, 64, seed=3)

    def frame(i):
        shift = 3 if i >= 17 else 0
        return np.repeat(np.roll(tex, shift, axis=1)[:, :, None], 3, axis=2)

    path = tv.write_video(tmp_path / "jump.mp4", frame, 40, crf=0)
    frames = decoded(path)
    with F.FlowComputer("cpu", flow_size=32) as fc:
        flows = np.concatenate([fc.push(frames), fc.finish(frames.shape[1:3])])
    motion = np.abs(interior(flows, 6)[..., 0]).mean(axis=(1, 2))
    assert int(np.argmax(motion)) == 16 and motion[16] > 0.1
    assert np.all(np.delete(motion, 16) < 0.2 * motion[16])
    asm = SnippetAssembler(16, 16, batch_size=8, with_flow=True)
    asm.add(frames, flows)
    asm.close(len(frames))
    rgb, fl = next(asm.batches(final=True))
    assert rgb.shape[:2] == fl.shape[:2] == (3, 16)
    snippet_motion = np.abs(fl[..., 0]).mean(axis=(1, 2, 3))  # [B, 16, H, W, 2] -> per snippet
    assert snippet_motion[1] > 5 * snippet_motion[0]
    # the documented pairs: snippet 1 uses (16, 17) ... (31, 32); the last snippet (frames 32..39, then 8 padded
    # positions) has the last frame's repeated pair (38, 39) at frame 39 and zero motion, (39, 39), after it
    assert F.snippet_flow_pairs(1, 40)[0] == (16, 17) and F.snippet_flow_pairs(1, 40)[-1] == (31, 32)
    assert F.snippet_flow_pairs(2, 40)[7] == (38, 39) and F.snippet_flow_pairs(2, 40)[8:] == [(39, 39)] * 8
    np.testing.assert_array_equal(fl[2, 7], flows[39])  # frame 39 repeats the pair before it
    assert not fl[2, 8:].any()  # padded positions: frozen frames, zero flow
    np.testing.assert_array_equal(rgb[2, -1], frames[39])  # ... over the last frame repeated


def test_cuda_flow_falls_back_with_a_warning(monkeypatch):
    monkeypatch.setattr(F, "cuda_flow_available", lambda: False)
    monkeypatch.setattr(F, "torch_cuda_available", lambda: False)
    for method in F.FLOW_METHODS:
        with pytest.warns(RuntimeWarning, match="no CUDA"):
            assert F.resolve_flow(method, "cuda")[1] == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert F.resolve_flow("auto", "auto") == ("opencv", "cpu")
        assert F.resolve_flow("tvl1-torch", "auto") == ("tvl1-torch", "cpu")
    with pytest.raises(ValueError):
        F.resolve_flow("auto", "tpu")
    with pytest.raises(ValueError):
        F.resolve_flow("raft", "cpu")


def test_auto_takes_torch_tvl1_on_a_gpu_without_opencv_cuda(monkeypatch):
    monkeypatch.setattr(F, "cuda_flow_available", lambda: False)
    monkeypatch.setattr(F, "torch_cuda_available", lambda: True)
    assert F.resolve_flow("auto", "auto") == ("tvl1-torch", "cuda")
    assert F.resolve_flow("auto", "cpu") == ("opencv", "cpu")
    assert F.resolve_flow("opencv", "auto") == ("opencv", "cpu")  # asked for OpenCV: its CPU version
    monkeypatch.setattr(F, "cuda_flow_available", lambda: True)
    assert F.resolve_flow("auto", "cuda") == ("opencv", "cuda")
    assert F.resolve_flow("tvl1-torch", "cuda") == ("tvl1-torch", "cuda")


def test_every_tvl1_parameter_reaches_opencv():
    tv = F._cpu_tvl1()
    got = {"tau": tv.getTau(), "lambda": tv.getLambda(), "theta": tv.getTheta(), "nscales": tv.getScalesNumber(),
           "warps": tv.getWarpingsNumber(), "epsilon": tv.getEpsilon(), "inner_iterations": tv.getInnerIterations(),
           "outer_iterations": tv.getOuterIterations(), "scale_step": tv.getScaleStep(), "gamma": tv.getGamma(),
           "median_filtering": tv.getMedianFiltering()}
    assert got == pytest.approx(F.TVL1_PARAMS)

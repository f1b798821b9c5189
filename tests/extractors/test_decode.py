"""Decoding: resampling by timestamp, frame and snippet counts, rotation, both decoders, clear errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

from clicktal.extractors import testvideos as tv
from clicktal.extractors.decode import (NO_VIDEO_STREAM, TRUNCATED, UNREADABLE, MISSING, Video, VideoError,
                                        find_videos, output_frame_count, resize_short_side)
from clicktal.pipeline.core.geometry import FeatureGeometry

RATES = ["24", "25", "29.97", "30", "19.62", "vfr"]


def expected_frames(pts: list[float], fps: float = 25.0) -> tuple[float, list[int]]:
    """The documented rule: the last frame lasts as long as the interval before it; output frame k shows the last
    source frame whose timestamp is <= k / fps."""
    duration = pts[-1] + (pts[-1] - pts[-2])
    n = math.ceil(duration * fps - 16e-9)
    shown = [max(j for j, t in enumerate(pts) if t <= k / fps + 1e-6) for k in range(n)]
    return duration, shown


@pytest.mark.parametrize("rate", RATES)
def test_frame_and_snippet_counts(rate_videos, rate):
    path, pts = rate_videos[rate]
    duration, shown = expected_frames(pts)
    with Video(path) as video:
        frames = list(video.frames(25.0))
    assert video.stats.decoded_frames == len(pts)
    assert video.stats.duration_s == pytest.approx(duration, abs=1e-3)
    assert len(frames) == len(shown) == video.stats.output_frames
    assert [tv.read_counter(f) for f in frames] == shown
    # T = ceil(duration * 25 / 16), the geometry's count, from the same duration
    geometry = FeatureGeometry(25.0, 16, 16)
    assert math.ceil(len(frames) / 16) == geometry.snippet_count(video.stats.duration_s) \
        == math.ceil(duration * 25 / 16 - 1e-9)


@pytest.mark.parametrize("rate", ["29.97", "vfr"])
def test_decord_gives_the_same_frames(rate_videos, rate):
    pytest.importorskip("decord")
    path, _ = rate_videos[rate]
    with Video(path, "pyav") as a, Video(path, "decord") as b:
        fa, fb = list(a.frames(25.0)), list(b.frames(25.0))
    assert a.stats == b.stats
    assert [tv.read_counter(f) for f in fa] == [tv.read_counter(f) for f in fb]


def test_chunks_are_bounded_and_resized(rate_videos):
    path, _ = rate_videos["30"]
    with Video(path) as video:
        chunks = list(video.chunks(25.0, chunk_frames=16, short_side=96))
    assert [len(c) for c in chunks] == [16, 16, 16, 3]
    assert all(c.shape[1:] == (96, 128, 3) and c.dtype == np.uint8 for c in chunks)


def test_other_target_fps(rate_videos):
    path, pts = rate_videos["30"]
    duration, shown = expected_frames(pts, fps=10.0)
    with Video(path) as video:
        frames = list(video.frames(10.0))
    assert [tv.read_counter(f) for f in frames] == shown


def test_rotation_metadata_is_honoured(tmp_path):
    def frame(i):
        a = np.zeros((48, 64, 3), np.uint8)
        a[:16, :16] = 255  # a white block top-left
        return a

    path = tv.write_video(tmp_path / "rot.mp4", frame, 5, rotation=90)
    with Video(path) as video:
        first = next(video.frames(25.0))
    assert video.info.rotation == 90
    assert first.shape == (64, 48, 3)  # portrait after a 90 degree turn
    # 90 degrees counter-clockwise: the top-left corner goes to the bottom-left
    assert first[-10:, :10].mean() > 200 and first[:10, :10].mean() < 50


def test_resize_short_side_keeps_aspect():
    assert resize_short_side(np.zeros((240, 320, 3), np.uint8), 256).shape == (256, 341, 3)
    assert resize_short_side(np.zeros((360, 480, 3), np.uint8), 256).shape == (256, 341, 3)
    assert resize_short_side(np.zeros((1920, 1080, 3), np.uint8), 256).shape == (455, 256, 3)


def test_output_frame_count_matches_geometry():
    g = FeatureGeometry(25.0, 16, 16)
    for duration in (0.04, 0.64, 1.0, 14.05, 18.16, 18.094, 100.0, 3.0000001):
        assert math.ceil(output_frame_count(duration, 25.0, 16) / 16) == g.snippet_count(duration)


def test_audio_only_file_is_a_clear_error(tmp_path):
    path = tv.write_audio_only(tmp_path / "speech.mp4")
    with pytest.raises(VideoError) as e:
        Video(path)
    assert e.value.reason == NO_VIDEO_STREAM and str(path) in str(e.value) and "audio" in str(e.value)


def test_truncated_mp4_is_named_truncated(tmp_path):
    path = tv.truncate(tv.write_video(tmp_path / "cut.mp4", tv.counter(64, 48), 30), 0.5)
    with pytest.raises(VideoError) as e:
        Video(path)
    assert e.value.reason == TRUNCATED and str(path) in str(e.value)


def test_truncated_stream_is_detected_after_decoding(tmp_path):
    path = tv.truncate(tv.write_video(tmp_path / "cut.mkv", tv.translating(64, 48), 100), 0.5)
    with pytest.raises(VideoError) as e, Video(path) as video:
        for _ in video.frames(25.0):
            pass
    assert e.value.reason == TRUNCATED and "declared" in e.value.detail


def test_garbage_and_missing(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(VideoError) as e:
        Video(junk)
    assert e.value.reason == UNREADABLE
    with pytest.raises(VideoError) as e:
        Video(tmp_path / "nothere.mp4")
    assert e.value.reason == MISSING


def test_find_videos_folder_and_list(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for p in ("a/x.mp4", "a/b/y.MKV", "z.avi", "notes.txt"):
        (tmp_path / p).write_bytes(b"")
    assert [p.name for p in find_videos(tmp_path)] == ["y.MKV", "x.mp4", "z.avi"]
    lst = tmp_path / "list.txt"
    lst.write_text("# videos\na/x.mp4\n\nz.avi\n")
    assert find_videos(lst) == [tmp_path / "a/x.mp4", tmp_path / "z.avi"]

"""Extraction faults get a named answer: a full disk, parallel jobs on one cache, a stale cache entry, a late video
stream, padding, an empty file. Tiny videos (64 x 48, a few frames) and TV-L1 at 32 px keep each test to seconds."""
from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from clicktal.extractors import testvideos as tv
from clicktal.extractors.extract import ExtractionConfig, compute_features, extract_video
from clicktal.extractors.runner import extract_folder
from clicktal.pipeline.data.cache import FeatureCache

FAST = dict(random_init=True, resize=48, crop=40, flow_size=32)
SMALL = ["--random-init", "--resize", "48", "--crop", "40", "--flow-size", "32", "--no-progress"]


def _videos(root: Path, names: str | list[str], frames: int = 8) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        tv.write_video(root / f"{name}.mp4", tv.translating(64, 48, dx=1 + i % 3, seed=i), frames)
    return root


def _tool():
    from clicktal.tools import extract_features

    return extract_features


# ------------------------------------------------------------------------------------------------ 6. disk full
def _full_npy(monkeypatch):
    def save(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", save)


def _short_write(monkeypatch):  # what numpy's tofile says on a real full disk: no errno, no path
    def save(*_, **__):
        raise OSError("16384 requested and 9184 written")

    monkeypatch.setattr(np, "save", save)


def _full_sidecar(monkeypatch):
    import clicktal.pipeline.data.cache as cache_mod

    real = cache_mod.atomic_write

    def write(path, fn):
        if Path(path).suffix == ".json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, fn)

    monkeypatch.setattr(cache_mod, "atomic_write", write)


@pytest.mark.parametrize("inject, suffix", [(_full_npy, ".npy"), (_short_write, ".npy"), (_full_sidecar, ".json")],
                         ids=["enospc", "numpy-short-write", "sidecar"])
def test_disk_full_during_a_video_write_names_the_file_and_stops_the_run(tmp_path, monkeypatch, capsys, inject,
                                                                        suffix):
    videos = _videos(tmp_path / "videos", ["a", "b"])
    out = tmp_path / "cache"
    inject(monkeypatch)
    assert _tool().main([str(videos), "--out", str(out), *SMALL]) == 1  # documented: 1 when any video failed
    printed = capsys.readouterr().out
    report = json.loads((out / ".clicktal" / "failures.json").read_text())
    [failure] = report["failed"]
    assert failure["video"] == "a" and failure["reason"] == "disk_full"
    assert failure["message"].startswith(f"{out / ('a' + suffix)}: disk is full")
    assert f"a.mp4: disk_full: {out / ('a' + suffix)}: disk is full" in printed
    assert "1 not attempted" in printed and f"STOPPED: {out / ('a' + suffix)}: disk is full" in printed  # b: not
    # computed for nothing
    assert report["not_attempted"] == 1 and not FeatureCache(out).video_ids()
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".clicktal"]  # no temp file, no lock


def test_failures_json_on_a_full_disk_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    import clicktal.extractors.runner as runner

    def full(path, fn):
        raise OSError(errno.ENOSPC, "No space left on device")

    videos = _videos(tmp_path / "videos", ["a"])
    monkeypatch.setattr(runner, "atomic_write", full)
    code = _tool().main([str(videos), "--out", str(tmp_path / "cache"), *SMALL])  # returns: no traceback
    printed = capsys.readouterr().out
    assert code == 1  # the video is in the cache, but the run's report is not: not a clean run
    assert f"failures.json NOT written: {tmp_path / 'cache' / '.clicktal' / 'failures.json'}: disk is full" in printed
    assert "1 extracted" in printed and FeatureCache(tmp_path / "cache").video_ids() == ["a"]


# ------------------------------------------------------------------------------------------------ 7. concurrency
_WORKER = textwrap.dedent("""
    import json, pathlib, sys, time
    import clicktal.extractors.extract as E
    from clicktal.extractors.runner import extract_folder

    real = E.compute_features

    def slow(*args, **kwargs):  # hold each video's lock long enough for the other process to meet it
        result = real(*args, **kwargs)
        time.sleep(1.5)
        return result

    E.compute_features = slow
    videos, out, me, other = sys.argv[1:5]
    pathlib.Path(me).touch()
    while not pathlib.Path(other).exists():  # start together
        time.sleep(0.01)
    summary = extract_folder(videos, out, progress=False, random_init=True, resize=48, crop=40, flow_size=32)
    print(json.dumps({r.video_id: r.status for r in summary.results}))
""")


def test_two_processes_on_one_cache_split_the_work(tmp_path):
    names = [f"v{i}" for i in range(6)]
    videos = _videos(tmp_path / "videos", names)
    out = tmp_path / "cache"
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    procs = [subprocess.Popen([sys.executable, str(script), str(videos), str(out), str(tmp_path / f"ready{i}"),
                               str(tmp_path / f"ready{1 - i}")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outputs]
    statuses = [json.loads(o[0].strip().splitlines()[-1]) for o in outputs]
    done = [{v for v, s in st.items() if s == "done"} for st in statuses]
    assert done[0].isdisjoint(done[1]) and done[0] | done[1] == set(names)  # each video extracted exactly once
    assert done[0] and done[1]  # ... and both did some of it
    for st in statuses:
        assert set(st) == set(names) and set(st.values()) <= {"done", "skipped", "locked"}
    assert FeatureCache(out).video_ids() == names
    assert json.loads((out / ".clicktal" / "failures.json").read_text())["failed"] == []
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".clicktal"]  # no temp file, no lock


_HOLDER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from clicktal.extractors.locks import VideoLock

    out, mode = Path(sys.argv[1]), sys.argv[2]
    lock = VideoLock.for_video(out, "v")
    assert lock.acquire()
    (out / ".v.npy.abc123xy.tmp").write_bytes(b"half an array")  # what a live writer has on disk mid-write
    (out / "flow" / f".v.tmp-{os.getpid()}").mkdir(parents=True)
    print(os.getpid(), flush=True)
    if mode == "die":
        os._exit(0)  # dies holding it: never releases, never cleans up
    sys.stdin.read()  # a live writer: holds the lock until told to stop
    lock.release()
""")


def _holder(tmp_path, out, mode):
    script = tmp_path / "holder.py"
    script.write_text(_HOLDER)
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, str(script), str(out), mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline() or 0)
    assert pid, proc.stderr.read()
    return proc, pid


def test_a_video_locked_by_a_live_process_is_left_to_it_and_its_files_kept(tmp_path):
    video = _videos(tmp_path / "videos", ["v"]) / "v.mp4"
    out = tmp_path / "cache"
    proc, pid = _holder(tmp_path, out, "live")
    try:
        result = extract_video(video, out, ExtractionConfig(**FAST))
        assert result.status == "locked" and f"pid {pid}" in result.message
        assert (out / ".v.npy.abc123xy.tmp").is_file() and (out / "flow" / f".v.tmp-{pid}").is_dir()
        summary = extract_folder(video.parent, out, progress=False, **FAST)
        assert summary.failed == 0 and summary.locked == 1 and summary.done == 0  # not a failure: left to its owner
        assert not summary.ok and "INCOMPLETE: 1 video is being extracted by another process" in summary.text()
        assert "1 being extracted by another process" in summary.text()
        assert (out / ".v.npy.abc123xy.tmp").is_file() and not FeatureCache(out).video_ids()
    finally:
        proc.communicate("", timeout=60)
    again = extract_folder(video.parent, out, progress=False, **FAST)  # the later rerun picks it up
    assert again.done == 1 and FeatureCache(out).video_ids() == ["v"]
    assert not (out / ".v.npy.abc123xy.tmp").exists()  # the lock holder cleans a dead writer's leftovers


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    video = _videos(tmp_path / "videos", ["v"]) / "v.mp4"
    out = tmp_path / "cache"
    proc, pid = _holder(tmp_path, out, "die")
    proc.wait(timeout=60)
    lock_file = out / ".locks" / "v.lock"
    assert json.loads(lock_file.read_text())["pid"] == pid  # left behind by the dead process
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    result = extract_video(video, out, ExtractionConfig(**FAST))
    assert result.status == "done", result.message
    assert not lock_file.exists() and not (out / ".v.npy.abc123xy.tmp").exists()
    assert not (out / "flow" / f".v.tmp-{pid}").exists()


# ------------------------------------------------------------------------------------------------ 8. summary
def test_failures_listed_only_when_something_failed(tmp_path):
    videos = _videos(tmp_path / "videos", ["a"])
    clean = extract_folder(videos, tmp_path / "c1", progress=False, **FAST)
    assert clean.ok and "failures listed" not in clean.text()
    (videos / "empty.mp4").write_bytes(b"")
    failed = extract_folder(videos, tmp_path / "c1", progress=False, **FAST)
    assert f"failures listed in {tmp_path / 'c1' / '.clicktal' / 'failures.json'}" in failed.text()


# ------------------------------------------------------------------------------------------------ 9. stale cache
def test_a_replaced_source_video_is_reported_not_served_stale(tmp_path):
    videos = tmp_path / "videos"
    _videos(videos, ["v"], frames=8)
    out = tmp_path / "cache"
    assert extract_folder(videos, out, progress=False, **FAST).done == 1
    meta = FeatureCache(out).read_meta("v").source
    assert meta["size_bytes"] > 0 and meta["mtime_ns"] and len(meta["head_tail_sha256"]) == 64
    before = FeatureCache(out).feature_path("v").read_bytes()

    os.utime(videos / "v.mp4")  # touched, same content: still the same file
    assert extract_folder(videos, out, progress=False, **FAST).skipped == 1

    tv.write_video(videos / "v.mp4", tv.counter(64, 48), 40)  # another video under the same name
    replaced = extract_folder(videos, out, progress=False, **FAST)
    [failure] = replaced.failures
    assert failure["reason"] == "source_changed" and "size changed" in failure["message"]
    assert "--overwrite" in failure["message"] and not replaced.ok
    assert FeatureCache(out).feature_path("v").read_bytes() == before  # the old features are not served as new

    data = bytearray((videos / "v.mp4").read_bytes())
    assert extract_folder(videos, out, progress=False, overwrite=True, **FAST).done == 1
    data[-10] ^= 0xFF  # same size, other bytes, newer modification time
    (videos / "v.mp4").write_bytes(bytes(data))
    os.utime(videos / "v.mp4", ns=(time.time_ns(), time.time_ns() + 10**9))
    [failure] = extract_folder(videos, out, progress=False, **FAST).failures
    assert failure["reason"] == "source_changed" and "content changed" in failure["message"]


def test_a_changed_flow_implementation_is_not_reused(tmp_path, monkeypatch):
    from clicktal.extractors import flow

    videos = _videos(tmp_path / "videos", ["v"])
    out = tmp_path / "cache"
    assert extract_folder(videos, out, progress=False, flow_device="cpu", **FAST).done == 1
    sig = FeatureCache(out).read_meta("v").options["signature"]
    assert sig["flow_impl"] == "cv2.optflow.DualTVL1OpticalFlow"
    assert extract_folder(videos, out, progress=False, flow_device="auto", **FAST).skipped == 1  # auto -> cpu here
    monkeypatch.setattr(flow, "cuda_flow_available", lambda: True)  # a machine where auto means OpenCV CUDA
    assert ExtractionConfig(**FAST).signature()["flow_impl"] == "cv2.cuda.OpticalFlowDual_TVL1"
    [failure] = extract_folder(videos, out, progress=False, flow_device="auto", **FAST).failures
    assert failure["reason"] == "cache_conflict" and "flow_impl" in failure["message"]
    assert "cv2.cuda.OpticalFlowDual_TVL1" in failure["message"]


def test_a_late_video_stream_keeps_its_start_offset_in_player_time(tmp_path):
    # audio from 0 s, video from 0.4 s: the player shows the first video frame at 0.4 s
    pts = [0.4 + i / 25 for i in range(20)]
    path = tv.write_video(tmp_path / "late.mkv", tv.counter(64, 48), 20, fps=25, pts_s=pts, audio=True)
    feats, meta = compute_features(path, ExtractionConfig(**FAST))
    assert meta.source["start_offset_s"] == pytest.approx(0.4, abs=1e-3)
    assert meta.source["duration_s"] == pytest.approx(1.2, abs=1e-3)  # player time: offset + 20 frames
    assert meta.source["resampled_frames"] == 30
    assert feats.shape[0] == meta.geometry.snippet_count(meta.source["duration_s"]) == math.ceil(1.2 * 25 / 16)
    from clicktal.extractors.decode import Video

    with Video(path) as video:
        shown = [tv.read_counter(f) for f in video.frames(25.0)]
    assert shown[:11] == [0] * 11 and shown[11:14] == [1, 2, 3]  # frame k is what the player shows at k / 25


def test_padded_positions_have_zero_flow():
    from clicktal.extractors.snippets import SnippetAssembler

    asm = SnippetAssembler(16, 16, batch_size=4, with_flow=True)
    flows = np.ones((20, 2, 2, 2), np.float32) * np.arange(1, 21, dtype=np.float32)[:, None, None, None]
    asm.add(np.zeros((20, 2, 2, 3), np.uint8), flows)
    asm.close(20)
    rgb, fl = next(asm.batches(final=True))
    np.testing.assert_array_equal(fl[1, :4], flows[16:20])  # the real frames of the last snippet
    assert not fl[1, 4:].any()  # the 12 padded (frozen) positions: no motion, not frame 19's repeated


def test_a_zero_byte_file_is_reported_empty(tmp_path):
    (tmp_path / "e.mp4").write_bytes(b"")
    result = extract_video(tmp_path / "e.mp4", tmp_path / "out", ExtractionConfig(**FAST))
    assert (result.status, result.reason, result.message) == ("failed", "empty", "empty file (0 bytes)")

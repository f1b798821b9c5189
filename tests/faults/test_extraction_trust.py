"""Extraction whose answer can be trusted: file names that would reach outside a video's own files, a killed or
interrupted run, a truncated cache entry, symlinked folders, an empty folder and damaged timestamps each get a named
answer and an exit status, never a deleted cache, a traceback or a false "done". Tiny videos (64 x 48, a few
frames) and TV-L1 at 32 px keep each test to seconds; the runs that must be killed or interrupted are made slow by
a ``sitecustomize`` module that the test puts on the child processes' path (so loky's workers load it too)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from clicktal.extractors import testvideos as tv
from clicktal.extractors.decode import VideoError, _Resampler, find_videos
from clicktal.extractors.runner import plan_videos
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.cache import CacheError, FeatureCache, FeatureMeta

TOOL = Path(__file__).resolve().parents[2] / "tools" / "extract_features.py"
SMALL = ["--random-init", "--resize", "48", "--crop", "40", "--flow-size", "32", "--no-progress"]


def _video(path: Path, seed: int = 0, frames: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tv.write_video(path, tv.translating(64, 48, dx=1 + seed % 3, seed=seed), frames)


def _tool():
    from clicktal.tools import extract_features

    return extract_features


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _slowed(tmp_path: Path, code: str) -> dict:
    """Environment for a child whose Python processes (the tool and its workers) all run ``code`` at start."""
    folder = tmp_path / "slowed"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(textwrap.dedent(code))
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))


def _terminal_signals() -> None:
    """In the child: Ctrl-C and SIGTERM as a terminal's foreground job has them. A test suite started in the
    background of a non-interactive shell (``make test &``) inherits SIGINT ignored, and Python keeps an ignored
    SIGINT ignored, so the tool would never see the Ctrl-C these tests send."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _start(videos: Path, out: Path, *extra: str, env: dict) -> subprocess.Popen:
    """The tool in its own process group (as a terminal's foreground job), printing to ``out``'s sibling files:
    not pipes, which a worker that outlives the run would keep open."""
    logs = out.parent
    with open(logs / "stdout.txt", "w") as stdout, open(logs / "stderr.txt", "w") as stderr:
        return subprocess.Popen([sys.executable, str(TOOL), str(videos), "--out", str(out), *SMALL, *extra],
                                stdout=stdout, stderr=stderr, env=env, start_new_session=True,
                                preexec_fn=_terminal_signals)


def _printed(out: Path) -> tuple[str, str]:
    return (out.parent / "stdout.txt").read_text(), (out.parent / "stderr.txt").read_text()


def _run(videos: Path, out: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), str(videos), "--out", str(out), *SMALL, *extra],
                          capture_output=True, text=True, timeout=timeout)


def _alive(pid: int) -> bool:
    """A live process (a zombie waiting for a reaper that may never come, in a container, is not one)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _lock_pids(out: Path) -> dict[str, int]:
    pids = {}
    for lock in (out / ".locks").glob("*.lock"):
        try:
            pids[lock.stem] = int(json.loads(lock.read_text())["pid"])
        except (OSError, ValueError, KeyError):  # being written or removed right now
            pass
    return pids


def _wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


# ------------------------------------------------------------------------------------------------ 1. video ids
def test_odd_file_names_delete_nothing_and_keep_the_run_files_apart(tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "cache"
    for i, name in enumerate(("a", "b")):
        _video(videos / f"{name}.mp4", i)
    assert _tool().main([str(videos), "--out", str(out), "--save-flow", *SMALL]) == 0
    others = {n: b for n, b in _files(out).items() if n in ("a.npy", "a.json", "b.npy", "b.json")
              or n.startswith(("flow/a/", "flow/b/"))}
    assert {"a.json", "b.npy", "flow/a/flow.json", "flow/b/x_000000.jpg"} <= set(others)

    _video(videos / "...mp4", 3)  # id ".." (the file name without its extension)
    _video(videos / "..mp4", 4)  # id "."
    _video(videos / "failures.mp4", 5)  # id "failures": its sidecar is failures.json
    capsys.readouterr()
    assert _tool().main([str(videos), "--out", str(out), "--save-flow", *SMALL]) == 1  # two videos failed
    printed = capsys.readouterr().out
    assert f"FAILED {videos / '...mp4'}: bad_id: the video id '..'" in printed
    assert f"FAILED {videos / '..mp4'}: bad_id: the video id '.'" in printed
    assert "5 videos: 1 extracted, 2 already in the cache, 2 failed" in printed
    assert {n: b for n, b in _files(out).items() if n in others} == others  # every other video's files untouched
    assert FeatureCache(out).read_meta("failures").extractor == "i3d"  # the video's sidecar, not the run's report
    assert (out / "flow" / "failures" / "flow.json").is_file()
    report = json.loads((out / ".clicktal" / "failures.json").read_text())
    assert sorted((f["video"], f["reason"]) for f in report["failed"]) == [(".", "bad_id"), ("..", "bad_id")]

    assert _tool().main([str(videos), "--out", str(out), "--save-flow", *SMALL]) == 1
    again = capsys.readouterr().out
    assert "3 already in the cache, 2 failed" in again and "cache_conflict" not in again
    assert FeatureCache(out).video_ids() == ["a", "b", "failures"]


# ------------------------------------------------------------------------------------------------ 2. killed run
_SLOW_VIDEO = """
    import time
    import clicktal.extractors.extract as E

    real = E.compute_features

    def slow(*args, **kwargs):  # holds the video's lock for two minutes before computing it
        time.sleep(120)
        return real(*args, **kwargs)

    E.compute_features = slow
"""


def test_workers_die_with_a_killed_run_and_the_rerun_completes(tmp_path):
    videos, out = tmp_path / "videos", tmp_path / "cache"
    for i in range(3):
        _video(videos / f"v{i}.mp4", i)
    proc = _start(videos, out, "--workers", "2", env=_slowed(tmp_path, _SLOW_VIDEO))
    pids = {}

    def two_locked() -> dict | None:
        held = _lock_pids(out)
        return held if len(held) == 2 else None

    try:
        pids = _wait_for(two_locked, 120, "two workers to lock", proc)
        assert proc.pid not in pids.values()  # the videos are held by the workers, not by the run itself
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.time() + 5
        while time.time() < deadline and any(_alive(p) for p in pids.values()):
            time.sleep(0.05)
        assert not [p for p in pids.values() if _alive(p)], "workers outlived the killed run"
    finally:
        for pid in pids.values():  # on failure: do not leave the test's own workers sleeping
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rerun = _run(videos, out)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "3 videos: 3 extracted, 0 already in the cache, 0 failed;" in rerun.stdout
    assert "LOCKED" not in rerun.stdout + rerun.stderr and FeatureCache(out).video_ids() == ["v0", "v1", "v2"]


_HOLDER = """
    import sys
    from clicktal.extractors.locks import VideoLock

    lock = VideoLock.for_video(sys.argv[1], "v1")
    assert lock.acquire()
    print("held", flush=True)
    sys.stdin.read()
    lock.release()
"""


def test_a_video_locked_by_another_live_process_makes_the_run_incomplete_exit_3(tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "cache"
    for i in range(2):
        _video(videos / f"v{i}.mp4", i)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_HOLDER), str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert _tool().main([str(videos), "--out", str(out), *SMALL]) == 3  # documented: incomplete
        printed = capsys.readouterr().out
        assert "2 videos: 1 extracted, 0 already in the cache, 0 failed, 1 being extracted by another process" \
            in printed
        assert f"LOCKED {videos / 'v1.mp4'}: being extracted by another process (pid {holder.pid}" in printed
        assert "INCOMPLETE: 1 video is being extracted by another process" in printed
    finally:
        holder.communicate("", timeout=60)
    assert _tool().main([str(videos), "--out", str(out), *SMALL]) == 0  # the holder is gone: the rerun finishes
    assert FeatureCache(out).video_ids() == ["v0", "v1"]


# ------------------------------------------------------------------------------------------------ 3. truncated .npy
def test_a_truncated_features_file_is_not_cached_and_is_extracted_again(tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "cache"
    for i in range(2):
        _video(videos / f"v{i}.mp4", i, frames=40)
    assert _tool().main([str(videos), "--out", str(out), *SMALL]) == 0
    reference = FeatureCache(out).read("v0")[0].copy()
    npy = out / "v0.npy"
    size = npy.stat().st_size
    npy.write_bytes(npy.read_bytes()[: size // 2])
    assert not FeatureCache(out).has("v0")
    capsys.readouterr()

    assert _tool().main([str(videos), "--out", str(out), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "2 videos: 1 extracted, 1 already in the cache, 0 failed" in printed
    assert f"RE-EXTRACTED {videos / 'v0.mp4'}: {npy}: truncated feature file ({size // 2} of {size} bytes)" in printed
    np.testing.assert_array_equal(FeatureCache(out).read("v0")[0], reference)


def test_reading_a_truncated_or_mismatched_features_file_names_it(tmp_path):
    meta = FeatureMeta(FeatureGeometry(), {"rgb": (0, 4), "flow": (4, 8)}, extractor="test")
    cache = FeatureCache(tmp_path)
    cache.write("v", np.ones((50, 8), np.float32), meta)
    npy = cache.feature_path("v")
    size = npy.stat().st_size
    npy.write_bytes(npy.read_bytes()[:size // 2])
    assert not cache.has("v")
    with pytest.raises(CacheError, match=rf"^{npy}: truncated feature file \({size // 2} of {size} bytes\); "
                                         "re-extract it"):
        cache.read("v")

    np.save(npy, np.ones((49, 8), np.float32))  # whole, but not the array its sidecar describes
    assert not cache.has("v")
    with pytest.raises(CacheError, match=rf"{npy}: holds shape \(49, 8\) where its sidecar says \(50, 8\)"):
        cache.read("v")


# ------------------------------------------------------------------------------------------------ 4. Ctrl-C
_SLOW_WRITE = """
    import time
    import numpy

    real = numpy.save

    def slow(file, arr, *args, **kwargs):  # half a features file on disk, then a long wait
        if hasattr(file, "write"):
            file.write(b"\\x93NUMPY half an array")
            file.flush()
            time.sleep(120)
        return real(file, arr, *args, **kwargs)

    numpy.save = slow
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_says_how_to_resume_and_leaves_nothing_half_done(tmp_path, workers):
    videos, out = tmp_path / "videos", tmp_path / "cache"
    for i in range(2):
        _video(videos / f"v{i}.mp4", i)
    proc = _start(videos, out, "--workers", workers, "--save-flow", env=_slowed(tmp_path, _SLOW_WRITE))
    try:
        _wait_for(lambda: list(out.glob(".v*.npy.*.tmp")), 120, "a features file being written", proc)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stdout, stderr = _printed(out)
    assert proc.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"
    assert "Traceback" not in stderr + stdout
    assert not list(out.glob(".*.tmp")) and not (out / ".locks").exists()  # no half file, no lock left
    assert not FeatureCache(out).video_ids()
    rerun = _run(videos, out, "--save-flow")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "2 videos: 2 extracted" in rerun.stdout and FeatureCache(out).video_ids() == ["v0", "v1"]


# ------------------------------------------------------------------------------------------------ 5. symlinks
def test_symlinked_folders_are_followed_once_and_loops_end(tmp_path):
    root, elsewhere = tmp_path / "videos", tmp_path / "elsewhere"
    for p in (root / "real" / "a.mp4", elsewhere / "linked" / "b.mp4", elsewhere / "linked" / "deeper" / "c.mkv"):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    (root / "link").symlink_to(elsewhere / "linked")
    (root / "same_again").symlink_to(elsewhere / "linked")  # a second way into a folder already searched
    (root / "real" / "loop").symlink_to(root)  # a cycle
    (root / "gone").symlink_to(tmp_path / "nowhere")  # dangling
    expected = [root / "link" / "b.mp4", root / "link" / "deeper" / "c.mkv", root / "real" / "a.mp4"]
    assert find_videos(root) == expected
    assert find_videos(root) == expected  # the same order every time
    assert [vid for vid, _ in plan_videos(root)] == ["b", "c", "a"]  # each video once: no id clash


# ------------------------------------------------------------------------------------------------ 6. empty folder
def test_a_folder_without_videos_is_an_error_saying_what_was_searched(tmp_path, capsys):
    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    (videos / "sub" / "notes.txt").write_text("not a video")
    assert _tool().main([str(videos), "--out", str(tmp_path / "cache"), *SMALL]) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if not line.startswith("WARNING: --random-init")]
    assert errors == [f"error: {videos}: no video files in this folder (searched recursively for .mp4 .avi .mkv "
                      ".webm .mov .m4v .mpg .mpeg .flv .wmv .3gp .ts .mts .ogv, in any case)"]
    assert "videos:" not in captured.out


# ------------------------------------------------------------------------------------------------ 7. timestamps
def test_a_huge_timestamp_gap_fails_that_video_quickly_and_the_run_goes_on(tmp_path):
    videos, out = tmp_path / "videos", tmp_path / "cache"
    videos.mkdir()
    bad = tv.write_video(videos / "bad.mp4", tv.counter(64, 48), 4, pts_s=[0, 0.04, 0.08, 36000])
    assert bad.stat().st_size < 10_000  # a few KB that claim ten hours
    _video(videos / "good.mp4")
    t0 = time.perf_counter()
    run = _run(videos, out, timeout=90)
    assert time.perf_counter() - t0 < 60
    assert run.returncode == 1, run.stdout + run.stderr
    assert (f"FAILED {bad}: bad_timestamps: frame 3 has timestamp 36000.000 s, 35999.920 s after the previous "
            "frame's 0.080 s: more than the limit of 60 s") in run.stdout
    assert "2 videos: 1 extracted, 0 already in the cache, 1 failed" in run.stdout
    assert FeatureCache(out).video_ids() == ["good"]


def test_a_stream_running_far_past_its_declared_duration_is_refused_before_its_frames(tmp_path):
    resampler = _Resampler(25.0, 16, 25.0, 0.0, path="v.mp4", max_gap_s=60.0, declared_s=10.0)
    frame = np.zeros((4, 4, 3), np.uint8)
    emitted = 0
    with pytest.raises(VideoError) as e:
        for t in (0.0, 30.0, 60.0, 90.0):  # each gap allowed; 90 s is 80 s past the declared 10 s
            emitted += sum(1 for _ in resampler.push(t, lambda: frame))
    assert e.value.reason == "bad_timestamps" and emitted == 60 * 25
    assert "frame 3 has timestamp 90.000 s, 80.000 s past the stream's declared duration of 10.000 s" in str(e.value)
    assert "limit of 60 s" in str(e.value)

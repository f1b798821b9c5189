"""The run over a folder of videos: :func:`extract_folder` finds the videos (:func:`plan_videos`, with shards),
skips those already complete, runs :func:`~clicktal.extractors.extract.extract_video` on the rest locally (joblib's
loky processes) or on Dask or Ray, shows a progress bar, and writes ``failures.json``.

The run's own files live in ``<out>/.clicktal/`` (:data:`RUN_DIR`: ``failures.json``, its shard variants and their
write lock), a name no video id can take (ids beginning with a dot are refused as ``bad_id``), so a video named
``failures.mp4`` keeps its sidecar ``<out>/failures.json``.

Several runs may share one cache (jobs on one list, machines on one file system): each video is extracted by the
run that locks it first; the others report it as ``locked`` and leave it: not a failure, but not a finished run
either (``Summary.ok`` is False and the tool exits 3 until a rerun finds it in the cache). Local worker processes
die with the run (a killed run leaves no worker holding a video's lock). A full disk stops the run: the video whose
write failed is reported as ``disk_full`` naming the file, videos not yet started are not attempted (computing
what cannot be written would only waste hours of TV-L1), and a rerun resumes once there is space.
``failures.json`` that cannot be written is said in one line; it never ends the run with a traceback.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from clicktal.pipeline.core.files import atomic_write
from clicktal.pipeline.data.cache import FeatureCache

from .decode import VIDEO_EXTENSIONS, find_videos
from .diskio import DISK_FULL, describe_os_error
from .extract import (LOCKED, ExtractionConfig, VideoResult, bad_id_result, cached_state, clean_leftovers,
                      extract_video, get_extractor, skipped_result)
from .locks import VideoLock, remove_lock_dir

PARALLEL_BACKENDS = ("loky", "dask", "ray")
RUN_DIR = ".clicktal"  # <out>/.clicktal/: the run's own files (failures.json, ...), out of any video id's reach
PARENT_POLL_S = 0.5  # how often a local worker checks that the run that started it is still alive


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/n"`` (0-based ``i``) -> ``(i, n)``."""
    if shard is None:
        return None
    if isinstance(shard, str):
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard {shard!r}: expected i/n, e.g. 0/4") from None
    else:
        i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {i}/{n}: need 0 <= i < n")
    return i, n


def plan_videos(videos: str | os.PathLike | Iterable, shard=None) -> list[tuple[str, Path]]:
    """``(video_id, path)`` for a folder (recursive), a list file, or an iterable of paths; ids are file stems and
    must be unique. ``shard=(i, n)`` keeps every n-th video of the sorted list starting at i (deterministic). A
    folder without video files, or a list file listing none, is a ``ValueError`` saying so (a run of "0 videos"
    is almost always a wrong path)."""
    if isinstance(videos, (str, os.PathLike)):
        paths = find_videos(videos)
        if not paths:
            if Path(videos).is_dir():
                raise ValueError(f"{videos}: no video files in this folder (searched recursively for "
                                 f"{' '.join(VIDEO_EXTENSIONS)}, in any case)")
            raise ValueError(f"{videos}: the list file names no videos")
    else:
        paths = sorted(Path(p) for p in videos)
    seen: dict[str, Path] = {}
    clashes = []
    for p in paths:
        if p.stem in seen:
            clashes.append(f"{seen[p.stem]} and {p}")
        seen[p.stem] = p
    if clashes:
        raise ValueError("video ids (file names without extension) must be unique in one cache; clashes: "
                         + "; ".join(clashes[:5]))
    items = [(p.stem, p) for p in paths]
    shard = parse_shard(shard)
    if shard:
        i, n = shard
        items = items[i::n]
    return items


@dataclass
class Summary:
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    wall_s: float = 0.0
    video_seconds: float = 0.0  # duration of the videos extracted in this run
    locked: int = 0  # being extracted by another live process: left to it (not a failure, not done either)
    not_attempted: int = 0  # not started because the run stopped (a full disk)
    failures: list[dict] = field(default_factory=list)
    locked_videos: list[dict] = field(default_factory=list)
    reextracted: list[dict] = field(default_factory=list)  # done again because the cache's entry was not whole
    results: list[VideoResult] = field(default_factory=list)
    failures_path: str | None = None
    failures_error: str | None = None  # why failures.json could not be written
    stopped: str | None = None  # why the run stopped before every video was attempted
    out_dir: str | None = None

    @property
    def ok(self) -> bool:
        """Every video of the run is in the cache and ``failures.json`` is written (a video left to another
        process is not in the cache yet)."""
        return self.failed == 0 and self.failures_error is None and self.locked == 0 and self.not_attempted == 0

    def text(self) -> str:
        speed = self.video_seconds / self.wall_s if self.wall_s > 0 else 0.0
        extra = (f", {self.locked} being extracted by another process" if self.locked else "") + (
            f", {self.not_attempted} not attempted" if self.not_attempted else "")
        lines = [f"{self.total} videos: {self.done} extracted, {self.skipped} already in the cache, "
                 f"{self.failed} failed{extra}; {self.video_seconds:.1f} video-s in {self.wall_s:.1f} s "
                 f"({speed:.2f} video-s per wall-s) -> {self.out_dir}"]
        for f in self.failures:
            lines.append(f"  FAILED {f['path']}: {f['reason']}: {f['message']}")
        for f in self.reextracted:
            lines.append(f"  RE-EXTRACTED {f['path']}: {f['message']}")
        for f in self.locked_videos:
            lines.append(f"  LOCKED {f['path']}: {f['message']}")
        if self.locked:
            lines.append(f"INCOMPLETE: {self.locked} video{'s are' if self.locked > 1 else ' is'} being extracted by "
                         "another process (LOCKED above), not in the cache yet; rerun after it finishes")
        if self.stopped:
            lines.append(f"STOPPED: {self.stopped}")
        if self.failures_error:
            lines.append(f"failures.json NOT written: {self.failures_error}")
        elif self.failures and self.failures_path:
            lines.append(f"failures listed in {self.failures_path}")
        return "\n".join(lines)


@contextlib.contextmanager
def _parallel_backend(backend: str, workers: int, scheduler: str | None):
    """joblib's backend for the run: loky (local processes), dask (a distributed.Client, local or at
    ``scheduler``) or ray (``ray.init(address=scheduler)``). Dask and Ray import lazily."""
    from joblib import parallel_config

    if backend == "loky":
        with parallel_config(backend="loky", n_jobs=workers):
            yield
    elif backend == "dask":
        try:
            from dask.distributed import Client
        except ImportError as e:
            raise RuntimeError(
                f"--backend dask needs dask.distributed ({e}); pip install 'clicktal[cluster]'") from None
        client = Client(scheduler) if scheduler else Client(n_workers=workers, threads_per_worker=1)
        try:
            with parallel_config(backend="dask", n_jobs=workers):
                yield
        finally:
            client.close()
    elif backend == "ray":
        try:
            import ray
            from ray.util.joblib import register_ray
        except ImportError as e:
            raise RuntimeError(f"--backend ray needs ray ({e}); pip install 'clicktal[cluster]'") from None
        register_ray()
        if not ray.is_initialized():
            ray.init(address=scheduler) if scheduler else ray.init(num_cpus=workers)
        with parallel_config(backend="ray", n_jobs=workers):
            yield
    else:
        raise ValueError(f"unknown backend {backend!r}; choose from {PARALLEL_BACKENDS}")


def extract_folder(videos: str | os.PathLike | Iterable, out_dir: str | os.PathLike, *, workers: int = 1,
                   backend: str = "loky", scheduler: str | None = None, shard=None, overwrite: bool = False,
                   progress: bool = True, config: ExtractionConfig | None = None, **options) -> Summary:
    """Extract every video under ``videos`` (a folder, searched recursively, a list file, or paths) into the
    feature cache ``out_dir``; resumable, keeps going past bad videos (but stops at a full disk), leaves videos
    another live process is extracting to it (``Summary.locked``), writes ``failures.json``.

    ``options`` are :class:`ExtractionConfig` fields (``features="i3d"``, ``random_init=True``, ``fps=25``, ...).
    ``workers`` processes run videos in parallel; when there are fewer pending videos than workers, the videos run
    one after another with ``workers`` TV-L1 processes each. Weights are loaded (missing I3D / TSN ones downloaded
    first unless ``offline``) and checked before any video starts
    (:class:`~clicktal.extractors.weights.WeightsError` if they cannot be had and not ``random_init``).
    """
    t0 = time.perf_counter()
    config = dataclasses.replace(config, **options) if config is not None else ExtractionConfig(**options)
    if backend not in PARALLEL_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {PARALLEL_BACKENDS}")
    workers = max(1, int(workers))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shard_t = parse_shard(shard)
    items = plan_videos(videos, shard_t)
    summary = Summary(total=len(items), out_dir=str(out))

    # Weights are fetched and checked here, once, before any video (the workers then find them in the folder): a
    # checkpoint that cannot be had is a setup error, not a bad video.
    checked = get_extractor(config if backend == "loky" else dataclasses.replace(config, device="cpu",
                                                                                 precision="fp32"))

    cache = FeatureCache(out)
    pending, refused = [], []
    for vid, path in items:
        bad = bad_id_result(vid, path)
        if bad is not None:  # never looked up in the cache: the files its id names would not be its own
            refused.append(bad)
            continue
        state = None if overwrite else cached_state(cache, vid, config, out / "flow", checked.weights_sha256, path)
        if state == "complete":
            summary.results.append(skipped_result(cache, vid, path))
        else:
            pending.append((vid, path))
    summary.results.extend(refused)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), initial=len(items) - len(pending), unit="video", disable=not progress,
               dynamic_ncols=True, desc="extract")
    for r in refused:
        bar.write(f"FAILED {r.path}: {r.reason}: {r.message}", file=sys.stderr)
    try:
        with warnings.catch_warnings(), contextlib.closing(_run(pending, out, config, workers, backend, scheduler,
                                                                overwrite)) as results:
            # stopping early cancels the videos still queued; the summary says how many, not joblib
            warnings.filterwarnings("ignore", message=r".*tasks which were still being processed",
                                    category=UserWarning)
            for result in results:
                summary.results.append(result)
                if result.status == "failed":
                    bar.write(f"FAILED {result.path}: {result.reason}: {result.message}", file=sys.stderr)
                elif result.status == LOCKED:
                    bar.write(f"LOCKED {result.path}: {result.message}", file=sys.stderr)
                elif result.note:
                    bar.write(f"RE-EXTRACTED {result.path}: {result.note}", file=sys.stderr)
                bar.update(1)
                bar.set_postfix(failed=sum(r.status == "failed" for r in summary.results), refresh=False)
                if result.reason == DISK_FULL:
                    summary.stopped = (f"{result.message}; the videos not yet started were not attempted: free "
                                       "space and run the same command again (it resumes)")
                    break
    except KeyboardInterrupt:
        _clear_interrupted(out, [vid for vid, _ in pending])
        raise
    finally:
        bar.close()

    for r in summary.results:
        entry = {"video": r.video_id, "path": r.path, "reason": r.reason, "message": r.message}
        if r.status == "done":
            summary.done += 1
            summary.video_seconds += r.duration_s
            if r.note:
                summary.reextracted.append(dict(entry, message=r.note))
        elif r.status == "skipped":
            summary.skipped += 1
        elif r.status == LOCKED:
            summary.locked += 1
            summary.locked_videos.append(entry)
        else:
            summary.failed += 1
            summary.failures.append(entry)
    summary.not_attempted = summary.total - len(summary.results)
    summary.failures.sort(key=lambda f: f["path"])
    summary.failures_path = str(failures_path(out, shard_t))
    summary.failures_error = _write_failures(Path(summary.failures_path), summary)
    remove_lock_dir(out)
    summary.wall_s = time.perf_counter() - t0
    return summary


def _clear_interrupted(out: Path, video_ids: list[str]) -> None:
    """After an interrupt: remove what this run's videos left, the lock and temp files of a worker killed mid-video
    (joblib kills the workers, and waits for them, on the way out), each under that video's lock, as the next run
    would; a video another live process holds is left to it. Writes are atomic, so nothing half-written looked
    complete anyway; this leaves no clutter either."""
    cache = FeatureCache(out)
    for vid in video_ids:
        lock = VideoLock.for_video(out, vid)
        if lock.path.exists() and lock.acquire():
            try:
                clean_leftovers(cache, vid, out / "flow")
            finally:
                lock.release()
    remove_lock_dir(out)


def failures_path(out_dir: str | os.PathLike, shard: tuple[int, int] | None = None) -> Path:
    """Where a run on the cache ``out_dir`` lists its failures: ``<out>/.clicktal/failures.json``, or
    ``failures.shard-i-of-n.json`` for a shard. (Caches written before this folder existed may still hold a
    top-level ``failures.json`` from then: neither read nor written now, since it may be a video's sidecar.)"""
    name = "failures.json" if not shard else f"failures.shard-{shard[0]}-of-{shard[1]}.json"
    return Path(out_dir) / RUN_DIR / name


def _write_failures(path: Path, summary: Summary) -> str | None:
    """Write the run's ``failures.json``; returns why it could not be written (``None`` when it was).

    Runs sharing the cache write it in turn (under its lock, beside it); the failures another run recorded for
    videos this run found locked (that run's work) are kept."""
    lock = VideoLock(path.with_name(f"{path.name}.lock"), blocking=True)
    try:
        lock.acquire()
    except OSError as e:
        return f"{path}: cannot take its lock: {describe_os_error(e, lock.path)}"
    try:
        locked = {f["video"] for f in summary.locked_videos}
        try:
            previous = json.loads(path.read_text()).get("failed", []) if locked else []
        except (OSError, ValueError, AttributeError):
            previous = []
        failed = sorted(summary.failures + [f for f in previous if isinstance(f, dict) and f.get("video") in locked],
                        key=lambda f: str(f.get("path")))
        payload = json.dumps({"failed": failed, "total": summary.total, "done": summary.done,
                              "skipped": summary.skipped, "locked": summary.locked_videos,
                              "not_attempted": summary.not_attempted, "stopped": summary.stopped}, indent=1).encode()
        atomic_write(path, lambda f: f.write(payload))
    except OSError as e:
        return describe_os_error(e, path)
    finally:
        lock.release()
    return None


_watching_parent = False  # this worker process already watches its parent


def _die_with_parent(parent_pid: int) -> None:
    """Kill this worker process (SIGKILL) as soon as ``parent_pid``, the run that started it, is gone.

    A killed run (``kill -9``, a job scheduler's time limit) otherwise leaves its loky workers computing, and
    holding, their videos: a rerun would find them locked by live processes. The kernel releases the dead worker's
    locks; its temp files are removed by the next holder of each lock. A thread polling ``os.getppid()`` (the
    worker is re-parented when the run dies) rather than Linux's ``PR_SET_PDEATHSIG``: that signal follows the
    *thread* that spawned the worker, and loky starts replacement workers from its manager thread, so a worker
    could be killed while the run lives. Portable, and at most :data:`PARENT_POLL_S` late."""
    global _watching_parent
    if _watching_parent:
        return
    _watching_parent = True

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="clicktal-die-with-parent", daemon=True).start()


def _extract_in_worker(parent_pid: int, *args) -> VideoResult:
    """:func:`extract_video` in a local (loky) worker that dies with the run whose pid is ``parent_pid``."""
    _die_with_parent(parent_pid)
    return extract_video(*args)


def _run(pending, out: Path, config: ExtractionConfig, workers: int, backend: str, scheduler, overwrite
         ) -> Iterator[VideoResult]:
    if not pending:
        return
    if backend == "loky" and (workers == 1 or len(pending) < workers):
        # Fewer videos than workers: one video at a time, its TV-L1 spread over the workers.
        cfg = dataclasses.replace(config, flow_workers=max(config.flow_workers, workers))
        for vid, path in pending:
            yield extract_video(path, out, cfg, vid, overwrite)
        return
    from joblib import Parallel, delayed

    threads = config.torch_threads or max(1, (os.cpu_count() or 1) // workers)
    cfg = dataclasses.replace(config, flow_workers=1, torch_threads=threads)
    with _parallel_backend(backend, workers, scheduler):
        try:
            parallel = Parallel(return_as="generator_unordered")
        except ValueError:  # backends without result callbacks (Ray's): results arrive together at the end
            parallel = Parallel(return_as="list")
        if backend == "loky":  # this process started the workers: they must not outlive it
            calls = (delayed(_extract_in_worker)(os.getpid(), path, out, cfg, vid, overwrite) for vid, path in pending)
        else:  # Dask's and Ray's workers belong to their cluster, which outlives any one run
            calls = (delayed(extract_video)(path, out, cfg, vid, overwrite) for vid, path in pending)
        yield from parallel(calls)


def i3d_weights_present(weights_dir: str | os.PathLike | None = None) -> bool:
    """True when both I3D checkpoints are in the weights folder (they are verified when loaded)."""
    from .weights import I3D_FILES, default_weights_dir

    folder = Path(weights_dir) if weights_dir else default_weights_dir()
    return all((folder / name).is_file() for name in I3D_FILES.values())

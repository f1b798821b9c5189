"""Per-video locks, so that several processes (jobs, machines on one file system) can share one feature cache.

A video is extracted only by the process holding ``<out>/.locks/<video_id>.lock``: an exclusive ``flock`` on that
file, which the kernel releases when its holder exits in any way (a crash or ``SIGKILL`` included), so the lock of
a dead process is taken over by the next process that asks, and a live holder's lock is never broken. The file
holds its owner's pid, host and start time, only to name it in messages. The holder removes the file while still
holding it; a process that locked a file that was removed meanwhile retries on the new one, so two processes never
both believe they hold one video.

``flock`` is shared between the machines of most network file systems (NFSv4, recent Lustre and CephFS); where a
mount does not share it, parallel jobs on one cache must split the work with ``--shard`` instead.
"""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from clicktal.pipeline.core.locks import describe_owner, write_owner

from .diskio import naming

LOCK_DIR = ".locks"
_RETRIES = 50


class VideoLock:
    """``with VideoLock(path) as held:`` ... (``held`` is False when a live process holds it), or
    :meth:`acquire` / :meth:`release`. ``blocking=True`` waits for the holder instead."""

    def __init__(self, path: str | os.PathLike, blocking: bool = False):
        self.path = Path(path)
        self.blocking = blocking
        self._fd: int | None = None

    @classmethod
    def for_video(cls, out_dir: str | os.PathLike, video_id: str) -> "VideoLock":
        return cls(Path(out_dir) / LOCK_DIR / f"{video_id}.lock")

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """True when this process now holds the lock, False when another live process does."""
        for _ in range(_RETRIES):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # the folder was removed between mkdir and open (a run tidying up)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise OSError(e.errno, f"this file system does not support flock ({e.strerror}); parallel "
                                           "jobs on one cache need --shard here", str(self.path)) from None
                raise
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(fd).st_ino:  # its holder removed it before we got it: lock the new file
                os.close(fd)
                continue
            self._fd = fd
            try:
                with naming(self.path):
                    write_owner(fd)
            except BaseException:
                self.release()
                raise
            return True
        raise OSError(errno.EAGAIN, f"could not lock after {_RETRIES} tries (the file kept being replaced)",
                      str(self.path))

    def owner(self) -> str:
        """Who holds it, in words (from the file; ``?`` while the holder is still writing it)."""
        return describe_owner(self.path)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # still held: nobody else can hold this file now
        finally:
            os.close(self._fd)  # releases the flock
            self._fd = None

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def remove_lock_dir(out_dir: str | os.PathLike) -> None:
    """Remove ``<out>/.locks`` when no lock file is left in it (another process's lock keeps it)."""
    try:
        os.rmdir(Path(out_dir) / LOCK_DIR)
    except OSError:
        pass

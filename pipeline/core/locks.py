"""Lock files that name their holder, and one writer per run folder.

:class:`FolderLock` is an exclusive ``flock`` on ``<folder>/.run.lock`` held while a training or an evaluation
writes there. The kernel releases it when its holder exits in any way (``kill -9`` included), so a dead holder never
blocks the next run, and a live one is never broken. A lock file holds its owner's pid, host and start time
(:func:`write_owner`), only to name it in a refusal (:func:`describe_owner`); the extraction's per-video locks
write and read the same record."""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

RUN_LOCK = ".run.lock"


def write_owner(fd: int, **extra) -> None:
    """Replace the content of the lock file open at ``fd`` with this process's pid, host and the time (and
    ``extra``)."""
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), **extra})
    os.ftruncate(fd, 0)
    os.pwrite(fd, record.encode(), 0)


def describe_owner(path: str | os.PathLike) -> str:
    """Who holds the lock file at ``path``, in words (``?`` for fields its holder has not written yet)."""
    try:
        info = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict):
        info = {}
    since = info.get("since")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) \
        else ""
    doing = f" ({info['what']})" if isinstance(info.get("what"), str) else ""
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}{when}{doing}"


class FolderBusyError(RuntimeError):
    """Another live process holds the folder's lock; the message names the folder and the holder."""


class FolderLock:
    """``with FolderLock(folder, what="training"):`` holds ``folder/.run.lock`` or raises :class:`FolderBusyError`."""

    def __init__(self, folder: str | os.PathLike, *, what: str = "a run"):
        self.folder = Path(folder)
        self.path = self.folder / RUN_LOCK
        self.what = what
        self._fd: int | None = None

    def owner(self) -> str:
        return describe_owner(self.path)

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderBusyError(f"{self.folder}: another process is writing this run folder ({self.owner()}); "
                                  f"wait for it to end, or use another folder") from None
        self._fd = fd
        write_owner(fd, what=self.what)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock; the file stays (removing it would race a process opening it)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

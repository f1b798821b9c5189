"""Atomic file writes: a killed run leaves either the old file or the new one, never half a file.

A write that finds the disk (or the user's quota) full raises :class:`DiskFullError`, naming the path, and leaves
no temp file behind. Files are created with the mode an ordinary ``open`` gives (``0o666`` minus the umask), so a
cache shared by a group stays readable to it.
"""
from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskFullError(OSError):
    """Writing ``path`` failed because its file system is full (ENOSPC) or the user's quota is spent (EDQUOT)."""

    def __init__(self, path: str | os.PathLike, code: int = errno.ENOSPC):
        self.path = Path(path)
        what = "the disk quota is exceeded" if code != errno.ENOSPC else "the disk is full"
        super().__init__(code, f"{self.path}: cannot write it: {what} (no space left on the file system of "
                               f"{self.path.parent}); free some space and run again")

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):  # pickled across worker processes
        return type(self), (self.path, self.errno)


def _full_disk_cause(error: BaseException | None) -> OSError | None:
    """The ENOSPC / EDQUOT error behind ``error`` (itself or in its cause / context chain: torch's zip writer turns
    the file's OSError into a RuntimeError), or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _FULL:
            return error
        error = error.__cause__ or error.__context__
    return None


@contextmanager
def naming_full_disk(path: str | os.PathLike) -> Iterator[None]:
    """Turn an error caused by a full disk inside the block into :class:`DiskFullError` naming ``path``."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as e:
        cause = _full_disk_cause(e)
        if cause is None:
            raise
        raise DiskFullError(path, cause.errno) from e


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (``os.umask`` sets it for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a binary temp file beside ``path`` (parents created), fsync it, rename it over ``path``.

    The file gets mode ``0o666 & ~umask``. A full disk raises :class:`DiskFullError`; on any error the temp file
    (``.<name>.<random>.tmp``) is removed and ``path`` keeps its old content."""
    path = Path(path)
    with naming_full_disk(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``text`` (UTF-8) written to ``path`` with :func:`atomic_write`."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def sweep_temp_files(folder: str | os.PathLike, names: list[str]) -> list[Path]:
    """Remove the temp files :func:`atomic_write` leaves beside ``folder/<name>`` when its process is killed
    (``.<name>.<random>.tmp``) and return them. Only call it where no live process writes those files (a run
    folder at the start of its single writer)."""
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return sorted(removed)

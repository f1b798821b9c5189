"""Atomic file writes: a killed run leaves either the old file or the new one, never half a file.

A write that finds the disk (or the user's quota) full raises :class:`DiskFullError`, naming the path, and leaves
no temp file behind. Files are created with the mode an ordinary ``open`` gives (``0o666`` minus the umask), so a
cache shared by a group stays readable to it. :func:`check_writable` tells a tool before any work that its output
could not be written; :func:`not_utf8` says where a file being read stops being UTF-8.
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


class UnwritablePathError(OSError):
    """``path`` cannot be written: ``reason`` says why (a parent is a file, no permission, a read-only file system)."""

    def __init__(self, path: str | os.PathLike, reason: str, code: int = errno.EACCES):
        self.path, self.reason = Path(path), reason
        super().__init__(code, f"{self.path}: cannot write it: {reason}")

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):  # pickled across worker processes
        return type(self), (self.path, self.reason, self.errno)


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


def check_writable(path: str | os.PathLike) -> None:
    """Check, before any work, that :func:`atomic_write` could write ``path``.

    Creates ``path``'s folder (and its parents) as the write would, then creates, writes one byte to, fsyncs and
    removes a temp file beside ``path``; ``path`` itself is neither created nor changed. Raises
    :class:`DiskFullError` when the file system or quota is full, :class:`UnwritablePathError` (an ``OSError``)
    naming ``path`` and the reason for anything else: ``path`` is a folder, a parent is a file, no permission, a
    read-only file system."""
    path = Path(path)
    try:
        with naming_full_disk(path):
            if path.is_dir():
                raise UnwritablePathError(path, "it is a folder", errno.EISDIR)
            blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
            if blocking is not None:  # mkdir would say "File exists" or "Not a directory" without naming it
                raise UnwritablePathError(path, f"{blocking} is a file, not a folder", errno.ENOTDIR)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                os.write(fd, b"\0")
                os.fsync(fd)  # a network file system may report a full disk only here
            finally:
                os.close(fd)
                os.unlink(tmp)
    except (DiskFullError, UnwritablePathError):
        raise
    except OSError as e:
        # mkdir names the folder it could not create; mkstemp names a random temp file, so name its folder
        where = e.filename if e.filename is not None and Path(e.filename) in path.parents else path.parent
        raise UnwritablePathError(path, f"{(e.strerror or str(e)).lower()} ({where})", e.errno or errno.EACCES
                                  ) from None


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


def not_utf8(error: UnicodeDecodeError) -> str:
    """Where and why decoding bytes stopped, for a message after the file's name: ``line N: not UTF-8 text (byte
    0xe9 at offset K); save the file as UTF-8``."""
    raw, start = error.object, error.start
    line = raw.count(b"\n", 0, start) + 1
    return f"line {line}: not UTF-8 text (byte 0x{raw[start]:02x} at offset {start}); save the file as UTF-8"

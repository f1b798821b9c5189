"""Write faults with a name: a full disk becomes one ``disk_full`` answer that names the file being written.

A full disk shows up in many shapes: ``OSError(ENOSPC)`` or ``EDQUOT`` from Python's own writes, the project's
``DiskFullError`` (an ``OSError`` subclass from :func:`clicktal.pipeline.core.files.atomic_write`), numpy's
``tofile`` short write (``"16384 requested and 9184 written"``, no errno, no path), OpenCV's ``imwrite`` returning
``False``. :func:`disk_full_error` recognises all of them (by ``errno`` on any ``OSError`` in the exception's
chain, so it does not depend on the ``DiskFullError`` class existing), :func:`naming` attaches the path to an
``OSError`` that has none, and :func:`describe_disk_full` gives the one-line message.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Iterator

DISK_FULL = "disk_full"  # failure reason in failures.json

_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")  # numpy's ndarray.tofile on a full disk
_NEARLY_FULL_BYTES = 1 << 20  # cv2.imwrite says only False: with less free space than this, the disk is full


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def disk_full_error(exc: BaseException | None) -> OSError | None:
    """The ``OSError`` in ``exc``'s chain that says the disk (or the quota) is full, else ``None``."""
    for e in _chain(exc):
        if isinstance(e, OSError) and (e.errno in _FULL_ERRNOS or type(e).__name__ == "DiskFullError"
                                       or _SHORT_WRITE.search(str(e))):
            return e
    return None


def error_path(exc: BaseException) -> str | None:
    """The first file name any ``OSError`` in ``exc``'s chain carries (``filename``, or ``DiskFullError.path``)."""
    for e in _chain(exc):
        where = (e.filename or getattr(e, "path", None)) if isinstance(e, OSError) else None
        if where:
            return str(where)
    return None


def describe_disk_full(exc: BaseException, path: str | os.PathLike | None = None) -> str:
    """``"<path>: disk is full (<what the system said>)"`` for a disk-full ``exc``."""
    full = disk_full_error(exc) or exc
    where = error_path(exc) or (str(path) if path is not None else "the output folder")
    detail = getattr(full, "strerror", None) or str(full)
    if "disk is full" in detail.lower():
        return f"{where}: disk is full"
    return f"{where}: disk is full ({detail})"


def describe_os_error(exc: OSError, path: str | os.PathLike | None = None) -> str:
    """One line for a failed write: :func:`describe_disk_full` for a full disk, else ``"<path>: <error>"``."""
    if disk_full_error(exc) is not None:
        return describe_disk_full(exc, path)
    return f"{error_path(exc) or path}: {exc.strerror or exc}"


@contextlib.contextmanager
def naming(path: str | os.PathLike | Callable[[], str | os.PathLike]):
    """Re-raise an ``OSError`` that names no file as one naming ``path`` (a callable is asked only then, so it can
    tell which of several files failed); a disk-full one keeps ``errno.ENOSPC``."""
    try:
        yield
    except OSError as e:
        if error_path(e):
            raise
        where = path() if callable(path) else path
        code = errno.ENOSPC if disk_full_error(e) is not None else e.errno
        raise OSError(code, e.strerror or str(e), str(where)) from e


def check_written(ok: bool, path: str | os.PathLike) -> None:
    """Raise for a writer that reports failure only as ``False`` (``cv2.imwrite``): ``ENOSPC`` when the disk has
    (almost) no free space left, else ``EIO``."""
    if ok:
        return
    path = Path(path)
    try:
        full = shutil.disk_usage(path.parent).free < _NEARLY_FULL_BYTES
    except OSError:
        full = False
    code = errno.ENOSPC if full else errno.EIO
    raise OSError(code, os.strerror(code) if full else "the image writer could not write the file", str(path))

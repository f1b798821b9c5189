"""Which video file a feature array was made from: a fingerprint recorded in the sidecar at extraction, and the
check that a file at that path is still the same one (extraction reuses a cache entry only then, and training and
inference refuse features whose source video was replaced)."""
from __future__ import annotations

import hashlib
import os
import time

_FINGERPRINT_BYTES = 1 << 20  # the source's first and last MiB are hashed


def source_fingerprint(path: str | os.PathLike) -> dict:
    """Size, modification time and the sha256 of the first and last MiB (the whole file when smaller)."""
    st = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(_FINGERPRINT_BYTES))
        if st.st_size > _FINGERPRINT_BYTES:
            f.seek(max(_FINGERPRINT_BYTES, st.st_size - _FINGERPRINT_BYTES))
            digest.update(f.read(_FINGERPRINT_BYTES))
    return {"size_bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "head_tail_sha256": digest.hexdigest()}


def source_change(recorded: dict, path: str | os.PathLike) -> str | None:
    """Why ``path`` is not the file that a sidecar's ``source`` describes, or ``None``.

    A different size is a different file. A different modification time is checked against the hash of the first
    and last MiB (a copied or touched file with the same content is the same file). A source that is gone, or a
    sidecar from before these fields, is not second-guessed (size only)."""
    try:
        st = os.stat(path)
        size = recorded.get("size_bytes")
        if size is not None and st.st_size != size:
            return f"its size changed ({size} -> {st.st_size} bytes)"
        mtime, sha = recorded.get("mtime_ns"), recorded.get("head_tail_sha256")
        if mtime is None or sha is None or st.st_mtime_ns == mtime:
            return None
        if source_fingerprint(path)["head_tail_sha256"] == sha:
            return None
    except OSError:
        return None
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime_ns / 1e9))
    return f"its content changed (modified {when}; the sha256 of its first and last MiB differs)"


class SourceChangedError(ValueError):
    """Features whose source video was replaced since they were extracted; the message names the video."""


def changed_sources(metas: dict) -> dict[str, str]:
    """``{video: why}`` for each ``FeatureMeta`` in ``metas`` (video -> meta) whose recorded source file is still
    at its path but is no longer the file the features were made from (:func:`source_change`). A source that is
    gone (features moved to another machine) is not second-guessed."""
    out = {}
    for video, meta in metas.items():
        path = (meta.source or {}).get("path")
        why = source_change(meta.source, path) if isinstance(path, str) and path else None
        if why:
            out[video] = f"{path}: {why}"
    return out


def check_sources(metas: dict, *, accept: bool, where: str, note=None) -> dict[str, str]:
    """Refuse (:class:`SourceChangedError`, naming the first video and how many more) features made from a video
    file that has been replaced since (:func:`changed_sources`), unless ``accept``; then ``note`` says which were
    accepted. Returns the changed ones."""
    changed = changed_sources(metas)
    if changed and not accept:
        video, why = next(iter(changed.items()))
        more = f" (and {len(changed) - 1} more video(s))" if len(changed) > 1 else ""
        raise SourceChangedError(
            f"{where}: the features of video {video!r} were extracted from another file than the one now at its "
            f"path ({why}){more}; re-extract them (tools/extract_features.py --overwrite), or accept the old "
            f"features with data.accept_changed_sources: true (recorded in the run's config)")
    if changed and note is not None:
        note(f"{where}: {len(changed)} video(s) whose source file changed since extraction used as extracted "
             f"(data.accept_changed_sources): {', '.join(sorted(changed)[:5])}{', ...' if len(changed) > 5 else ''}")
    return changed

"""Checked, atomic .npz files: arrays plus JSON metadata, a SHA-256 checksum, never half-written.

A file is written to a temporary name in the same folder, flushed and fsynced, then renamed
over the target (and the folder fsynced), so a crash at any moment leaves either the old
file or the new one, whole. On load, a truncated or altered file fails its checksum and is
reported as such; nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ._errors import ValidationError

_META = "__meta__"


class FileFormatError(ValidationError):
    """A file is missing, damaged, of another format or of another version."""


def digest(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the metadata (without its checksum) and every array's name, dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "checksum"}, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_checked(path, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` and ``meta`` (JSON-able) to ``path`` atomically, with a checksum."""
    path = Path(path)
    meta = dict(meta, checksum=digest(meta, arrays))
    payload = dict(arrays)
    payload[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileFormatError(f"cannot write {path}: the folder {folder} does not exist.")
    for stale in folder.glob(f".{path.name}.tmp-*"):  # left by a writer that was killed mid-write
        stale.unlink(missing_ok=True)
    tmp = folder / f".{path.name}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return path
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def load_checked(path, kind: str, version: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a file written by ``save_checked`` whose metadata says ``format == kind``.

    Raises FileFormatError naming the path for a missing, truncated, altered, foreign or
    other-version file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: no such file.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise FileFormatError(f"{path} is not a readable {kind} file (damaged or truncated?): {exc}") from None
    raw = arrays.pop(_META, None)
    try:
        meta = json.loads(raw.tobytes().decode()) if raw is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != kind:
        raise FileFormatError(f"{path} is not a {kind} file (no {kind} metadata found).")
    if meta.get("version") != version:
        raise FileFormatError(
            f"{path} is a {kind} file of format version {meta.get('version')}; this kronsgd reads version {version}."
        )
    if meta.get("checksum") != digest(meta, arrays):
        raise FileFormatError(f"{path} is damaged: its checksum does not match its contents.")
    return meta, arrays

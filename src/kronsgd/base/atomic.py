"""Checked, atomic .npz files: arrays plus JSON metadata, a SHA-256 checksum, never half-written.

Shared by model files (model/files.py) and checkpoints (engine/checkpoint.py). A file is written to a
temporary name in the same folder, flushed and fsynced, then renamed over the target (and
the folder fsynced), so a crash at any moment leaves either the old file or the new one,
whole. On load, a truncated or altered file fails its checksum and is reported as such;
nothing is unpickled (``allow_pickle=False``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

import numpy as np

from .errors import FileFormatError

METADATA = "metadata"  # the .npz entry holding the UTF-8 JSON metadata
_ZIP_SIGNATURE = b"PK\x03\x04"  # every .npz starts with a ZIP local file header


def checksum(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 hex digest over the metadata (canonical JSON, without the checksum itself), then
    each array's name, dtype, shape and bytes in dict order."""
    described = {key: value for key, value in meta.items() if key != "checksum"}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    for name, array in arrays.items():
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def write_atomic(path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` and ``meta`` (given a checksum here) to ``path``: old file or new, never half.

    Temporary files left by writers that were killed are removed; those of live writers
    (other processes) are left alone.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileFormatError(f"cannot write {path}: the folder {folder} does not exist.")
    meta = dict(meta, checksum={"algorithm": "sha256", "value": checksum(meta, arrays)})
    entries = {METADATA: np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8), **arrays}
    _remove_stale_temporaries(path)
    temporary = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    # O_EXCL: never clobber another writer's file; mode 0o666 lets the umask decide, as open() does
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **entries)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(folder)


def _remove_stale_temporaries(path: Path) -> None:
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            os.kill(int(stale.name.split(".")[-3]), 0)  # is its writer alive?
        except (ValueError, IndexError, ProcessLookupError):
            stale.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


def _fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable; a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platform dependent
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def read_npz(path, what: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Every entry of the .npz at ``path``: (metadata dict or None, arrays).

    Raises FileFormatError, with a message for the caller to put after the path, for
    anything that is not a readable archive.
    """
    with open(path, "rb") as handle:
        signature = handle.read(4)
    if signature != _ZIP_SIGNATURE:
        what_is = "it is empty" if not signature else "it does not start with the ZIP signature of a .npz archive"
        raise FileFormatError(f"{what_is}; a {what} file is a .npz archive written by kronsgd.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as exc:  # noqa: BLE001 - zipfile, zlib and numpy each raise their own types
        raise FileFormatError(
            f"it is not a readable .npz archive ({type(exc).__name__}: {exc}); it is damaged or truncated."
        ) from None
    raw = arrays.pop(METADATA, None)
    try:
        ok = raw is not None and raw.dtype == np.uint8 and raw.ndim == 1
        meta = json.loads(raw.tobytes().decode("utf-8")) if ok else None
    except (UnicodeDecodeError, ValueError):
        meta = None
    return (meta if isinstance(meta, dict) else None), arrays


def load_checked(path, kind: str, version) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a file written by ``write_atomic`` whose metadata say ``format == kind``.

    ``version`` is the format version this kronsgd reads, or a tuple of those it reads.

    Raises FileFormatError naming the path for a missing, truncated, altered, foreign or
    other-version file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: no such file.")
    try:
        meta, arrays = read_npz(path, kind)
    except FileFormatError as exc:
        raise FileFormatError(f"{path} is not a readable {kind} file: {exc}") from None
    if meta is None or meta.get("format") != kind:
        raise FileFormatError(f"{path} is not a {kind} file (no {kind} metadata found).")
    versions = version if isinstance(version, tuple) else (version,)
    if meta.get("format_version") not in versions:
        readable = " or ".join(str(v) for v in versions)
        raise FileFormatError(
            f"{path} is a {kind} file of format version {meta.get('format_version')}; "
            f"this kronsgd reads version {readable}."
        )
    stored = meta.get("checksum")
    if not isinstance(stored, dict) or stored.get("value") != checksum(meta, arrays):
        raise FileFormatError(f"{path} is damaged: its checksum does not match its contents.")
    return meta, arrays

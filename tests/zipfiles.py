"""Where the bytes of each entry of a .npz file lie (np.savez stores entries uncompressed), and
single-bit damage to a file."""

import contextlib
import os
import struct
import zipfile
from pathlib import Path


def entry_regions(path) -> dict[str, range]:
    """{entry name: the byte positions of its stored .npy (header and array data)} in the file at ``path``.

    Every other byte of the file belongs to the ZIP structure: local headers, the central
    directory and its end record.
    """
    regions = {}
    with open(path, "rb") as handle, zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            assert info.compress_type == zipfile.ZIP_STORED, "np.savez stores entries as they are"
            handle.seek(info.header_offset)
            header = handle.read(30)  # the local file header: fixed part
            assert header[:4] == b"PK\x03\x04"
            name_length, extra_length = struct.unpack("<HH", header[26:30])
            start = info.header_offset + 30 + name_length + extra_length
            regions[info.filename.removesuffix(".npy")] = range(start, start + info.compress_size)
    return regions


@contextlib.contextmanager
def bit_flips(path):
    """Yield ``flip(position)``: afterwards the file at ``path`` is its original bytes with one bit
    of byte ``position`` flipped (bit position % 8, so every bit place is tried).

    The file is changed in place, one byte at a time (rewriting it whole costs milliseconds per
    flip where truncation discards blocks); it is restored on exit.
    """
    raw = Path(path).read_bytes()
    fd = os.open(path, os.O_RDWR)
    changed = []

    def flip(position: int) -> None:
        if changed:
            last = changed.pop()
            os.pwrite(fd, raw[last : last + 1], last)
        os.pwrite(fd, bytes([raw[position] ^ (1 << (position % 8))]), position)
        changed.append(position)

    try:
        yield flip
    finally:
        for last in changed:
            os.pwrite(fd, raw[last : last + 1], last)
        os.close(fd)

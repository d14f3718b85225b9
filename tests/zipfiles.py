"""Where the bytes of each entry of a .npz file lie (np.savez stores entries uncompressed)."""

import struct
import zipfile


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


def flipped(raw: bytes, position: int) -> bytes:
    """``raw`` with one bit of byte ``position`` flipped: bit position % 8, so every bit place is tried."""
    out = bytearray(raw)
    out[position] ^= 1 << (position % 8)
    return bytes(out)

"""Checksums of checkpoint files: every byte is covered, and saving costs next to nothing.

torch.save writes a zip archive whose records (the pickled object tree, every tensor's storage) are
stored uncompressed, each with the CRC-32 that torch computes while writing it; torch.load never checks
them.  `seal` appends to a freshly written archive a trailer holding the SHA-256 of every byte that no
record's CRC-32 covers: the zip headers and the central directory (which holds those CRC-32s), a few
kilobytes however large the tensors.  `verify` recomputes both: a changed byte anywhere fails one of
them (a CRC-32 catches every error burst of up to 32 bits, so any one flipped byte, and other damage
but for a 2**-32 chance; the SHA-256 any change).  The trailer is part of the file, so it is written
and renamed into place with it (arlif.runner.records.write_atomically).  torch.load reads a sealed
file as it is: zip readers find the archive's end record before the trailer.
"""

from __future__ import annotations

import hashlib
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

MAGIC = b"arlif-checksum1 "
TRAILER_SIZE = len(MAGIC) + 64  # the magic, then the SHA-256 in hex
END_RECORD = b"PK\x05\x06"  # a zip archive's last record (22 bytes without a comment)
LOCAL_HEADER = b"PK\x03\x04"
CHUNK = 1 << 20


class Damaged(Exception):
    """A sealed file whose bytes changed; the message says where and what was expected."""


def _records(f: BinaryIO, size: int) -> list[tuple[str, int, int, int]]:
    """(name, first byte, end, CRC-32) of every record's data in the archive's first `size` bytes, in
    file order."""
    try:
        records = [_record(f, info) for info in zipfile.ZipFile(f).infolist()]
    except Damaged:
        raise
    except Exception as exc:  # zipfile raises many types for damaged headers (BadZipFile, NotImplementedError, ...)
        raise Damaged(f"its zip structure cannot be read ({type(exc).__name__}: {exc})") from exc
    records.sort(key=lambda r: r[1])
    ends = [0] + [end for _, _, end, _ in records]
    if any(start < end for (_, start, _, _), end in zip(records, ends)) or ends[-1] > size:
        raise Damaged("its zip headers place records over each other or past the archive's end")
    return records


def _record(f: BinaryIO, info: zipfile.ZipInfo) -> tuple[str, int, int, int]:
    f.seek(info.header_offset)
    header = f.read(30)
    if len(header) < 30 or not header.startswith(LOCAL_HEADER):
        raise Damaged(f"the zip header of record {info.filename} at byte {info.header_offset} is damaged")
    if info.compress_type != zipfile.ZIP_STORED:
        raise Damaged(f"record {info.filename} is compressed, which torch.save never does")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_length + extra_length
    return info.filename, start, start + info.compress_size, info.CRC


def _structure_digest(f: BinaryIO, size: int, records) -> str:
    """SHA-256 of the archive's bytes outside the records' data."""
    digest, position = hashlib.sha256(), 0
    for _, start, end, _ in [*records, ("", size, size, 0)]:
        f.seek(position)
        digest.update(f.read(start - position))
        position = end
    return digest.hexdigest()


def seal(path: Path) -> None:
    """Append the trailer to the archive torch.save just wrote at `path` (its records' CRC-32s computed)."""
    with open(path, "r+b") as f:
        size = f.seek(0, 2)
        digest = _structure_digest(f, size, _records(f, size))
        f.seek(size)
        f.write(MAGIC + digest.encode())


def ends_as_archive(path: Path) -> bool:
    """Whether the file ends where a zip archive (an unsealed torch.save file) ends: its end record."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(max(size - 22, 0))
        tail = f.read()
    return len(tail) == 22 and tail.startswith(END_RECORD) and tail[-2:] == b"\0\0"


def verify(path: Path) -> bool:
    """True when `path` is sealed and whole, False when it has no trailer (written before checksums, or not
    by arlif); raises Damaged when a sealed file's bytes changed."""
    with open(path, "rb") as f:
        total = f.seek(0, 2)
        f.seek(max(total - TRAILER_SIZE, 0))
        trailer = f.read()
        if len(trailer) < TRAILER_SIZE or not trailer.startswith(MAGIC):
            return False
        expected, size = trailer[len(MAGIC):].decode("ascii", "replace"), total - TRAILER_SIZE
        records = _records(f, size)
        found = _structure_digest(f, size, records)
        if found != expected:
            raise Damaged(f"the SHA-256 of its zip headers is {found}, but the checksum saved with it is {expected}")
        for name, start, end, crc in records:
            f.seek(start)
            value, left = 0, end - start
            while left and (chunk := f.read(min(CHUNK, left))):
                value, left = zlib.crc32(chunk, value), left - len(chunk)
            if value != crc:
                raise Damaged(f"record {name} (bytes {start} to {end}) has CRC-32 {value:08x}, but the checksum "
                              f"saved with it is {crc:08x}")
    return True

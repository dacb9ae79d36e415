"""Where media bytes live: a folder on the filesystem, content-addressed by SHA-256 (README,
Photo evidence: why a folder and not PostgreSQL large objects).

Layout under ``media.directory``::

    objects/ab/cd/abcd…(64 hex)   one immutable file per distinct content
    spool/<random>                uploads in progress (deleted when committed or abandoned)

An upload is written piece by piece into a :class:`Spool` as its packets (JT/T 808 0x0801) or
data frames (T/JSATL 12-2017 file stream) arrive, so a gateway holds only the index of the pieces
in memory, never the file. Pieces are keyed: by packet index (0x0801) or by file offset (an
attachment); the content is the pieces in key order. A piece that comes twice keeps its first
copy. :meth:`MediaStore.commit` hashes the content (on the fly when every piece came in key order,
else by reading the pieces back in order), fsyncs it and renames it to its digest's path; a
content already stored is kept once.

Errors: ``OSError`` from the filesystem is raised to the caller (the upload is then recorded as
failed by the gateway, never silently dropped).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 1 << 16


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A committed content: its SHA-256 (lowercase hex) and size in bytes."""

    sha256: str
    size_bytes: int


class Spool:
    """One upload in progress: an append-only file plus the index key -> (offset, length), kept
    in three integer arrays (24 bytes a piece: a 2 MB photo in 900-byte packets indexes in
    ~53 KB, where a dict of tuples took ~330 KB).

    Attributes:
        size_bytes: bytes held (sum of distinct pieces).
        count: distinct pieces held.
    """

    __slots__ = (
        "_file",
        "_hash",
        "_in_order",
        "_keys",
        "_lengths",
        "_offsets",
        "count",
        "path",
        "size_bytes",
    )

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO = open(path, "xb")  # noqa: SIM115 (closed by commit/discard)
        self._keys, self._offsets, self._lengths = array("q"), array("q"), array("q")
        self.size_bytes = 0
        self.count = 0
        self._hash = hashlib.sha256()
        self._in_order = True

    def has(self, key: int) -> bool:
        """Whether piece ``key`` is held (constant time for pieces arriving in key order)."""
        if not self._keys or key > self._keys[-1]:
            return False
        return key in self._keys

    def write(self, key: int, data: bytes) -> bool:
        """Append the piece ``key``; False (nothing written) when that key is already held."""
        if self._keys and key <= self._keys[-1]:
            if key in self._keys:
                return False
            self._in_order = False
        self._keys.append(key)
        self._offsets.append(self.size_bytes)
        self._lengths.append(len(data))
        self._file.write(data)
        if self._in_order:
            self._hash.update(data)
        self.size_bytes += len(data)
        self.count += 1
        return True

    def keys(self) -> set[int]:
        return set(self._keys)

    def ordered(self) -> list[tuple[int, int, int]]:
        """(key, offset in the spool, length) of every piece, in key order."""
        return sorted(zip(self._keys, self._offsets, self._lengths, strict=True))

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class MediaStore:
    """The content-addressed folder (created on first use).

    Args:
        directory: root folder (``media.directory``).
    """

    def __init__(self, directory: Path | str) -> None:
        self.root = Path(directory)
        self.objects = self.root / "objects"
        self.spool_dir = self.root / "spool"

    def spool(self) -> Spool:
        """A new, empty upload in ``spool/``."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        return Spool(self.spool_dir / secrets.token_hex(16))

    def path(self, sha256: str) -> Path:
        """Where the content with that digest lives.

        Raises:
            ValueError: not 64 lowercase hex digits (so no caller can build another path).
        """
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"expected a SHA-256 as 64 lowercase hex digits, got {sha256!r}")
        return self.objects / sha256[:2] / sha256[2:4] / sha256

    def commit(self, spool: Spool) -> StoredObject:
        """Store the spool's pieces in key order under their digest and delete the spool.
        Blocking file I/O: call it through ``asyncio.to_thread`` from a server."""
        spool._file.flush()
        if spool._in_order:
            digest = spool._hash.hexdigest()
            source = spool.path
        else:
            source, digest = self._reorder(spool)
        spool.close()
        with open(source, "rb+") as handle:
            os.fsync(handle.fileno())
        target = self.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            source.unlink()
        else:
            os.replace(source, target)
        if spool.path.exists():
            spool.path.unlink()
        return StoredObject(digest, spool.size_bytes)

    def _reorder(self, spool: Spool) -> tuple[Path, str]:
        ordered = self.spool_dir / (spool.path.name + ".ordered")
        digest = hashlib.sha256()
        with open(spool.path, "rb") as source, open(ordered, "xb") as out:
            for _key, offset, length in spool.ordered():
                source.seek(offset)
                data = source.read(length)
                digest.update(data)
                out.write(data)
        return ordered, digest.hexdigest()

    def discard(self, spool: Spool) -> None:
        """Drop an upload in progress."""
        spool.close()
        spool.path.unlink(missing_ok=True)

    def open(self, sha256: str) -> BinaryIO:
        """The stored content for reading.

        Raises:
            FileNotFoundError: no such content; ValueError: not a digest.
        """
        return open(self.path(sha256), "rb")

    def verify(self, sha256: str) -> bool:
        """Whether the stored file still hashes to its name (evidence unaltered)."""
        digest = hashlib.sha256()
        with self.open(sha256) as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
        return digest.hexdigest() == sha256

"""The sha256 of files, and the ones this process has read already.

``open_bundle`` hashes every file of the bundle's private copy to verify it; the TFLite probe then asks for the
same files' digests (has this content passed a probe here?) once for all candidates and again as each one
loads. :func:`known_digest` answers those from what :func:`file_digest` read, as long as the file is the one
that was read (same device, inode, size and modification time), instead of reading it again each time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20
_KEEP = 256  # remembered digests, at most (a daemon that reloads for months unpacks many copies)
_read: dict[tuple[str, int, int, int, int], str] = {}


def _identity(path: Path | str, st: os.stat_result) -> tuple[str, int, int, int, int]:
    return str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def file_digest(path: Path | str) -> tuple[str, int]:
    """The sha256 (hex) and size in bytes of a file, read in chunks (always read: this is what verifies)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        before = os.fstat(fh.fileno())
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
        after = os.fstat(fh.fileno())
    hexdigest = digest.hexdigest()
    if _identity(path, before) == _identity(path, after) and size == after.st_size:  # not changed while read
        if len(_read) >= _KEEP:
            _read.clear()
        _read[_identity(path, after)] = hexdigest
    return hexdigest, size


def known_digest(path: Path | str) -> str:
    """``path``'s sha256: the one :func:`file_digest` read if the file has not changed since, else read now."""
    return _read.get(_identity(path, os.stat(path))) or file_digest(path)[0]

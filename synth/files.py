"""The one file hash: sha256 of a file read in fixed blocks, so memory stays flat for any size.

Used for what the project records about files it did not decode: parquet shards (``hub build``),
model and scores files (a detector's identity), uploads (the Space's cache keys).
"""

from __future__ import annotations

import hashlib
import os

#: bytes read at a time
BLOCK_BYTES = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of the content of the file at ``path``, read ``BLOCK_BYTES`` at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()

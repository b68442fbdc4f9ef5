"""Stored user photos: bytes under DATA_DIR/photos/<sha256>.<ext>, written atomically (blocking I/O: call
these from a worker thread, e.g. ``asyncio.to_thread``)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Leading bytes of the formats we store (extension is derived from content, never from user input).
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tif"),
    (b"MM\x00*", "tif"),
)


def sniff_extension(data: bytes) -> str:
    """File extension for encoded image bytes from their magic number: jpg, png, gif, webp, bmp, tif, heic,
    or ``img`` when unknown. Pure; never trusts a file name."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp" and data[8:12] in {b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis"}:
        return "heic"
    for signature, extension in _SIGNATURES:
        if data.startswith(signature):
            return extension
    return "img"


@dataclass(frozen=True)
class StoredPhoto:
    """A stored photo: hex ``sha256`` of its bytes and its ``path``."""

    sha256: str
    path: Path


class PhotoStore:
    """Content-addressed photo files under ``root`` (DATA_DIR/photos). Same bytes -> same file, never
    overwritten with different content."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, data: bytes) -> StoredPhoto:
        """Write ``data`` to ``<root>/<sha256>.<ext>`` atomically (temp file + rename) unless it exists.

        Raises OSError when the disk write fails.
        """
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / f"{digest}.{sniff_extension(data)}"
        if path.is_file():
            return StoredPhoto(digest, path)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StoredPhoto(digest, path)

    def delete(self, path: str | Path) -> bool:
        """Delete one stored photo; only files directly inside ``root`` are touched. True if it existed."""
        candidate = Path(path)
        try:
            resolved = candidate.resolve()
            if resolved.parent != self.root.resolve():
                return False
            resolved.unlink()
            return True
        except FileNotFoundError:
            return False

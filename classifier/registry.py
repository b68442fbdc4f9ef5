"""Model registry: immutable numbered versions under MODELS_DIR and one champion pointer moved atomically.

Layout::

    models/
      CHAMPION              one line: the champion version name (e.g. ``v0001``); replaced atomically
      history.jsonl         one JSON object per promotion: {"version", "previous", "at", "reason"}
      v0001/                immutable once created: labels.json, metrics.json, model_card.md,
                            confusion_matrix.png, head.json, head.npz (float16 head weights)
      v0002/ ...

Atomicity: a new version is written into a hidden temporary folder inside MODELS_DIR and renamed to its
number (``os.rename`` of a directory is atomic on POSIX; if another writer took the number first, the next
free number is used). The pointer is written to a temporary file, fsynced and ``os.replace``d. A crash at any
point leaves the previous champion and all complete versions readable. Readers ignore hidden folders.
No TensorFlow import here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

VERSION_RE = re.compile(r"^v(\d{4,})$")
CHAMPION_FILE = "CHAMPION"
HISTORY_FILE = "history.jsonl"
#: Files every complete version folder contains.
REQUIRED_FILES = ("labels.json", "metrics.json", "model_card.md")


class RegistryError(RuntimeError):
    """Unknown or incomplete version, or a malformed registry."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, fsync, os.replace); the
    file is readable by everyone (0644), like the version folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it 0600; the pointer is read by the bot, maybe as another user
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class Registry:
    """Numbered model versions in ``models_dir`` (see module docstring)."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)

    def versions(self) -> list[str]:
        """Complete versions, oldest first (e.g. ``["v0001", "v0002"]``)."""
        if not self.models_dir.is_dir():
            return []
        found = [
            p.name
            for p in self.models_dir.iterdir()
            if p.is_dir() and VERSION_RE.match(p.name) and all((p / f).is_file() for f in REQUIRED_FILES)
        ]
        return sorted(found, key=lambda v: int(v[1:]))

    def version_dir(self, version: str) -> Path:
        """Folder of a complete version. Raises RegistryError if the name is invalid or it does not exist."""
        if not VERSION_RE.match(version):
            raise RegistryError(f"invalid version name {version!r} (expected v0001, v0002, ...)")
        path = self.models_dir / version
        if not path.is_dir() or not all((path / f).is_file() for f in REQUIRED_FILES):
            raise RegistryError(f"model version {version} not found in {self.models_dir}")
        return path

    def champion(self) -> str | None:
        """The champion version, or None if none was promoted (or the pointer names a missing version)."""
        pointer = self.models_dir / CHAMPION_FILE
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        if not name:
            return None
        try:
            self.version_dir(name)
        except RegistryError:
            return None
        return name

    def history(self) -> list[dict[str, Any]]:
        """Promotion history, oldest first."""
        path = self.models_dir / HISTORY_FILE
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def previous_champion(self) -> str | None:
        """The champion before the current one (for rollback), or None."""
        current = self.champion()
        for entry in reversed(self.history()):
            if entry.get("version") == current and entry.get("previous"):
                prev = str(entry["previous"])
                return prev if prev in self.versions() else None
        return None

    def promote(self, version: str, reason: str = "") -> None:
        """Make ``version`` the champion: history line appended, then the pointer replaced atomically."""
        self.version_dir(version)
        previous = self.champion()
        entry = {
            "version": version,
            "previous": previous,
            "at": datetime.now(UTC).isoformat(),
            "reason": reason,
        }
        self.models_dir.mkdir(parents=True, exist_ok=True)
        with (self.models_dir / HISTORY_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        atomic_write_text(self.models_dir / CHAMPION_FILE, version + "\n")

    def next_version(self) -> str:
        """The name the next created version would get (highest existing number + 1)."""
        numbers = [int(m.group(1)) for p in self._all_dirs() if (m := VERSION_RE.match(p.name))]
        return f"v{(max(numbers) + 1) if numbers else 1:04d}"

    def _all_dirs(self) -> list[Path]:
        if not self.models_dir.is_dir():
            return []
        return [p for p in self.models_dir.iterdir() if p.is_dir()]

    def create_version(self, write: Callable[[Path], None]) -> str:
        """Create the next numbered version atomically.

        ``write(tmp_dir)`` fills a temporary folder (it must write REQUIRED_FILES); the folder is then renamed
        to the next free ``vNNNN``. Returns the version name. If ``write`` raises, nothing is left behind.
        """
        self.models_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.models_dir))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; versions are shared read-only data
        try:
            write(tmp)
            missing = [f for f in REQUIRED_FILES if not (tmp / f).is_file()]
            if missing:
                raise RegistryError(f"new version is missing {missing}")
            for f in tmp.iterdir():
                if f.is_file():
                    with f.open("rb") as fh:
                        os.fsync(fh.fileno())
            for _ in range(100):
                name = self.next_version()
                try:
                    os.rename(tmp, self.models_dir / name)
                except OSError:
                    if (self.models_dir / name).exists():
                        continue
                    raise
                _fsync_dir(self.models_dir)
                return name
            raise RegistryError("could not allocate a version number")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def read_json(self, version: str, name: str) -> Any:
        """Parsed JSON file ``name`` of a version (e.g. ``metrics.json``)."""
        return json.loads((self.version_dir(version) / name).read_text(encoding="utf-8"))

    def labels(self, version: str) -> list[str]:
        """The version's label list (softmax order of its equipment classes)."""
        labels = self.read_json(version, "labels.json")
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise RegistryError(f"{version}/labels.json is not a list of strings")
        return labels

"""Permissions of a node's home directory: the home 0700, its secrets 0600.

The home holds the node key, `state.sqlite` (salts and results before they are
revealed), `config.toml` and the blob store (sources of allowlist jobs).
`secure_home` creates the home 0700 or tightens an existing one, makes the
secret files 0600 and the store directories 0700, and returns one line per
change so that `p2pci init` and `p2pci daemon` can say what they tightened
(only when the home itself was readable by others: otherwise nothing inside
was exposed, and the files are tightened silently).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from p2pci.core.errors import LocalError

__all__ = ["secure_home", "SECRET_FILES", "PRIVATE_DIRS"]

# Files that only the node's user may read (the SQLite side files included).
SECRET_FILES = ("node.key", "identity", "config.toml", "state.sqlite", "state.sqlite-wal", "state.sqlite-shm")
PRIVATE_DIRS = ("blobs", "work")


def _tighten(path: Path, mode: int, what: str) -> str | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise LocalError(f"{path} is a symlink: refusing to use it as the node's {what}")
    old = stat.S_IMODE(st.st_mode)
    if old & 0o077 == 0:
        return None
    new = old & ~0o077 & 0o7777 | (mode & 0o700)
    try:
        os.chmod(path, new)
    except OSError as exc:
        raise LocalError(f"cannot make {path} private: {exc.strerror or exc}") from None
    return f"tightened {path} from {old:04o} to {new:04o} (was readable by others)"


def secure_home(home: Path) -> list[str]:
    """Create `home` 0700 or tighten it; secrets 0600, store dirs 0700. One message per change."""
    home = Path(home)
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise LocalError(f"cannot create the node directory {home}: {exc.strerror or exc}") from None
    home_msg = _tighten(home, 0o700, "home directory")
    inner = [_tighten(home / name, 0o600, "secret file") for name in SECRET_FILES]
    inner += [_tighten(home / name, 0o700, "store directory") for name in PRIVATE_DIRS]
    if home_msg is None:
        # The home was already private: nothing inside was exposed (SQLite creates its files
        # 0644 under the default umask), so they are tightened without a word.
        return []
    return [home_msg, *(c for c in inner if c is not None)]

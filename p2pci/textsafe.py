"""Peer-supplied text made safe for a terminal (the CLI's and the TUI's printing edge).

Every string that came from the network (a project name, env, paths, logs,
diff output, worker reasons, addresses) passes through `safe_text` right
before a human sees it. Control characters (C0, DEL, C1: the ANSI escape
sequences start with one of them), Unicode format characters (bidi
overrides, zero-width joiners) and line/paragraph separators are shown
escaped, as ``\\x1b``, ``\\r``, ``\\u202e``, so that a peer can neither move the
cursor, recolour, hide text nor start a fake line. `multiline=True` keeps
``\\n`` and ``\\t`` (logs, diff output); everything else is escaped there too.

`--json` output does not go through here: scripts get the exact text.
Pure: no I/O.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

__all__ = ["safe_text", "safe_lines"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


@lru_cache(maxsize=4096)
def _unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    n = ord(ch)
    if n < 0x100:
        return f"\\x{n:02x}"
    if n < 0x10000:
        return f"\\u{n:04x}"
    return f"\\U{n:08x}"


def safe_text(text: object, *, multiline: bool = False) -> str:
    """`text` (str() of it if not a str) with every control/format character shown escaped."""
    s = text if isinstance(text, str) else str(text)
    if s.isascii() and s.isprintable():  # the common case: nothing to do
        return s
    keep = "\n\t" if multiline else ""
    return "".join(_escape(ch) if ch not in keep and (ch < " " or ch == "\x7f" or _unsafe(ch)) else ch for ch in s)


def safe_lines(text: str) -> list[str]:
    """Lines of a multi-line peer text (a log), each safe: split on ``\\n`` only."""
    return [safe_text(line) for line in text.split("\n")]

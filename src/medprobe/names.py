"""User-given names made safe where they land: file names, and terminal lines."""

from __future__ import annotations

import re
import unicodedata

from medprobe.fingerprint import fingerprint

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(text: str, limit: int = 80) -> str:
    """A file-name stem for ``text``: ASCII letters, digits, ``._-``; a long or altered name
    keeps a hash of the original, so two names never share a file and no name is too long."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    clean = _UNSAFE.sub("_", ascii_text).strip("._") or "x"
    if len(clean) <= limit and clean == text:
        return clean
    return f"{clean[: limit - 9].rstrip('._')}-{fingerprint(text, length=8)}"


def printable(text: str) -> str:
    """``text`` with terminal control characters shown as escapes (``\\x1b``, ``\\n``), so a
    file name cannot move the cursor, recolour or clear the user's terminal."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode() for ch in text
    )

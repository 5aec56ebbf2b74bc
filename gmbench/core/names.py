"""Names that come from users (a model's ``NAME``, a board's cells) on their way to a path or
a terminal: made safe for each.

A name becomes part of a path (the default ``--out`` folder) only through
:func:`safe_filename`, and reaches a terminal only through :func:`printable`, so ``../x``
cannot write outside the working folder and an escape sequence cannot clear the screen or
retitle the window. CSV cells and HTML are escaped where they are written.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["printable", "printable_lines", "safe_filename"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
MAX_NAME = 100


def safe_filename(name: str, *, fallback: str = "model") -> str:
    """``name`` as one path component: letters, digits, ``. _ + -`` kept, every other run of
    characters (``/``, ``..`` at the start, spaces, control characters) replaced by ``_``;
    never empty, never ``.``/``..``, at most 100 characters."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or fallback
    return cleaned[:MAX_NAME]


def printable(text: object) -> str:
    """``text`` with control and format characters (escape sequences, newlines, carriage
    returns, bidirectional overrides) shown as ``\\x1b``-style escapes: one safe line."""
    out = []
    for ch in str(text):
        if unicodedata.category(ch)[0] == "C":
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def printable_lines(text: str) -> str:
    """:func:`printable` applied to each line of ``text``: safe to print, lines kept."""
    return "\n".join(printable(line) for line in text.split("\n"))

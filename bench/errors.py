"""How the CLIs fail: one line on stderr, exit status 2, no traceback, no partial output file."""

from __future__ import annotations

import os
import sys
import tempfile


class UsageError(Exception):
    """Bad input from the command line or a file; printed as one line, exit status 2."""


def fail(prog: str, message: str, status: int = 2) -> int:
    text = " ".join(str(message).split())
    print(f"{prog}: error: {text}", file=sys.stderr)
    return status


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename, so that a
    failed run never leaves a partial file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

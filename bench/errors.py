"""How the CLIs fail: one line on stderr, exit status 2, no traceback, no partial output file."""

from __future__ import annotations

import sys


class UsageError(Exception):
    """Bad input from the command line or a file; printed as one line, exit status 2."""


def fail(prog: str, message: str, status: int = 2) -> int:
    text = " ".join(str(message).split())
    print(f"{prog}: error: {text}", file=sys.stderr)
    return status


def write_atomic(path: str, text: str | bytes) -> None:
    """Write ``text`` (str or bytes) to ``path`` atomically (temporary file + rename): a failed run never leaves a
    partial file."""
    from topologies.io import write_text_atomic

    write_text_atomic(path, text)

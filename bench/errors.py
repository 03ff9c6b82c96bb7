"""How the CLIs fail: one line on stderr, exit status 2, no traceback, no partial output file.

Helpers the commands share: :func:`check_int` (a numeric argument within bounds),
:func:`check_output_paths` (every output file can be written, checked before any work) and
:func:`write_all_atomic` (all outputs of a command appear, or none).
"""

from __future__ import annotations

import math
import os
import sys
import tempfile

from topologies.presets._common import MAX_DEVICES  # noqa: F401  (the largest system a preset builds)

# Bounds of the numeric arguments (see check_int): large enough for any real run, small enough that
# a typo (an extra zero or three) fails at once instead of running for hours or filling the memory.
MAX_ITERS = 1_000_000        # timed / warm-up / seeded iterations of one point
MAX_SEED = 2**32 - 1
MAX_LIST = 256               # items of a comma-separated list of counts (--devices, --nodes, --systems)
MAX_SIZES = 10_000           # sizes of one sweep (-b/-e/-f/-i or --sizes)


class UsageError(Exception):
    """Bad input from the command line or a file; printed as one line, exit status 2."""


class RanksDisagree(UsageError):
    """Every MPI rank found the same error at the same point (the ranks were started with different
    arguments): rank 0 prints it, every rank exits with status 2, nobody needs to be aborted."""


def fail(prog: str, message: str, status: int = 2) -> int:
    text = " ".join(str(message).split())
    print(f"{prog}: error: {text}", file=sys.stderr)
    return status


def check_int(flag: str, value, lo: int, hi: int, what: str = "") -> int:
    """``value`` must be a whole number from ``lo`` to ``hi``; else one line naming ``flag`` and the value.

    >>> check_int("-n", 20, 1, MAX_ITERS)
    20
    >>> try:
    ...     check_int("-n", 10**12, 1, MAX_ITERS, "timed iterations")
    ... except UsageError as exc:
    ...     print(exc)
    -n 1000000000000: expected a whole number from 1 to 1000000 (timed iterations)
    """
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UsageError(f"{flag} {value}: expected a whole number from {lo} to {hi}" + (f" ({what})" if what else ""))
    return value


def check_float(flag: str, value, lo: float, hi: float, what: str = "", open_low: bool = False) -> float:
    """``value`` must be a finite number within ``[lo, hi]`` (``(lo, hi]`` with ``open_low``)."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value > lo if open_low else value >= lo) and value <= hi)
    if not ok:
        span = f"above {lo:g} and at most {hi:g}" if open_low else f"from {lo:g} to {hi:g}"
        raise UsageError(f"{flag} {value}: expected a number {span}" + (f" ({what})" if what else ""))
    return float(value)


def check_output_paths(*outputs) -> None:
    """Check, before any work, that every ``(flag, path)`` of ``outputs`` (``path`` ``None``: not
    given) can be written: not a directory, in an existing folder this process can create files in,
    and no two outputs the same file. The folder is probed with a temporary file, removed at once.
    """
    seen = {}
    for flag, path in outputs:
        if path is None:
            continue
        text = os.fspath(path)
        if not text:
            raise UsageError(f"{flag} '': expected a file path")
        if os.path.isdir(text):
            raise UsageError(f"{flag} {text}: is a directory; expected a file path")
        real = os.path.realpath(text)
        if real in seen:
            raise UsageError(f"{flag} {text}: the same file as {seen[real]}; expected a different file for each output")
        seen[real] = f"{flag} {text}"
        folder = os.path.dirname(os.path.abspath(text))
        if not os.path.exists(folder):
            raise UsageError(f"{flag} {text}: directory {folder} does not exist (No such file or directory)")
        if not os.path.isdir(folder):
            raise UsageError(f"{flag} {text}: {folder} is not a directory (Not a directory)")
        try:
            fd, probe = tempfile.mkstemp(prefix=".ccemu-probe-", dir=folder)
        except OSError as exc:
            raise UsageError(f"{flag} {text}: cannot write to directory {folder} ({exc.strerror})") from None
        os.close(fd)
        os.unlink(probe)


def write_atomic(path: str, text: str | bytes) -> None:
    """Write ``text`` (str or bytes) to ``path`` atomically (temporary file + rename): a failed run never leaves a
    partial file."""
    from topologies.io import write_text_atomic

    write_text_atomic(path, text)


def write_all_atomic(items) -> None:
    """Write every ``(path, text or bytes)`` of ``items``, all or none: each goes to a temporary file
    next to its path first; only when all are written are they renamed into place. On a failure
    every temporary file is removed (and files already renamed, should a rename fail, are removed
    too) and the ``OSError`` names the user's path.
    """
    staged = []  # (temporary, path)
    try:
        for path, data in items:
            folder = os.path.dirname(os.path.abspath(path))
            try:
                fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
            except OSError as exc:
                raise _naming(exc, path) from None
            staged.append((tmp, path))
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data.encode("utf-8") if isinstance(data, str) else data)
                os.chmod(tmp, 0o666 & ~_umask())
            except OSError as exc:
                raise _naming(exc, path) from None
    except BaseException:
        for tmp, _ in staged:
            _unlink(tmp)
        raise
    done = []
    for i, (tmp, path) in enumerate(staged):
        try:
            os.replace(tmp, path)
        except OSError as exc:
            for other, _ in staged[i:]:
                _unlink(other)
            for written in done:
                _unlink(written)
            raise _naming(exc, path) from None
        done.append(path)


def _naming(exc: OSError, path) -> OSError:
    """``exc`` as the same kind of error (errno, subclass) naming the user's ``path``, not a temporary file."""
    return exc if exc.errno is None else OSError(exc.errno, exc.strerror, os.fspath(path))


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

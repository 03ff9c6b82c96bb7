"""The benchmark's data plane: a collective run on real, checkable data, timed on this host.

:func:`measure` runs a schedule (the algorithm and parameters the time plane timed) on deterministic
input (:func:`device_input`), in the local executor or across MPI ranks, and returns this host's
wall time per call and the number of elements that differ from the numpy reference (nccl-tests'
``#wrong``).

Memory stays bounded whatever the size: the devices' buffers are cut into column blocks of at most
:data:`BLOCK_BYTES` per process, and each block is a smaller instance of the same collective (every
slot of a device's buffer contributes the same columns), run, timed and checked in turn. The time
per call is the sum of the blocks' times. A block runs the schedule of the same algorithm and
parameters for its own element count.

Host timing repeats each block ``iters`` times, or fewer when a time budget is given (at least
once): emulated times come from the time plane and do not need repeats, so a budget keeps large
sizes from costing ``iters`` full runs of the host.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from . import dtypes, registry

#: Bytes of one column block of a process's device rows (all rows of the process together).
BLOCK_BYTES = 64 * 2**20


@dataclass
class DataRun:
    """What :func:`measure` returns: host seconds per call, the timed iterations per block, the
    number of wrong elements (None without a check) and the number of column blocks."""

    host_s: float
    iters: int
    nwrong: int | None
    blocks: int


def device_input(spec, P: int, count: int, dtype: str, op: str, d: int, runs=None) -> np.ndarray:
    """Deterministic input of device ``d`` (its whole input row, or the columns of ``runs``:
    ``(first column, length)`` pairs, as :func:`block_runs` gives them): small integers, so every
    order of reduction is exact.

    Values are -1, 0 or 1 (0..2 for unsigned types; +-1 for prod), which keeps sums of up to 256
    devices exact even in bfloat16 (``mulsum`` doubles them on odd devices: up to 128). Element ``i``
    is ``(d + i) mod 3 - 1`` (for prod, -1 where ``(7 d + i) mod 5 == 0``, else 1): periodic in ``i``,
    so runs of columns are tiled, not computed. fp8 keeps few integers exact (E5M2 none past 8), so
    there every column holds one -1 and one 1 over the P devices, zeros elsewhere (element ``i`` is
    ``[-1, 0, 1, 0, ...][(d + i) mod max(P, 3)]``): every partial sum is -1, 0 or 1 (-2..2 for mulsum).

    >>> from collectives import registry
    >>> device_input(registry.collective("allreduce"), 4, 6, "int32", "sum", 1).tolist()
    [0, 1, -1, 0, 1, -1]
    >>> device_input(registry.collective("allreduce"), 4, 6, "float8_e4m3", "sum", 1).tolist()  # E4M3 bits
    [0, 56, 0, 184, 0, 56]
    """
    if runs is None:
        runs = [(0, spec.input_shape(P, count)[1])]
    if op == "prod":
        period, first, base = 5, 7 * d, np.array([-1, 1, 1, 1, 1])
    elif dtypes.kernel_format(dtype) in (dtypes.E4M3, dtypes.E5M2):
        period, first = max(P, 3), d
        base = np.zeros(period, np.int64)
        base[0], base[2] = -1, 1
    else:
        period, first, base = 3, d, np.array([0, 1, 2]) - (0 if dtype.startswith("uint") else 1)
    base = _as_dtype(base, dtype)
    out = np.empty(sum(n for _, n in runs), base.dtype)
    at = 0
    for start, n in runs:   # each run tiled from the period
        _tile(out[at:at + n], np.roll(base, -int((start + first) % period)))
        at += n
    return out


def _tile(out: np.ndarray, pattern: np.ndarray) -> None:
    """Fill ``out`` with ``pattern`` repeated, by doubling copies (memory speed)."""
    n = min(len(out), len(pattern))
    out[:n] = pattern[:n]
    while n < len(out):
        m = min(n, len(out) - n)
        out[n:n + m] = out[:m]
        n += m


def _as_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    """Small integers in the storage of ``dtype`` (bfloat16 and fp8 as their bit patterns)."""
    if dtype == "bfloat16":
        return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    fmt = dtypes.kernel_format(dtype)
    if fmt in (dtypes.E4M3, dtypes.E5M2):
        from . import kernels  # its numpy conversions (importing it compiles nothing)
        return kernels._fp8_bits(values.astype(np.float32), fmt)
    return values.astype(dtypes.storage(dtype) if dtype != "float16" else np.float16)


def block_runs(spec, P: int, count: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """The input columns of elements ``lo..hi-1`` of every slot, as runs ``(first column, length)``
    (one per slot): what a block of ``hi - lo`` elements per slot reads of a device's input row (a
    row of ``slots x count`` elements)."""
    slots = spec.input_shape(P, max(count, 1))[1] // max(count, 1)
    return [(s * count + lo, hi - lo) for s in range(slots)] if hi > lo else []


def measure(collective: str, P: int, count: int, algorithm: str, params: dict | None = None, dtype: str = "float32",
            op: str = "sum", root: int = 0, topology=None, comm=None, iters: int = 20, warmup: int = 1,
            check: bool = True, places=(False, True), budget_s: float | None = None,
            block_bytes: int = BLOCK_BYTES) -> list[DataRun]:
    """Run ``collective`` on real data and time it on this host (see the module docstring).

    Parameters
    ----------
    collective, algorithm, params, dtype, op, root, topology
        The call: ``count`` elements per slot on ``P`` devices, the algorithm and parameters to run.
    comm : mpi4py communicator, optional
        Run across its ranks, each hosting ``P / size`` consecutive devices (collective over ``comm``).
    iters, warmup : int
        Timed and untimed calls per block. Out-of-place calls start from fresh input; in-place calls
        run on the buffers as the previous call left them, as repeated in-place calls do.
    check : bool
        Run once more on fresh input and count the elements that differ from the reference.
    places : tuple of bool
        The runs to make, each out of place (False) or in place (True); they share each block's
        input and expected result. One :class:`DataRun` per entry is returned.
    budget_s : float, optional
        Host seconds the timed calls of one run (all its blocks) may take; fewer iterations (at
        least one) when the budget would be exceeded.
    """
    spec = registry.collective(collective)
    params = dict(params or {})
    storage = dtype if dtypes.bits_only(dtype) else None  # bfloat16, fp8: named, held as bits
    size, rank = (1, 0) if comm is None else (comm.Get_size(), comm.Get_rank())
    k = P // size
    devices = range(rank * k, rank * k + k)
    slots = spec.input_shape(P, max(count, 1))[1] // max(count, 1)
    per_col = k * slots * dtypes.itemsize(dtype)
    width = max(1, min(count, block_bytes // max(per_col, 1))) if count else 0
    bounds = [(lo, min(count, lo + width)) for lo in range(0, count, width)] if count else [(0, 0)]
    from . import api

    host = [0.0] * len(places)
    wrong = [0 if check else None] * len(places)
    timed = [iters] * len(places)
    for lo, hi in bounds:
        runs = block_runs(spec, P, count, lo, hi)
        rows = _rows(spec, P, hi - lo, dtype, op, devices, runs)
        job = api.prepare(collective, rows, algorithm, op=op, root=root,
                          dtype=storage, comm=comm, topology=topology, **params)
        work = job.inputs.copy()
        want = _expected(spec, P, hi - lo, runs, dtype, op, root, devices, storage,
                         rows if k == P else None) if check else None
        del rows
        for j, in_place in enumerate(places):
            def call():
                if not in_place:
                    np.copyto(work, job.inputs)
                job.execute(work)

            np.copyto(work, job.inputs)
            t0 = time.perf_counter()
            for _ in range(max(warmup, 1 if budget_s is not None else 0)):
                call()
            warm = (time.perf_counter() - t0) / max(warmup, 1)
            n = iters
            if budget_s is not None:
                if comm is not None:
                    warm = comm.allreduce(warm, op=_max_op())
                n = max(1, min(iters, int(budget_s / len(bounds) / max(warm, 1e-9))))
            timed[j] = min(timed[j], n)
            if comm is not None:
                comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(n):
                call()
            host[j] += (time.perf_counter() - t0) / n
            if check:
                np.copyto(work, job.inputs)
                job.execute(work)
                got = job.result(work)
                if want is not None:
                    wrong[j] += int(np.count_nonzero(np.asarray(got).view(want.dtype) != want))
        del job, work, want
    if check and comm is not None:
        wrong = [comm.allreduce(w) for w in wrong]
    return [DataRun(h, t, w, len(bounds)) for h, t, w in zip(host, timed, wrong)]


def _rows(spec, P, count, dtype, op, devices, runs) -> np.ndarray:
    """The block input of ``devices``, one row each."""
    first = device_input(spec, P, count, dtype, op, devices[0], runs=runs)
    out = np.empty((len(devices), len(first)), first.dtype)
    out[0] = first
    for r, d in enumerate(devices[1:], 1):
        out[r] = device_input(spec, P, count, dtype, op, d, runs=runs)
    return out


def _expected(spec, P, count, runs, dtype, op, root, devices, storage, every=None):
    """The expected result rows of ``devices`` for one block (the reference on all devices' block
    input: ``every``, when the caller has it)."""
    from .api import reference

    if every is None:
        every = _rows(spec, P, count, dtype, op, range(P), runs)
    ref = reference(spec.name, every, op, root, dtype=storage)
    if ref.ndim == 1:  # a root-only result (reduce): the root's row, on the process hosting it
        return ref if root in devices else None
    return ref[list(devices)]


def _max_op():
    from mpi4py import MPI
    return MPI.MAX


def memory_needed(collective: str, P: int, count: int, dtype: str, processes: int = 1) -> int:
    """Bytes one process needs for a :func:`measure` call: its block's input and work buffers, and
    the reference's input and result over all P devices for the same columns."""
    spec = registry.collective(collective)
    slots = spec.input_shape(P, max(count, 1))[1] // max(count, 1)
    k = P // processes
    per_col = k * slots * dtypes.itemsize(dtype)
    width = max(1, min(count, BLOCK_BYTES // max(per_col, 1))) if count else 0
    block = per_col * width
    return 2 * block + 2 * block * processes

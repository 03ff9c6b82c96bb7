"""Host wall time of the MPI executor's ring allreduce against the native ``comm.Allreduce``.

One device per rank, float32, sum. For each size the variants run in alternation (so that noise
hits them alike), each after a barrier; an iteration's time is the slowest rank's (a collective
ends when its last rank does), the table shows the median over iterations:

- ``native us``: ``comm.Allreduce(send, recv)``;
- ``executor us``: the same work through the executor: copy ``send`` into a preallocated work
  buffer (what Allreduce does into ``recv``) and :func:`~collectives.executors.mpi.execute` the ring
  schedule on it;
- ``run() us``: :func:`collectives.executors.mpi.run` end to end: argument agreement, cached
  schedule, load into a *new* work buffer that becomes the returned result, steps. The new buffer
  is fresh memory on every call, so this column also pays the page faults a caller-owned ``recv``
  avoids.

Run it as::

    mpiexec -n 2 python -m bench.mpi_vs_native
    mpiexec -n 4 python -m bench.mpi_vs_native --max-mib 64 --iters 7

This measures the host, not the emulated hardware: it says how close the data plane gets to the
MPI library's own allreduce on this machine. With more ranks than cores MPI's busy polling makes
both columns slow and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np

from collectives import api, kernels
from collectives.executors import mpi as mpi_exec

MPI = mpi_exec.MPI
MiB = 1 << 20


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.mpi_vs_native", description=__doc__.splitlines()[0])
    parser.add_argument("--min-mib", type=int, default=1, help="smallest message, MiB per rank (default 1)")
    parser.add_argument("--max-mib", type=int, default=256, help="largest message, MiB per rank (default 256)")
    parser.add_argument("--iters", type=int, default=7,
                        help="timed iterations per size, more below 8 MiB; the median is shown (default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per size (default 2)")
    args = parser.parse_args(argv)
    if args.min_mib < 1 or args.max_mib < args.min_mib or args.iters < 1 or args.warmup < 0:
        parser.error("need 1 <= --min-mib <= --max-mib, --iters >= 1, --warmup >= 0")
    return args


def sizes_mib(lo: int, hi: int) -> list[int]:
    """Powers of two from ``lo`` to ``hi`` MiB (``hi`` included)."""
    out, s = [], lo
    while s <= hi:
        out.append(s)
        s *= 2
    if out[-1] != hi:
        out.append(hi)
    return out


def iterations(mib: int, least: int) -> int:
    """Timed iterations for a size: at least ``least``, more for small sizes (up to 64 at 1 MiB), so
    that every size gets a similar time budget and a short burst of noise does not set the median."""
    return max(least, min(64, 64 // mib))


def timed(comm, fn) -> float:
    """Seconds of ``fn()`` on the slowest rank, all ranks starting together after a barrier."""
    comm.Barrier()
    t0 = MPI.Wtime()
    fn()
    elapsed = MPI.Wtime() - t0
    return comm.allreduce(elapsed, op=MPI.MAX)


def measure(comm, nbytes: int, iters: int, warmup: int) -> dict:
    """Median seconds of the native Allreduce, the executor's steps, and ``run()`` for ``nbytes`` per rank."""
    n = nbytes // 4
    rank = comm.Get_rank()
    # Small integers: every summation order gives the same float32 bits, so results can be compared.
    send = ((np.arange(n, dtype=np.int64) * 7 + rank) % 13).astype(np.float32)
    recv = np.empty_like(send)
    local = send[None, :]
    schedule = api.build_schedule("allreduce", "ring", comm.Get_size(), n)
    work = np.empty((1, n), dtype=np.float32)
    box = [None]

    def executor():
        work[0] = send
        mpi_exec.execute(schedule, work, comm, rank, kernels.SUM, kernels.NATIVE)

    def run():
        box[0] = None  # as a loop ``out = run(...)`` would: the previous result is freed first
        box[0] = mpi_exec.run("allreduce", local, comm, "ring", "sum")

    variants = {"native": lambda: comm.Allreduce(send, recv, op=MPI.SUM), "executor": executor, "run": run}
    times = {key: [] for key in variants}
    for i in range(warmup + iters):
        for key, fn in variants.items():
            seconds = timed(comm, fn)
            if i >= warmup:
                times[key].append(seconds)
    if not (np.array_equal(box[0][0], recv) and np.array_equal(work[0], recv)):
        raise AssertionError(f"executor result differs from the native Allreduce at {nbytes} bytes")
    return {key: statistics.median(values) for key, values in times.items()}


def main(argv=None) -> int:
    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    with mpi_exec.abort_on_error(comm):
        if rank == 0:
            print(f"# ring allreduce, float32 sum, {comm.Get_size()} ranks x 1 device, median of >= {args.iters} "
                  f"iterations (slowest rank per iteration); MPI: {MPI.Get_library_version().splitlines()[0].strip()}")
            print(f"{'size':>9} {'native us':>11} {'executor us':>12} {'ratio':>6} {'run() us':>11} {'ratio':>6}")
        for mib in sizes_mib(args.min_mib, args.max_mib):
            t = measure(comm, mib * MiB, iterations(mib, args.iters), args.warmup)
            if rank == 0:
                print(f"{mib:>6}MiB {t['native'] * 1e6:>11.0f} {t['executor'] * 1e6:>12.0f} "
                      f"{t['executor'] / t['native']:>6.2f} {t['run'] * 1e6:>11.0f} {t['run'] / t['native']:>6.2f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

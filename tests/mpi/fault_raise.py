"""A rank that fails mid-collective must not leave the others waiting (run by tests/test_mpi_launch.py).

Run under ``mpiexec -n N`` (N >= 2): in the middle of a ring allreduce, after rank 1 has posted its
first messages while the others wait for its next ones, rank 1 raises (``--raise``, the default),
calls ``sys.exit`` (``--exit``) or is killed by a signal (``--kill``, as a crash). Inside
:func:`collectives.executors.mpi.abort_on_error` it prints ``rank 1: RuntimeError: ...`` (or
``SystemExit: 3``) and aborts the job; with ``--bare`` (no guard, as a program that never heard of
it) the executor's exit hook prints ``rank 1: exited in the middle of a collective`` and aborts; a
killed rank says nothing and the launcher ends the others. Either way every rank ends promptly and
the launcher exits non-zero. Not collected by pytest (no ``test_`` prefix); importing it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

import numpy as np

from collectives import kernels
from collectives.executors import mpi as mpi_exec

FAILING_RANK = 1
MESSAGE = "injected failure mid-collective"


def _failing_reduce(*args):
    raise RuntimeError(MESSAGE)


def _exiting_reduce(*args):
    sys.exit(3)  # a library deep inside gives up: SystemExit is no Exception, so no Abort


def _killed_reduce(*args):
    os.kill(os.getpid(), signal.SIGKILL)  # a crash: the process vanishes without a word


def main() -> int:
    how = sys.argv[1] if len(sys.argv) > 1 else "--raise"
    guard = contextlib.nullcontext() if "--bare" in sys.argv else None
    comm = mpi_exec.MPI.COMM_WORLD
    if comm.Get_size() < 2:
        print("fault_raise.py needs at least 2 ranks", file=sys.stderr)
        return 2
    with guard or mpi_exec.abort_on_error(comm):
        data = np.ones((1, 1 << 16), np.float32)
        mpi_exec.run("allreduce", data, comm, "ring")  # one good call: the failure comes mid-job
        if comm.Get_rank() == FAILING_RANK:
            # The executor calls it after posting the step's messages.
            kernels.reduce_chunk = {"--raise": _failing_reduce, "--exit": _exiting_reduce, "--kill": _killed_reduce}[how]
        for _ in range(3):
            mpi_exec.run("allreduce", data, comm, "ring")
    print(f"rank {comm.Get_rank()}: finished, but rank {FAILING_RANK} should have aborted the job", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

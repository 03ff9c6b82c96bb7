"""Whether we run under MPI, without importing mpi4py when we do not."""

from __future__ import annotations

import os
import sys
import time

_ENV_HINTS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD")


def launched_by_mpi() -> bool:
    """True when an MPI launcher started this process (then mpi4py is imported)."""
    return any(k in os.environ for k in _ENV_HINTS)


def world():
    """``(comm, rank, size)``; ``(None, 0, 1)`` outside an MPI launch."""
    if not launched_by_mpi():
        return None, 0, 1
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return comm, comm.Get_rank(), comm.Get_size()


def several_ranks() -> bool:
    """True when MPI is running with more than one rank (mpi4py already imported and initialised)."""
    if "mpi4py.MPI" not in sys.modules:
        return False
    from mpi4py import MPI

    return MPI.Is_initialized() and not MPI.Is_finalized() and MPI.COMM_WORLD.Get_size() > 1


def abort_others(status: int) -> None:
    """After an error on this rank, end all ranks with ``status`` so none waits forever."""
    if several_ranks():
        from mpi4py import MPI

        sys.stderr.flush()
        sys.stdout.flush()
        time.sleep(0.2)  # let the launcher forward the error line before the job is killed
        MPI.COMM_WORLD.Abort(status)
        os._exit(status)  # MPICH's Abort has been seen to return; this rank must not go on

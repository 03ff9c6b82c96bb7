"""An mpi4py communicator whose collectives run on emulated hardware: one line in an existing program.

``from collectives.mpi import EmulatedComm`` is the entry point; the implementation and the
description of what each call runs as are in :mod:`collectives.comm`.
"""

from .comm import (BLOCKING, CALLS, DEFAULT_BW_GBPS, DEFAULT_LAT_US, MPI, NONBLOCKING, OBJECT,  # noqa: F401
                   CallStats, EmulatedComm, EmulatedRequest)

__all__ = ["EmulatedComm", "EmulatedRequest", "CallStats", "MPI", "DEFAULT_BW_GBPS", "DEFAULT_LAT_US"]

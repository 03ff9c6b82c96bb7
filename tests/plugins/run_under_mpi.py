"""``mpiexec -n R python tests/plugins/run_under_mpi.py``: the dummy plug-in on the MPI executor.

Each rank hosts two devices; every rank checks its rows against the local executor's result and
prints one line; exit status 1 on a mismatch.
"""

import os
import sys

import numpy as np


def main() -> int:
    from mpi4py import MPI

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import dummy

    import collectives
    from collectives.executors import mpi as mpi_exec

    dummy.register()
    comm = MPI.COMM_WORLD
    k, rank = 2, comm.Get_rank()
    P = k * comm.Get_size()
    full = np.arange(P * 5, dtype=np.float32).reshape(P, 5) - 7
    mine = full[rank * k:(rank + 1) * k]
    ok = True
    for collective, algorithm, root in ((dummy.COLLECTIVE, "star", P - 1), ("allreduce", dummy.ALGORITHM, 0)):
        rows = slice(rank * k, (rank + 1) * k)
        got = mpi_exec.run(collective, mine, comm, algorithm=algorithm, root=root)
        want = collectives.run(collective, full, algorithm=algorithm, root=root)[rows]
        ok &= bool(np.array_equal(got, want) and np.array_equal(want, collectives.reference(collective, full,
                                                                                            root=root)[rows]))
    print(f"rank {rank}: {'OK' if ok else 'MISMATCH'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

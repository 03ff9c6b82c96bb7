"""An mpi4py communicator whose collectives run on an emulated system: one line in an existing program.

::

    from mpi4py import MPI
    from collectives.mpi import EmulatedComm
    from topologies import preset

    # mpiexec -n 2: each rank stands for one 8-GPU server of a 2-node system
    comm = EmulatedComm(MPI.COMM_WORLD, topology=preset("hgx-h20", nodes=2), devices_per_rank=8)
    comm.Allreduce(send, recv, op=MPI.SUM)   # same result as MPI.COMM_WORLD.Allreduce
    tp = comm.Split(comm.Get_rank() // 2)    # an EmulatedComm too, timed on its members' devices
    comm.report()                            # the emulated timeline per group and call

:class:`EmulatedComm` is an ``mpi4py.MPI.Intracomm`` (a subclass sharing the wrapped communicator's
handle: ``isinstance(comm, MPI.Intracomm)`` holds, and mpi4py functions that need a real
communicator, such as ``MPI.Win.Create``, take it). Per call, both planes:

- **data plane**: the call's data moves through the MPI executor (:mod:`collectives.executors.mpi`)
  on a ccemu schedule, one device per rank (the algorithm the communicator names, or the one that
  costs the host least, :func:`~collectives.comm.jobs.data_algorithm`), so the program gets the
  same result as from the wrapped communicator (bit for bit where the reduction order does not
  matter: integers, min/max, logical and bitwise ops, exactly representable sums);
- **time plane**: the call is timed on the communicator's sub-system (the devices of its members,
  :func:`topologies.whatif.select_devices`; with ``devices_per_rank=k`` rank r brings devices
  ``r*k .. r*k+k-1``, each holding the rank's buffer) with :func:`collectives.simulate` and the
  library model's algorithm (``algorithm="auto"``, ``library=``), cached per call signature.

What each call runs as (every call of MPI-3 on an intracommunicator, blocking and nonblocking):

==========================================  ===================================================
``Allreduce``, ``Bcast``, ``Reduce``,       the collective of that name (``Reduce_scatter_block``:
``Allgather``, ``Alltoall``,                ``reduce_scatter``)
``Reduce_scatter_block``, ``Alltoallv``
``Allgatherv``                              ``allgather`` of blocks padded to the largest count
                                            (timed so: the transfers it makes)
``Reduce_scatter``                          ``reduce_scatter`` of blocks padded to the largest count
``Gather``, ``Gatherv``                     ``alltoallv`` whose only non-zero column is the root's
                                            (a linear gather), timed as the ``direct`` pattern of
                                            every device sending to the root's first device
``Scatter``, ``Scatterv``                   ``alltoallv`` whose only non-zero row is the root's
``Scan``, ``Exscan``                        a linear scan: ``alltoallv`` in which rank i sends its
                                            buffer to every rank after it (and itself for Scan),
                                            then each rank reduces what it received in rank order
                                            with ccemu's kernels; timed as that ``direct`` pattern
                                            over the devices
``Alltoallw``                               ``alltoallv`` of the blocks' bytes (uint8), any
                                            predefined datatypes
``Barrier``, ``Ibarrier``                   no data: the header exchange every call makes (one
                                            ``MPI_Allreduce``/``MPI_Iallreduce`` of the ranks'
                                            clocks), timed as an allreduce of no data
``I...`` (``Iallreduce``, ...)              the blocking call's data plane, at the call
pickle-based ``allreduce``, ``bcast``, ...  the objects' pickles as uint8: ``bcast`` a broadcast,
                                            ``gather``/``scatter``/``alltoall`` alltoallv patterns,
                                            ``allgather``/``reduce``/``allreduce``/``scan``/
                                            ``exscan`` an allgather of padded pickles (then the op
                                            in rank order, ``functools.reduce``); each is timed as
                                            its buffer call at the pickled size (the largest rank's)
==========================================  ===================================================

The datatypes and ops are table-driven (:mod:`collectives.comm.buffers`): whatever
:data:`collectives.dtypes.TABLE` and :data:`collectives.ops.MPI_OPS` hold, in a pair
:func:`collectives.ops.check_pair` accepts, is emulated. A call with another op or datatype (a user
op, a derived datatype), or a buffer the parser does not take, is passed to the wrapped
communicator unchanged: "delegated", counted as such in ``stats`` and the report, and still timed
when its size and datatype are known (mpi4py raises its own error for a malformed call). Every
rank must make the same calls with matching buffers, as MPI requires; the ranks agree on emulating
or delegating each call in its header, so they never take different paths.

Nonblocking calls move their data when they are made (MPI allows it: the buffers belong to the call
until it completes) and return an ``MPI.Request`` (:mod:`collectives.comm.requests`); ``Wait`` and
``Test`` complete them on the emulated clock, which models the overlap of compute and
communication. A program that needs a peer's point-to-point message between a nonblocking call and
its ``Wait`` to make progress, or that starts nonblocking collectives on different communicators in
different orders on different ranks (both legal MPI), deadlocks here; ``Ibarrier`` alone is truly
nonblocking.

The emulated clock (:mod:`collectives.comm.session`): ``comm.Wtime()``, and with
``patch_wtime=True`` ``MPI.Wtime`` itself, returns emulated seconds: host compute between calls
times ``compute_factor``, plus each collective's emulated time; a collective ends at the same
instant on all its members (the latest member's arrival plus its time). So an unchanged OSU-style
loop prints the modelled machine's latency: with ``compute_factor=0`` exactly ``simulate()``'s time
per call. Point-to-point calls are not emulated: their host time counts as compute.

Groups at the same time: a communicator made by ``Split``, ``Split_type`` or ``Create`` knows its
siblings (the other colors, exchanged once when it is made), and each call on it is timed together
with the same call on every sibling of its size, on the whole system
(:func:`collectives.concurrent.simulate_concurrent`: they share the links they have in common), as
an SPMD program makes them (every TP group's allreduce at once); ``Dup`` keeps the siblings,
``Create_group`` (collective over the group alone) has none. ``concurrent_groups=False`` times every
group alone on its sub-system. Calls of different groups at different moments are not seen
together: each rank knows only its own calls.

Calls not emulated: the MPI-4 persistent collectives (``Allreduce_init``, ...), neighborhood
collectives, intercommunicators, and communicators made by ``Create_cart``/``Create_graph``/
``Create_intercomm`` (plain mpi4py communicators); ``Idup`` duplicates at once and returns a
completed request.
"""

from .comm import BLOCKING, CALLS, DEFAULT_BW_GBPS, DEFAULT_LAT_US, MPI, NONBLOCKING, OBJECT, EmulatedComm
from .requests import EmulatedRequest
from .session import CallStats

__all__ = ["EmulatedComm", "EmulatedRequest", "CallStats", "MPI", "BLOCKING", "NONBLOCKING", "OBJECT", "CALLS",
           "DEFAULT_BW_GBPS", "DEFAULT_LAT_US"]

"""An mpi4py communicator whose collectives run on emulated hardware: one line in an existing program.

::

    from mpi4py import MPI
    from collectives.mpi import EmulatedComm
    from topologies import preset

    # mpiexec -n 2: each rank stands for one 8-GPU server of a 2-node DGX H100 system
    comm = EmulatedComm(MPI.COMM_WORLD, topology=preset("dgx-h100", nodes=2), devices_per_rank=8)
    comm.Allreduce(send, recv, op=MPI.SUM)   # same result as MPI.COMM_WORLD.Allreduce
    comm.report()                            # calls, bytes and emulated time per collective

Both planes of the design, per call:

- **data plane**: the call's data moves through the MPI executor
  (:mod:`collectives.executors.mpi`) with one device per rank, so the program gets the same result
  as from the wrapped communicator (bit for bit where the reduction order does not matter:
  integers, min/max, exactly representable sums);
- **time plane**: the call is timed on ``topology`` with :func:`collectives.simulate` for
  ``P = comm size x devices_per_rank`` devices, each holding this call's per-rank buffer (so one
  rank can stand for a node of ``devices_per_rank`` accelerators). The emulated time never depends
  on this host; it is cached per (collective, bytes, dtype).

What is emulated: ``Allreduce``, ``Allgather``, ``Alltoall``, ``Alltoallv``, ``Reduce_scatter_block``,
``Bcast``, ``Reduce`` with mpi4py's buffer specifications (an array, ``[buf, MPI.FLOAT]``,
``[buf, count, MPI.DOUBLE]``, ``[buf, (count, displ), type]``; for ``Alltoallv`` mpi4py's vector forms
``[buf, counts]``, ``[buf, (counts, displs), type]``, ``[buf, counts, displs, type]``; ``MPI.IN_PLACE``
or ``None`` as the send buffer) and ops ``MPI.SUM``, ``PROD``, ``MIN``, ``MAX``. A call with another op,
a datatype ccemu has no kernels for (a derived type, ``MPI.C_BOOL``, complex, ...) or a buffer the
parser does not take is passed to the wrapped communicator unchanged ("delegated": mpi4py then raises
its own error for a malformed call); it is still counted and timed when its datatype has a size ccemu
knows. ``Bcast`` and
``Reduce`` use the wrapped communicator for the data while no broadcast/reduce algorithm is
registered, and have no emulated time then. ``Barrier`` is passed through and counted. Everything
else (``Get_rank``, ``Send``, lowercase pickle-based collectives, ...) is delegated by
``__getattr__`` and not emulated.

Every rank must make the same calls with matching buffers, as MPI requires. The ranks agree on
emulating or delegating a call through the executor's argument check: when one rank cannot take its
buffers (say a derived datatype there, a predefined one elsewhere) every rank delegates that call.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import api, dtypes, registry
from .executors import mpi as _executor

MPI = _executor.MPI

#: Bandwidth (GB/s per device, each direction) and latency (us per hop) of the generic default
#: topology: one non-blocking switch, the :func:`topologies.switch` defaults (a 200 Gb/s port).
DEFAULT_BW_GBPS = 25.0
DEFAULT_LAT_US = 1.0

#: Algorithms the data plane falls back to when the time plane's choice cannot run with one device per
#: rank (an algorithm that needs the emulated topology, such as ``in_network``).
DEFAULT_ALGORITHMS = {"allreduce": "ring", "allgather": "ring", "reduce_scatter": "ring", "alltoall": "pairwise"}

#: What ``EmulatedComm._try`` returns when the call goes to the wrapped communicator instead.
DELEGATE = object()

_OPS = ((MPI.SUM, "sum"), (MPI.PROD, "prod"), (MPI.MIN, "min"), (MPI.MAX, "max"))
_KINDS = (*registry.list_collectives(), "barrier")


@dataclass
class CallStats:
    """Totals of one kind of call on this rank. ``nbytes`` is nccl-tests' S summed over calls."""

    calls: int = 0
    nbytes: int = 0
    emulated_s: float = 0.0
    host_s: float = 0.0
    delegated: int = 0
    untimed: int = 0
    algorithms: set = field(default_factory=set)


@dataclass
class _Message:
    """A parsed buffer specification: a flat numpy view over the entries the call uses."""

    array: np.ndarray  # 1-D, ``count * max(blocks, 1)`` entries
    count: int  # entries per block (per process for the block collectives)
    dtype: str  # ccemu dtype name


class EmulatedComm:
    """Wrap an mpi4py ``Intracomm``: its collectives move data through the MPI executor and are timed
    on an emulated topology.

    Creating it is collective over ``comm`` (the executor's messages travel on a duplicate of
    ``comm``, so they never match the program's own receives).

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
        The communicator to wrap (its results are what the emulated calls reproduce).
    topology : topologies.Topology, optional
        The emulated hardware, with ``comm.Get_size() * devices_per_rank`` devices. Default: a
        generic non-blocking switch, ``topologies.switch(P, bw_GBps=DEFAULT_BW_GBPS,
        lat_us=DEFAULT_LAT_US)``; pass a preset for numbers that mean something.
    algorithm : str
        ``"auto"`` (default): the fastest algorithm and parameters on ``topology``
        (``simulate(..., algorithm="auto")``). A name: used for every collective that registers
        it (the others use the ``"auto"`` choice); ``ValueError`` if no collective registers it.
    devices_per_rank : int
        Emulated devices each rank stands for in the time plane.

    Examples
    --------
    >>> import numpy as np
    >>> from collectives.mpi import EmulatedComm, MPI
    >>> comm = EmulatedComm(MPI.COMM_WORLD)
    >>> x = np.ones(4, np.float32)
    >>> comm.Allreduce(MPI.IN_PLACE, x)
    >>> bool((x == comm.Get_size()).all()), comm.stats["allreduce"].calls
    (True, 1)
    """

    def __init__(self, comm, topology=None, algorithm: str = "auto", devices_per_rank: int = 1):
        if isinstance(devices_per_rank, bool) or not isinstance(devices_per_rank, (int, np.integer)) \
                or devices_per_rank < 1:
            raise ValueError(f"devices_per_rank={devices_per_rank!r}; expected an integer >= 1")
        self._comm = comm
        self.devices_per_rank = int(devices_per_rank)
        self.num_devices = comm.Get_size() * self.devices_per_rank
        self.topology = self._check_topology(topology)
        if algorithm != "auto" and not any(algorithm in registry.list_algorithms(c) for c in registry.COLLECTIVES):
            known = sorted({a for c in registry.COLLECTIVES for a in registry.list_algorithms(c)})
            raise ValueError(f"unknown algorithm {algorithm!r}; expected 'auto' or one of {', '.join(known)}")
        self.algorithm = algorithm
        self.stats = {kind: CallStats() for kind in _KINDS}
        self._timing = {}  # (collective, nbytes, dtype) -> (algorithm or None, emulated seconds or None)
        self._xcomm = comm.Dup()

    def __getattr__(self, name):
        if name.startswith("_"):  # never recurse while __init__ has not set _comm yet
            raise AttributeError(name)
        return getattr(self._comm, name)

    def close(self) -> None:
        """Free the duplicate communicator the executor uses (collective). The wrapped one stays."""
        if self._xcomm is not None:
            self._xcomm.Free()
            self._xcomm = None

    # -- the emulated calls ---------------------------------------------------------------------
    #
    # Each call parses its buffers, then goes through the executor, whose first act is an agreement
    # between the ranks: a rank that cannot take its buffers passes ``None`` and every rank then
    # falls back to the wrapped communicator together, so no rank is left in the other path.

    def Allreduce(self, sendbuf, recvbuf, op=MPI.SUM):
        start = time.perf_counter()
        recv = _message(recvbuf, 0, writable=True)
        send = recv if _in_place(sendbuf) else _message(sendbuf, 0)
        opname = _op_name(op)
        out = DELEGATE
        if opname is not None:  # the op is the same on every rank, as MPI requires
            out = self._try("allreduce", send if _compatible(send, recv) else None, op=opname)
        if out is DELEGATE:
            self._comm.Allreduce(sendbuf, recvbuf, op)
        else:
            recv.array[...] = out[0]
        self._account("allreduce", recv, start, out is DELEGATE)

    def Allgather(self, sendbuf, recvbuf):
        start = time.perf_counter()
        size, rank = self._comm.Get_size(), self._comm.Get_rank()
        recv = _message(recvbuf, size, writable=True)
        if recv is not None and _in_place(sendbuf):
            m = recv.count
            send = _Message(recv.array[rank * m:(rank + 1) * m], m, recv.dtype)
        else:
            send = _message(sendbuf, 0)
        out = self._try("allgather", send if _compatible(send, recv) else None)
        if out is DELEGATE:
            self._comm.Allgather(sendbuf, recvbuf)
        else:
            recv.array[...] = out[0]
        self._account("allgather", recv, start, out is DELEGATE)

    def Alltoall(self, sendbuf, recvbuf):
        start = time.perf_counter()
        size = self._comm.Get_size()
        recv = _message(recvbuf, size, writable=True)
        send = recv if _in_place(sendbuf) else _message(sendbuf, size)
        out = self._try("alltoall", send if _compatible(send, recv) else None)
        if out is DELEGATE:
            self._comm.Alltoall(sendbuf, recvbuf)
        else:
            recv.array[...] = out[0]
        self._account("alltoall", recv, start, out is DELEGATE)

    def Alltoallv(self, sendbuf, recvbuf):
        """``MPI.Comm.Alltoallv`` through the ``alltoallv`` collective: rank i's ``sendcounts[j]``
        elements at ``sdispls[j]`` land in rank j's receive buffer at its ``rdispls[i]``.

        The ranks first exchange their counts (one ``Allgather``): a negative count, a block past
        the end of its buffer, or a receiver whose ``recvcounts[i]`` differs from what rank i sends
        it raises ``ValueError`` on every rank, naming the value; nothing is exchanged then."""
        start = time.perf_counter()
        size = self._comm.Get_size()
        error = None
        try:
            recv = _vmessage(recvbuf, size, "recv", writable=True)
            send = recv if _in_place(sendbuf) else _vmessage(sendbuf, size, "send")
        except (TypeError, ValueError) as exc:
            recv = send = None
            error = exc
        counts = self._agree_v(send, recv, error)
        out = DELEGATE
        if counts is not None:
            out = self._try_v(send, counts)
        if out is DELEGATE:
            self._comm.Alltoallv(sendbuf, recvbuf)
        else:
            col = counts.matrix[:, self._comm.Get_rank()]
            at = 0
            for n, d in zip(col.tolist(), recv.displs.tolist()):
                recv.array[d:d + n] = out[0, at:at + n]
                at += n
        self._account_v(counts, recv, start, out is DELEGATE)

    def Reduce_scatter_block(self, sendbuf, recvbuf, op=MPI.SUM):
        start = time.perf_counter()
        size = self._comm.Get_size()
        if _in_place(sendbuf):  # the input is the whole receive buffer, the result its first block
            send = _message(recvbuf, size, writable=True)
            recv = None if send is None else _Message(send.array[:send.count], send.count, send.dtype)
        else:
            recv = _message(recvbuf, 0, writable=True)
            send = _message(sendbuf, size)
        opname = _op_name(op)
        out = DELEGATE
        if opname is not None:
            out = self._try("reduce_scatter", send if _compatible(send, recv) else None, op=opname)
        if out is DELEGATE:
            self._comm.Reduce_scatter_block(sendbuf, recvbuf, op)
        else:
            recv.array[...] = out[0]
        self._account("reduce_scatter", recv, start, out is DELEGATE)

    def Bcast(self, buf, root: int = 0):
        start = time.perf_counter()
        at_root = self._comm.Get_rank() == root
        msg = _message(buf, 0, writable=not at_root)  # the root only reads its buffer
        out = DELEGATE
        if registry.list_algorithms("broadcast"):
            out = self._try("broadcast", msg, root=root)
        if out is DELEGATE:
            self._comm.Bcast(buf, root)
        elif not at_root:
            msg.array[...] = out[0]
        self._account("broadcast", msg, start, out is DELEGATE)

    def Reduce(self, sendbuf, recvbuf, op=MPI.SUM, root: int = 0):
        start = time.perf_counter()
        at_root = self._comm.Get_rank() == root
        recv = _message(recvbuf, 0, writable=True) if at_root else None  # ignored off the root, as in MPI
        send = recv if at_root and _in_place(sendbuf) else _message(sendbuf, 0)
        opname = _op_name(op)
        out = DELEGATE
        if opname is not None and registry.list_algorithms("reduce"):
            usable = send is not None and (not at_root or _compatible(send, recv))
            out = self._try("reduce", send if usable else None, op=opname, root=root)
        if out is DELEGATE:
            self._comm.Reduce(sendbuf, recvbuf, op, root)
        elif at_root:
            recv.array[...] = out
        self._account("reduce", send, start, out is DELEGATE)

    def Barrier(self):
        start = time.perf_counter()
        self._comm.Barrier()
        entry = self.stats["barrier"]
        entry.calls += 1
        entry.delegated += 1
        entry.untimed += 1  # no schedule: a barrier moves no data
        entry.host_s += time.perf_counter() - start

    # -- report ---------------------------------------------------------------------------------

    def report(self, file=sys.stdout, root: int | None = 0) -> str:
        """The per-call table (kinds that were called) as text; printed to ``file`` on rank ``root``.

        Columns: calls, total bytes (nccl-tests' S), emulated seconds on the topology, host wall
        seconds of the calls here, calls delegated to the wrapped communicator, algorithms used.
        ``root=None`` prints on every rank, ``file=None`` prints nothing.
        """
        head = (f"# EmulatedComm: {self.num_devices} devices ({self._comm.Get_size()} ranks x "
                f"{self.devices_per_rank}) on {self.topology.name}")
        cols = f"{'call':<15} {'calls':>7} {'bytes':>14} {'emulated s':>12} {'host s':>10} {'delegated':>9}  algorithm"
        lines = [head, cols]
        for kind, s in self.stats.items():
            if not s.calls:
                continue
            emu = "-" if s.untimed == s.calls else f"{s.emulated_s:.6g}"
            algs = ",".join(sorted(s.algorithms)) or "-"
            lines.append(f"{kind:<15} {s.calls:>7} {s.nbytes:>14} {emu:>12} {s.host_s:>10.4g} {s.delegated:>9}  {algs}")
        text = "\n".join(lines)
        if file is not None and (root is None or self._comm.Get_rank() == root):
            print(text, file=file, flush=True)
        return text

    # -- internals ------------------------------------------------------------------------------

    def _check_topology(self, topology):
        if topology is None:
            from topologies import switch

            return switch(self.num_devices, bw_GBps=DEFAULT_BW_GBPS, lat_us=DEFAULT_LAT_US)
        n = getattr(topology, "num_devices", None)
        if n != self.num_devices:
            raise ValueError(f"topology {getattr(topology, 'name', topology)!r} has {n} devices; expected "
                             f"{self._comm.Get_size()} ranks x {self.devices_per_rank} devices per rank = "
                             f"{self.num_devices}")
        return topology

    def _plan(self, collective: str, count: int, dtype: str):
        """(algorithm, emulated seconds) of a call, cached per (collective, nbytes, dtype): the named
        algorithm, or with ``"auto"`` the fastest algorithm and parameters on the topology."""
        spec = registry.collective(collective)
        nbytes = spec.nbytes(self.num_devices, count, dtypes.itemsize(dtype))
        key = (collective, nbytes, dtype)
        if key not in self._timing:
            named = self.algorithm in registry.list_algorithms(collective)
            res = api.simulate(collective, nbytes, self.topology, algorithm=self.algorithm if named else "auto",
                               dtype=dtype)
            self._timing[key] = (res.algorithm, res.time_s)
        return nbytes, self._timing[key]

    def _try(self, collective: str, msg: _Message | None, op: str = "sum", root: int = 0):
        """The executor's result for this rank, or :data:`DELEGATE` on every rank if any rank passed
        ``None`` (or the ranks' buffers disagree): then the caller uses the wrapped communicator."""
        if msg is None:
            local, algorithm = None, None
        else:
            local = msg.array[None, :]
            _, (algorithm, _) = self._plan(collective, msg.count, msg.dtype)
        # Ranks that cannot plan still take part with a valid name, so that the agreement is reached.
        algorithm = algorithm or DEFAULT_ALGORITHMS.get(collective) or registry.list_algorithms(collective)[0]
        try:
            result = _executor.run(collective, local, self._xcomm, algorithm=algorithm, op=op, root=root)
        except _executor.RankMismatch:
            return DELEGATE
        except (TypeError, ValueError) as exc:
            if local is None:  # our own refusal, reported to the others by the agreement
                return DELEGATE
            if not isinstance(exc, registry.AlgorithmUnavailable):
                raise
            # The time plane's algorithm may need the emulated P; the data plane has one device per rank.
            fallback = DEFAULT_ALGORITHMS.get(collective) or registry.list_algorithms(collective)[0]
            result = _executor.run(collective, local, self._xcomm, algorithm=fallback, op=op, root=root)
        return result

    def _agree_v(self, send, recv, error):
        """The call's :class:`~collectives.alltoallv.Counts` (rank i's sendcounts as row i), agreed in
        one ``Allgather``; ``None`` (every rank delegates) when a rank cannot take its buffers or the
        ranks' datatypes differ; ``ValueError`` on every rank for a bad value or counts that disagree."""
        from .alltoallv import Counts

        size = self._comm.Get_size()
        usable = error is None and send is not None and recv is not None and send.dtype == recv.dtype
        mine = np.zeros(2 + 2 * size, np.int64)
        mine[0] = 2 if error is not None else (0 if usable else 1)
        if usable:
            mine[1] = _DTYPE_CODES.index(send.dtype)
            mine[2:2 + size], mine[2 + size:] = send.counts, recv.counts
        table = np.empty((size, mine.size), np.int64)
        self._xcomm.Allgather(mine, table)
        bad = np.flatnonzero(table[:, 0] == 2)
        if bad.size:
            if error is not None:
                raise error
            raise ValueError(f"Alltoallv: invalid arguments on rank {int(bad[0])} (the error is raised there); "
                             "no data was exchanged")
        if (table[:, 0] == 1).any() or len(set(table[:, 1].tolist())) > 1:
            return None
        sent, wanted = table[:, 2:2 + size], table[:, 2 + size:]   # sent[i][j]: i -> j; wanted[j][i]: j from i
        diff = np.argwhere(sent != wanted.T)
        if diff.size:
            i, j = (int(x) for x in diff[0])
            raise ValueError(f"Alltoallv: rank {j} expects {int(wanted[j, i])} elements from rank {i}, which sends "
                             f"it {int(sent[i, j])} (recvcounts[{i}] on rank {j} must equal sendcounts[{j}] on "
                             f"rank {i})")
        return Counts(sent)

    def _try_v(self, send, counts):
        """This rank's received row from the executor (its blocks packed in rank order)."""
        rank = self._comm.Get_rank()
        row = counts.matrix[rank]
        local = np.zeros((1, int(counts.send.max())), send.array.dtype)
        at = 0
        for n, d in zip(row.tolist(), send.displs.tolist()):
            local[0, at:at + n] = send.array[d:d + n]
            at += n
        _, (algorithm, _) = self._plan_v(counts, send.dtype)
        try:
            return _executor.run("alltoallv", local, self._xcomm, algorithm=algorithm, counts=counts)
        except registry.AlgorithmUnavailable:
            fallback = DEFAULT_ALGORITHMS.get("alltoallv") or registry.list_algorithms("alltoallv")[0]
            return _executor.run("alltoallv", local, self._xcomm, algorithm=fallback, counts=counts)

    def _plan_v(self, counts, dtype: str):
        """(nbytes, (algorithm, emulated seconds)) of an alltoallv call, cached per (counts, dtype):
        each rank stands for ``devices_per_rank`` devices, each sending its rank's counts to every
        device of the peer rank (:meth:`~collectives.alltoallv.Counts.kron`)."""
        key = ("alltoallv", counts.fingerprint(), dtype)
        if key not in self._timing:
            named = self.algorithm in registry.list_algorithms("alltoallv")
            res = api.simulate("alltoallv", counts.kron(self.devices_per_rank), self.topology,
                               algorithm=self.algorithm if named else "auto", dtype=dtype)
            self._timing[key] = (res.nbytes, (res.algorithm, res.time_s))
        return self._timing[key]

    def _account_v(self, counts, recv, start: float, delegated: bool) -> None:
        entry = self.stats["alltoallv"]
        entry.calls += 1
        entry.delegated += int(delegated)
        entry.host_s += time.perf_counter() - start
        if counts is None:  # buffers ccemu cannot take: counted, not timed
            entry.untimed += 1
            return
        nbytes, (algorithm, seconds) = self._plan_v(counts, recv.dtype)
        entry.nbytes += nbytes
        entry.emulated_s += seconds
        entry.algorithms.add(algorithm)

    def _account(self, kind: str, msg: _Message | None, start: float, delegated: bool) -> None:
        entry = self.stats[kind]
        entry.calls += 1
        entry.delegated += int(delegated)
        entry.host_s += time.perf_counter() - start
        if msg is None:  # a datatype ccemu cannot size: counted, not timed
            entry.untimed += 1
            return
        nbytes, (algorithm, seconds) = self._plan(kind, msg.count, msg.dtype)
        entry.nbytes += nbytes
        if seconds is None:
            entry.untimed += 1
        else:
            entry.emulated_s += seconds
            entry.algorithms.add(algorithm)


# -- helpers ----------------------------------------------------------------------------------------

def _in_place(sendbuf) -> bool:
    return sendbuf is None or sendbuf is MPI.IN_PLACE


def _op_name(op) -> str | None:
    for mpi_op, name in _OPS:
        if op == mpi_op:
            return name
    return None


def _compatible(send: _Message | None, recv: _Message | None) -> bool:
    return send is not None and recv is not None and send.dtype == recv.dtype and send.count == recv.count


def _parse_spec(spec, pairs):
    """``(buf, count, displ, datatype)`` of an mpi4py buffer specification, as mpi4py reads it:
    ``buf``, ``[buf, type]``, ``[buf, count]``, ``[buf, (count, displ)]``, ``[buf, count, type]``,
    ``[buf, (count, displ), type]``, ``[buf, count, displ, type]``; ``pairs`` are the types a
    ``(count, displ)`` pair may have. ``None`` for a form mpi4py does not have."""
    buf, count, displ, datatype = spec, None, None, None
    if isinstance(spec, (list, tuple)):
        if len(spec) == 2:
            buf, second = spec
            if isinstance(second, (MPI.Datatype, str)):
                datatype = second
            elif isinstance(second, pairs):
                count, displ = second
            else:
                count = second
        elif len(spec) == 3:
            buf, count, datatype = spec
            if isinstance(count, pairs):
                count, displ = count
        elif len(spec) == 4:
            buf, count, displ, datatype = spec
        else:
            return None
    return buf, count, displ, datatype


def _typed_flat(buf, datatype, writable):
    """``(flat array, dtype name)`` of a buffer viewed as ``datatype``, or ``None`` if the executor
    cannot take it."""
    flat = _flat(buf, writable)
    if flat is None:
        return None
    if datatype is not None:
        np_dtype = _executor.numpy_dtype(datatype)
        if np_dtype is None or flat.nbytes % np_dtype.itemsize:
            return None
        flat = flat.view(np.uint8).view(np_dtype)
    try:
        return flat, dtypes.canonical(flat.dtype)
    except ValueError:
        return None


def _message(spec, blocks: int, writable: bool = False) -> _Message | None:
    """Parse an mpi4py buffer specification as mpi4py does; ``None`` if the executor cannot take it.

    ``blocks`` is the number of per-process blocks the buffer holds (the communicator size for the
    block collectives, 0 for a plain buffer); an explicit count is per block, as in MPI.
    """
    parsed = _parse_spec(spec, (list, tuple))
    if parsed is None:
        return None
    buf, count, displ, datatype = parsed
    displ = 0 if displ is None else displ
    typed = _typed_flat(buf, datatype, writable)
    if typed is None:
        return None
    flat, name = typed
    per_call = max(blocks, 1)
    available = flat.size - int(displ)
    if count is None:
        if available < 0 or available % per_call:
            return None
        count = available // per_call
    count = int(count)
    if count < 0 or displ < 0 or count * per_call > available:
        return None
    return _Message(flat[displ:displ + count * per_call], count, name)


@dataclass
class _VMessage:
    """A parsed vector buffer specification: the whole buffer flat, and per rank a block's count and
    displacement in it (in entries of the datatype)."""

    array: np.ndarray
    counts: np.ndarray
    displs: np.ndarray
    dtype: str


_DTYPE_CODES = list(dtypes.DTYPES)


def _vmessage(spec, blocks: int, what: str, writable: bool = False) -> _VMessage | None:
    """Parse an mpi4py vector buffer specification as mpi4py does (``message_vector``): a buffer (its
    entries cut evenly over the blocks), ``[buf, counts]``, ``[buf, type]``, ``[buf, (counts, displs)]``,
    ``[buf, counts, type]``, ``[buf, (counts, displs), type]``, ``[buf, counts, displs, type]``; an
    integer count is every block's, an integer displacement a stride, none packs the blocks.
    ``None`` if the executor cannot take the buffer; ``ValueError``/``TypeError`` for a bad count or
    displacement (``what`` is ``"send"`` or ``"recv"``, for the message)."""
    parsed = _parse_spec(spec, tuple)
    if parsed is None:
        return None
    buf, counts, displs, datatype = parsed
    typed = _typed_flat(buf, datatype, writable)
    if typed is None:
        return None
    flat, name = typed
    n = flat.size
    if counts is None:
        counts = np.full(blocks, n // blocks, np.int64) + (np.arange(blocks) < n % blocks)
    else:
        counts = _vector(f"{what}counts", counts, blocks)
    if displs is None:
        displs = np.cumsum(counts) - counts
    elif isinstance(displs, (int, np.integer)) and not isinstance(displs, bool):
        displs = int(displs) * np.arange(blocks, dtype=np.int64)
    else:
        displs = _vector(f"{what[0]}displs", displs, blocks)
    for j in np.flatnonzero((displs + counts > n) & (counts > 0)).tolist()[:1]:
        raise ValueError(f"Alltoallv: {what} block {j} (displacement {int(displs[j])}, count {int(counts[j])}) "
                         f"ends past the buffer's {n} entries")
    return _VMessage(flat, counts, displs, name)


def _vector(name: str, value, blocks: int) -> np.ndarray:
    """Per-rank counts or displacements: an integer for every block, or ``blocks`` integers >= 0."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = [value] * blocks
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        arr = np.asarray([None])
    if arr.dtype == object or arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise TypeError(f"Alltoallv: {name}={value!r}; expected integers, one per rank")
    if arr.size != blocks:
        raise ValueError(f"Alltoallv: {name} has {arr.size} entries; expected {blocks} (one per rank)")
    if arr.size and arr.min() < 0:
        j = int(np.argmin(arr))
        raise ValueError(f"Alltoallv: {name}[{j}] = {int(arr[j])}; expected >= 0")
    return arr.astype(np.int64)


def _flat(buf, writable: bool) -> np.ndarray | None:
    """A 1-D view of a contiguous buffer in memory order, or ``None``."""
    try:
        arr = buf if isinstance(buf, np.ndarray) else np.asarray(memoryview(buf))
    except TypeError:
        return None
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous) or (writable and not arr.flags.writeable):
        return None
    if arr.dtype.byteorder not in "=|":  # non-native byte order: leave it to mpi4py
        return None
    return arr.ravel(order="K")  # a view: the array is contiguous in C or Fortran order

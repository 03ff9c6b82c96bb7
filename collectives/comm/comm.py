"""The emulated communicator: an ``mpi4py.MPI.Intracomm`` whose collectives run on ccemu (see the
package docstring, :mod:`collectives.comm`, for what each call runs as)."""

from __future__ import annotations

import functools
import struct
import sys
import zlib
from collections import OrderedDict

import numpy as np

from .. import kernels, registry
from ..alltoallv import Counts
from ..executors import mpi as _executor
from . import buffers, jobs, requests
from .buffers import DTYPE_CODES, OP_CODES, compatible, in_place, message, op_name, valid
from .session import Session, _perf

MPI = _executor.MPI
_Intracomm = MPI.Intracomm

#: Bandwidth (GB/s per device, each direction) and latency (us per hop) of the generic default
#: topology: one non-blocking switch, the :func:`topologies.switch` defaults (a 200 Gb/s port).
DEFAULT_BW_GBPS = 25.0
DEFAULT_LAT_US = 1.0

BLOCKING = ("Allreduce", "Allgather", "Allgatherv", "Alltoall", "Alltoallv", "Alltoallw", "Bcast", "Reduce",
            "Reduce_scatter_block", "Reduce_scatter", "Gather", "Gatherv", "Scatter", "Scatterv", "Scan", "Exscan",
            "Barrier")
NONBLOCKING = tuple("I" + name[0].lower() + name[1:] for name in BLOCKING)
OBJECT = ("allreduce", "allgather", "alltoall", "bcast", "reduce", "gather", "scatter", "scan", "exscan", "barrier")
CALLS = BLOCKING + NONBLOCKING + OBJECT
_NB = frozenset(NONBLOCKING)

# Call kinds in the signatures the ranks compare (ints: a tuple of ints hashes the same in every
# process, strings do not).
(K_ALLREDUCE, K_ALLGATHER, K_ALLGATHERV, K_ALLTOALL, K_ALLTOALLV, K_ALLTOALLW, K_BCAST, K_REDUCE, K_RSB, K_RS,
 K_GATHER, K_GATHERV, K_SCATTER, K_SCATTERV, K_SCAN, K_EXSCAN, K_BARRIER, K_OBJ) = range(18)
_MASK = (1 << 62) - 1
_TIME_AS = {"reduce": 1, "allreduce": 2, "scan": 3, "exscan": 4}
_UINT8 = DTYPE_CODES["uint8"]
_D2Q = struct.Struct("d")
_Q = struct.Struct("q")
# The header (see EmulatedComm._agree): status, rank + 1, sig, -sig, arrival clock, size hint (count,
# dtype code + 1), and the tag and bytes of a data message sent ahead of it (two ranks; 0, 0: none).
# The clock travels as a double whose bits MPI maxes as an int64: for doubles >= 0 the integer order
# is the float order.
_HDR = struct.Struct("=qqqqdqqqq")
# Two ranks exchange their headers with one MPI_Sendrecv (a third of MPI_Allreduce's time here), on a
# tag above the executor's step tags (0..32767) where MPI_TAG_UB allows it.
_HDR_TAG = 32768


def _bits(x: float) -> int:
    return _Q.unpack(_D2Q.pack(x))[0]


def _float(bits: int) -> float:
    return _D2Q.unpack(_Q.pack(bits))[0]


class _State:
    """What one EmulatedComm keeps: its session and group, the executor's communicator, the cached
    jobs, and the reusable header arrays."""

    __slots__ = ("session", "group", "xcomm", "size", "rank", "jobs", "hdr", "out", "hdr_spec", "out_spec",
                 "arrival", "start", "hint", "last_end", "root_group", "is_root", "memo", "peer")

    def __init__(self, session, group, xcomm, size, rank):
        self.session, self.group, self.xcomm, self.size, self.rank = session, group, xcomm, size, rank
        self.jobs = OrderedDict()
        self.memo = {}   # call -> _Memo of its last buffers
        self.hdr = bytearray(_HDR.size)
        self.out = bytearray(_HDR.size)
        self.hdr_spec = [self.hdr, MPI.INT64_T]
        self.out_spec = [self.out, MPI.INT64_T]
        self.arrival = self.start = self.last_end = 0.0
        self.hint = (0, 0)
        self.root_group = None
        self.is_root = False
        tag_ub = xcomm.Get_attr(MPI.TAG_UB)
        self.peer = 1 - rank if size == 2 and tag_ub is not None and tag_ub >= _HDR_TAG else None


#: Jobs kept per communicator (each holds a schedule's step plans and possibly a work buffer).
JOB_CACHE_SIZE = 64


class EmulatedComm(_Intracomm):
    """An ``mpi4py.MPI.Intracomm`` whose collectives move their data through the MPI executor and are
    timed on an emulated system, with an emulated clock.

    It *is* an ``Intracomm`` (a subclass sharing the wrapped communicator's handle), so mpi4py code
    that checks for one or passes it to MPI (``MPI.Win.Create(..., comm=comm)``, ``mpi4py.util``)
    takes it; calls it does not emulate (point-to-point, ``Get_rank``, ...) are mpi4py's own on the
    same handle. Creating it is collective over ``comm`` (the executor's messages travel on a
    duplicate of ``comm``, so they never match the program's own receives).

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
        The communicator to wrap (its results are what the emulated calls reproduce).
    topology : topologies.Topology, optional
        The emulated system, with ``comm.Get_size() * devices_per_rank`` devices; rank r stands for
        devices ``r*k .. r*k+k-1``. Default: a generic non-blocking switch,
        ``topologies.switch(P, bw_GBps=DEFAULT_BW_GBPS, lat_us=DEFAULT_LAT_US)``.
    algorithm : str
        ``"auto"`` (default): what the system's library picks (``simulate(..., algorithm="auto")``);
        a name: used for every collective that registers it (the others use ``"auto"``).
    devices_per_rank : int
        Emulated devices each rank stands for in the time plane.
    library : str, optional
        The library ``auto`` asks (``nccl``, ``rccl``, ``hccl``, ``ideal``, ``native``), as in
        :func:`collectives.simulate`.
    compute_factor : float
        Emulated seconds per host second of the program's own work between calls: 1 (default) counts
        this host's compute as it is, 0.5 a machine twice as fast, 0 not at all.
    patch_wtime : bool
        Make ``MPI.Wtime`` return this communicator's emulated clock (:meth:`Wtime`) until
        :meth:`close`, so that an unchanged benchmark times the modelled machine.
    concurrent_groups : bool
        Time a call on a communicator made by ``Split``, ``Split_type`` or ``Create`` together with the
        same call on its sibling communicators of the same size (the other colors), sharing the
        system's links (:mod:`collectives.concurrent`), as an SPMD program makes them: every TP
        group's allreduce at once. ``False``: each group alone on its sub-system.

    Examples
    --------
    >>> import numpy as np
    >>> from collectives.mpi import EmulatedComm, MPI
    >>> comm = EmulatedComm(MPI.COMM_WORLD)
    >>> x = np.ones(4, np.float32)
    >>> comm.Allreduce(MPI.IN_PLACE, x)
    >>> bool((x == comm.Get_size()).all()), comm.stats["Allreduce"].calls, isinstance(comm, MPI.Intracomm)
    (True, 1, True)
    """

    def __new__(cls, comm=None, *args, **kwargs):
        if comm is None:  # mpi4py's own New(type(self)) (its Dup and friends): a plain communicator
            return _Intracomm.__new__(_Intracomm)
        if not isinstance(comm, _Intracomm):
            raise TypeError(f"EmulatedComm wraps an mpi4py.MPI.Intracomm, got {type(comm).__name__}")
        if comm == MPI.COMM_NULL:
            raise ValueError("EmulatedComm cannot wrap MPI.COMM_NULL")
        return super().__new__(cls, comm)

    def __init__(self, comm, topology=None, algorithm: str = "auto", devices_per_rank: int = 1, library=None,
                 compute_factor: float = 1.0, patch_wtime: bool = False, concurrent_groups: bool = True):
        if isinstance(devices_per_rank, bool) or not isinstance(devices_per_rank, (int, np.integer)) \
                or devices_per_rank < 1:
            raise ValueError(f"devices_per_rank={devices_per_rank!r}; expected an integer >= 1")
        k = int(devices_per_rank)
        if isinstance(compute_factor, bool) or not isinstance(compute_factor, (int, float, np.number)) \
                or not compute_factor >= 0 or compute_factor == float("inf"):
            raise ValueError(f"compute_factor={compute_factor!r}; expected a finite number >= 0")
        if not isinstance(algorithm, str) or (algorithm != "auto" and not any(
                algorithm in registry.list_algorithms(c) for c in registry.COLLECTIVES)):
            known = sorted({a for c in registry.COLLECTIVES for a in registry.list_algorithms(c)})
            raise ValueError(f"unknown algorithm {algorithm!r}; expected 'auto' or one of {', '.join(known)}")
        size = comm.Get_size()
        topology = _check_topology(topology, size, k)
        session = Session(topology, k, algorithm, library, float(compute_factor), bool(concurrent_groups))
        label = "COMM_WORLD" if MPI.Comm.Compare(comm, MPI.COMM_WORLD) == MPI.IDENT else "root"
        self._setup(session, range(size), label)
        self._st.root_group = comm.Get_group()
        self._st.is_root = True
        if patch_wtime:
            session.wtime_patched = MPI.Wtime
            MPI.Wtime = session.clock.wtime
        session.clock.leave(0.0)  # every rank starts at 0, right after the collective set-up

    def _setup(self, session, ranks, label, siblings=None):
        xcomm = _Intracomm.Dup(self)
        _executor.remember_peers(xcomm)
        group = session.add_group(label, ranks, CALLS, siblings)
        self._st = _State(session, group, xcomm, self.Get_size(), self.Get_rank())

    # -- what the program sees besides MPI ------------------------------------------------------

    @property
    def topology(self):
        """The emulated sub-system of this communicator's devices (MPI's topology: ``Get_topology()``)."""
        return self._st.group.topology

    @property
    def stats(self):
        """``call name -> CallStats`` of this communicator on this rank (``"Allreduce"``, ``"Iallreduce"``,
        ``"allreduce"`` for the pickle-based one, ...)."""
        return self._st.group.stats

    @property
    def devices_per_rank(self) -> int:
        return self._st.session.devices_per_rank

    @property
    def num_devices(self) -> int:
        return self._st.group.num_devices

    @property
    def algorithm(self) -> str:
        return self._st.session.algorithm

    def Wtime(self) -> float:
        """This rank's emulated clock, in seconds (see :mod:`collectives.comm.session`)."""
        return self._st.session.clock.wtime()

    @property
    def last_end(self) -> float:
        """The emulated instant the last blocking collective on this communicator ended (the same on
        all its members)."""
        return self._st.last_end

    def Set_name(self, name: str) -> None:
        """``MPI.Comm.Set_name``; the report names this communicator's group so too."""
        _Intracomm.Set_name(self, name)
        self._st.group.label = name

    def close(self) -> None:
        """Free the duplicate communicator the executor uses (collective), and on the communicator
        the session was created with restore ``MPI.Wtime``. The wrapped communicator stays."""
        st = self._st
        st.memo.clear()   # the last buffers of each call, kept for a loop that passes them again
        st.jobs.clear()
        if st.xcomm is not None:
            st.xcomm.Free()
            st.xcomm = None
        if st.is_root and st.session.wtime_patched is not None:
            MPI.Wtime = st.session.wtime_patched
            st.session.wtime_patched = None

    def Free(self) -> None:
        """``close()``, then free this communicator (as ``MPI.Comm.Free``)."""
        self.close()
        _Intracomm.Free(self)

    def report(self, file=sys.stdout, root: int | None = 0) -> str:
        """The emulated timeline of this rank per group and call kind, as text; printed to ``file``
        on rank ``root`` of this communicator (``None``: every rank; ``file=None``: nowhere).

        Per group (this communicator's first, then the others of the session this rank is in):
        its ranks and sub-system, then per call kind: calls, total bytes (nccl-tests' S), emulated
        seconds, emulated seconds spent waiting for the group's last member, host wall seconds,
        calls delegated to the wrapped communicator, and what the calls were timed as
        (``collective/algorithm``).
        """
        st = self._st
        text = "\n".join(st.session.report_lines(st.group, st.size))
        if file is not None and (root is None or st.rank == root):
            print(text, file=file, flush=True)
        return text

    # -- communicators ----------------------------------------------------------------------------

    def Dup(self, info=None):
        t0 = _perf()
        new = _Intracomm.Dup(self) if info is None else _Intracomm.Dup(self, info)
        return self._derive(new, "Dup", t0, self._sibling_groups())

    def Dup_with_info(self, info):
        t0 = _perf()
        return self._derive(_Intracomm.Dup_with_info(self, info), "Dup", t0, self._sibling_groups())

    def Clone(self):
        t0 = _perf()
        return self._derive(_Intracomm.Dup(self), "Clone", t0, self._sibling_groups())

    def Idup(self, info=None):
        """``Dup`` (collective at once), with a request that is already complete."""
        new = self.Dup(info)
        return new, _done_request()

    def Idup_with_info(self, info):
        new = self.Dup_with_info(info)
        return new, _done_request()

    def Split(self, color: int = 0, key: int = 0):
        t0 = _perf()
        return self._derive(_Intracomm.Split(self, color, key), f"Split({color})", t0, True)

    def Split_type(self, split_type: int, key: int = 0, info=MPI.INFO_NULL):
        t0 = _perf()
        return self._derive(_Intracomm.Split_type(self, split_type, key, info), f"Split_type({split_type})", t0,
                            True)

    def Create(self, group):
        t0 = _perf()
        return self._derive(_Intracomm.Create(self, group), "Create", t0, True)

    def Create_group(self, group, tag: int = 0):
        """Collective over ``group`` only: the other groups (if any) are not known, so it is timed alone."""
        t0 = _perf()
        return self._derive(_Intracomm.Create_group(self, group, tag), "Create_group", t0)

    def _sibling_groups(self):
        """A duplicate's siblings are this communicator's: the duplicates the other groups make too."""
        g = self._st.group
        k = self._st.session.devices_per_rank
        return tuple(tuple(d // k for d in devs[::k]) for devs in g.siblings) if g.siblings else None

    def _derive(self, new, how: str, t0: float, siblings=None):
        """``new`` (a communicator over some of this one's ranks) as an EmulatedComm of the same session.

        ``siblings``: ``True`` when every rank of this communicator made one (``Split``, ``Create``):
        the ranks then exchange their groups' members (one allgather on the executor's communicator)
        to know the sibling groups; or the siblings' members already known; ``None``: none known."""
        st = self._st
        ranks = None
        root_group = self._root_group()
        if new != MPI.COMM_NULL:
            group = new.Get_group()
            try:
                ranks = tuple(MPI.Group.Translate_ranks(group, list(range(group.Get_size())), root_group))
            finally:
                group.Free()
        if siblings is True:
            siblings = tuple(dict.fromkeys(g for g in st.xcomm.allgather(ranks) if g is not None))
        if new == MPI.COMM_NULL:
            clock = st.session.clock
            clock.leave(clock.at(t0))
            return new
        obj = EmulatedComm.__new__(EmulatedComm, new)
        obj._setup(st.session, ranks, f"{st.group.label}.{how}", siblings)
        obj._st.root_group = root_group
        clock = st.session.clock
        clock.leave(clock.at(t0))  # the set-up's host time is not compute
        return obj

    def _root_group(self):
        return self._st.root_group

    # -- the header: every call's agreement, in one small allreduce --------------------------------
    #
    # A call first agrees with the other ranks on what to do, in one MPI_Allreduce (MAX) of seven
    # int64: a status (0: emulate, 1: some rank cannot take its buffers, all delegate; 2: some rank's
    # arguments are invalid, all raise), that rank, the call's signature and its negation (equal
    # signatures everywhere iff max(sig) == -max(-sig)), the rank's arrival on the emulated clock (a
    # float64 >= 0 as int64 bits: same order), and a size for timing a delegated call.

    def _agree(self, call, t0, key, error=None, hint=None, spec=None, blocks=0, sig=None, ahead=(0, 0)) -> bool:
        st = self._st
        clock = st.session.clock
        if clock.pending:
            clock.sweep()
        arrival = clock.now + (t0 - clock.last) * clock.factor
        if error is not None:
            status, who, sig = 2, st.rank + 1, 0
        elif key is None:
            status, who, sig = 1, 0, 0
            if hint is None:
                hint = buffers.size_hint(spec, blocks) if spec is not None else (0, 0)
        else:
            status, who = 0, 0
            if sig is None:
                sig = hash(key) & _MASK
            if hint is None:
                hint = (key[1], key[2] + 1)
        if hint is None:
            hint = (0, 0)
        _HDR.pack_into(st.hdr, 0, status, who, sig, -sig, arrival, hint[0], hint[1], ahead[0], ahead[1])
        if st.xcomm is None:
            raise ValueError(f"{call}: this EmulatedComm is closed")
        if st.peer is None:
            st.xcomm.Allreduce(st.hdr_spec, st.out_spec, MPI.MAX)
            o = _HDR.unpack_from(st.out)
        else:
            st.xcomm.Sendrecv(st.hdr_spec, st.peer, _HDR_TAG, st.out_spec, st.peer, _HDR_TAG)
            o = _HDR.unpack_from(st.out)
            if not (status or o[0]) and o[2] == sig:  # both emulate the same call: the max of two headers
                st.arrival, st.start = arrival, (o[4] if o[4] > arrival else arrival)
                st.hint = (o[5] if o[5] > hint[0] else hint[0], o[6] if o[6] > hint[1] else hint[1])
                return True
            if o[8]:  # the peer sent its call's first message ahead (Job.runner), which no step takes now
                st.xcomm.Recv([bytearray(o[8]), MPI.BYTE], source=st.peer, tag=o[7])
            o = tuple(map(max, (status, who, sig, -sig, arrival, hint[0], hint[1], 0, 0), o))
        st.arrival, st.start = arrival, o[4]
        st.hint = (o[5], o[6])
        if o[0]:
            if o[0] == 2:
                self._raise(call, error, o[1] - 1)
            return False
        if o[2] != -o[3]:
            self._mismatch(call, key)
        return True

    def _raise(self, call, error, rank):
        if error is not None:
            raise error
        raise ValueError(f"{call}: invalid arguments on rank {rank}{self._world_text(rank)} (the error is raised "
                         "there); no data was exchanged")

    def _world_text(self, rank) -> str:
        st = self._st
        world = st.group.ranks[rank] if rank < len(st.group.ranks) else rank
        return "" if st.group.label in ("COMM_WORLD", "root") or world == rank else f" (rank {world} of the root)"

    def _mismatch(self, call, key):
        """The ranks' signatures differ: gather them (one Allgather) and say how, on every rank."""
        st = self._st
        mine = np.zeros(6, np.int64)
        mine[:min(6, len(key))] = key[:6]
        table = np.empty((st.size, 6), np.int64)
        st.xcomm.Allgather(mine, table)
        shown, groups = [], {}
        for r, row in enumerate(table.tolist()):
            groups.setdefault(tuple(row), []).append(r)
        for row, ranks in groups.items():
            _, count, dt, op, root, _ = row
            what = f"{count} {buffers.DTYPE_NAMES[dt]} entries"
            if call.lower().lstrip("i").startswith(("allreduce", "reduce", "scan", "exscan")):
                what += f", op {buffers.OP_NAMES[op]}"
            if root:
                what += f", root {root}"
            shown.append(f"{what} on rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}")
        raise ValueError(f"{call}: the ranks' calls differ: {'; '.join(shown)}; every rank must pass the same "
                         "count, datatype, op and root")

    def _agree_rows(self, call, t0, error, usable, sig, payload, width) -> np.ndarray | None:
        """The header of the calls whose ranks hold different counts: one Allgather of
        ``[status, rank, sig, clock, payload...]``; the ranks' payloads (``size x width``), or ``None``
        when every rank delegates. Raises on every rank as :meth:`_agree` does."""
        st = self._st
        clock = st.session.clock
        if clock.pending:
            clock.sweep()
        arrival = clock.now + (t0 - clock.last) * clock.factor
        mine = np.zeros(4 + width, np.int64)
        mine[0] = 2 if error is not None else (0 if usable else 1)
        mine[1] = st.rank
        mine[2] = sig & _MASK if usable else 0
        mine[3] = _bits(arrival)
        if usable and error is None:
            mine[4:] = payload
        table = np.empty((st.size, 4 + width), np.int64)
        if st.xcomm is None:
            raise ValueError(f"{call}: this EmulatedComm is closed")
        st.xcomm.Allgather(mine, table)
        st.arrival, st.start = arrival, _float(int(table[:, 3].max()))
        status = table[:, 0]
        bad = np.flatnonzero(status == 2)
        if bad.size:
            self._raise(call, error, int(bad[0]))
        st.hint = (0, 0)
        if status.any():
            return None
        if (table[:, 2] != table[0, 2]).any():
            raise ValueError(f"{call}: the ranks' datatypes or roots differ; every rank must pass the same")
        return table[:, 4:]

    # -- after the data: the clock and the statistics ----------------------------------------------

    def _done(self, call, t0, job):
        st = self._st
        entry = st.group.stats[call]
        entry.calls += 1
        entry.nbytes += job.nbytes
        entry.algorithms.add(job.algorithm)
        entry.timed_as.add(job.label)
        entry.wait_s += st.start - st.arrival
        clock = st.session.clock
        end = st.start + job.seconds
        now = _perf()
        entry.host_s += now - t0
        if call in _NB:
            req = requests.completed(requests.Pending(clock, entry, job.seconds, end))
            clock.leave(st.arrival)
            return req
        entry.emulated_s += job.seconds
        st.last_end = clock.now = end   # Clock.leave(end), inlined: this runs once per call
        clock.last = now
        return None

    def _delegated(self, call, t0, native, collective=None, root=0):
        """Run ``native()`` (the wrapped communicator's call) and account it: timed as ``collective``
        when the header carried a size and datatype ccemu knows."""
        st = self._st
        result = native()
        entry = st.group.stats[call]
        entry.calls += 1
        entry.delegated += 1
        seconds = None
        count, code = st.hint
        if collective is not None and code > 0:
            dtype = buffers.DTYPE_NAMES[code - 1]
            spec = registry.collective(collective)
            nbytes = spec.nbytes(st.group.num_devices, count, buffers.dtypes.itemsize(dtype))
            nbytes, algorithm, seconds, label = st.session.time(st.group, collective, nbytes, dtype,
                                                                root=root * st.session.devices_per_rank)
            entry.nbytes += nbytes
            entry.algorithms.add(algorithm)
            entry.timed_as.add(label)
        else:
            entry.untimed += 1
        entry.wait_s += st.start - st.arrival
        clock = st.session.clock
        end = st.start + (seconds or 0.0)
        entry.host_s += _perf() - t0
        if call in _NB:
            req = requests.native(result, requests.Pending(clock, entry, seconds, end))
            clock.leave(st.arrival)
            return req
        if seconds is not None:
            entry.emulated_s += seconds
        st.last_end = end
        clock.leave(end)
        return result

    def _job(self, call, key, collective, count, dtype, op="sum", root=0, counts=None, time_plane=None):
        st = self._st
        jobs_ = st.jobs
        job = jobs_.get(key)
        if job is None:
            try:
                job = jobs.build(st, call, collective, count, dtype, op, root, counts, time_plane)
            except BaseException as exc:  # noqa: BLE001 -- the ranks agreed to go on: none may stay behind
                jobs.fail(call, exc)
            jobs_[key] = job
            if len(jobs_) > JOB_CACHE_SIZE:  # the same calls in the same order on every rank: same eviction
                jobs_.popitem(last=False)
        return job

    # -- Allreduce, Bcast, Reduce ---------------------------------------------------------------

    def Allreduce(self, sendbuf, recvbuf, op=MPI.SUM):
        return self._allreduce("Allreduce", sendbuf, recvbuf, op)

    def Iallreduce(self, sendbuf, recvbuf, op=MPI.SUM):
        return self._allreduce("Iallreduce", sendbuf, recvbuf, op)

    def _allreduce(self, call, sendbuf, recvbuf, op):
        t0 = _perf()
        st = self._st
        m = st.memo.get(call)
        if m is None or not m.matches(sendbuf, recvbuf, op):
            m = _Memo(sendbuf, recvbuf, op)
            recv = message(recvbuf, 0, True)
            send = recv if in_place(sendbuf) else message(sendbuf, 0)
            name = op_name(op)
            if compatible(send, recv) and valid(name, recv.dtype):
                m.keyed((K_ALLREDUCE, recv.count, DTYPE_CODES[recv.dtype], OP_CODES[name], 0),
                        ("allreduce", recv.count, recv.dtype, name, 0), "allreduce", send.array, recv.array)
        job = self._emulate(call, t0, m, spec=recvbuf)
        if job is None:
            native = _Intracomm.Iallreduce if call in _NB else _Intracomm.Allreduce
            return self._delegated(call, t0, lambda: native(self, sendbuf, recvbuf, op), "allreduce")
        return self._done(call, t0, job)

    def _emulate(self, call, t0, m, error=None, spec=None, blocks=0):
        """Agree with the other ranks on the call (:meth:`_agree`) and run its memo's data plane (building
        its job on first use); the job, or ``None`` when the ranks delegate. A memo replayed on two ranks
        agrees from inside its data plane, its first message already sent (``Job.runner``): the header
        and the data then travel together, one message round for both."""
        if m.run is not None and self._st.peer is not None:
            if m.run(lambda ahead: self._agree(call, t0, m.key, sig=m.sig, ahead=ahead)) is False:
                return None
            return m.job
        if not self._agree(call, t0, m.key, error, spec=spec, blocks=blocks, sig=m.sig):
            return None
        job = m.job
        if job is None:
            job = m.job = self._job(call, m.key, *m.build)
            m.run = getattr(job, m.method + "_fn")(*m.arrays)
            if m.cacheable:
                self._st.memo[call] = m
        m.run()
        return job

    def Bcast(self, buf, root: int = 0):
        return self._bcast("Bcast", buf, root)

    def Ibcast(self, buf, root: int = 0):
        return self._bcast("Ibcast", buf, root)

    def _bcast(self, call, buf, root):
        t0 = _perf()
        st = self._st
        error = None
        m = st.memo.get(call)
        if m is None or not m.matches(None, buf, root):
            m = _Memo(None, buf, root)
            try:
                at_root = self._check_root(call, root)
                msg = message(buf, 0, writable=not at_root)  # the root only reads its buffer
                if msg is not None:
                    m.keyed((K_BCAST, msg.count, DTYPE_CODES[msg.dtype], 0, root),
                            ("broadcast", msg.count, msg.dtype, "sum", root), "bcast", msg.array, at_root)
            except (TypeError, ValueError) as exc:
                error = exc
        job = self._emulate(call, t0, m, error, spec=buf)
        if job is None:
            native = _Intracomm.Ibcast if call in _NB else _Intracomm.Bcast
            return self._delegated(call, t0, lambda: native(self, buf, root), "broadcast", root=root)
        return self._done(call, t0, job)

    def Reduce(self, sendbuf, recvbuf, op=MPI.SUM, root: int = 0):
        return self._reduce("Reduce", sendbuf, recvbuf, op, root)

    def Ireduce(self, sendbuf, recvbuf, op=MPI.SUM, root: int = 0):
        return self._reduce("Ireduce", sendbuf, recvbuf, op, root)

    def _reduce(self, call, sendbuf, recvbuf, op, root):
        t0 = _perf()
        st = self._st
        error = None
        at_root = root == st.rank
        m = st.memo.get(call)
        if m is None or not m.matches(sendbuf, recvbuf, (op, root)):
            m = _Memo(sendbuf, recvbuf, (op, root))
            try:
                at_root = self._check_root(call, root)
                recv = message(recvbuf, 0, writable=True) if at_root else None  # ignored off the root, as in MPI
                send = recv if at_root and in_place(sendbuf) else message(sendbuf, 0)
                name = op_name(op)
                if send is not None and (not at_root or compatible(send, recv)) and valid(name, send.dtype):
                    m.keyed((K_REDUCE, send.count, DTYPE_CODES[send.dtype], OP_CODES[name], root),
                            ("reduce", send.count, send.dtype, name, root), "reduce", send.array,
                            recv.array if at_root else None)
            except (TypeError, ValueError) as exc:
                error = exc
        job = self._emulate(call, t0, m, error, spec=recvbuf if at_root and in_place(sendbuf) else sendbuf)
        if job is None:
            native = _Intracomm.Ireduce if call in _NB else _Intracomm.Reduce
            return self._delegated(call, t0, lambda: native(self, sendbuf, recvbuf, op, root), "reduce", root=root)
        return self._done(call, t0, job)

    def _check_root(self, call, root) -> bool:
        size = self._st.size
        if isinstance(root, bool) or not isinstance(root, (int, np.integer)):
            raise TypeError(f"{call}: root={root!r}; expected an integer rank 0..{size - 1}")
        if not 0 <= root < size:
            raise ValueError(f"{call}: root={root!r}; expected a rank 0..{size - 1}")
        return root == self._st.rank

    # -- Allgather, Alltoall, Reduce_scatter_block --------------------------------------------------

    def Allgather(self, sendbuf, recvbuf):
        return self._allgather("Allgather", sendbuf, recvbuf)

    def Iallgather(self, sendbuf, recvbuf):
        return self._allgather("Iallgather", sendbuf, recvbuf)

    def _allgather(self, call, sendbuf, recvbuf):
        t0 = _perf()
        st = self._st
        m = st.memo.get(call)
        if m is None or not m.matches(sendbuf, recvbuf, None):
            m = _Memo(sendbuf, recvbuf, None)
            recv = message(recvbuf, st.size, writable=True)
            inplace = in_place(sendbuf)
            send = recv if recv is not None and inplace else message(sendbuf, 0)
            if compatible(send, recv):
                m.keyed((K_ALLGATHER, recv.count, DTYPE_CODES[recv.dtype], 0, 0),
                        ("allgather", recv.count, recv.dtype), "allgather", None if inplace else send.array,
                        recv.array)
        job = self._emulate(call, t0, m, spec=recvbuf, blocks=st.size)
        if job is None:
            native = _Intracomm.Iallgather if call in _NB else _Intracomm.Allgather
            return self._delegated(call, t0, lambda: native(self, sendbuf, recvbuf), "allgather")
        return self._done(call, t0, job)

    def Alltoall(self, sendbuf, recvbuf):
        return self._alltoall("Alltoall", sendbuf, recvbuf)

    def Ialltoall(self, sendbuf, recvbuf):
        return self._alltoall("Ialltoall", sendbuf, recvbuf)

    def _alltoall(self, call, sendbuf, recvbuf):
        t0 = _perf()
        st = self._st
        m = st.memo.get(call)
        if m is None or not m.matches(sendbuf, recvbuf, None):
            m = _Memo(sendbuf, recvbuf, None)
            recv = message(recvbuf, st.size, writable=True)
            send = recv if in_place(sendbuf) else message(sendbuf, st.size)
            if compatible(send, recv):
                m.keyed((K_ALLTOALL, recv.count, DTYPE_CODES[recv.dtype], 0, 0),
                        ("alltoall", recv.count, recv.dtype), "alltoall", send.array, recv.array)
        job = self._emulate(call, t0, m, spec=recvbuf, blocks=st.size)
        if job is None:
            native = _Intracomm.Ialltoall if call in _NB else _Intracomm.Alltoall
            return self._delegated(call, t0, lambda: native(self, sendbuf, recvbuf), "alltoall")
        return self._done(call, t0, job)

    def Reduce_scatter_block(self, sendbuf, recvbuf, op=MPI.SUM):
        return self._reduce_scatter_block("Reduce_scatter_block", sendbuf, recvbuf, op)

    def Ireduce_scatter_block(self, sendbuf, recvbuf, op=MPI.SUM):
        return self._reduce_scatter_block("Ireduce_scatter_block", sendbuf, recvbuf, op)

    def _reduce_scatter_block(self, call, sendbuf, recvbuf, op):
        t0 = _perf()
        st = self._st
        inplace = in_place(sendbuf)
        m = st.memo.get(call)
        if m is None or not m.matches(sendbuf, recvbuf, op):
            m = _Memo(sendbuf, recvbuf, op)
            if inplace:  # the input is the whole receive buffer, the result its first block
                send = message(recvbuf, st.size, writable=True)
                recv = None if send is None else buffers.Message(send.array[:send.count], send.count, send.dtype)
            else:
                recv = message(recvbuf, 0, writable=True)
                send = message(sendbuf, st.size)
            name = op_name(op)
            if compatible(send, recv) and valid(name, recv.dtype):
                m.keyed((K_RSB, recv.count, DTYPE_CODES[recv.dtype], OP_CODES[name], 0),
                        ("reduce_scatter", recv.count, recv.dtype, name), "reduce_scatter", send.array, recv.array)
        job = self._emulate(call, t0, m, spec=recvbuf if inplace else sendbuf, blocks=st.size)
        if job is None:
            native = _Intracomm.Ireduce_scatter_block if call in _NB else _Intracomm.Reduce_scatter_block
            return self._delegated(call, t0, lambda: native(self, sendbuf, recvbuf, op), "reduce_scatter")
        return self._done(call, t0, job)

    # -- Allgatherv, Reduce_scatter: the block collectives on padded blocks ------------------------

    def Allgatherv(self, sendbuf, recvbuf):
        return self._allgatherv("Allgatherv", sendbuf, recvbuf)

    def Iallgatherv(self, sendbuf, recvbuf):
        return self._allgatherv("Iallgatherv", sendbuf, recvbuf)

    def _allgatherv(self, call, sendbuf, recvbuf):
        t0 = _perf()
        st = self._st
        error = key = None
        try:
            recv = buffers.vmessage(recvbuf, st.size, "recv", call, writable=True)
            if recv is not None:
                rc, rd = recv.counts, recv.displs
                mine = int(rc[st.rank])
                if in_place(sendbuf):
                    send = recv.array[int(rd[st.rank]):int(rd[st.rank]) + mine]
                else:
                    msg = message(sendbuf, 0)
                    send = None if msg is None or msg.dtype != recv.dtype else msg.array
                    if send is not None and send.size != mine:
                        raise ValueError(f"{call}: rank {st.rank} sends {send.size} entries; its recvcounts"
                                         f"[{st.rank}] = {mine}")
                if send is not None:
                    key = (K_ALLGATHERV, int(rc.max()) if rc.size else 0, DTYPE_CODES[recv.dtype], 0, 0,
                           zlib.crc32(rc.tobytes()))
        except (TypeError, ValueError) as exc:
            error = exc
        if not self._agree(call, t0, key, error):
            native = _Intracomm.Iallgatherv if call in _NB else _Intracomm.Allgatherv
            return self._delegated(call, t0, lambda: native(self, sendbuf, recvbuf))
        m = key[1]
        job = self._job(call, key, "allgather", m, recv.dtype)
        if (rc == m).all() and (rd == np.arange(st.size) * m).all():  # the allgather layout itself
            job.allgather(None if in_place(sendbuf) else send, recv.array[:st.size * m])
        else:
            w = job.work()
            row = w[0]
            row[st.rank * m:st.rank * m + rc[st.rank]] = job.view(send)
            job.run(w)
            out = job.view(recv.array)
            for j, (c, d) in enumerate(zip(rc.tolist(), rd.tolist())):
                if c:
                    out[d:d + c] = row[j * m:j * m + c]
        return self._done(call, t0, job)

    def Reduce_scatter(self, sendbuf, recvbuf, recvcounts=None, op=MPI.SUM):
        return self._reduce_scatter("Reduce_scatter", sendbuf, recvbuf, recvcounts, op)

    def Ireduce_scatter(self, sendbuf, recvbuf, recvcounts=None, op=MPI.SUM):
        return self._reduce_scatter("Ireduce_scatter", sendbuf, recvbuf, recvcounts, op)

    def _reduce_scatter(self, call, sendbuf, recvbuf, recvcounts, op):
        t0 = _perf()
        st = self._st
        n = st.size
        error, usable, payload, sig = None, False, None, 0
        try:
            given = None if recvcounts is None else buffers.vector(call, "recvcounts", recvcounts, n)
            inplace = in_place(sendbuf)
            recv = message(recvbuf, 0, writable=True)
            send = None
            if recv is not None:
                mine = recv.count if given is None or inplace else int(given[st.rank])
                if inplace:
                    send = recv
                    if given is None:
                        raise ValueError(f"{call}: in place, recvcounts must be given (the receive buffer "
                                         "holds the whole input)")
                    mine = int(given[st.rank])
                else:
                    send = message(sendbuf, 0)
                    if given is not None and recv.count != mine:
                        raise ValueError(f"{call}: rank {st.rank}'s receive buffer holds {recv.count} entries; "
                                         f"recvcounts[{st.rank}] = {mine}")
            name = op_name(op)
            usable = send is not None and send.dtype == recv.dtype and valid(name, recv.dtype)
            if usable:
                payload = np.full(n + 1, -1, np.int64)
                payload[0] = mine
                if given is not None:
                    payload[1:] = given
                payload = np.append(payload, send.count)
                sig = hash((K_RS, DTYPE_CODES[recv.dtype], OP_CODES[name]))
        except (TypeError, ValueError) as exc:
            error = exc
        table = self._agree_rows(call, t0, error, usable, sig, payload, n + 2)
        if table is None:
            native = _Intracomm.Ireduce_scatter if call in _NB else _Intracomm.Reduce_scatter
            return self._delegated(call, t0, lambda: native(self, sendbuf, recvbuf, recvcounts, op))
        counts = table[:, 0]
        for r, row in enumerate(table.tolist()):
            stated = row[1:n + 1]
            if stated[0] >= 0 and stated != counts.tolist():
                j = next(j for j in range(n) if stated[j] != counts[j])
                raise ValueError(f"{call}: recvcounts[{j}] = {stated[j]} on rank {r}, but rank {j} receives "
                                 f"{int(counts[j])} entries")
            if row[n + 1] < counts.sum():
                raise ValueError(f"{call}: rank {r}'s send buffer holds {row[n + 1]} entries; the recvcounts "
                                 f"sum to {int(counts.sum())}")
        m = int(counts.max()) if n else 0
        key = (K_RS, m, DTYPE_CODES[recv.dtype], OP_CODES[name], 0, zlib.crc32(counts.tobytes()))
        job = self._job(call, key, "reduce_scatter", m, recv.dtype, name)
        w = job.work()
        row = w[0]
        s = job.view(send.array)
        at = 0
        for j, c in enumerate(counts.tolist()):
            row[j * m:j * m + c] = s[at:at + c]
            at += c
        job.run(w)
        mine = int(counts[st.rank])
        job.view(recv.array)[:mine] = row[st.rank * m:st.rank * m + mine]
        return self._done(call, t0, job)

    # -- Alltoallv, Alltoallw: the alltoallv collective --------------------------------------------

    def Alltoallv(self, sendbuf, recvbuf):
        """``MPI.Comm.Alltoallv`` through the ``alltoallv`` collective: rank i's ``sendcounts[j]``
        elements at ``sdispls[j]`` land in rank j's receive buffer at its ``rdispls[i]``.

        The ranks first exchange their counts (the call's header): a negative count, a block past
        the end of its buffer, or a receiver whose ``recvcounts[i]`` differs from what rank i sends
        it raises ``ValueError`` on every rank, naming the value; nothing is exchanged then."""
        return self._alltoallv("Alltoallv", sendbuf, recvbuf)

    def Ialltoallv(self, sendbuf, recvbuf):
        return self._alltoallv("Ialltoallv", sendbuf, recvbuf)

    def _alltoallv(self, call, sendbuf, recvbuf):
        t0 = _perf()
        st = self._st
        n = st.size
        error = send = recv = None
        base = call.lstrip("I").capitalize()
        try:
            recv = buffers.vmessage(recvbuf, n, "recv", base, writable=True)
            send = recv if in_place(sendbuf) else buffers.vmessage(sendbuf, n, "send", base)
        except (TypeError, ValueError) as exc:
            error = exc
        usable = error is None and send is not None and recv is not None and send.dtype == recv.dtype
        payload = np.concatenate([send.counts, recv.counts]) if usable else None
        sig = hash((K_ALLTOALLV, DTYPE_CODES[recv.dtype])) if usable else 0
        table = self._agree_rows(base, t0, error, usable, sig, payload, 2 * n)
        if table is None:
            native = _Intracomm.Ialltoallv if call in _NB else _Intracomm.Alltoallv
            return self._delegated(call, t0, lambda: native(self, sendbuf, recvbuf))
        counts = _pair_counts(base, table[:, :n], table[:, n:])
        job = self._vjob(call, counts, recv.dtype)
        out = job.alltoallv(send.array, send.displs.tolist())
        _unpack(job.view(recv.array), out, counts.matrix[:, st.rank].tolist(), recv.displs.tolist())
        return self._done(call, t0, job)

    def _vjob(self, call, counts, dtype, kind=K_ALLTOALLV, time_counts=None, algorithm=None):
        """The alltoallv job of ``counts`` (n x n over the ranks); timed with ``time_counts`` (over the
        group's devices; default: each rank's counts to every device of the peer, ``counts.kron(k)``)."""
        st = self._st
        key = (kind, counts.total, DTYPE_CODES[dtype], 0, 0, counts.fingerprint())
        job = st.jobs.get(key)
        if job is None:
            k = st.session.devices_per_rank
            if time_counts is None:
                time_counts = counts.kron(k) if k > 1 else counts
            time_plane = st.session.time(st.group, "alltoallv", time_counts, dtype, algorithm=algorithm)
            job = self._job(call, key, "alltoallv", counts.total, dtype, counts=counts, time_plane=time_plane)
        return job

    def Alltoallw(self, sendbuf, recvbuf):
        return self._alltoallw("Alltoallw", sendbuf, recvbuf)

    def Ialltoallw(self, sendbuf, recvbuf):
        return self._alltoallw("Ialltoallw", sendbuf, recvbuf)

    def _alltoallw(self, call, sendbuf, recvbuf):
        """Alltoallw in bytes: every block is ``count x type size`` bytes at its byte displacement, moved
        as an alltoallv of uint8 (any predefined datatypes, one per peer)."""
        t0 = _perf()
        st = self._st
        n = st.size
        error = send = recv = None
        try:
            recv = buffers.wmessage(recvbuf, n, "recv", writable=True)
            send = recv if in_place(sendbuf) else buffers.wmessage(sendbuf, n, "send")
        except (TypeError, ValueError) as exc:
            error = exc
        usable = error is None and send is not None and recv is not None
        payload = np.concatenate([send.counts, recv.counts]) if usable else None
        table = self._agree_rows("Alltoallw", t0, error, usable, K_ALLTOALLW, payload, 2 * n)
        if table is None:
            native = _Intracomm.Ialltoallw if call in _NB else _Intracomm.Alltoallw
            return self._delegated(call, t0, lambda: native(self, sendbuf, recvbuf))
        counts = _pair_counts("Alltoallw", table[:, :n], table[:, n:], unit="bytes")
        job = self._vjob(call, counts, "uint8", K_ALLTOALLW)
        out = job.alltoallv(send.array, send.displs.tolist())
        _unpack(recv.array, out, counts.matrix[:, st.rank].tolist(), recv.displs.tolist())
        return self._done(call, t0, job)

    # -- Gather(v), Scatter(v): rooted alltoallv patterns --------------------------------------------

    def Gather(self, sendbuf, recvbuf, root: int = 0):
        return self._gather("Gather", sendbuf, recvbuf, root)

    def Igather(self, sendbuf, recvbuf, root: int = 0):
        return self._gather("Igather", sendbuf, recvbuf, root)

    def _gather(self, call, sendbuf, recvbuf, root):
        t0 = _perf()
        st = self._st
        n = st.size
        error = key = None
        try:
            at_root = self._check_root(call, root)
            recv = message(recvbuf, n, writable=True) if at_root else None
            if at_root and in_place(sendbuf):
                send = None if recv is None else buffers.Message(
                    recv.array[root * recv.count:(root + 1) * recv.count], recv.count, recv.dtype)
            else:
                send = message(sendbuf, 0)
            if send is not None and (not at_root or compatible(send, recv)):
                key = (K_GATHER, send.count, DTYPE_CODES[send.dtype], 0, root)
        except (TypeError, ValueError) as exc:
            error = exc
        if not self._agree(call, t0, key, error):
            native = _Intracomm.Igather if call in _NB else _Intracomm.Gather
            return self._delegated(call, t0, lambda: native(self, sendbuf, recvbuf, root))
        job = self._rooted_job(call, np.full(n, send.count, np.int64), send.dtype, K_GATHER, root, column=True)
        out = job.alltoallv(send.array)
        if at_root:
            job.view(recv.array)[...] = out
        return self._done(call, t0, job)

    def Gatherv(self, sendbuf, recvbuf, root: int = 0):
        return self._gatherv("Gatherv", sendbuf, recvbuf, root)

    def Igatherv(self, sendbuf, recvbuf, root: int = 0):
        return self._gatherv("Igatherv", sendbuf, recvbuf, root)

    def _gatherv(self, call, sendbuf, recvbuf, root):
        t0 = _perf()
        st = self._st
        n = st.size
        error, usable, payload, sig, recv, send = None, False, None, 0, None, None
        try:
            at_root = self._check_root(call, root)
            if at_root:
                recv = buffers.vmessage(recvbuf, n, "recv", call, writable=True)
                if recv is not None and in_place(sendbuf):
                    d, c = int(recv.displs[root]), int(recv.counts[root])
                    send = buffers.Message(recv.array[d:d + c], c, recv.dtype)
                elif recv is not None:
                    send = message(sendbuf, 0)
                usable = send is not None and recv is not None and send.dtype == recv.dtype
            else:
                send = message(sendbuf, 0)
                usable = send is not None
            if usable:
                payload = np.zeros(n + 1, np.int64)
                payload[0] = send.count
                if at_root:
                    payload[1:] = recv.counts
                sig = hash((K_GATHERV, DTYPE_CODES[send.dtype], root))
        except (TypeError, ValueError) as exc:
            error = exc
        table = self._agree_rows(call, t0, error, usable, sig, payload, n + 1)
        if table is None:
            native = _Intracomm.Igatherv if call in _NB else _Intracomm.Gatherv
            return self._delegated(call, t0, lambda: native(self, sendbuf, recvbuf, root))
        sent, wanted = table[:, 0], table[root, 1:]
        for i in np.flatnonzero(sent != wanted).tolist()[:1]:
            raise ValueError(f"{call}: the root (rank {root}) expects {int(wanted[i])} entries from rank {i}, "
                             f"which sends {int(sent[i])}")
        job = self._rooted_job(call, sent, send.dtype, K_GATHERV, root, column=True)
        out = job.alltoallv(send.array)
        if at_root:
            _unpack(job.view(recv.array), out, sent.tolist(), recv.displs.tolist())
        return self._done(call, t0, job)

    def Scatter(self, sendbuf, recvbuf, root: int = 0):
        return self._scatter("Scatter", sendbuf, recvbuf, root)

    def Iscatter(self, sendbuf, recvbuf, root: int = 0):
        return self._scatter("Iscatter", sendbuf, recvbuf, root)

    def _scatter(self, call, sendbuf, recvbuf, root):
        t0 = _perf()
        st = self._st
        n = st.size
        error = key = None
        try:
            at_root = self._check_root(call, root)
            keep = at_root and in_place(recvbuf)  # the root's block stays in its send buffer
            send = message(sendbuf, n) if at_root else None
            recv = None if keep else message(recvbuf, 0, writable=True)
            usable = (send is not None and (keep or compatible(send, recv))) if at_root else recv is not None
            if usable:
                m = (send or recv).count
                key = (K_SCATTER, m, DTYPE_CODES[(send or recv).dtype], 0, root)
        except (TypeError, ValueError) as exc:
            error = exc
        if not self._agree(call, t0, key, error):
            native = _Intracomm.Iscatter if call in _NB else _Intracomm.Scatter
            return self._delegated(call, t0, lambda: native(self, sendbuf, recvbuf, root))
        m, dtype = key[1], buffers.DTYPE_NAMES[key[2]]
        job = self._rooted_job(call, np.full(n, m, np.int64), dtype, K_SCATTER, root, column=False)
        out = job.alltoallv(send.array if at_root else None)
        if not keep:
            job.view(recv.array)[...] = out
        return self._done(call, t0, job)

    def Scatterv(self, sendbuf, recvbuf, root: int = 0):
        return self._scatterv("Scatterv", sendbuf, recvbuf, root)

    def Iscatterv(self, sendbuf, recvbuf, root: int = 0):
        return self._scatterv("Iscatterv", sendbuf, recvbuf, root)

    def _scatterv(self, call, sendbuf, recvbuf, root):
        t0 = _perf()
        st = self._st
        n = st.size
        error, usable, payload, sig, recv, send = None, False, None, 0, None, None
        try:
            at_root = self._check_root(call, root)
            keep = at_root and in_place(recvbuf)
            if at_root:
                send = buffers.vmessage(sendbuf, n, "send", call)
            if not keep:
                recv = message(recvbuf, 0, writable=True)
            mine = int(send.counts[root]) if keep and send is not None else (recv.count if recv is not None else 0)
            usable = (send is not None and (keep or (recv is not None and recv.dtype == send.dtype))) if at_root \
                else recv is not None
            if usable:
                payload = np.zeros(n + 1, np.int64)
                payload[0] = mine
                if at_root:
                    payload[1:] = send.counts
                sig = hash((K_SCATTERV, DTYPE_CODES[(send or recv).dtype], root))
        except (TypeError, ValueError) as exc:
            error = exc
        table = self._agree_rows(call, t0, error, usable, sig, payload, n + 1)
        if table is None:
            native = _Intracomm.Iscatterv if call in _NB else _Intracomm.Scatterv
            return self._delegated(call, t0, lambda: native(self, sendbuf, recvbuf, root))
        wanted, sent = table[:, 0], table[root, 1:]
        for j in np.flatnonzero(sent != wanted).tolist()[:1]:
            raise ValueError(f"{call}: the root (rank {root}) sends {int(sent[j])} entries to rank {j}, which "
                             f"expects {int(wanted[j])}")
        dtype = (send or recv).dtype
        job = self._rooted_job(call, sent, dtype, K_SCATTERV, root, column=False)
        out = job.alltoallv(send.array if at_root else None, send.displs.tolist() if at_root else None)
        if not keep:
            job.view(recv.array)[...] = out
        return self._done(call, t0, job)

    def _rooted_job(self, call, per_rank, dtype, kind, root, column: bool):
        """The job of a gather (``column``: rank i sends ``per_rank[i]`` to ``root``) or scatter (``root``
        sends ``per_rank[j]`` to rank j) pattern, an alltoallv; timed as the ``direct`` pattern of the
        devices: every device sends to the root's first device (gather), or it sends to every device
        (scatter). The n x n matrices are made only when the signature is new."""
        st = self._st
        per_rank = np.ascontiguousarray(per_rank, dtype=np.int64)
        key = (kind, int(per_rank.sum()), DTYPE_CODES[dtype], 0, root, zlib.crc32(per_rank.tobytes()))
        job = st.jobs.get(key)
        if job is None:
            n, k, P = st.size, st.session.devices_per_rank, st.group.num_devices
            matrix = np.zeros((n, n), np.int64)
            big = np.zeros((P, P), np.int64)
            if column:
                matrix[:, root] = per_rank
                big[:, root * k] = np.repeat(per_rank, k)
            else:
                matrix[root, :] = per_rank
                big[root * k, :] = np.repeat(per_rank, k)
            counts = Counts(matrix)
            time_plane = st.session.time(st.group, "alltoallv", Counts(big), dtype, algorithm="direct")
            job = self._job(call, key, "alltoallv", counts.total, dtype, counts=counts, time_plane=time_plane)
        return job

    # -- Scan, Exscan: a linear scan ---------------------------------------------------------------

    def Scan(self, sendbuf, recvbuf, op=MPI.SUM):
        return self._scan("Scan", sendbuf, recvbuf, op, False)

    def Iscan(self, sendbuf, recvbuf, op=MPI.SUM):
        return self._scan("Iscan", sendbuf, recvbuf, op, False)

    def Exscan(self, sendbuf, recvbuf, op=MPI.SUM):
        return self._scan("Exscan", sendbuf, recvbuf, op, True)

    def Iexscan(self, sendbuf, recvbuf, op=MPI.SUM):
        return self._scan("Iexscan", sendbuf, recvbuf, op, True)

    def _scan(self, call, sendbuf, recvbuf, op, exclusive):
        t0 = _perf()
        st = self._st
        key = None
        recv = message(recvbuf, 0, True)
        send = recv if in_place(sendbuf) else message(sendbuf, 0)
        name = op_name(op)
        if compatible(send, recv) and valid(name, recv.dtype):
            key = (K_EXSCAN if exclusive else K_SCAN, recv.count, DTYPE_CODES[recv.dtype], OP_CODES[name], 0)
        if not self._agree(call, t0, key, spec=recvbuf):
            if exclusive:
                native = _Intracomm.Iexscan if call in _NB else _Intracomm.Exscan
            else:
                native = _Intracomm.Iscan if call in _NB else _Intracomm.Scan
            return self._delegated(call, t0, lambda: native(self, sendbuf, recvbuf, op))
        job = self._scan_job(call, key, recv.count, recv.dtype, name, exclusive)
        out = job.alltoallv(send.array, [0] * st.size)   # the same block to every later rank
        m = recv.count
        got = out.size // m if m else 0
        if got:
            for j in range(1, got):  # in rank order, as MPI's scan defines it
                kernels.reduce_chunk(out, 0, out, j * m, m, job.op, job.fmt)
            job.view(recv.array)[...] = out[:m]
        return self._done(call, t0, job)

    def _scan_job(self, call, key, m, dtype, op, exclusive):
        """Rank i sends its buffer to every rank after it (and itself, for Scan); timed as that
        pattern over the devices (``direct``: one step)."""
        st = self._st
        job = st.jobs.get(key)
        if job is None:
            n, P = st.size, st.group.num_devices
            k = 1 if exclusive else 0
            counts = Counts(np.triu(np.full((n, n), m, np.int64), k))
            time_plane = st.session.time(st.group, "alltoallv", Counts(np.triu(np.full((P, P), m, np.int64), k)),
                                         dtype, algorithm="direct")
            job = self._job(call, key, "alltoallv", counts.total, dtype, counts=counts, time_plane=time_plane)
            job.op = buffers.kernel_op(op)  # for the local reduction of the received blocks
        return job

    # -- Barrier -------------------------------------------------------------------------------------

    def Barrier(self):
        """The header alone (one MPI_Allreduce of the ranks' clocks: no rank leaves before all arrived);
        timed as an allreduce of no data (its latency)."""
        self._barrier("Barrier")

    def _barrier(self, call):
        t0 = _perf()
        self._agree(call, t0, (K_BARRIER, 0, _UINT8, 0, 0))
        self._done(call, t0, self._barrier_job())

    def Ibarrier(self):
        """A nonblocking MPI_Iallreduce of the ranks' clocks: complete when every rank has arrived."""
        t0 = _perf()
        st = self._st
        clock = st.session.clock
        if clock.pending:
            clock.sweep()
        arrival = clock.at(t0)
        job = self._barrier_job()
        mine = np.array([_bits(arrival)], np.int64)
        out = np.zeros(1, np.int64)
        if st.xcomm is None:
            raise ValueError("Ibarrier: this EmulatedComm is closed")
        req = st.xcomm.Iallreduce(mine, out, MPI.MAX)
        entry = st.group.stats["Ibarrier"]
        entry.calls += 1
        entry.algorithms.add(job.algorithm)
        entry.timed_as.add(job.label)
        entry.host_s += _perf() - t0
        pending = requests.Pending(clock, entry, job.seconds, None,
                                   reader=lambda: _float(int(out[0])) + job.seconds)
        result = requests.native(req, pending)
        clock.leave(arrival)
        return result

    def _barrier_job(self):
        st = self._st
        job = st.jobs.get(K_BARRIER)
        if job is None:
            job = _Timed(*st.session.time(st.group, "allreduce", 0, "uint8"))
            st.jobs[K_BARRIER] = job
        return job

    def barrier(self):
        self._barrier("barrier")

    # -- the pickle-based calls ----------------------------------------------------------------------
    #
    # Objects are pickled (mpi4py's MPI.pickle) and their bytes move through the executor as uint8
    # data; each call is timed by the pickled size (the largest rank's where they differ).

    def bcast(self, obj=None, root: int = 0):
        t0 = _perf()
        st = self._st
        error = None
        data = b""
        try:
            at_root = self._check_root("bcast", root)
            if at_root:
                data = MPI.pickle.dumps(obj)
        except Exception as exc:  # noqa: BLE001 -- a pickling error must reach the other ranks
            error = _as_value_error("bcast", exc)
        # The root's pickled size rides in the header's size slot (the others send 0; the header takes a max).
        self._agree("bcast", t0, (K_OBJ, 0, _UINT8, 0, root), error, hint=(len(data), 0))
        size = st.hint[0]
        key = (K_OBJ, size, _UINT8, 1, root)
        job = self._job("bcast", key, "broadcast", size, "uint8", root=root)
        buf = np.frombuffer(data, np.uint8).copy() if at_root else np.empty(size, np.uint8)
        if size:
            job.bcast(buf, at_root)
        result = obj if at_root else MPI.pickle.loads(buf.tobytes())
        self._done("bcast", t0, job)
        return result

    def gather(self, sendobj, root: int = 0):
        return self._gather_objects("gather", sendobj, root)

    def _gather_objects(self, call, sendobj, root):
        """Every rank's pickle to ``root`` (rooted alltoallv); the root unpickles them in rank order."""
        t0 = _perf()
        st = self._st
        n = st.size
        error, data = None, b""
        try:
            at_root = self._check_root(call, root)
            data = MPI.pickle.dumps(sendobj)
        except Exception as exc:  # noqa: BLE001
            error = _as_value_error(call, exc)
        table = self._agree_rows(call, t0, error, True, hash((K_OBJ, root, 2)), [len(data)], 1)
        sizes = table[:, 0]
        job = self._rooted_job(call, sizes, "uint8", K_OBJ + 1, root, column=True)
        out = job.alltoallv(np.frombuffer(data, np.uint8))
        result = None
        if at_root:
            result = _unpickle_blocks(out, sizes)
        self._done(call, t0, job)
        return result

    def scatter(self, sendobj=None, root: int = 0):
        t0 = _perf()
        st = self._st
        n = st.size
        error, blocks = None, []
        try:
            at_root = self._check_root("scatter", root)
            if at_root:
                items = list(sendobj) if sendobj is not None else None
                if items is None or len(items) != n:
                    raise ValueError(f"scatter: the root's sendobj has {0 if items is None else len(items)} items; "
                                     f"expected {n} (one per rank)")
                blocks = [MPI.pickle.dumps(x) for x in items]
        except Exception as exc:  # noqa: BLE001
            error = _as_value_error("scatter", exc)
        payload = [len(b) for b in blocks] if at_root and error is None else [0] * n
        table = self._agree_rows("scatter", t0, error, True, hash((K_OBJ, root, 3)), payload, n)
        sizes = table[root]
        job = self._rooted_job("scatter", sizes, "uint8", K_OBJ + 2, root, column=False)
        out = job.alltoallv(np.frombuffer(b"".join(blocks), np.uint8) if at_root else None)
        result = MPI.pickle.loads(out.tobytes())
        self._done("scatter", t0, job)
        return result

    def allgather(self, sendobj):
        t0 = _perf()
        objs, job = self._allgather_pickles("allgather", t0, sendobj)
        self._done("allgather", t0, job)
        return objs

    def _allgather_pickles(self, call, t0, sendobj, time_as=None, error=None):
        """Every rank's pickle on every rank (an allgather of blocks padded to the largest): the
        objects in rank order, and the job (timed as allgather, or as ``time_as`` of the largest
        pickle: ``(collective, root)``)."""
        st = self._st
        n = st.size
        data = b""
        if error is None:
            try:
                data = MPI.pickle.dumps(sendobj)
            except Exception as exc:  # noqa: BLE001
                error = _as_value_error(call, exc)
        table = self._agree_rows(call, t0, error, True, hash((K_OBJ, 4)), [len(data)], 1)
        sizes = table[:, 0]
        m = int(sizes.max())
        code = 0 if time_as is None else _TIME_AS[time_as[0]] * (1 << 32) + time_as[1]
        key = (K_OBJ + 3, m, _UINT8, 0, 0, code)
        time_plane = None
        if time_as is not None and key not in st.jobs:
            collective, root = time_as
            if collective in ("scan", "exscan"):
                P = st.group.num_devices
                tri = Counts(np.triu(np.full((P, P), m, np.int64), int(collective == "exscan")))
                time_plane = st.session.time(st.group, "alltoallv", tri, "uint8", algorithm="direct")
            else:
                time_plane = st.session.time(st.group, collective, m, "uint8", root=root * st.session.devices_per_rank)
        job = self._job(call, key, "allgather", m, "uint8", time_plane=time_plane)
        w = job.work()
        row = w[0]
        row[st.rank * m:st.rank * m + len(data)] = np.frombuffer(data, np.uint8)
        if m:
            job.run(w)
        objs = [MPI.pickle.loads(row[j * m:j * m + c].tobytes()) for j, c in enumerate(sizes.tolist())]
        return objs, job

    def alltoall(self, sendobj):
        t0 = _perf()
        st = self._st
        n = st.size
        error, blocks = None, []
        try:
            items = list(sendobj)
            if len(items) != n:
                raise ValueError(f"alltoall: sendobj has {len(items)} items; expected {n} (one per rank)")
            blocks = [MPI.pickle.dumps(x) for x in items]
        except Exception as exc:  # noqa: BLE001
            error = _as_value_error("alltoall", exc)
        payload = [len(b) for b in blocks] if error is None else [0] * n
        table = self._agree_rows("alltoall", t0, error, True, hash((K_OBJ, 5)), payload, n)
        counts = Counts(table)
        job = self._vjob("alltoall", counts, "uint8", K_OBJ + 4)
        out = job.alltoallv(np.frombuffer(b"".join(blocks), np.uint8))
        result = _unpickle_blocks(out, table[:, st.rank])
        self._done("alltoall", t0, job)
        return result

    def reduce(self, sendobj, op=MPI.SUM, root: int = 0):
        t0 = _perf()
        error = None
        try:
            self._check_root("reduce", root)
        except (TypeError, ValueError) as exc:
            error, root = exc, 0
        objs, job = self._allgather_pickles("reduce", t0, sendobj, ("reduce", root), error)
        result = functools.reduce(op, objs) if self._st.rank == root else None
        self._done("reduce", t0, job)
        return result

    def allreduce(self, sendobj, op=MPI.SUM):
        t0 = _perf()
        objs, job = self._allgather_pickles("allreduce", t0, sendobj, ("allreduce", 0))
        result = functools.reduce(op, objs)
        self._done("allreduce", t0, job)
        return result

    def scan(self, sendobj, op=MPI.SUM):
        t0 = _perf()
        objs, job = self._allgather_pickles("scan", t0, sendobj, ("scan", 0))
        result = functools.reduce(op, objs[:self._st.rank + 1])
        self._done("scan", t0, job)
        return result

    def exscan(self, sendobj, op=MPI.SUM):
        t0 = _perf()
        objs, job = self._allgather_pickles("exscan", t0, sendobj, ("exscan", 0))
        rank = self._st.rank
        result = functools.reduce(op, objs[:rank]) if rank else None
        self._done("exscan", t0, job)
        return result


class _Memo:
    """One call's parsed buffers, kept for the next call with the same buffer objects (a loop).

    Only plain numpy arrays (and ``IN_PLACE``/``None``) are kept: they cannot change their memory, and
    a change of dtype shows as another dtype object; a list specification could be edited in place.
    The memo holds the arrays (one pair per call kind and communicator) until a call of that kind
    with other buffers, or :meth:`EmulatedComm.close`."""

    __slots__ = ("a", "b", "extra", "adt", "bdt", "key", "sig", "build", "method", "arrays", "job", "run",
                 "cacheable")

    def __init__(self, a, b, extra):
        self.a, self.b, self.extra = a, b, extra
        self.adt = a.dtype if type(a) is np.ndarray else None
        self.bdt = b.dtype if type(b) is np.ndarray else None
        self.key = self.sig = self.job = self.run = None
        self.cacheable = _plain(a) and _plain(b)

    def matches(self, a, b, extra) -> bool:
        return (self.a is a and self.b is b and (self.extra is extra or self.extra == extra) and self.cacheable
                and (self.adt is None or a.dtype is self.adt) and (self.bdt is None or b.dtype is self.bdt))

    def keyed(self, key, build, method, *arrays):
        """The call can be emulated: its signature, :meth:`EmulatedComm._job`'s arguments after the key,
        and the :class:`~collectives.comm.jobs.Job` method (``<method>_fn``) with its arrays."""
        self.key, self.sig = key, hash(key) & _MASK
        self.build, self.method, self.arrays = build, method, arrays


def _plain(x) -> bool:
    return type(x) is np.ndarray or x is None or x is MPI.IN_PLACE


class _Timed:
    """The time plane of a call that moves no data (Barrier)."""

    __slots__ = ("nbytes", "algorithm", "seconds", "label")

    def __init__(self, nbytes, algorithm, seconds, label):
        self.nbytes, self.algorithm, self.seconds, self.label = nbytes, algorithm, seconds, label


# -- helpers ----------------------------------------------------------------------------------------

def _check_topology(topology, size, k):
    n = size * k
    if topology is None:
        from topologies import switch

        return switch(n, bw_GBps=DEFAULT_BW_GBPS, lat_us=DEFAULT_LAT_US)
    if isinstance(topology, str):
        from topologies import preset

        topology = preset(topology)
    got = getattr(topology, "num_devices", None)
    if got != n:
        raise ValueError(f"topology {getattr(topology, 'name', topology)!r} has {got} devices; expected "
                         f"{size} ranks x {k} devices per rank = {n}")
    return topology


def _pair_counts(call, sent, wanted, unit="elements") -> Counts:
    """The call's :class:`Counts` from every rank's sendcounts (row i) and recvcounts (row j);
    ``ValueError`` on every rank when a receiver's count differs from its sender's."""
    diff = np.argwhere(sent != wanted.T)
    if diff.size:
        i, j = (int(x) for x in diff[0])
        raise ValueError(f"{call}: rank {j} expects {int(wanted[j, i])} {unit} from rank {i}, which sends "
                         f"it {int(sent[i, j])} (recvcounts[{i}] on rank {j} must equal sendcounts[{j}] on "
                         f"rank {i})")
    return Counts(sent)


def _unpack(dst: np.ndarray, packed: np.ndarray, counts, displs) -> None:
    """Received blocks (packed in rank order) to their displacements in the receive buffer."""
    at = 0
    for c, d in zip(counts, displs):
        if c:
            dst[d:d + c] = packed[at:at + c]
        at += c


def _unpickle_blocks(packed: np.ndarray, sizes) -> list:
    out, at = [], 0
    for c in np.asarray(sizes).tolist():
        out.append(MPI.pickle.loads(packed[at:at + c].tobytes()))
        at += c
    return out


def _as_value_error(call, exc):
    if isinstance(exc, (TypeError, ValueError)):
        return exc
    return ValueError(f"{call}: {type(exc).__name__}: {exc}")


def _done_request():
    greq = MPI.Grequest.Start(None, None, None)
    greq.Complete()
    return greq



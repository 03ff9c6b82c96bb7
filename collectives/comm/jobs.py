"""A call's two planes, built once per agreed call signature and replayed: the schedule bound to this
rank with its work buffer (data plane), and the call's emulated time (time plane).

The data plane runs one device per rank (``n`` ranks, ``n`` devices) with the algorithm the
communicator names, or else the registered one that costs the host least (:func:`data_algorithm`:
message rounds and bytes; the results do not depend on the algorithm, but for the order of
floating-point reductions, which MPI leaves open too). The time plane is the call on the group's
``n x devices_per_rank`` devices of its sub-system, with the library's algorithm.

Work buffers follow the layouts of the collective specs (:mod:`collectives.allreduce` and the
others). An allreduce, allgather or broadcast runs in the caller's receive buffer itself (an
allreduce's scratch rows, as recursive doubling's, beside it), an alltoall between the caller's two
buffers; the others keep one work buffer per signature.
"""

from __future__ import annotations

import functools
import os
import sys
import time

import numpy as np

from .. import registry
from ..executors import mpi as _executor
from . import buffers

MPI = _executor.MPI

#: The data plane's algorithm where the host cost cannot tell (alltoallv, whose counts vary per call).
DATA_ALGORITHMS = {"alltoallv": "direct"}
#: The host's cost of the data plane (:func:`data_algorithm`): per message round (a step's Python and
#: the wait for its peers, measured at ~10 us on 2 ranks), and per byte a rank sends or reduces.
HOST_ROUND_S = 10e-6
HOST_BYTES_PER_S = 4e9
_CHOICES: dict = {}   # (collective, n, count, itemsize) -> algorithm
#: ``(tag, nbytes)`` of the message a data plane sent ahead of its agreement: none.
NOTHING_AHEAD = (0, 0)


def fail(call: str, exc: BaseException) -> None:
    """A failure after the ranks agreed to go on (inside the steps): the others may wait for this rank's
    messages, so end the job with one line naming the rank (its rank in ``MPI.COMM_WORLD``)."""
    world = MPI.COMM_WORLD
    if world.Get_size() <= 1:
        raise exc
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    sys.stdout.flush()
    sys.stderr.write(f"rank {world.Get_rank()}: {call}: {text}\n")
    sys.stderr.flush()
    time.sleep(_executor.ABORT_GRACE_S)
    world.Abort(1)
    os._exit(1)


class Job:
    """One agreed call signature on one communicator: see the module docstring."""

    __slots__ = ("call", "collective", "bound", "storage", "dtype", "op", "fmt", "nbytes", "seconds", "algorithm",
                 "label", "count", "rank", "n", "direct", "_work", "base", "counts", "serial", "zero")

    def __init__(self, call, collective, bound, dtype, op, count, rank, n, time_plane, counts=None):
        self.call, self.collective, self.bound, self.dtype = call, collective, bound, dtype
        self.storage = buffers.storage(dtype)
        spec = registry.collective(collective)
        self.op = buffers.kernel_op(op) if spec.reduces else buffers.kernel_op("sum")
        self.fmt = _executor.dtypes.kernel_format(dtype)
        self.count, self.rank, self.n = count, rank, n
        self.nbytes, self.algorithm, self.seconds, self.label = time_plane
        self.direct = bound.hosted == 0
        # Every local step runs transfer by transfer (no parallel kernel): the work rows may then be
        # pieces of the caller's arrays (_Segments) instead of one 2-D buffer.
        self.serial = all(plan.local is None or plan.serial is not None for plan in bound.plans)
        self.zero = _reads_endpoints_first(bound.schedule)
        self._work = None
        self.counts = counts
        self.base = int(counts.send.max()) if counts is not None else 0

    # -- buffers -----------------------------------------------------------------------------------

    def work(self) -> np.ndarray:
        """The cached work buffer; its endpoint rows cleared where the schedule reduces into them before
        it writes them (they start empty, as in ``collectives.run``)."""
        w = self._work
        if w is None:
            w = self._work = np.zeros((self.bound.rows, self.bound.schedule.length), self.storage)
        elif self.zero:
            w[1:] = 0
        return w

    def view(self, arr: np.ndarray) -> np.ndarray:
        """A caller's flat array as the kernels' storage (float16 as uint16 bits, bool as uint8, ...)."""
        return arr if arr.dtype == self.storage else arr.view(self.storage)

    def run(self, work: np.ndarray) -> None:
        try:
            self.bound.run(work, self.op, self.fmt)
        except BaseException as exc:  # noqa: BLE001 -- the other ranks must not be left waiting
            fail(self.call, exc)

    def runner(self, work):
        """The data plane on these fixed ``work`` rows as a function ``go(agree=None)``, replayed call after
        call: the first two calls run :meth:`run`, later ones the executor's
        :class:`~collectives.executors.mpi.Replay` (persistent requests on views made once) where it
        applies. ``work`` must stay the same object with the same memory.

        ``agree``: the caller's agreement with the other ranks, called as ``agree(ahead)`` before any
        message is received: ``ahead`` is ``(tag, nbytes)`` of the message this rank sent ahead of it (its
        first step's, when a Replay runs; ``(0, 0)``: none). When it returns False (the ranks do not
        emulate this call) ``go`` returns False having moved nothing; the peer drops what was sent ahead."""
        replay = None   # None: not made yet; False: does not apply
        runs = 0
        call = self.call

        def go(agree=None):
            nonlocal replay, runs
            if replay:
                # An agreement that fails raises on every rank (nothing left in flight): not a failure
                # inside the steps, which must end the job.
                if agree is not None and not replay.start(agree):
                    return False
                try:
                    replay.run(agree is not None)
                except BaseException as exc:  # noqa: BLE001 -- as in run
                    fail(call, exc)
                return True
            if agree is not None and not agree(NOTHING_AHEAD):
                return False
            self.run(work)
            runs += 1
            if replay is None and runs == 2:  # made once the rows came back: a one-off call costs no requests
                try:
                    replay = self.bound.replayer(work, self.op, self.fmt) or False
                except (IndexError, ValueError):  # rows that do not hold a chunk: run() says so
                    replay = False
            return True
        return go

    # -- the collectives ---------------------------------------------------------------------------
    #
    # ``<name>_fn(arrays...)`` returns the call's data plane as a function ``go(agree=None)`` (see
    # runner), its views made once: a loop that passes the same buffers replays it (EmulatedComm's memo).

    def allreduce_fn(self, send, recv):
        r = self.view(recv)
        s = self.view(send)
        if self.direct or self.serial:  # in the receive buffer itself, endpoint rows beside it
            if self.direct:
                r2 = r.reshape(1, -1)
            else:
                w = self.work()
                r2 = _Segments([[(0, r.size, r)]] + [[(0, row.size, row)] for row in w[1:]], r.dtype)
            work = self.work if self.zero else None
            run = self.runner(r2)
            if send is recv and work is None:
                return run

            def go(agree=None):
                if send is not recv:
                    r[...] = s
                if work is not None:
                    work()
                if run(agree) is False:
                    return False
            return go
        w = self.work()
        return self._staged(w, functools.partial(np.copyto, w[0], s), functools.partial(np.copyto, r, w[0]))

    def allreduce(self, send, recv) -> None:
        self.allreduce_fn(send, recv)()

    def bcast_fn(self, buf, at_root):
        b = self.view(buf)
        if self.direct and b.flags.writeable:
            return self.runner(b.reshape(1, -1))
        w = self.work()
        return self._staged(w, functools.partial(np.copyto, w[0], b) if at_root else None,
                            None if at_root else functools.partial(np.copyto, b, w[0]))

    def bcast(self, buf, at_root) -> None:
        self.bcast_fn(buf, at_root)()

    def reduce_fn(self, send, recv):
        s = self.view(send)
        r = None if recv is None else self.view(recv)
        w = self.work()
        return self._staged(w, functools.partial(np.copyto, w[0], s),
                            None if r is None else functools.partial(np.copyto, r, w[0]))

    def allgather_fn(self, send, recv):
        """``recv``: the n blocks of ``count``; ``send``: this rank's block, or ``None`` in place (the
        block is already in ``recv``)."""
        m, r = self.count, self.view(recv)
        mine = r[self.rank * m:(self.rank + 1) * m]
        s = None if send is None else self.view(send)
        if self.direct:
            run = self.runner(r.reshape(1, -1))
            if s is None:
                return run

            def go(agree=None):
                mine[...] = s
                if run(agree) is False:
                    return False
            return go
        w = self.work()
        wmine = w[0, self.rank * m:(self.rank + 1) * m]
        return self._staged(w, functools.partial(np.copyto, wmine, mine if s is None else s),
                            functools.partial(np.copyto, r, w[0]))

    def allgather(self, send, recv) -> None:
        self.allgather_fn(send, recv)()

    def reduce_scatter_fn(self, send, recv):
        """``send``: the n blocks of ``count``; ``recv``: this rank's reduced block."""
        m = self.count
        s, r = self.view(send), self.view(recv)
        lo, hi = self.rank * m, (self.rank + 1) * m
        if self.direct and self.serial and not np.shares_memory(s, r) and self._writes_within(lo, hi):
            # The schedule reads the send blocks and writes this rank's block only: that block is the
            # receive buffer (holding the send block at first), the others the send buffer itself.
            own = s[lo:hi]
            run = self.runner(_Segments([[(0, lo, s[:lo]), (lo, hi, r), (hi, s.size, s[hi:])]], r.dtype))

            def go(agree=None):
                r[...] = own
                if run(agree) is False:
                    return False
            return go
        w = self.work()
        mine = w[0, self.rank * m:(self.rank + 1) * m]
        return self._staged(w, functools.partial(np.copyto, w[0], s), functools.partial(np.copyto, r, mine))

    def alltoall_fn(self, send, recv):
        half = self.n * self.count
        s, r = self.view(send), self.view(recv)
        if self.direct and self.serial and not np.shares_memory(s, r) and self._writes_within(half, 2 * half):
            # The schedule reads the send area and writes the receive area: they are the caller's buffers.
            return self.runner(_Segments([[(0, half, s), (half, 2 * half, r)]], r.dtype))
        w = self.work()
        return self._staged(w, functools.partial(np.copyto, w[0, :half], s),
                            functools.partial(np.copyto, r, w[0, half:]))

    def _staged(self, w, load, store):
        """The data plane through the cached work buffer ``w``: ``load()`` puts the call's input in,
        the endpoint rows are cleared where the schedule needs them empty (:meth:`work`), the steps
        run, and ``store()`` takes the result out (either may be None)."""
        run = self.runner(w)

        def go(agree=None):
            if load is not None:
                load()
            self.work()
            if run(agree) is False:
                return False
            if store is not None:
                store()
        return go

    def _writes_within(self, lo: int, hi: int) -> bool:
        """Whether every transfer of the schedule into this rank's device row writes inside
        ``[lo, hi)`` (so that the rest of the row is only read)."""
        schedule = self.bound.schedule
        for step in schedule.steps():
            mine = (step.dst == self.rank) & (schedule.chunk_len[step.dst_chunk] > 0)
            if mine.any():
                off = schedule.offsets(step.dst[mine], step.dst_chunk[mine])
                if off.min() < lo or (off + schedule.chunk_len[step.dst_chunk[mine]]).max() > hi:
                    return False
        return True

    def alltoallv(self, send: np.ndarray | None, send_displs=None) -> np.ndarray:
        """Run with this rank's blocks (``send`` packed, or with ``send_displs`` its blocks at those
        displacements) and return the received blocks packed in rank order (a view of the work buffer,
        valid until the next call of this signature)."""
        w = self.work()
        row = self.counts.matrix[self.rank]
        if send is not None:
            s = self.view(send)
            if send_displs is None:
                w[0, :s.size] = s
            else:
                at = 0
                for n, d in zip(row.tolist(), send_displs):
                    if n:
                        w[0, at:at + n] = s[d:d + n]
                    at += n
        self.run(w)
        return w[0, self.base:self.base + int(self.counts.recv[self.rank])]


class _Segments:
    """Work rows made of the caller's arrays: row ``r`` is the pieces ``(start, stop, array)`` that cover
    its elements in order. The executor indexes a chunk as ``buf[row, a:b]``, for schedules whose
    local steps run transfer by transfer (:attr:`Job.serial`; chunks never straddle the pieces), so
    the data moves between the caller's buffers with no copy in or out."""

    __slots__ = ("rows", "dtype")

    def __init__(self, rows, dtype):
        self.rows, self.dtype = rows, dtype

    def _piece(self, key):
        row, sl = key
        a, b = sl.start, sl.stop
        for start, stop, arr in self.rows[row]:
            if start <= a and b <= stop:
                return arr, slice(a - start, b - start)
        raise IndexError(f"chunk [{a}, {b}) of row {row} straddles the work row's pieces")

    def __getitem__(self, key):
        arr, sl = self._piece(key)
        return arr[sl]

    def __setitem__(self, key, value):
        arr, sl = self._piece(key)
        arr[sl] = value


def build(state, call: str, collective: str, count: int, dtype: str, op: str = "sum", root: int = 0,
          counts=None, time_plane=None) -> Job:
    """The :class:`Job` of an agreed signature on ``state``'s communicator.

    ``counts``: alltoallv's n x n :class:`~collectives.alltoallv.Counts` (the data plane's).
    ``time_plane``: ``(nbytes, algorithm, seconds, label)`` (:meth:`Session.time`) when the call is
    timed as something else than this collective at this size (the alltoallv-shaped calls, the
    pickle-based ones)."""
    session, group = state.session, state.group
    n, rank = state.size, state.rank
    if time_plane is None:
        spec = registry.collective(collective)
        P = group.num_devices
        nbytes = spec.nbytes(P, count, buffers.dtypes.itemsize(dtype))
        time_plane = session.time(group, collective, nbytes, dtype, root=root * session.devices_per_rank)
    named = session.algorithm if session.algorithm in registry.list_algorithms(collective) else None
    params = {} if counts is None else {"counts": counts}
    itemsize = buffers.dtypes.itemsize(dtype)
    schedule = None
    for name in (named, data_algorithm(collective, n, count, itemsize, params), *registry.list_algorithms(collective)):
        if name is None:
            continue
        try:
            schedule = _executor.schedule_for(collective, name, n, count, root, **params)
            break
        except ValueError:  # AlgorithmUnavailable among them: it needs the emulated topology
            continue
    if schedule is None:
        raise ValueError(f"{call}: no {collective} algorithm runs on {n} devices")
    bound = _executor.Bound(schedule, state.xcomm)
    return Job(call, collective, bound, dtype, op, count, rank, n, time_plane, counts)


def data_algorithm(collective: str, n: int, count: int, itemsize: int, params=None) -> str | None:
    """The registered algorithm of ``collective`` that costs the host least on ``n`` ranks, one device
    each: ``rounds x HOST_ROUND_S + bytes / HOST_BYTES_PER_S``, with ``rounds`` the steps that send
    between ranks and ``bytes`` the most any rank sends, reduces and copies locally (plus two copies of
    its buffer when the schedule's scratch rows need a work buffer). Cached per (collective, n, count, itemsize).
    For a small message this is the fewest rounds (on 2 ranks, recursive doubling's one exchange),
    for a large one the fewest bytes (``direct``'s reduce-scatter and allgather)."""
    if collective in DATA_ALGORITHMS:
        return DATA_ALGORITHMS[collective]
    key = (collective, n, count, itemsize)
    hit = _CHOICES.get(key)
    if hit is None:
        best = None
        for name in registry.list_algorithms(collective):
            try:
                schedule = registry.build_schedule(collective, name, n, count, 0, **(params or {}))
            except ValueError:
                continue
            cost = _host_cost(schedule, n, itemsize)
            if best is None or cost < best[0]:
                best = (cost, name)
        hit = _CHOICES[key] = None if best is None else best[1]
    return hit


def _host_cost(schedule, n: int, itemsize: int) -> float:
    P = schedule.P
    rows = np.arange(P + len(schedule.endpoints or ()), dtype=np.int64)
    owner = np.where(rows < P, rows, (rows - P) % P) * n // P   # one device per rank: the device's rank
    rounds, load, serial = 0, np.zeros(n, np.int64), True
    for step in schedule.steps():
        ln = schedule.chunk_len[step.src_chunk]
        keep = ln > 0
        src, dst, ln = owner[step.src[keep]], owner[step.dst[keep]], ln[keep]
        cross = src != dst
        if cross.any():
            rounds += 1
            np.add.at(load, src[cross], ln[cross])
        local = ~cross
        if step.reduce:
            np.add.at(load, dst, ln)
        elif local.any():
            np.add.at(load, src[local], ln[local])  # a local copy costs a memcpy
        if local.any():
            if np.bincount(src[local], minlength=n).max() > _executor.SERIAL_LOCAL:
                serial = False
    copies = 0 if not schedule.endpoints or serial else 2 * schedule.length
    return rounds * HOST_ROUND_S + (int(load.max()) + copies) * itemsize / HOST_BYTES_PER_S


def _reads_endpoints_first(schedule) -> bool:
    """Whether a step reduces into an endpoint chunk (a row after the devices) that no earlier step
    wrote: only then must the endpoint rows start empty on every call."""
    P = schedule.P
    if not schedule.endpoints:
        return False
    written = set()
    for step in schedule.steps():
        ln = schedule.chunk_len[step.src_chunk]
        keep = (ln > 0) & (step.dst >= P)
        pairs = set(zip(step.dst[keep].tolist(), step.dst_chunk[keep].tolist()))
        if step.reduce and not pairs <= written:
            return True
        written |= pairs
    return False

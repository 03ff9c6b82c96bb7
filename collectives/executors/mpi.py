"""The MPI executor: a schedule's devices spread over MPI ranks, data moved by point-to-point messages.

Rank ``r`` of a communicator of ``R`` ranks hosts the contiguous block of devices
``r*k .. r*k + k - 1`` (``k`` devices per rank, the same on every rank, ``P = k * R``). Its work
buffers are one ``(k, L)`` array laid out exactly as :func:`collectives.api.run` lays out rows
``r*k .. r*k + k - 1`` of its ``(P, L)`` array, so both executors run the same schedule on the same
bytes. A schedule's extra endpoints (rows ``P, P+1, ...``: a device's scratch buffer, a reducing
switch's ports) live on the rank of device ``(row - P) mod P``, after that rank's device rows
(:func:`hosted_endpoints`).

How a step runs on one rank (the step semantics of :mod:`collectives.schedule`: every transfer reads
the buffers as they were at the start of the step, no chunk is both read and written in a step):

1. post one ``Irecv`` per peer rank that sends to this rank in this step, and one ``Isend`` per
   peer rank this rank sends to. Several transfers between the same pair of ranks travel as one
   packed message, in transfer order; a lone transfer is sent straight from the buffer (the chunk
   is not written during the step, so no snapshot is needed) and, when it is a copy, received
   straight into its destination chunk;
2. apply the transfers whose destination is local, in the step's transfer order per destination
   chunk: local ones from the buffer, remote ones from the received message once it is in. This
   is the order the local executor uses, so reductions give the same bits;
3. wait for the sends, so that the next step may overwrite what was sent.

A step's plan (who sends what to whom, in plain ints) is computed once per schedule, rank and
devices per rank and reused, and :func:`run` caches the last schedules it built: planning costs tens
of microseconds of numpy per step, as much as moving a MiB. Packed messages go through one scratch
block per thread that grows to the largest step and is kept (:func:`release_scratch` frees it):
fresh memory per message would cost a page fault per 4 KiB.

Messages carry the tag ``step index mod 32768``; within a step there is at most one message per
ordered pair of ranks and MPI keeps messages between a pair in order, so matching is exact. The
executor's messages use the communicator it is given: a program that has wildcard receives
outstanding on that communicator should pass a duplicate (:class:`collectives.mpi.EmulatedComm`
does).

Failures. Every rank must call :func:`run` with matching arguments. :func:`run` first agrees on the
arguments with one small ``Allgather``: bad input on any rank (or shapes, dtypes or arguments that
differ between ranks) raises on *every* rank, so nobody is left waiting. An exception after that
point (inside a step) can leave the other ranks blocked in a receive: callers abort the job on
error, with :func:`abort_on_error` (or ``python -m mpi4py script.py``, which does the same).

A rank killed by a signal cannot say so. The same ``Allgather`` records every rank's PID and host,
and a rank that has waited for a peer's message longer than :data:`DEAD_PEER_GRACE_S` checks
whether that peer's process still lives (same host only: ``/proc/PID/stat`` shows it exiting, a
zombie or gone; else ``kill(pid, 0)``); if not, it prints ``rank 0: rank 1 (devices 4-7, pid N)
died during allreduce; aborting`` and aborts the job. A best effort: MPICH's launcher kills the
other processes about 4 ms after one dies, and the survivor must look first (it did in 40 of 40
launches on a 2-core machine; ``mpiexec -disable-auto-cleanup`` leaves the clean-up to them).
Peers on other hosts are not checked.

This module is the only one in the project that imports mpi4py (``bench.mpi_support`` imports it
lazily to detect a launch); others take ``MPI`` from here.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import socket
import sys
import threading
import time
import weakref
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI
from mpi4py.util import dtlib

from .. import api, dtypes, kernels, registry
from ..ops import check_op, check_pair, kernel_op
from ..collective import Collective
from ..schedule import Schedule

__all__ = ["MPI", "run", "execute", "Bound", "schedule_for", "remember_peers", "abort_on_error", "RankMismatch",
           "hosted_endpoints", "load_rows", "extract_rows", "numpy_dtype", "release_scratch"]

# Seconds between printing a failure and aborting: the launcher forwards the line before it kills
# the job (without it the message was lost now and then).
ABORT_GRACE_S = 0.2
# Tags wrap at the smallest upper bound MPI guarantees (MPI_TAG_UB >= 32767).
_TAG_SPACE = 32768
# A wait for a peer longer than this checks whether the peer's process is alive, then every
# DEAD_PEER_CHECK_S (one read of /proc/PID/stat: about 6 us). Short, because MPICH's launcher kills
# the survivors about 4 ms after a process dies.
DEAD_PEER_GRACE_S = 0.0003
DEAD_PEER_CHECK_S = 0.00025


# -- public entry points ------------------------------------------------------------------------

def run(collective: str, local_data, comm, algorithm: str = "ring", op: str = "sum", root: int = 0,
        dtype=None, **params):
    """Run ``collective`` with this rank's devices' data and return this rank's rows of the result.

    Collective over ``comm``: every rank calls it with the same arguments and a ``local_data`` of
    the same shape and dtype.

    Parameters
    ----------
    collective : str
        A registered collective (``allreduce``, ``allgather``, ``reduce_scatter``, ``alltoall``,
        ``alltoallv``, ``broadcast``, ``reduce``).
    local_data : numpy.ndarray, shape (k, x)
        Inputs of the devices this rank hosts: row ``i`` is device ``rank*k + i``. ``x`` is what
        :func:`collectives.run` takes per device (allreduce, broadcast, reduce ``n``; allgather
        ``m``; reduce_scatter and alltoall ``P*m``, ``P = k * comm size``; alltoallv ``L``, at least
        the largest row sum of ``counts``). Never modified.
    comm : mpi4py.MPI.Intracomm
        The ranks; ``P = k * comm.Get_size()`` devices in all.
    algorithm, op, root, dtype, **params
        As for :func:`collectives.run`. alltoallv's ``counts`` is the whole P x P matrix, the same on
        every rank (``RankMismatch`` naming ``counts`` otherwise).

    Returns
    -------
    numpy.ndarray or None
        Rows ``rank*k .. rank*k + k - 1`` of ``collectives.run(collective, full_data, ...)``, bit for
        bit: allreduce, broadcast (k, n); allgather (k, P*m); reduce_scatter (k, m); alltoall
        (k, P*m); alltoallv (k, max_j R_j). For ``reduce``, the root's (n,) result on the rank
        hosting the root and ``None`` on the others.

    Raises
    ------
    ValueError, TypeError
        The errors of :func:`collectives.run`, raised on the rank whose input is wrong; the other
        ranks raise :class:`RankMismatch` (a ``ValueError``) naming that rank. Shapes, dtypes or
        arguments that differ between ranks raise ``RankMismatch`` with the same message on every
        rank.
    """
    job = prepare(collective, local_data, comm, algorithm, op, root, dtype, **params)
    buf = job.inputs
    job.execute(buf)
    return job.result(buf)


@dataclass
class Prepared:
    """This rank's part of a collective ready to execute across ``comm`` (the MPI twin of
    :class:`collectives.api.Prepared`): ``execute(buf)`` runs the schedule on a copy of ``inputs``
    (this rank's device rows, then the rows of the endpoints it hosts), ``result(buf)`` takes this
    rank's rows of the result out. Benchmarks reuse one across iterations."""

    spec: Collective
    schedule: Schedule
    inputs: np.ndarray
    comm: object
    first: int
    k: int
    op: str
    op_code: int
    fmt: int
    dtype: np.dtype

    def execute(self, buf: np.ndarray) -> None:
        execute(self.schedule, buf, self.comm, self.first, self.op_code, self.fmt)

    def result(self, buf: np.ndarray):
        s = self.schedule
        out = self.spec.extract_for(s, buf[:self.k], self.first)
        if out is None:
            return None
        if self.spec.reduces and self.op == "avg":
            kernels.finish_avg(out, s.P, self.fmt)
        return out.view(self.dtype) if out.dtype != self.dtype else out


def prepare(collective: str, local_data, comm, algorithm: str = "ring", op: str = "sum", root: int = 0,
            dtype=None, **params) -> Prepared:
    """Check the arguments on every rank (see :func:`run`), build the schedule and load this rank's
    work buffers. Collective over ``comm``."""
    error = data = name = None
    try:
        spec = registry.collective(collective)
        registry.builder(collective, algorithm)
        check_op(op)
        data, name = api.check_data(local_data, dtype)
        if spec.reduces:
            check_pair(name, op)
        params = spec.check_call_params(params, data.shape[0] * comm.Get_size())  # alltoallv's counts
    except Exception as exc:  # noqa: BLE001 -- any local failure must reach the other ranks first
        error = exc
    _agree(comm, error, data, name, _fingerprint(collective, algorithm, op, root, name, params),
           *_call_fingerprint(params))

    k, x = data.shape
    P = k * comm.Get_size()
    first = comm.Get_rank() * k
    # Same shape and call parameters everywhere: raises on every rank or none.
    count, params = spec.resolve_call((P, x), P, params)
    schedule = _schedule(collective, algorithm, P, count, root, params)
    buf = api.load_inputs(spec, schedule, data, name, op, first)  # mulsum: premultiplied by device
    hosted = hosted_endpoints(schedule, k, comm.Get_rank())
    if hosted:  # rows for the schedule's extra endpoints on this rank, empty at the start
        buf = np.concatenate([buf, np.zeros((hosted, buf.shape[1]), buf.dtype)])
    opc = kernel_op(op) if spec.reduces else kernels.SUM
    return Prepared(spec, schedule, buf, comm, first, k, op, opc, dtypes.kernel_format(name), data.dtype)


def execute(schedule: Schedule, local_buf: np.ndarray, comm, first_device: int, op_code: int, fmt: int) -> None:
    """Apply every step of ``schedule`` to this rank's work buffers in place (the timed loop).

    Collective over ``comm``; no argument checking between ranks (:func:`run` does that).

    Parameters
    ----------
    schedule : Schedule
        Built for ``P = k * comm.Get_size()`` devices.
    local_buf : numpy.ndarray, shape (k, schedule.length) or (k + e, schedule.length), C-contiguous
        Work buffers of devices ``first_device .. first_device + k - 1`` in kernel storage
        (float16/bfloat16 as uint16), optionally followed by the rows of the ``e`` schedule
        endpoints this rank hosts (:func:`hosted_endpoints`). Given only the ``k`` device rows, the
        endpoint rows are allocated here for the call (one extra copy of the buffers).
    comm : mpi4py.MPI.Intracomm
    first_device : int
        ``comm.Get_rank() * k``: devices are laid out in contiguous blocks of ``k`` per rank.
    op_code, fmt : int
        :data:`collectives.kernels.OP_CODES` value and kernel format (``dtypes.kernel_format``).
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    if local_buf.ndim != 2 or not local_buf.flags.c_contiguous:
        raise ValueError(f"local_buf must be a C-contiguous (devices, elements) array, got shape {local_buf.shape}")
    k = schedule.P // size
    if k < 1 or schedule.P != k * size:
        raise ValueError(f"schedule has P={schedule.P} devices, not a multiple of the {size} ranks")
    hosted = hosted_endpoints(schedule, k, rank)
    if local_buf.shape[0] not in (k, k + hosted):
        raise ValueError(f"local_buf has {local_buf.shape[0]} rows; rank {rank} hosts {k} of the P={schedule.P} "
                         f"devices" + (f" and {hosted} schedule endpoints" if hosted else ""))
    if local_buf.shape[1] != schedule.length:
        raise ValueError(f"local_buf has {local_buf.shape[1]} elements per device; "
                         f"the schedule needs {schedule.length}")
    if first_device != rank * k:
        raise ValueError(f"first_device={first_device}; rank {rank} with {k} devices per rank hosts devices "
                         f"from {rank * k}")
    work = local_buf
    if local_buf.shape[0] != k + hosted:  # endpoint rows start empty, as in collectives.run
        work = np.zeros((k + hosted, schedule.length), dtype=local_buf.dtype)
        work[:k] = local_buf
    _busy.append(rank)  # see _last_words; left set when the steps raise
    watch = _Watch.of(comm, k, schedule.collective)
    for plan in _plans(schedule, k, rank):
        _run_step(plan, work, comm, op_code, fmt, watch)
    _busy.pop()
    if work is not local_buf:
        local_buf[...] = work[:k]


class Bound:
    """A schedule bound to this rank of ``comm``, replayed call after call with no per-call checks.

    :func:`execute` validates its buffers and looks its step plans up on every call, a few
    microseconds that matter for small messages; a caller that keeps its own (checked, agreed)
    work buffers (:class:`collectives.mpi.EmulatedComm`) binds once and calls :meth:`run`.
    ``rows`` is how many rows the work buffer must have: this rank's ``k`` device rows, then the
    ``hosted`` endpoint rows (:func:`hosted_endpoints`), which :meth:`run` does not clear.
    """

    __slots__ = ("schedule", "comm", "k", "rank", "plans", "hosted", "rows", "_watch")

    def __init__(self, schedule: Schedule, comm, k: int = 1):
        size = comm.Get_size()
        if k < 1 or schedule.P != k * size:
            raise ValueError(f"schedule has P={schedule.P} devices; expected {k} per rank x {size} ranks")
        self.schedule, self.comm, self.k, self.rank = schedule, comm, k, comm.Get_rank()
        self.plans = _plans(schedule, k, self.rank)
        self.hosted = hosted_endpoints(schedule, k, self.rank)
        self.rows = k + self.hosted
        self._watch = None

    def run(self, work, op_code: int, fmt: int) -> None:
        """The schedule's steps on ``work`` in place: C-contiguous ``(rows, schedule.length)`` storage, or,
        when every plan's local transfers run one by one (``plan.serial``), any object indexed like it
        as ``work[row, a:b]`` (a chunk) with a ``dtype``, such as rows made of the caller's arrays."""
        comm, rank = self.comm, self.rank
        watch = self.watch()
        _busy.append(rank)  # see _last_words; left set when the steps raise
        for plan in self.plans:
            _run_step(plan, work, comm, op_code, fmt, watch)
        _busy.pop()

    def watch(self):
        """The dead-peer check of this rank's steps (:class:`_Watch`), or None; kept once made (the
        peers' PIDs, once recorded by :func:`remember_peers`, do not change)."""
        watch = self._watch
        if watch is None:
            watch = self._watch = _Watch.of(self.comm, self.k, self.schedule.collective)
        return watch

    def replayer(self, work, op_code: int, fmt: int):
        """:meth:`run` on these same ``work`` rows, call after call, as a :class:`Replay` (its messages
        are persistent requests on fixed views of ``work``), or ``None`` where that does not pay: a
        step of the parallel local kernel, or packed messages larger than :data:`REPLAY_SCRATCH_BYTES`.
        The caller keeps ``work`` (and what its rows are made of) alive and unchanged in place."""
        if not self.plans or self.comm.Get_size() < 2:
            return None
        itemsize = np.dtype(work.dtype).itemsize
        need = max(plan.scratch for plan in self.plans)
        if need * itemsize > REPLAY_SCRATCH_BYTES:
            return None
        if any(plan.local is not None and plan.serial is None for plan in self.plans):
            return None
        return Replay(self, work, op_code, fmt, np.empty(need, work.dtype))


#: The largest packed-message scratch a :class:`Replay` keeps for itself (larger steps go through the
#: shared block of :func:`_scratch`, call by call: per-call overheads do not matter there).
REPLAY_SCRATCH_BYTES = 1 << 20


class Replay:
    """A :class:`Bound` schedule on fixed work rows, each step's messages persistent requests
    (``Recv_init``/``Send_init`` on views made once), its copies and reductions bound to views: the
    same transfers in the same order as :func:`_run_step`, without its per-call slicing, tuple
    unpacking and request setup (a few microseconds per step, as much as a 4 KiB message costs).
    Made by :meth:`Bound.replayer`; the requests are freed with it. ``run()`` runs the steps;
    ``start(agree)`` then ``run(started=True)`` sends the first message ahead of an agreement."""

    __slots__ = ("bound", "steps", "requests", "op", "fmt", "scratch", "ahead", "lone", "__weakref__")

    def __init__(self, bound, work, op, fmt, scratch):
        self.bound, self.op, self.fmt, self.scratch = bound, op, fmt, scratch
        comm = bound.comm
        self.requests = []
        self.steps = []
        for plan in bound.plans:
            tag = plan.tag
            recvs, unpack = [], []
            for peer, direct, ldst, off, n, parts in plan.recvs:
                target = work[ldst, off:off + n] if direct else scratch[off:off + n]
                recvs.append(comm.Recv_init(target, source=peer, tag=tag))
                unpack.append([(work[ldst_, doff:doff + m], scratch[off + at:off + at + m])
                               for _, ldst_, doff, m, at in parts] if not direct else [])
            sends, pack = [], []
            for peer, parts, off, n in plan.sends:
                if len(parts) == 1:
                    lsrc, soff, _ = parts[0]
                    data = work[lsrc, soff:soff + n]
                else:
                    data, at = scratch[off:off + n], 0
                    for lsrc, soff, m in parts:
                        pack.append((scratch[off + at:off + at + m], work[lsrc, soff:soff + m]))
                        at += m
                sends.append(comm.Send_init(data, dest=peer, tag=tag))
            serial = [(work[ldst, doff:doff + n], work[lsrc, soff:soff + n], n)
                      for lsrc, ldst, soff, doff, n in plan.serial or ()]
            ordered = []
            for ldst, doff, n, index, off, soff in plan.ordered:
                src = (scratch[plan.recvs[index][3] + off:plan.recvs[index][3] + off + n] if index >= 0
                       else work[off, soff:soff + n])
                ordered.append((work[ldst, doff:doff + n], src, n, index))
            self.requests += recvs + sends
            self.steps.append((plan, recvs + sends, recvs, sends, pack, unpack, serial, ordered))
        first = bound.plans[0]
        # The first step's message, as __call__'s agree sees it (one per peer: on two ranks, one at most).
        self.ahead = ((first.tag, first.sends[0][3] * scratch.itemsize) if len(first.sends) == 1 else
                      (0, 0) if not first.sends else None)
        # One step that only moves messages straight between the rows (two ranks' allgather, broadcast,
        # alltoall): its requests, run without the general loop, whose bookkeeping costs as much as
        # a 64 KiB message.
        plan, both, recvs, sends, pack, unpack, serial, ordered = self.steps[0]
        self.lone = ((both, recvs) if len(self.steps) == 1 and not plan.reduce and not pack and not serial
                     and not any(unpack) else None)

    def start(self, agree) -> bool:
        """Send the first step's message ahead, then call ``agree((tag, nbytes))`` (its tag and size:
        on two ranks a step sends at most one message to the peer; ``(0, 0)`` when none), so that the
        ranks' agreement on the call travels beside the data instead of before it. Its result is
        returned: after False, or an exception from ``agree``, the message sent ahead has completed
        (the peer drops it) and nothing was received; after True, :meth:`run` ``(started=True)``
        does the rest."""
        if self.ahead is None:  # several first messages: agree before sending any
            return agree((0, 0))
        plan, both, recvs, sends, pack, unpack, serial, ordered = self.steps[0]
        for dst, src in pack:
            dst[...] = src
        if sends:
            MPI.Prequest.Startall(sends)
        try:
            ok = agree(self.ahead)
        except BaseException:
            if sends:
                _wait_all(sends, self.bound.watch())
            raise
        if not ok and sends:
            _wait_all(sends, self.bound.watch())
        return ok

    def run(self, started: bool = False) -> None:
        """The steps, after :meth:`start` when ``started``."""
        bound = self.bound
        watch = bound.watch()
        _busy.append(bound.rank)
        if self.lone is not None:
            both, recvs = self.lone
            if watch is not None:
                watch.plan = self.steps[0][0]
            if started and self.ahead is not None:
                if recvs:
                    MPI.Prequest.Startall(recvs)
            elif both:
                MPI.Prequest.Startall(both)
            if both:
                _wait_all(both, watch)
            _busy.pop()
            return
        op, fmt, reduce_chunk = self.op, self.fmt, kernels.reduce_chunk
        first = self.steps[0] if started and self.ahead is not None else None
        for step in self.steps:
            plan, both, recvs, sends, pack, unpack, serial, ordered = step
            if watch is not None:
                watch.plan = plan
            if step is first:
                if recvs:
                    MPI.Prequest.Startall(recvs)
            else:
                for dst, src in pack:
                    dst[...] = src
                if both:
                    MPI.Prequest.Startall(both)
            if plan.reduce:
                for dst, src, n in serial:
                    reduce_chunk(dst, 0, src, 0, n, op, fmt)
                if recvs:
                    done = [False] * len(recvs)
                    for dst, src, n, index in ordered:
                        if index >= 0 and not done[index]:
                            _wait(recvs[index], watch)
                            done[index] = True
                        reduce_chunk(dst, 0, src, 0, n, op, fmt)
                    _wait_all(recvs, watch)
            else:
                if recvs:
                    for _ in range(len(recvs)):
                        for dst, src in unpack[_wait_any(recvs, watch)]:
                            dst[...] = src
                for dst, src, _ in serial:
                    dst[...] = src
            if sends:
                _wait_all(sends, watch)
        _busy.pop()

    def free(self) -> None:
        """Free the persistent requests (also done when the Replay is collected)."""
        requests, self.requests = self.requests, []
        if requests and MPI.Is_initialized() and not MPI.Is_finalized():
            for request in requests:
                request.Free()

    def __del__(self):
        self.free()


def schedule_for(collective: str, algorithm: str, P: int, count: int, root: int = 0, **params) -> Schedule:
    """``api.build_schedule`` through the executor's cache of recent schedules (the same object for the
    same arguments, so its step plans are reused)."""
    return _schedule(collective, algorithm, P, count, root, params)


def remember_peers(comm) -> None:
    """Record every rank's PID and host for the dead-peer check of :func:`execute` and :class:`Bound`
    on ``comm`` (one ``Allgather``; collective). :func:`run` and :func:`prepare` do it as they agree."""
    mine = np.array([os.getpid(), _host_id()], dtype=np.int64)
    table = np.empty((comm.Get_size(), 2), dtype=np.int64)
    comm.Allgather(mine, table)
    _Watch.remember(comm, table[:, 0].tolist(), table[:, 1].tolist())


# Ranks in the middle of a collective, for _last_words (a list: calls may nest in a thread).
_busy: list[int] = []


@atexit.register
def _last_words() -> None:
    """A process that ends in the middle of a collective (``sys.exit`` from a callback, an exception
    nobody caught) says so on one line, naming its rank, and aborts the job: the other ranks wait
    for its messages and would otherwise hang. A process killed by a signal cannot; the launcher
    names it by PID then."""
    if _busy and MPI.Is_initialized() and not MPI.Is_finalized():
        print(f"rank {_busy[-1]}: exited in the middle of a collective", file=sys.stderr, flush=True)
        time.sleep(ABORT_GRACE_S)
        MPI.COMM_WORLD.Abort(1)
        os._exit(1)


def hosted_endpoints(schedule: Schedule, k: int, rank: int) -> int:
    """How many of the schedule's extra endpoints (rows ``P, P+1, ...``) rank ``rank`` hosts.

    Endpoint ``P + j`` lives on the rank of device ``j mod P``: algorithms number them per device
    (a device's scratch buffer, a switch's port facing device ``j``), so a device's own endpoints
    stay on its rank and transfers between them are local copies. A rank keeps its endpoint rows
    after its device rows, in endpoint order.
    """
    if not schedule.endpoints:
        return 0
    return int(_layout(schedule, k)[2][rank])


def _layout(schedule: Schedule, k: int):
    """(owner rank, local row) of every buffer row (devices, then endpoints), and endpoints per rank."""
    P, E = schedule.P, len(schedule.endpoints)
    size = P // k
    rows = np.arange(P + E, dtype=np.int64)
    owner = np.where(rows < P, rows, (rows - P) % P) // k
    local = rows % k  # devices: position in the rank's block
    if E:
        ep_owner = owner[P:]
        order = np.argsort(ep_owner, kind="stable")
        sorted_owner = ep_owner[order]
        position = np.empty(E, dtype=np.int64)
        position[order] = np.arange(E) - np.searchsorted(sorted_owner, sorted_owner, side="left")
        local[P:] = k + position
    hosted = np.bincount(owner[P:], minlength=size)
    return owner, local, hosted


@contextlib.contextmanager
def abort_on_error(comm=None, status: int = 1):
    """End every rank promptly when this rank fails, instead of leaving the others blocked.

    On an exception inside the block (or the decorated function; ``SystemExit`` and
    ``KeyboardInterrupt`` included) with more than one rank, print
    ``rank R: <Type>: <message>`` as one line on stderr and call ``comm.Abort(status)``, which ends
    all processes of the job (the launcher then exits non-zero); should ``Abort`` return (MPICH's
    may, until the launcher's kill arrives) the process exits at once with ``status``. With one rank
    nobody can be left waiting, so the exception propagates unchanged.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        Communicator to abort; ``MPI.COMM_WORLD`` by default.
    status : int
        Exit status passed to ``Abort``.

    Examples
    --------
    >>> with abort_on_error():
    ...     pass
    """
    try:
        yield
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: the others must not hang
        comm = MPI.COMM_WORLD if comm is None else comm
        if comm.Get_size() <= 1:
            raise
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        sys.stdout.flush()
        print(f"rank {comm.Get_rank()}: {text}", file=sys.stderr, flush=True)
        time.sleep(ABORT_GRACE_S)
        comm.Abort(status)
        # MPICH's MPI_Abort may return before the launcher kills this process: never run on.
        os._exit(status)


def numpy_dtype(datatype) -> np.dtype | None:
    """The numpy dtype of a predefined MPI datatype (or typecode string); ``None`` if it has none."""
    try:
        if isinstance(datatype, str):
            datatype = MPI.Datatype.fromcode(datatype)
        if not datatype.is_predefined:
            return None
        return np.dtype(dtlib.to_numpy_dtype(datatype))
    except (KeyError, ValueError, TypeError, AttributeError, MPI.Exception):
        return None


# -- the rank's rows of the collective's buffers -------------------------------------------------

def load_rows(spec: Collective, data: np.ndarray, P: int, count: int, root: int, first: int) -> np.ndarray:
    """Work buffers (k, L) of devices ``first .. first+k-1`` (see :meth:`Collective.load`)."""
    return spec.load(data, P, count, root, first)


def extract_rows(spec: Collective, buf: np.ndarray, P: int, count: int, root: int, first: int):
    """This rank's rows of the result, or for a root-only result the root's row or ``None``."""
    return spec.extract(buf, P, count, root, first)


# -- argument agreement --------------------------------------------------------------------------

class RankMismatch(ValueError):
    """Raised by :func:`run` on every rank whose own arguments are fine when another rank's are not,
    or when shapes, dtypes or arguments differ between ranks (nothing has been exchanged)."""


_DTYPE_NAMES = list(dtypes.ALL_DTYPES)


def _fingerprint(collective, algorithm, op, root, name, params) -> int:
    # Only plain values: the repr of an object (a topology) holds an address that differs by rank;
    # a value with a fingerprint() of its own (alltoallv's Counts) counts by it.
    def plain(value):
        if isinstance(value, (int, float, str, bool, type(None))):
            return value
        return value.fingerprint() if callable(getattr(value, "fingerprint", None)) else type(value).__name__
    return zlib.crc32(repr((collective, algorithm, op, root, name,
                            sorted((key, plain(value)) for key, value in params.items()))).encode())


def _call_fingerprint(params) -> tuple[int, str]:
    """``(digest, names)`` of the parameter values that carry a fingerprint of their own (alltoallv's
    counts): a digest of them (0 if none) and their names."""
    own = sorted((key, value.fingerprint()) for key, value in params.items()
                 if callable(getattr(value, "fingerprint", None)))
    return (zlib.crc32(repr(own).encode()) if own else 0), ", ".join(key for key, _ in own)


def _agree(comm, error, data, name, fingerprint, call_fingerprint=0, call_names="") -> None:
    """One Allgather of (failed, k, x, dtype, fingerprint, pid, host, call fingerprint): raise on every
    rank if any rank cannot go on; remember the peers' PIDs and hosts for the dead-peer check
    (:class:`_Watch`)."""
    size = comm.Get_size()
    k, x = data.shape if error is None else (0, 0)
    code = _DTYPE_NAMES.index(name) if error is None else -1
    mine = np.array([error is not None, k, x, code, fingerprint, os.getpid(), _host_id(), call_fingerprint],
                    dtype=np.int64)
    table = np.empty((size, mine.size), dtype=np.int64)
    comm.Allgather(mine, table)
    _Watch.remember(comm, table[:, 5].tolist(), table[:, 6].tolist())
    if error is not None:
        raise error
    failed = np.flatnonzero(table[:, 0])
    if failed.size:
        raise RankMismatch(f"invalid arguments on {_ranks(failed)} (the error is raised there); "
                         f"no data was exchanged")
    layouts = [(int(kk), int(xx), int(cc)) for kk, xx, cc in table[:, 1:4]]
    if len(set(layouts)) > 1:
        groups = {}
        for r, lay in enumerate(layouts):
            groups.setdefault(lay, []).append(r)
        shown = "; ".join(f"({kk}, {xx}) {_DTYPE_NAMES[cc]} on {_ranks(rs)}" for (kk, xx, cc), rs in groups.items())
        raise RankMismatch(f"local_data differs across ranks: {shown}; every rank needs the same "
                         f"(devices per rank, elements) shape and dtype")
    if len(set(table[:, 7].tolist())) > 1:
        groups = {}
        for r, fp in enumerate(table[:, 7].tolist()):
            groups.setdefault(fp, []).append(r)
        shown = " vs ".join(_ranks(rs) for rs in groups.values())
        what = call_names or "call parameters"
        raise RankMismatch(f"{what} differ across ranks ({shown}); every rank must pass the same {what}")
    if len(set(table[:, 4].tolist())) > 1:
        raise RankMismatch("collective, algorithm, op, root, dtype or parameters differ across ranks; "
                         "every rank must pass the same arguments")


def _ranks(ranks) -> str:
    ranks = [int(r) for r in ranks]
    shown = ", ".join(map(str, ranks[:8])) + (", ..." if len(ranks) > 8 else "")
    return f"rank{'s' if len(ranks) > 1 else ''} {shown}"


# -- cached schedules and step plans ----------------------------------------------------------------

# Repeated calls (a benchmark loop, a training step) reuse the schedule and this rank's step plans:
# planning a step costs tens of microseconds of numpy calls, as much as moving a MiB.
_SCHEDULES: OrderedDict = OrderedDict()
_SCHEDULE_CACHE_SIZE = 32
_PLANS: dict = {}  # (id(schedule), k, rank) -> [_StepPlan]; dropped when the schedule is collected


def _schedule(collective, algorithm, P, count, root, params) -> Schedule:
    """``api.build_schedule``, cached when every parameter is a plain hashable value."""
    try:
        key = (collective, algorithm, registry.builder(collective, algorithm), P, count, root,
               tuple(sorted(params.items())))
        hash(key)
    except TypeError:
        return api.build_schedule(collective, algorithm, P, count, root, **params)
    schedule = _SCHEDULES.get(key)
    if schedule is None:
        schedule = api.build_schedule(collective, algorithm, P, count, root, **params)
        _SCHEDULES[key] = schedule
        if len(_SCHEDULES) > _SCHEDULE_CACHE_SIZE:
            _SCHEDULES.popitem(last=False)
    else:
        _SCHEDULES.move_to_end(key)
    return schedule


def _plans(schedule: Schedule, k: int, rank: int) -> list:
    key = (id(schedule), k, rank)
    plans = _PLANS.get(key)
    if plans is None:
        owner, local_row, _ = _layout(schedule, k)
        plans = [_plan_step(schedule, step, owner, local_row, rank, index % _TAG_SPACE)
                 for index, step in enumerate(schedule.steps())]
        plans = [plan for plan in plans if plan is not None]
        _PLANS[key] = plans
        weakref.finalize(schedule, _PLANS.pop, key, None)
    return plans


class _StepPlan:
    """What this rank does in one step, as plain Python ints (cheap to replay).

    ``recvs``: per sending rank ``(peer, direct, ldst, doff, n, parts)``: a direct message lands in
    ``buf[ldst, doff:doff+n]``; a packed one occupies ``scratch[doff:doff+n]`` and ``parts`` lists
    ``(transfer, ldst, doff, n, offset in the message)`` in transfer order.
    ``sends``: per receiving rank ``(peer, parts, scratch offset, n)`` with parts ``(lsrc, soff, n)``;
    one part is sent from the buffer itself, several are packed into scratch first.
    ``local``: the arrays :func:`kernels.apply_step` takes for transfers between this rank's devices
    that no remote transfer shares a destination chunk with (``None`` if there are none).
    ``ordered``: for a reduce step, the remaining local-destination transfers in transfer order:
    ``(ldst, doff, n, recv index or -1, offset in the message or lsrc, soff)``.
    ``serial``: the ``local`` transfers as ``(lsrc, ldst, soff, doff, n)`` when there are at most
    :data:`SERIAL_LOCAL` of them (else ``None``): run one by one, they cost a microsecond each, where
    :func:`kernels.apply_step`'s parallel launch costs about five (a device and its own scratch
    buffer, with one device per rank).
    """

    __slots__ = ("tag", "reduce", "recvs", "sends", "scratch", "local", "ordered", "serial")


#: Local transfers of a step run one by one (not through the parallel kernel) up to this many.
SERIAL_LOCAL = 4


def _plan_step(schedule, step, owner, local_row, rank, tag):
    ln = schedule.chunk_len[step.src_chunk]
    keep = ln > 0  # empty chunks carry nothing; both sides drop them, so messages still pair up
    src, dst = step.src[keep], step.dst[keep]
    srank, drank = owner[src], owner[dst]
    incoming = np.flatnonzero((srank != rank) & (drank == rank))
    outgoing = np.flatnonzero((srank == rank) & (drank != rank))
    local = np.flatnonzero((srank == rank) & (drank == rank))
    if not (len(incoming) or len(outgoing) or len(local)):
        return None
    soff_arr = schedule.offsets(src, step.src_chunk[keep])
    soff = soff_arr.tolist()
    doff_arr = schedule.offsets(dst, step.dst_chunk[keep])
    doff = doff_arr.tolist()
    ln_arr = ln[keep]
    n = ln_arr.tolist()
    lsrc_arr, ldst_arr = local_row[src], local_row[dst]
    lsrc, ldst = lsrc_arr.tolist(), ldst_arr.tolist()

    plan = _StepPlan()
    plan.tag, plan.reduce = tag, bool(step.reduce)
    used = 0  # scratch elements handed out so far
    plan.recvs = []
    for peer, group in _by_peer(incoming, srank):
        group = group.tolist()
        if not plan.reduce and len(group) == 1:  # a lone copy lands straight in its chunk
            t = group[0]
            plan.recvs.append((peer, True, ldst[t], doff[t], n[t], []))
            continue
        parts, at = [], 0
        for t in group:
            parts.append((t, ldst[t], doff[t], n[t], at))
            at += n[t]
        plan.recvs.append((peer, False, -1, used, at, parts))
        used += at
    plan.sends = []
    for peer, group in _by_peer(outgoing, drank):
        parts = [(lsrc[t], soff[t], n[t]) for t in group.tolist()]
        total = sum(p[2] for p in parts)
        plan.sends.append((peer, parts, used, total))
        if len(parts) > 1:
            used += total
    plan.scratch = used

    shared = np.zeros(len(local), dtype=bool)
    plan.ordered = []
    if plan.reduce and len(incoming):
        # Chunks that also receive from other ranks take every contribution in transfer order.
        dkey = ldst_arr * len(schedule.chunk_len) + step.dst_chunk[keep]
        shared = np.isin(dkey[local], dkey[incoming])
        source = {}
        for index, (_, _, _, _, _, parts) in enumerate(plan.recvs):
            for t, _, _, _, off in parts:
                source[t] = (index, off)
        for t in np.sort(np.concatenate((local[shared], incoming))).tolist():
            index, off = source.get(t, (-1, lsrc[t]))
            plan.ordered.append((ldst[t], doff[t], n[t], index, off, soff[t]))
    batch = local[~shared]
    plan.local = None
    if len(batch):
        order = np.argsort(ldst_arr[batch], kind="stable")  # grouped by destination, in transfer order
        batch = batch[order]
        d = ldst_arr[batch]
        group_ptr = np.concatenate(([0], np.flatnonzero(np.diff(d)) + 1, [len(d)])).astype(np.int64)
        plan.local = (lsrc_arr[batch], d, soff_arr[batch], doff_arr[batch], ln_arr[batch], group_ptr)
    plan.serial = None
    if plan.local is not None and len(batch) <= SERIAL_LOCAL:  # in the same order: grouped by destination
        plan.serial = list(zip(*(a.tolist() for a in plan.local[:5])))
    return plan


def _by_peer(indices, peer_of):
    """Split transfer indices into (peer, indices in transfer order) groups, peers ascending."""
    if not len(indices):
        return []
    peers = peer_of[indices]
    order = np.argsort(peers, kind="stable")
    indices, peers = indices[order], peers[order]
    cuts = np.flatnonzero(np.diff(peers)) + 1
    return [(int(group_peers[0]), group) for group_peers, group in
            zip(np.split(peers, cuts), np.split(indices, cuts))]


# -- one step --------------------------------------------------------------------------------------

# Scratch memory for packed messages, kept between steps and calls: fresh memory for every message
# costs a page fault per 4 KiB, as much as the copy itself at MiB sizes. One block per thread,
# grown to the largest step seen; :func:`release_scratch` gives it back.
_SCRATCH = threading.local()


def release_scratch() -> None:
    """Free the executor's cached scratch memory (it grows to the largest step's packed messages)."""
    _SCRATCH.__dict__.pop("block", None)


def _scratch(n: int, dtype) -> np.ndarray:
    """``n`` elements of ``dtype`` in the cached block, valid until the next step."""
    dtype = np.dtype(dtype)
    nbytes = n * dtype.itemsize
    block = getattr(_SCRATCH, "block", None)
    if block is None or block.nbytes < nbytes:
        block = np.empty(nbytes, dtype=np.uint8)
        _SCRATCH.block = block
    return block[:nbytes].view(dtype)


def _run_step(plan, buf, comm, op, fmt, watch=None) -> None:
    if watch is not None:
        watch.plan = plan
    scratch = _scratch(plan.scratch, buf.dtype) if plan.scratch else None
    tag = plan.tag
    recv_requests = []
    for peer, direct, ldst, off, n, _ in plan.recvs:
        target = buf[ldst, off:off + n] if direct else scratch[off:off + n]
        recv_requests.append(comm.Irecv(target, source=peer, tag=tag))
    send_requests = []
    for peer, parts, off, n in plan.sends:
        if len(parts) == 1:
            lsrc, soff, _ = parts[0]
            data = buf[lsrc, soff:soff + n]  # not written during the step: sent from the buffer itself
        else:
            data = scratch[off:off + n]
            at = 0
            for lsrc, soff, m in parts:
                data[at:at + m] = buf[lsrc, soff:soff + m]
                at += m
        send_requests.append(comm.Isend(data, dest=peer, tag=tag))
    if plan.serial is not None and plan.reduce:
        for lsrc, ldst, soff, doff, n in plan.serial:
            kernels.reduce_chunk(buf[ldst, doff:doff + n], 0, buf[lsrc, soff:soff + n], 0, n, op, fmt)
    elif plan.local is not None and plan.serial is None:
        kernels.apply_step(buf, *plan.local, plan.reduce, op, fmt)
    if not recv_requests:  # a step with local transfers only (it has no ordered reductions either)
        pass
    elif plan.reduce:
        _reduce_in_order(plan, buf, scratch, recv_requests, op, fmt, watch)
    else:
        _unpack_copies(plan, buf, scratch, recv_requests, watch)
    if plan.serial is not None and not plan.reduce:
        # A few local copies (an alltoall's own block) after the messages: MPI moves a large message
        # only while both ranks call into it, so copying first would hold the peer up. The copies read
        # chunks no transfer of the step writes, so their place in the step does not matter.
        for lsrc, ldst, soff, doff, n in plan.serial:
            buf[ldst, doff:doff + n] = buf[lsrc, soff:soff + n]
    if send_requests:
        _wait_all(send_requests, watch)


# Waiting by polling, first spinning for SPIN_S, then yielding the core between polls: MPI's own
# waits spin, and with more ranks than cores (as when a laptop emulates many devices) a spinning rank
# holds the core its peer needs to send: a 1 MiB ring allreduce on 4 ranks and 2 cores took 7.7 ms
# spinning, 1.7 ms yielding. The short spin first keeps a message that is about to arrive from
# costing a trip through the scheduler when another process wants the core (a peer's message takes
# microseconds when it runs). Past DEAD_PEER_GRACE_S of one wait, ``watch`` (a _Watch, or None)
# checks that the step's peers live; a peer found dead while the requests are still pending ends the
# job. An MPI error in a wait (MPICH fails the requests to a process it saw die) checks at once.
SPIN_S = 50e-6


def _wait_all(requests, watch=None) -> None:
    try:
        if MPI.Request.Testall(requests):
            return
        start = time.monotonic()
        spin_until, check_at = start + SPIN_S, start + DEAD_PEER_GRACE_S
        while not MPI.Request.Testall(requests):
            now = time.monotonic()
            if now < spin_until:
                continue
            os.sched_yield()
            if watch is not None and now > check_at:
                dead = watch.dead_peer()
                if dead is not None and not MPI.Request.Testall(requests):
                    watch.abort(dead)
                check_at = time.monotonic() + DEAD_PEER_CHECK_S
    except MPI.Exception:
        if watch is not None:
            watch.abort_if_dead()
        raise


def _wait_any(requests, watch=None) -> int:
    spin_until = check_at = None
    try:
        while True:
            index, done = MPI.Request.Testany(requests)
            if done:
                return index
            now = time.monotonic()
            if spin_until is None:
                spin_until, check_at = now + SPIN_S, now + DEAD_PEER_GRACE_S
            if now < spin_until:
                continue
            os.sched_yield()
            if watch is not None and now > check_at:
                dead = watch.dead_peer()
                if dead is not None:
                    index, done = MPI.Request.Testany(requests)
                    if done:
                        return index
                    watch.abort(dead)
                check_at = time.monotonic() + DEAD_PEER_CHECK_S
    except MPI.Exception:
        if watch is not None:
            watch.abort_if_dead()
        raise


def _wait(request, watch=None) -> None:
    _wait_all([request], watch)


def _unpack_copies(plan, buf, scratch, requests, watch=None) -> None:
    """Wait for each message as it comes; copy the packed ones into their destination chunks."""
    for _ in range(len(requests)):
        index = _wait_any(requests, watch)
        _, _, _, base, _, parts = plan.recvs[index]
        for _, ldst, doff, n, off in parts:
            buf[ldst, doff:doff + n] = scratch[base + off:base + off + n]


def _reduce_in_order(plan, buf, scratch, requests, op, fmt, watch=None) -> None:
    """Reduce local and received contributions into shared chunks in the step's transfer order."""
    done = [False] * len(requests)
    for ldst, doff, n, index, off, soff in plan.ordered:
        chunk = buf[ldst, doff:doff + n]  # (sliced, not the row: buf may be rows made of other arrays)
        if index >= 0:
            if not done[index]:
                _wait(requests[index], watch)
                done[index] = True
            base = plan.recvs[index][3]
            kernels.reduce_chunk(chunk, 0, scratch, base + off, n, op, fmt)
        else:
            kernels.reduce_chunk(chunk, 0, buf[off, soff:soff + n], 0, n, op, fmt)
    _wait_all(requests, watch)  # every message fed a transfer above: this only confirms it


# -- a peer killed by a signal ------------------------------------------------------------------------

def _host_id() -> int:
    """This process's machine and PID namespace as a 62-bit number: two ranks with the same one can
    see each other's PIDs. 0 (never checked) where the boot id or namespace cannot be read: a host
    name alone (two containers may share one) must not decide that a missing PID means a dead peer."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as fh:
            boot = fh.read().strip()
        ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0
    digest = hashlib.blake2b(boot + b"/" + str(ns).encode() + b"/" + socket.gethostname().encode(), digest_size=8)
    return (int.from_bytes(digest.digest(), "little") >> 2) or 1


class _Watch:
    """The dead-peer check of one rank in one :func:`execute` call (see the module docstring).

    The peers' ``(pid, host id)`` come from the last :func:`_agree` on the communicator, kept as an
    MPI attribute of it (freed with it, not copied by ``Dup``); ``execute`` without a prior
    ``prepare`` on the communicator has none, and then nothing is checked.
    """

    _keyval = None
    _procfds: dict = {}  # pid -> open /proc/PID/stat (-1: none to be had), opened at the first check

    def __init__(self, rank, k, collective, peers):
        self.rank, self.k, self.collective, self.peers = rank, k, collective, peers
        self.plan = None

    @classmethod
    def remember(cls, comm, pids, hosts) -> None:
        if cls._keyval is None:
            cls._keyval = MPI.Comm.Create_keyval()
        mine = hosts[comm.Get_rank()]
        peers = [(int(pid), bool(mine) and host == mine) for pid, host in zip(pids, hosts)]
        if comm.Get_attr(cls._keyval) != peers:
            comm.Set_attr(cls._keyval, peers)

    @classmethod
    def of(cls, comm, k, collective):
        if cls._keyval is None or comm.Get_size() < 2:
            return None
        peers = comm.Get_attr(cls._keyval)
        if not peers or len(peers) != comm.Get_size():
            return None
        return cls(comm.Get_rank(), k, collective, peers)

    def dead_peer(self):
        """``(peer, pid)`` of a peer this step waits for whose process has exited, or ``None``."""
        plan = self.plan
        if plan is None:
            return None
        for peer in sorted({r[0] for r in plan.recvs} | {sd[0] for sd in plan.sends}):
            pid, same_host = self.peers[peer]
            if same_host and _process_gone(pid, self._procfds):
                return peer, pid
        return None

    def abort_if_dead(self) -> None:
        """MPI failed a request of this step: if a peer died (it may still be exiting: look for
        0.1 s), say which and abort; otherwise return and let the MPI error propagate."""
        for _ in range(20):
            dead = self.dead_peer()
            if dead is not None:
                self.abort(dead)
            time.sleep(0.005)

    def abort(self, dead) -> None:
        peer, pid = dead
        first = peer * self.k
        devices = f"device {first}" if self.k == 1 else f"devices {first}-{first + self.k - 1}"
        sys.stdout.flush()
        # One write: print() writes the newline apart, and another rank's line can land in between.
        sys.stderr.write(f"rank {self.rank}: rank {peer} ({devices}, pid {pid}) died during {self.collective}; "
                         "aborting\n")
        sys.stderr.flush()
        time.sleep(ABORT_GRACE_S)
        MPI.COMM_WORLD.Abort(1)
        os._exit(1)  # MPICH's Abort may return before the launcher kills this process


# Linux task flag set at the very start of a process's exit (include/linux/sched.h), before its memory
# is freed, its files are closed (the launcher notices those) and it becomes a zombie.
_PF_EXITING = 0x4


def _process_gone(pid: int, procfds: dict) -> bool:
    """True when process ``pid`` on this host is exiting or has exited: ``/proc/PID/stat`` (kept open)
    shows it exiting, a zombie, or gone; where it cannot be opened, ``kill(pid, 0)`` fails."""
    fd = procfds.get(pid)
    if fd is None:
        try:
            fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return True  # /proc exists (_host_id read it): the process does not
        except OSError:
            fd = -1
        procfds[pid] = fd
    if fd < 0:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass
        return False
    try:
        fields = os.pread(fd, 1024, 0).rpartition(b")")[2].split()
    except ProcessLookupError:
        return True  # reaped
    except OSError:
        return False
    if len(fields) < 7:
        return False
    try:
        flags = int(fields[6])
    except ValueError:
        flags = 0
    return fields[0] in (b"Z", b"X", b"x") or bool(flags & _PF_EXITING)

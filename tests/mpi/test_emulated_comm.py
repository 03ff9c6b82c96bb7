"""EmulatedComm gives the wrapped communicator's results and accounts calls, bytes and emulated time.

Inputs are small integers (also in float types), so every reduction order gives the same bits and
the native MPI results can be compared exactly. Runs on any number of ranks.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

import collectives
from collectives.mpi import EmulatedComm, MPI
from topologies import switch

DTYPES = {"float32": MPI.FLOAT, "float64": MPI.DOUBLE, "int32": MPI.INT, "int64": MPI.INT64_T}
OPS = {"SUM": MPI.SUM, "PROD": MPI.PROD, "MIN": MPI.MIN, "MAX": MPI.MAX}


@pytest.fixture
def emu(comm):
    wrapped = EmulatedComm(comm)
    yield wrapped
    wrapped.close()


def values(comm, n, dtype, salt=0):
    """Rank-dependent small integers in [-2, 2] (products of up to 3 ranks stay exact)."""
    i = np.arange(n, dtype=np.int64)
    return ((i * 7 + comm.Get_rank() * 3 + salt) % 5 - 2).astype(dtype)


def same(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(np.ascontiguousarray(a).view(np.uint8),
                                                                       np.ascontiguousarray(b).view(np.uint8))


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("opname", list(OPS))
def test_allreduce(comm, emu, dtype, opname):
    op, mpitype = OPS[opname], DTYPES[dtype]
    for n in (1, 7, 64):
        send = values(comm, n, dtype)
        want = np.empty_like(send)
        comm.Allreduce(send, want, op=op)

        got = np.empty_like(send)
        emu.Allreduce(send, got, op=op)
        assert same(got, want)

        got = send.copy()
        emu.Allreduce(MPI.IN_PLACE, got, op=op)
        assert same(got, want)

        got = np.empty_like(send)
        emu.Allreduce([send, mpitype], [got, mpitype], op=op)
        assert same(got, want)

        # An explicit count uses the first entries only; the rest stays as it was.
        got = np.full(n + 3, 9, dtype=dtype)
        emu.Allreduce([np.concatenate([send, send[:3]]), n, mpitype], [got, n, mpitype], op=op)
        assert same(got[:n], want) and (got[n:] == 9).all()

        # A displacement, in entries: [buf, (count, displ), type].
        padded = np.concatenate([np.zeros(2, dtype), send])
        want_d, got_d = np.full(n + 2, 5, dtype=dtype), np.full(n + 2, 5, dtype=dtype)
        comm.Allreduce([padded, (n, 2), mpitype], [want_d, (n, 2), mpitype], op=op)
        emu.Allreduce([padded, (n, 2), mpitype], [got_d, (n, 2), mpitype], op=op)
        assert same(got_d, want_d)

        # Multi-dimensional buffers are flat in memory order, as mpi4py sends them.
        got2 = np.empty((1, n), dtype=dtype)
        emu.Allreduce(send.reshape(1, n), got2, op=op)
        assert same(got2.ravel(), want)
    assert emu.stats["allreduce"].calls == 18 and emu.stats["allreduce"].delegated == 0


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_allgather(comm, emu, dtype):
    size, rank = comm.Get_size(), comm.Get_rank()
    for m in (1, 5):
        send = values(comm, m, dtype)
        want = np.empty(size * m, dtype=dtype)
        comm.Allgather(send, want)

        got = np.empty_like(want)
        emu.Allgather(send, got)
        assert same(got, want)

        got = np.zeros_like(want)
        got[rank * m:(rank + 1) * m] = send
        emu.Allgather(MPI.IN_PLACE, got)
        assert same(got, want)

        got = np.empty_like(want)
        emu.Allgather([send, DTYPES[dtype]], [got, m, DTYPES[dtype]])
        assert same(got, want)


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_alltoall(comm, emu, dtype):
    size = comm.Get_size()
    for m in (1, 3):
        send = values(comm, size * m, dtype, salt=1)
        want = np.empty_like(send)
        comm.Alltoall(send, want)

        got = np.empty_like(send)
        emu.Alltoall(send, got)
        assert same(got, want)

        got = send.copy()
        emu.Alltoall(MPI.IN_PLACE, got)
        assert same(got, want)

        got = np.empty_like(send)
        emu.Alltoall([send, m, DTYPES[dtype]], [got, DTYPES[dtype]])
        assert same(got, want)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("opname", list(OPS))
def test_reduce_scatter_block(comm, emu, dtype, opname):
    size, op = comm.Get_size(), OPS[opname]
    for m in (1, 4):
        send = values(comm, size * m, dtype, salt=2)
        want = np.empty(m, dtype=dtype)
        comm.Reduce_scatter_block(send, want, op=op)

        got = np.empty(m, dtype=dtype)
        emu.Reduce_scatter_block(send, got, op=op)
        assert same(got, want)

        whole = send.copy()
        emu.Reduce_scatter_block(MPI.IN_PLACE, whole, op=op)
        assert same(whole[:m], want)

        got = np.empty(m, dtype=dtype)
        emu.Reduce_scatter_block([send, DTYPES[dtype]], [got, m, DTYPES[dtype]], op=op)
        assert same(got, want)


def _bcast_and_reduce(comm, emu):
    size, rank = comm.Get_size(), comm.Get_rank()
    for dtype, mpitype in DTYPES.items():
        for root in sorted({0, size - 1}):
            for opname, op in OPS.items():
                send = values(comm, 6, dtype, salt=root)
                want = np.empty_like(send) if rank == root else None
                comm.Reduce(send, want, op=op, root=root)
                got = np.full_like(send, 7) if rank == root else None
                emu.Reduce(send, got, op=op, root=root)
                if rank == root:
                    assert same(got, want), (dtype, root, opname)
                    inplace = send.copy()
                    emu.Reduce(MPI.IN_PLACE, inplace, op=op, root=root)
                else:
                    emu.Reduce([send, mpitype], None, op=op, root=root)
                if rank == root:
                    assert same(inplace, want)
            want = values(comm, 5, dtype, salt=10 + root)
            comm.Bcast(want, root=root)
            got = values(comm, 5, dtype, salt=10 + root)
            emu.Bcast([got, mpitype], root=root)
            assert same(got, want)


def test_bcast_and_reduce(comm, emu):
    """With or without a registered algorithm (delegated then), the wrapped communicator's results."""
    _bcast_and_reduce(comm, emu)
    if not collectives.list_algorithms("reduce"):
        assert emu.stats["reduce"].delegated == emu.stats["reduce"].calls
        assert "-" in [line.split()[3] for line in emu.report(file=None).splitlines() if line.startswith("reduce ")]


def test_bcast_and_reduce_emulated(comm, naive_rooted):
    """With a (test-only) algorithm registered, the data moves through the executor and is timed."""
    emu = EmulatedComm(comm, algorithm="auto")
    try:
        _bcast_and_reduce(comm, emu)
        for kind in ("broadcast", "reduce"):
            entry = emu.stats[kind]
            assert entry.calls > 0 and entry.delegated == 0 and entry.untimed == 0
            assert entry.algorithms  # whichever auto chose among the registered ones
    finally:
        emu.close()


def test_barrier_and_delegation(comm, emu):
    emu.Barrier()
    assert emu.stats["barrier"].calls == 1
    assert emu.Get_rank() == comm.Get_rank() and emu.size == comm.Get_size() and emu.rank == comm.rank
    # An op ccemu has no kernel for goes to the wrapped communicator, and is still counted.
    send = values(comm, 8, np.int32) + 2
    want, got = np.empty_like(send), np.empty_like(send)
    comm.Allreduce(send, want, op=MPI.BAND)
    emu.Allreduce(send, got, op=MPI.BAND)
    assert same(got, want)
    # A datatype ccemu has no kernel for: delegated, counted, not timed.
    flags = np.array([comm.Get_rank() % 2 == 0] * 3)
    want_b, got_b = np.empty_like(flags), np.empty_like(flags)
    comm.Allreduce(flags, want_b, op=MPI.LOR)
    emu.Allreduce(flags, got_b, op=MPI.LOR)
    assert same(got_b, want_b)
    entry = emu.stats["allreduce"]
    assert entry.calls == 2 and entry.delegated == 2 and entry.untimed == 1
    # A malformed call raises mpi4py's own error on every rank.
    with pytest.raises(ValueError):
        emu.Allreduce([send, 4, MPI.INT], [got, 3, MPI.INT])


def test_report_accounts_bytes_and_emulated_time(comm, emu):
    size = comm.Get_size()
    x = np.ones(1000, np.float32)
    for _ in range(3):
        emu.Allreduce(MPI.IN_PLACE, x)
    y = np.ones(size * 10, np.float64)
    emu.Alltoall(MPI.IN_PLACE, y)
    entry = emu.stats["allreduce"]
    sim = collectives.simulate("allreduce", 4000, emu.topology, algorithm=next(iter(entry.algorithms)))
    assert entry.calls == 3 and entry.nbytes == 3 * 4000
    assert entry.emulated_s == pytest.approx(3 * sim.time_s)
    assert emu.stats["alltoall"].nbytes == size * 10 * 8
    out = io.StringIO()
    text = emu.report(file=out, root=None)
    assert out.getvalue().strip() == text
    rows = {line.split()[0]: line.split() for line in text.splitlines()[2:]}
    assert set(rows) == {"allreduce", "alltoall"}
    assert rows["allreduce"][1:3] == ["3", "12000"]
    assert emu.topology.num_devices == size and emu.topology.name.startswith("switch")


def test_topology_and_devices_per_rank(comm):
    size = comm.Get_size()
    with pytest.raises(ValueError, match="devices"):
        EmulatedComm(comm, topology=switch(size + 1))
    with pytest.raises(ValueError, match="devices_per_rank"):
        EmulatedComm(comm, devices_per_rank=0)
    with pytest.raises(ValueError, match="unknown algorithm"):
        EmulatedComm(comm, algorithm="nope")
    top = switch(2 * size, bw_GBps=50.0, lat_us=2.0)
    emu = EmulatedComm(comm, topology=top, algorithm="ring", devices_per_rank=2)
    try:
        x = values(comm, 256, np.float32)
        want = np.empty_like(x)
        comm.Allreduce(x, want)
        emu.Allreduce(MPI.IN_PLACE, x)
        assert same(x, want)
        y = np.zeros(size * 4, np.int32)
        emu.Alltoall(MPI.IN_PLACE, y)
        # allreduce registers ring, alltoall does not: it gets the auto choice.
        assert emu.stats["allreduce"].algorithms == {"ring"}
        assert emu.stats["alltoall"].algorithms <= set(collectives.list_algorithms("alltoall"))
        # Timed for 2 devices per rank: P = 2 x size, each with this call's 1 KiB.
        sim = collectives.simulate("allreduce", 1024, top, algorithm="ring")
        assert sim.P == 2 * size and emu.stats["allreduce"].emulated_s == pytest.approx(sim.time_s)
    finally:
        emu.close()


def test_auto_times_the_fastest_choice(comm, emu):
    """``auto`` times each call with simulate(..., algorithm="auto")'s choice of algorithm and parameters."""
    for collective in ("allreduce", "allgather", "reduce_scatter", "alltoall"):
        spec = collectives.registry.collective(collective)
        count = (1 << 20) // 4 // (spec.nbytes(emu.num_devices, 1, 4) // 4)
        nbytes, (name, seconds) = emu._plan(collective, count, "float32")
        best = collectives.simulate(collective, nbytes, emu.topology, algorithm="auto", dtype="float32")
        assert (name, seconds) == (best.algorithm, best.time_s)


def test_one_rank_unparseable_buffer_delegates_everywhere(comm, emu):
    """A derived datatype on the root only (legal MPI: same type signature): every rank delegates."""
    rank, n = comm.Get_rank(), 6
    block = MPI.FLOAT.Create_contiguous(n).Commit()
    try:
        want = values(comm, n, np.float32, salt=4)
        comm.Bcast(want, root=0)
        got = values(comm, n, np.float32, salt=4)
        emu.Bcast([got, 1, block] if rank == 0 else [got, n, MPI.FLOAT], root=0)
        assert same(got, want)
        entry = emu.stats["broadcast"]
        assert entry.calls == 1 and entry.delegated == 1
    finally:
        block.Free()

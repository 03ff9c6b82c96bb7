"""alltoallv across MPI ranks: the executor gives every rank its rows of ``collectives.run``, and
``EmulatedComm.Alltoallv`` gives what ``MPI.COMM_WORLD.Alltoallv`` gives, bit for bit.

Runs on any number of ranks (1 in-process; 2 and 3 under mpiexec via tests/test_mpi_launch.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import collectives
from collectives.alltoallv import Counts
from collectives.executors import mpi as mpi_exec
from collectives.moe import topk_counts
from collectives.mpi import EmulatedComm, MPI
from topologies import switch

DTYPES = ["float32", "float64", "float16", "bfloat16", "int8", "uint8", "int32", "uint32", "int64", "uint64"]
MPI_TYPES = {"float32": MPI.FLOAT, "float64": MPI.DOUBLE, "int32": MPI.INT, "int64": MPI.INT64_T,
             "uint8": MPI.UINT8_T, "int8": MPI.INT8_T}


@pytest.fixture
def emu(comm):
    wrapped = EmulatedComm(comm)
    yield wrapped
    wrapped.close()


def counts_for(P, seed):
    """The same uneven counts with zeros on every rank (a silent device, a pair with nothing)."""
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 7, (P, P))
    m[rng.random((P, P)) < 0.25] = 0
    m[0, P - 1] = 0
    if P > 2:
        m[P - 1, :] = 0
    return m


def bit_patterns(shape, dtype, seed):
    store = np.uint16 if dtype == "bfloat16" else np.dtype(dtype)
    raw = np.random.default_rng(seed).integers(0, 256, size=(shape[0], shape[1] * np.dtype(store).itemsize),
                                               dtype=np.uint8)
    return raw.view(store).reshape(shape)


def same(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(np.ascontiguousarray(a).view(np.uint8),
                                                                       np.ascontiguousarray(b).view(np.uint8))


# -- the executor ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2])
def test_executor_rows_equal_run(comm, k, dtype):
    size, rank = comm.Get_size(), comm.Get_rank()
    P = k * size
    for seed in range(2):
        m = counts_for(P, 10 * P + seed)
        full = bit_patterns((P, int(m.sum(axis=1).max()) + seed), dtype, seed)
        kw = {"dtype": "bfloat16"} if dtype == "bfloat16" else {}
        want = collectives.reference("alltoallv", full, counts=m, **kw)
        for alg in collectives.list_algorithms("alltoallv"):
            local = full[rank * k:(rank + 1) * k].copy()
            got = mpi_exec.run("alltoallv", local, comm, alg, counts=m, **kw)
            assert same(got, want[rank * k:(rank + 1) * k]), (alg, k, dtype, seed, rank)
            assert same(got, collectives.run("alltoallv", full, alg, counts=m, **kw)[rank * k:(rank + 1) * k])
            assert same(local, full[rank * k:(rank + 1) * k])


def test_executor_moe_counts(comm):
    size, rank = comm.Get_size(), comm.Get_rank()
    k = 2
    c = topk_counts(k * size, 24, 5, experts=16, top_k=4, seed=4)
    full = np.random.default_rng(3).normal(size=(k * size, int(c.send.max()))).astype(np.float32)
    got = mpi_exec.run("alltoallv", full[rank * k:(rank + 1) * k], comm, "pairwise", counts=c)
    assert same(got, collectives.reference("alltoallv", full, counts=c)[rank * k:(rank + 1) * k])


def test_executor_counts_must_agree(comm):
    size, rank = comm.Get_size(), comm.Get_rank()
    m = counts_for(size, 1)
    local = np.ones((1, int(m.sum(axis=1).max())), np.float32)
    if size > 1:
        mine = m + (rank == size - 1)
        with pytest.raises(mpi_exec.RankMismatch, match=r"^counts differ across ranks \(.*\); every rank must pass "
                                                        r"the same counts$"):
            mpi_exec.run("alltoallv", local, comm, "direct", counts=mine)
    bad = m.copy()
    if rank == 0:
        bad[0, 0] = -3
    with pytest.raises(ValueError, match=r"counts\[0\]\[0\] = -3" if rank == 0 else "invalid arguments on rank 0"):
        mpi_exec.run("alltoallv", local, comm, "direct", counts=bad)
    with pytest.raises(ValueError, match="counts has device .* send"):   # every rank: the input is too narrow
        mpi_exec.run("alltoallv", local[:, :0], comm, "direct", counts=m + 1)


# -- EmulatedComm.Alltoallv ------------------------------------------------------------------------------

def _blocks(comm, dtype, seed):
    """This rank's sendcounts, recvcounts and a send buffer with gaps between reversed blocks."""
    size, rank = comm.Get_size(), comm.Get_rank()
    m = counts_for(size, seed)
    sc, rc = m[rank], m[:, rank]
    sd = (np.cumsum((sc + 2)[::-1]) - (sc + 2)[::-1])[::-1].copy()  # block j after block j+1, gaps of 2
    send = bit_patterns((1, int((sc + 2).sum()) + 1), dtype, seed + rank).ravel()
    rd = np.cumsum(rc + 1) - (rc + 1)
    return m, sc, sd, send, rc, rd


@pytest.mark.parametrize("dtype", list(MPI_TYPES))
def test_emulated_alltoallv_equals_world(comm, emu, dtype):
    mpitype = MPI_TYPES[dtype]
    for seed in range(3):
        m, sc, sd, send, rc, rd = _blocks(comm, dtype, seed)
        n = int((rc + 1).sum()) + 2
        forms = [
            lambda s, r: ([s, (sc, sd), mpitype], [r, (rc, rd), mpitype]),   # the documented long form
            lambda s, r: ([s, sc, sd, mpitype], [r, rc, rd, mpitype]),       # four items
            lambda s, r: ([s, (sc.tolist(), sd.tolist())], [r, (rc.tolist(), rd.tolist())]),
        ]
        for form in forms:
            want = np.full(n, 7, send.dtype)
            got = want.copy()
            comm.Alltoallv(*form(send, want))
            emu.Alltoallv(*form(send, got))
            assert same(got, want), (dtype, seed)
        # Short forms: [buf, counts] packs the blocks; a bare buffer is cut evenly.
        packed = np.concatenate([send[sd[j]:sd[j] + sc[j]] for j in range(len(sc))])
        want = np.zeros(int(rc.sum()), send.dtype)
        got = want.copy()
        comm.Alltoallv([packed, sc], [want, rc])
        emu.Alltoallv([packed, sc], [got, rc])
        assert same(got, want)
    size = comm.Get_size()
    even = bit_patterns((1, 3 * size), dtype, 9).ravel()
    want, got = np.zeros_like(even), np.zeros_like(even)
    comm.Alltoallv(even, want)
    emu.Alltoallv(even, got)
    assert same(got, want)
    want, got = np.zeros(2 * size, even.dtype), np.zeros(2 * size, even.dtype)
    comm.Alltoallv([even, 2], [want, 2])          # an integer count: every block's
    emu.Alltoallv([even, 2], [got, 2])
    assert same(got, want)


def test_emulated_alltoallv_in_place(comm, emu):
    size, rank = comm.Get_size(), comm.Get_rank()
    m = counts_for(size, 5)
    sym = m + m.T                       # in place, what i sends j is what j sends i
    x = np.arange(int(sym[rank].sum()), dtype=np.float64) + 100 * rank
    y = x.copy()
    comm.Alltoallv(MPI.IN_PLACE, [y, sym[rank]])
    emu.Alltoallv(MPI.IN_PLACE, [x, sym[rank]])
    assert same(x, y)
    emu.Alltoallv(None, [x, sym[rank]])  # None is IN_PLACE, as in mpi4py
    comm.Alltoallv(None, [y, sym[rank]])
    assert same(x, y)


def test_emulated_alltoallv_bad_counts_raise_on_every_rank(comm, emu):
    size, rank = comm.Get_size(), comm.Get_rank()
    m = counts_for(size, 2)
    sc, rc = m[rank], m[:, rank].copy()
    send = np.ones(int(sc.sum()), np.float32)
    recv = np.zeros(int(rc.sum()) + 4, np.float32)
    wrong = rc.copy()
    if rank == size - 1:
        wrong[0] += 1                    # the last rank expects one more element from rank 0
    j = size - 1
    with pytest.raises(ValueError, match=rf"^Alltoallv: rank {j} expects {int(m[0, j]) + 1} elements from rank 0, "
                                         rf"which sends it {int(m[0, j])} \(recvcounts\[0\] on rank {j} must equal "
                                         rf"sendcounts\[{j}\] on rank 0\)$"):
        emu.Alltoallv([send, sc], [recv, wrong])
    neg = sc.copy()
    if rank == 0:
        neg[0] = -1
    with pytest.raises(ValueError, match=r"^Alltoallv: sendcounts\[0\] = -1; expected >= 0$" if rank == 0
                       else "invalid arguments on rank 0"):
        emu.Alltoallv([send, neg], [recv, rc])
    ones = np.ones(size, np.int64)
    displs = np.arange(size) + (10 ** 6 if rank == 0 else 0)
    with pytest.raises(ValueError, match=r"^Alltoallv: send block 0 \(displacement 1000000, count 1\) ends past "
                       rf"the buffer's {size} entries$" if rank == 0 else "invalid arguments on rank 0"):
        emu.Alltoallv([np.ones(size, np.float32), (ones, displs)], [np.zeros(size, np.float32), ones])
    assert emu.stats["alltoallv"].calls == 0   # nothing was exchanged, nothing counted


def test_emulated_alltoallv_accounts_and_times(comm):
    size = comm.Get_size()
    emu = EmulatedComm(comm, topology=switch(2 * size, bw_GBps=10.0, lat_us=1.0), devices_per_rank=2)
    try:
        m = counts_for(size, 6) * 1000
        rank = comm.Get_rank()
        send = np.ones(int(m[rank].sum()), np.float32)
        recv = np.zeros(int(m[:, rank].sum()), np.float32)
        for _ in range(2):
            emu.Alltoallv([send, m[rank]], [recv, m[:, rank]])
        entry = emu.stats["alltoallv"]
        sim = collectives.simulate("alltoallv", Counts(m).kron(2), emu.topology, dtype="float32")
        assert entry.calls == 2 and entry.delegated == 0 and entry.nbytes == 2 * sim.nbytes
        assert entry.emulated_s == pytest.approx(2 * sim.time_s, rel=1e-12)
        assert "alltoallv" in emu.report(file=None)
        # A datatype ccemu has no kernels for (long double) goes to the wrapped communicator, on every rank.
        flags = np.ones(int(m[rank].sum()) // 1000, np.longdouble)
        out = np.zeros(int(m[:, rank].sum()) // 1000, np.longdouble)
        emu.Alltoallv([flags, m[rank] // 1000, MPI.LONG_DOUBLE], [out, m[:, rank] // 1000, MPI.LONG_DOUBLE])
        assert out.all() and entry.calls == 3 and entry.delegated == 1 and entry.untimed == 1
    finally:
        emu.close()

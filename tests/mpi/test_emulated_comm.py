"""EmulatedComm gives the plain communicator's results for every MPI-3 collective, datatype and op.

mpi4py's test style: each test body runs on COMM_WORLD, on a Dup and on a Split (the ranks in two
halves by parity, in reverse order), each beside the plain communicator made the same way. Inputs
are small integers (also in the float and complex types, with ties for MAXLOC/MINLOC), so every
reduction order gives the same bits and the native results compare exactly. Runs on any number of
ranks: in-process on one, under ``mpiexec -n 2`` and ``-n 3`` (tests/test_mpi_launch.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from collectives import dtypes, ops
from collectives.mpi import MPI, EmulatedComm

WORLD = MPI.COMM_WORLD
KINDS = ("world", "dup", "split")


def _mpi_datatype(name):
    """The predefined MPI datatype of a ccemu dtype: a pair type's by dtypes.MPI_NAMES, the others' by
    their numpy typecode, as mpi4py picks it for a bare array."""
    np_dtype = dtypes.TABLE[name].numpy
    if np_dtype.names:
        return next(getattr(MPI, attr) for attr, candidate in dtypes.MPI_NAMES.items() if candidate == name)
    return MPI.Datatype.fromcode(np_dtype.char)


#: Every dtype a program can send (the ones numpy has: not bfloat16 and fp8, which have no MPI type).
DTYPES = {name: (row.numpy, _mpi_datatype(name)) for name, row in dtypes.TABLE.items() if row.numpy is not None}
#: MPI op -> ccemu name, every op of the table.
OPS = {name: getattr(MPI, attr) for attr, name in ops.MPI_OPS.items()}
PAIRS = [(d, o) for d in DTYPES for o in OPS if o in ops.ops_for(d)]


@pytest.fixture(scope="module")
def comms():
    """``kind -> (emulated, plain)``: COMM_WORLD, a Dup of it, and a Split by rank parity (reversed)."""
    root = EmulatedComm(WORLD)
    rank = WORLD.Get_rank()
    made = {"world": (root, WORLD), "dup": (root.Dup(), WORLD.Dup()),
            "split": (root.Split(rank % 2, -rank), WORLD.Split(rank % 2, -rank))}
    yield made
    for kind in ("dup", "split"):
        made[kind][0].Free()
        made[kind][1].Free()
    root.close()


@pytest.fixture(params=KINDS)
def pair(request, comms):
    return comms[request.param]


def values(name, n, rank, salt=0):
    """Rank-dependent small values of dtype ``name`` (exact under any reduction order)."""
    np_dtype, _ = DTYPES[name]
    i = np.arange(n, dtype=np.int64)
    v = (i * 7 + rank * 3 + salt) % 5
    kind = dtypes.TABLE[name].kind
    if kind == "pair":
        out = np.zeros(n, np_dtype)
        out["f0"] = v % 3          # ties, so that the index decides
        out["f1"] = rank
        return out
    if kind == "bool":
        return (v % 2).astype(np.bool_)
    if kind == "complex":
        return ((v - 2) + 1j * (((i + rank) % 3) - 1)).astype(np_dtype)
    if np_dtype.kind == "u":
        return v.astype(np_dtype)
    return (v - 2).astype(np_dtype)


PAIR_TYPES = {np_dtype: t for np_dtype, t in DTYPES.values() if np_dtype.names}


def B(a):
    """A buffer as mpi4py takes it: a pair type's with its MPI datatype (a bare structured array has none)."""
    if isinstance(a, np.ndarray) and a.dtype.names:
        return [a, PAIR_TYPES[a.dtype]]
    return a


def same(a, b):
    """Equal bits; of a pair type its fields' (its padding carries nothing)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.names:
        return all(same(a[f], b[f]) for f in a.dtype.names)
    return np.array_equal(a.view(np.uint8), b.view(np.uint8))


def no_delegation(emu):
    delegated = {k: s.delegated for k, s in emu.stats.items() if s.delegated}
    assert not delegated, delegated


# -- reductions -----------------------------------------------------------------------------------------

def test_allreduce_every_dtype_and_op(pair):
    """Allreduce and Iallreduce of every (dtype, op) the kernels take, in place and out of place."""
    emu, ref = pair
    rank = ref.Get_rank()
    for name, opname in PAIRS:
        op, t = OPS[opname], DTYPES[name][1]
        send = values(name, 5, rank)
        want = np.empty_like(send)
        ref.Allreduce(B(send), B(want), op=op)
        got = np.empty_like(send)
        emu.Allreduce(B(send), B(got), op=op)
        assert same(got, want), (name, opname)
        got = send.copy()
        emu.Allreduce(MPI.IN_PLACE, B(got), op=op)
        assert same(got, want), (name, opname, "in place")
        got = np.empty_like(send)
        req = emu.Iallreduce([send, t], [got, t], op=op)
        assert isinstance(req, MPI.Request)
        req.Wait()
        assert same(got, want), (name, opname, "Iallreduce")
    no_delegation(emu)


def test_allreduce_buffer_forms(pair):
    """mpi4py's buffer specifications: counts, displacements, multi-dimensional buffers."""
    emu, ref = pair
    rank = ref.Get_rank()
    for name in ("float32", "int64"):
        t = DTYPES[name][1]
        n = 7
        send = values(name, n, rank)
        want = np.empty_like(send)
        ref.Allreduce(B(send), B(want))
        got = np.full(n + 3, 9, dtype=send.dtype)
        emu.Allreduce([np.concatenate([send, send[:3]]), n, t], [got, n, t])
        assert same(got[:n], want) and (got[n:] == 9).all()
        padded = np.concatenate([np.zeros(2, send.dtype), send])
        want_d, got_d = np.full(n + 2, 5, send.dtype), np.full(n + 2, 5, send.dtype)
        ref.Allreduce([padded, (n, 2), t], [want_d, (n, 2), t])
        emu.Allreduce([padded, (n, 2), t], [got_d, (n, 2), t])
        assert same(got_d, want_d)
        got2 = np.empty((1, n), send.dtype)
        emu.Allreduce(B(send.reshape(1, n)), B(got2))
        assert same(got2.ravel(), want)
    no_delegation(emu)


#: One dtype of each kind, for the reductions other than Allreduce (with every op of its kind).
REPRESENTATIVE = ("int16", "uint8", "float32", "float64", "complex128", "bool", "float_int", "double_int")


def test_rooted_and_scattered_reductions(pair):
    """Reduce, Reduce_scatter_block, Reduce_scatter, Scan, Exscan and their nonblocking forms, every op,
    in place and out of place."""
    emu, ref = pair
    size, rank = ref.Get_size(), ref.Get_rank()
    counts = [1 + (j % 3) for j in range(size)]  # uneven: Reduce_scatter pads to the largest
    for name in REPRESENTATIVE:
        for opname in ops.ops_for(name):
            if opname not in OPS:
                continue
            op = OPS[opname]
            for root in sorted({0, size - 1}):
                send = values(name, 6, rank, salt=root)
                want = np.empty_like(send) if rank == root else None
                ref.Reduce(B(send), B(want), op=op, root=root)
                got = np.empty_like(send) if rank == root else None
                emu.Reduce(B(send), B(got), op=op, root=root)
                if rank == root:
                    assert same(got, want), (name, opname, root)
                    inplace = send.copy()
                    emu.Ireduce(MPI.IN_PLACE, B(inplace), op=op, root=root).Wait()
                    assert same(inplace, want), (name, opname, root, "in place")
                else:
                    emu.Ireduce(B(send), None, op=op, root=root).Wait()
            m = 3
            send = values(name, size * m, rank, salt=2)
            want = np.empty(m, send.dtype)
            ref.Reduce_scatter_block(B(send), B(want), op=op)
            got = np.empty(m, send.dtype)
            emu.Reduce_scatter_block(B(send), B(got), op=op)
            assert same(got, want), (name, opname)
            whole = send.copy()
            emu.Ireduce_scatter_block(MPI.IN_PLACE, B(whole), op=op).Wait()
            assert same(whole[:m], want), (name, opname, "in place")
            send = values(name, sum(counts), rank, salt=3)
            want = np.empty(counts[rank], send.dtype)
            ref.Reduce_scatter(B(send), B(want), counts, op=op)
            got = np.empty_like(want)
            emu.Reduce_scatter(B(send), B(got), counts, op=op)
            assert same(got, want), (name, opname, counts)
            got = np.empty_like(want)
            emu.Ireduce_scatter(B(send), B(got), None, op=op).Wait()   # counts from every rank's buffer
            assert same(got, want), (name, opname, "recvcounts=None")
            whole = send.copy()
            emu.Reduce_scatter(MPI.IN_PLACE, B(whole), counts, op=op)
            assert same(whole[:counts[rank]], want), (name, opname, "in place")
            send = values(name, 4, rank, salt=4)
            for scan, iscan, native in ((emu.Scan, emu.Iscan, ref.Scan), (emu.Exscan, emu.Iexscan, ref.Exscan)):
                want = np.zeros_like(send)
                native(B(send), B(want), op=op)
                got = np.zeros_like(send)
                scan(B(send), B(got), op=op)
                inplace = send.copy()
                iscan(MPI.IN_PLACE, B(inplace), op=op).Wait()
                if native == ref.Exscan and rank == 0:
                    assert same(got, np.zeros_like(send)), "Exscan leaves rank 0's buffer as it was"
                    continue
                assert same(got, want) and same(inplace, want), (name, opname, native.__name__)
    no_delegation(emu)


# -- data movement --------------------------------------------------------------------------------------

def test_block_data_movement_every_dtype(pair):
    """Allgather, Alltoall, Bcast, Gather, Scatter (blocking and not, in place and out) of every dtype."""
    emu, ref = pair
    size, rank = ref.Get_size(), ref.Get_rank()
    root = size - 1
    for name, (_, t) in DTYPES.items():
        m = 3
        send = values(name, m, rank)
        want = np.empty(size * m, send.dtype)
        ref.Allgather(B(send), B(want))
        got = np.empty_like(want)
        emu.Allgather(B(send), B(got))
        assert same(got, want), (name, "Allgather")
        got = np.zeros_like(want)
        got[rank * m:(rank + 1) * m] = send
        emu.Iallgather(MPI.IN_PLACE, [got, t]).Wait()
        assert same(got, want), (name, "Iallgather in place")

        send = values(name, size * m, rank, salt=1)
        want = np.empty_like(send)
        ref.Alltoall(B(send), B(want))
        got = np.empty_like(send)
        emu.Alltoall(B(send), B(got))
        assert same(got, want), (name, "Alltoall")
        got = send.copy()
        emu.Ialltoall(MPI.IN_PLACE, B(got)).Wait()
        assert same(got, want), (name, "Ialltoall in place")

        want = values(name, 5, rank, salt=9)
        ref.Bcast(B(want), root=root)
        got = values(name, 5, rank, salt=9)
        emu.Bcast([got, t], root=root)
        assert same(got, want), (name, "Bcast")
        got = values(name, 5, rank, salt=9)
        emu.Ibcast(B(got), root=0).Wait()
        want = values(name, 5, rank, salt=9)
        ref.Bcast(B(want), root=0)
        assert same(got, want), (name, "Ibcast")

        send = values(name, m, rank, salt=5)
        want = np.empty(size * m, send.dtype) if rank == root else None
        ref.Gather(B(send), B(want), root=root)
        got = np.empty(size * m, send.dtype) if rank == root else None
        emu.Gather(B(send), B(got), root=root)
        if rank == root:
            assert same(got, want), (name, "Gather")
            inplace = np.zeros_like(want)
            inplace[root * m:(root + 1) * m] = send
            emu.Igather(MPI.IN_PLACE, B(inplace), root=root).Wait()
            assert same(inplace, want), (name, "Igather in place")
        else:
            emu.Igather(B(send), None, root=root).Wait()

        full = values(name, size * m, 0, salt=6)
        want = np.empty(m, full.dtype)
        ref.Scatter(B(full if rank == root else None), B(want), root=root)
        got = np.empty(m, full.dtype)
        emu.Scatter(B(full if rank == root else None), B(got), root=root)
        assert same(got, want), (name, "Scatter")
        if rank == root:
            emu.Iscatter(B(full), MPI.IN_PLACE, root=root).Wait()
        else:
            got = np.empty(m, full.dtype)
            emu.Iscatter(None, B(got), root=root).Wait()
            assert same(got, want), (name, "Iscatter")
    no_delegation(emu)


def _uneven(size, seed):
    """A counts matrix with zeros: counts[i][j] from rank i to rank j."""
    return (np.arange(size * size).reshape(size, size) * 3 + seed) % 4


def test_vector_data_movement(pair):
    """Allgatherv, Gatherv, Scatterv, Alltoallv, Alltoallw (and their nonblocking forms) with uneven and
    zero counts, gaps between blocks, in place where MPI allows it."""
    emu, ref = pair
    size, rank = ref.Get_size(), ref.Get_rank()
    root = size - 1
    for name in ("int32", "float64", "complex64", "bool", "double_int"):
        t = DTYPES[name][1]
        c = _uneven(size, 1)[0] + (np.arange(size) == 0)        # per-rank counts, one >= 1
        d = np.cumsum(c + 1) - (c + 1)                          # a gap of one after each block
        n = int((c + 1).sum())
        send = values(name, int(c[rank]), rank)
        for fn, native in ((emu.Allgatherv, ref.Allgatherv), (emu.Iallgatherv, None)):
            want, got = np.zeros(n, send.dtype), np.zeros(n, send.dtype)
            ref.Allgatherv(B(send), [want, (c, d), t])
            out = fn(B(send), [got, (c, d), t])
            if out is not None:
                out.Wait()
            assert same(got, want), (name, fn.__name__)
        got = np.zeros(n, send.dtype)
        got[d[rank]:d[rank] + c[rank]] = send
        emu.Allgatherv(MPI.IN_PLACE, [got, (c, d), t])
        assert same(got, want), (name, "Allgatherv in place")

        want = np.zeros(n, send.dtype) if rank == root else None
        ref.Gatherv(B(send), [want, (c, d), t] if rank == root else None, root=root)
        got = np.zeros(n, send.dtype) if rank == root else None
        emu.Gatherv(B(send), [got, (c, d), t] if rank == root else None, root=root)
        if rank == root:
            assert same(got, want), (name, "Gatherv")
            inplace = np.zeros(n, send.dtype)
            inplace[d[root]:d[root] + c[root]] = send
            emu.Igatherv(MPI.IN_PLACE, [inplace, (c, d), t], root=root).Wait()
            assert same(inplace, want), (name, "Igatherv in place")
        else:
            emu.Igatherv(B(send), None, root=root).Wait()

        full = values(name, n, 0, salt=3)
        want = np.zeros(int(c[rank]), full.dtype)
        ref.Scatterv([full, (c, d), t] if rank == root else None, B(want), root=root)
        got = np.zeros_like(want)
        emu.Scatterv([full, (c, d), t] if rank == root else None, B(got), root=root)
        assert same(got, want), (name, "Scatterv")
        got = np.zeros_like(want)
        emu.Iscatterv([full, (c, d), t] if rank == root else None, B(got), root=root).Wait()
        assert same(got, want), (name, "Iscatterv")

        m = _uneven(size, 2)
        sc, rc = m[rank], m[:, rank]
        sd = np.cumsum(sc + 1) - (sc + 1)
        rd = np.cumsum(rc + 2) - (rc + 2)
        send = values(name, int((sc + 1).sum()), rank, salt=7)
        want = np.zeros(int((rc + 2).sum()), send.dtype)
        ref.Alltoallv([send, (sc, sd), t], [want, (rc, rd), t])
        for fn in (emu.Alltoallv, emu.Ialltoallv):
            got = np.zeros_like(want)
            out = fn([send, (sc, sd), t], [got, (rc, rd), t])
            if out is not None:
                out.Wait()
            assert same(got, want), (name, fn.__name__)
        size_b = send.dtype.itemsize
        wsend = [send, (sc, sd * size_b), [t] * size]
        wrecv_ref = [want.copy(), (rc, rd * size_b), [t] * size]
        ref.Alltoallw(wsend, wrecv_ref)
        for fn in (emu.Alltoallw, emu.Ialltoallw):
            got = np.zeros_like(want)
            out = fn(wsend, [got, (rc, rd * size_b), [t] * size])
            if out is not None:
                out.Wait()
            assert same(got, wrecv_ref[0]), (name, fn.__name__)
    sym = _uneven(size, 3)
    sym = sym + sym.T                                   # in place: what i sends j is what j sends i
    x = np.arange(int(sym[rank].sum()), dtype=np.float64) + 100 * rank
    y = x.copy()
    ref.Alltoallv(MPI.IN_PLACE, [y, sym[rank]])
    emu.Alltoallv(MPI.IN_PLACE, [x, sym[rank]])
    assert same(x, y)
    no_delegation(emu)


# -- the pickle-based calls and the barriers ----------------------------------------------------------------

def test_object_calls(pair):
    emu, ref = pair
    size, rank = ref.Get_size(), ref.Get_rank()
    root = size - 1
    obj = {"rank": rank, "data": list(range(rank + 1)), "text": "x" * (3 * rank)}
    assert emu.bcast(obj if rank == root else None, root=root) == ref.bcast(obj if rank == root else None, root=root)
    assert emu.gather(obj, root=root) == ref.gather(obj, root=root)
    items = [f"to {j}" * (j + 1) for j in range(size)] if rank == root else None
    assert emu.scatter(items, root=root) == ref.scatter(items, root=root)
    assert emu.allgather(obj) == ref.allgather(obj)
    sendlist = [(rank, j, "y" * j) for j in range(size)]
    assert emu.alltoall(sendlist) == ref.alltoall(sendlist)
    for op in (MPI.SUM, MPI.MAX, MPI.MIN, MPI.PROD):
        assert emu.allreduce(rank + 1, op) == ref.allreduce(rank + 1, op)
        assert emu.reduce(rank + 1, op, root=root) == ref.reduce(rank + 1, op, root=root)
        assert emu.scan(rank + 1, op) == ref.scan(rank + 1, op)
        assert emu.exscan(rank + 1, op) == ref.exscan(rank + 1, op)
    assert emu.allreduce([rank], MPI.SUM) == ref.allreduce([rank], MPI.SUM)          # lists concatenate
    assert emu.allreduce((rank % 2, rank), MPI.MAXLOC) == ref.allreduce((rank % 2, rank), MPI.MAXLOC)
    assert emu.allreduce(rank, lambda a, b: a * 10 + b) == ref.allreduce(rank, lambda a, b: a * 10 + b)
    emu.barrier()
    for kind in ("bcast", "gather", "scatter", "allgather", "alltoall", "allreduce", "reduce", "scan", "exscan",
                 "barrier"):
        entry = emu.stats[kind]
        assert entry.calls > 0 and entry.delegated == 0, kind
    assert emu.stats["bcast"].nbytes > 0


def test_barriers(pair):
    """Barrier and Ibarrier synchronise (no data) and take an empty allreduce's time: none on one device."""
    emu, _ = pair
    emu.Barrier()
    req = emu.Ibarrier()
    req.Wait()
    assert emu.stats["Barrier"].calls == 1 and emu.stats["Ibarrier"].calls == 1
    several = emu.num_devices > 1
    assert (emu.stats["Barrier"].emulated_s > 0) == several and (emu.stats["Ibarrier"].emulated_s > 0) == several


# -- delegation and errors -----------------------------------------------------------------------------------

def test_delegated_calls_are_counted_and_give_mpi_results():
    """A user op or a derived datatype goes to the wrapped communicator (counted as delegated); an op the
    datatype does not take (LAND on floats) gets MPI's own error, on every rank."""
    emu = EmulatedComm(WORLD)
    try:
        rank = WORLD.Get_rank()
        send = values("int32", 8, rank) + 2
        mine = MPI.Op.Create(lambda a, b, t: np.maximum(np.frombuffer(a, np.int32), np.frombuffer(b, np.int32),
                                                       out=np.frombuffer(b, np.int32)), commute=True)
        try:
            want, got = np.empty_like(send), np.empty_like(send)
            WORLD.Allreduce(send, want, op=MPI.MAX)
            emu.Allreduce(send, got, op=mine)
            assert same(got, want)
        finally:
            mine.Free()
        entry = emu.stats["Allreduce"]
        assert entry.calls == 1 and entry.delegated == 1 and entry.untimed == 0   # int32 has a size ccemu knows
        block = MPI.INT.Create_contiguous(4).Commit()
        try:
            want = values("int32", 8, rank, salt=4)
            WORLD.Bcast(want, root=0)
            got = values("int32", 8, rank, salt=4)
            emu.Bcast([got, 2, block] if rank == 0 else [got, 8, MPI.INT], root=0)  # one rank derived: all delegate
            assert same(got, want)
            assert emu.stats["Bcast"].delegated == 1
        finally:
            block.Free()
        with pytest.raises(MPI.Exception):
            emu.Allreduce(np.ones(3, np.float32), np.empty(3, np.float32), op=MPI.LAND)
        with pytest.raises(ValueError):   # a malformed call: mpi4py's own error, on every rank
            emu.Allreduce([send, 4, MPI.INT], [got, 3, MPI.INT])
    finally:
        emu.close()


def test_bad_arguments_raise_on_every_rank():
    """A bad root, counts that disagree, or different calls on different ranks: ValueError or TypeError on
    every rank, naming the value; nothing hangs."""
    emu = EmulatedComm(WORLD)
    try:
        size, rank = WORLD.Get_size(), WORLD.Get_rank()
        x = np.ones(4, np.float32)
        with pytest.raises(ValueError, match=rf"root={size}; expected a rank 0\.\.{size - 1}"
                           if rank == 0 else "invalid arguments on rank 0"):
            emu.Bcast(x, root=size if rank == 0 else 0)
        with pytest.raises(TypeError, match=r"root='0'"):
            emu.Reduce(x, x.copy(), root="0")
        counts = [2] * size
        recv = np.zeros(2 * size, np.float32)
        with pytest.raises(ValueError, match=r"^Gatherv: the root \(rank 0\) expects 2 entries from rank "
                                             rf"{size - 1}, which sends 3$"):
            emu.Gatherv(np.ones(3 if rank == size - 1 else 2, np.float32),
                        [recv, counts] if rank == 0 else None, root=0)
        with pytest.raises(ValueError, match=r"^Reduce_scatter: rank \d+'s receive buffer holds 3 entries; "
                                             r"recvcounts\[\d+\] = 2$" if rank == 0 else "invalid arguments"):
            emu.Reduce_scatter(np.ones(2 * size, np.float32), np.zeros(3 if rank == 0 else 2, np.float32), counts)
        if size > 1:
            with pytest.raises(ValueError, match=r"^Allreduce: the ranks' calls differ: 4 float32 entries, op sum "
                                                 r"on rank 0; 5 float32 entries, op sum on ranks? 1"):
                n = 4 if rank == 0 else 5
                emu.Allreduce(np.ones(n, np.float32), np.empty(n, np.float32))
        for kind in ("Bcast", "Reduce", "Gatherv", "Reduce_scatter", "Allreduce"):
            assert emu.stats[kind].calls == 0, kind   # nothing was exchanged, nothing counted
        y = np.ones(4, np.float32)                    # and the communicator still works
        emu.Allreduce(MPI.IN_PLACE, y)
        assert (y == size).all()
    finally:
        emu.close()


@pytest.mark.parametrize("call", ["Allreduce", "Bcast", "Allgather", "Alltoall", "Reduce_scatter_block"])
def test_replayed_call_meets_a_peer_that_does_otherwise(call):
    """A loop's call replays its data plane, and on two ranks sends its first message ahead of the header
    (Job.runner): when the other rank then delegates or calls with another count, the message sent ahead
    is dropped, the result is MPI's (or the error is raised on every rank), and the next calls are right."""
    import gc

    from collectives.executors.mpi import Replay

    emu = EmulatedComm(WORLD)
    size, rank = WORLD.Get_size(), WORLD.Get_rank()

    def buffers(m):
        """(send, recv) of the call with m int32 entries per rank block."""
        if call == "Allreduce":
            return values("int32", m, rank), np.zeros(m, np.int32)
        if call == "Bcast":
            return None, values("int32", m, rank)
        if call == "Allgather":
            return values("int32", m, rank), np.zeros(m * size, np.int32)
        if call == "Alltoall":
            return values("int32", m * size, rank), np.zeros(m * size, np.int32)
        return values("int32", m * size, rank), np.zeros(m, np.int32)

    def run(comm, send, recv):
        if call == "Bcast":
            comm.Bcast(recv, root=0)
        else:
            getattr(comm, call)(send, recv)

    def check(send, recv, m):
        want = buffers(m)[1]
        if call == "Bcast":
            want[...] = values("int32", m, 0)
        run(WORLD, send, want)
        assert same(recv, want)

    m = 8
    send, recv = buffers(m)
    try:
        for _ in range(4):   # the first two calls run plainly, the next ones replay
            if call == "Bcast":
                recv[...] = values("int32", m, rank)
            run(emu, send, recv)
            check(send, recv, m)
        if size == 2:
            replays = [o for o in gc.get_objects() if isinstance(o, Replay) and o.bound.comm == emu._st.xcomm]
            assert replays                                  # the loop replays on every rank
            sent_ahead = WORLD.allreduce(int(any(r.ahead[1] > 0 for r in replays)), op=MPI.MAX)
            assert sent_ahead == 1                          # and some rank sends its first message ahead
        if call in ("Bcast", "Allgather", "Alltoall"):
            # Rank 1 passes a derived datatype (pairs of int32): every rank delegates, rank 0 replaying.
            pair = MPI.INT.Create_contiguous(2).Commit()
            try:
                if call == "Bcast":
                    recv[...] = values("int32", m, rank)
                blocks = 1 if call == "Bcast" else size
                derived = (None if send is None else [send, send.size // 2 // (size if call == "Alltoall" else 1),
                                                      pair], [recv, recv.size // 2 // blocks, pair])
                run(emu, *(derived if rank == 1 else (send, recv)))
                check(send, recv, m)
                assert emu.stats[call].delegated == (size > 1)
            finally:
                pair.Free()
        if size > 1:   # rank 1 calls with other counts: ValueError everywhere, nothing left in flight
            other = buffers(m + 1) if rank == 1 else (send, recv)
            with pytest.raises(ValueError, match="the ranks' calls differ"):
                run(emu, *other)
        for _ in range(3):
            if call == "Bcast":
                recv[...] = values("int32", m, rank)
            run(emu, send, recv)
            check(send, recv, m)
    finally:
        emu.close()


def test_replayed_calls_of_two_kinds_on_two_ranks_raise_and_leave_nothing_in_flight():
    """Rank 0 replays an Allreduce while rank 1 replays an Allgather (a program's bug): each has sent its
    first message ahead and posted its receive, which may take the other's message; both raise, and the
    next calls are right."""
    emu = EmulatedComm(WORLD)
    size, rank = WORLD.Get_size(), WORLD.Get_rank()
    a_send, a_recv = values("int32", 8 * size, rank), np.zeros(8 * size, np.int32)
    g_send, g_recv = values("int32", 8, rank), np.zeros(8 * size, np.int32)
    want_a, want_g = np.zeros_like(a_recv), np.zeros_like(g_recv)
    WORLD.Allreduce(a_send, want_a)
    WORLD.Allgather(g_send, want_g)
    try:
        for _ in range(4):
            emu.Allreduce(a_send, a_recv)
            emu.Allgather(g_send, g_recv)
        if size > 1:
            with pytest.raises(ValueError, match="the ranks' calls differ"):
                if rank == 1:
                    emu.Allgather(g_send, g_recv)
                else:
                    emu.Allreduce(a_send, a_recv)
        for _ in range(3):
            a_recv[...] = 0
            g_recv[...] = 0
            emu.Allreduce(a_send, a_recv)
            emu.Allgather(g_send, g_recv)
            assert same(a_recv, want_a) and same(g_recv, want_g)
    finally:
        emu.close()


def test_construction_errors():
    with pytest.raises(ValueError, match="devices_per_rank=0"):
        EmulatedComm(WORLD, devices_per_rank=0)
    with pytest.raises(ValueError, match="unknown algorithm 'nope'"):
        EmulatedComm(WORLD, algorithm="nope")
    with pytest.raises(ValueError, match="compute_factor=-1"):
        EmulatedComm(WORLD, compute_factor=-1)
    with pytest.raises(TypeError, match="wraps an mpi4py.MPI.Intracomm, got list"):
        EmulatedComm([1, 2])
    from topologies import switch

    with pytest.raises(ValueError, match=r"has \d+ devices; expected"):
        EmulatedComm(WORLD, topology=switch(WORLD.Get_size() + 1))

"""The MPI executor gives, on every rank, its rows of ``collectives.run`` on the full data, bit for bit.

Runs on any number of ranks (1 in-process; 2 and 3 under mpiexec via tests/test_mpi_launch.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import collectives
from collectives import api, kernels, registry
from collectives.executors import mpi as mpi_exec
from collectives.schedule import check

CASES = [(c, a) for c in registry.COLLECTIVES for a in registry.list_algorithms(c)]
DTYPES = ("float32", "int32", "float16", "float64")
REDUCE_OPS = ("sum", "max", "min", "prod", "avg")
DEVICES_PER_RANK = (1, 2)


def counts_for(P):
    """Counts including 0, 1 and ones not divisible by P."""
    return sorted({0, 1, 5, 2 * P + 1, 64})


def make_input(spec, P, count, dtype, seed):
    """The same full (P, x) input on every rank; floats random so that reduction order shows in the bits."""
    rng = np.random.default_rng(seed)
    shape = spec.input_shape(P, count)
    if dtype == "bfloat16":
        values = rng.normal(size=shape).astype(np.float32)
        return kernels._bf16_bits(values).reshape(shape)
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=shape).astype(dtype)
    return rng.integers(-3, 4, size=shape).astype(dtype)


def bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


def assert_same_bits(got, want, what):
    assert got.shape == want.shape and got.dtype == want.dtype, \
        f"{what}: {got.shape} {got.dtype} vs {want.shape} {want.dtype}"
    assert np.array_equal(bits(got), bits(want)), f"{what}: bits differ\n{got}\n{want}"


def assert_close_to_reference(got, ref, dtype, what):
    if dtype == "bfloat16":
        got = (got.astype(np.uint32) << 16).view(np.float32)
        ref = (ref.astype(np.uint32) << 16).view(np.float32)
        np.testing.assert_allclose(got, ref, rtol=5e-2, atol=5e-2, err_msg=what)
    elif np.dtype(dtype).kind == "f":
        tol = {"float16": 2e-2, "float32": 1e-5, "float64": 1e-12}[dtype]
        np.testing.assert_allclose(got.astype(np.float64), ref.astype(np.float64), rtol=tol, atol=tol, err_msg=what)
    else:
        np.testing.assert_array_equal(got, ref, err_msg=what)


def check_case(comm, collective, algorithm, k, count, dtype, op, root=0, seed=0):
    """Run one case on every rank; each rank checks its rows against ``collectives.run`` and ``reference``."""
    size, rank = comm.Get_size(), comm.Get_rank()
    P = k * size
    spec = registry.collective(collective)
    full = make_input(spec, P, count, dtype, seed)
    kw = {"dtype": "bfloat16"} if dtype == "bfloat16" else {}
    local = full[rank * k:(rank + 1) * k].copy()
    try:
        want = collectives.run(collective, full, algorithm, op, root, **kw)
    except (registry.AlgorithmUnavailable, ValueError) as exc:  # e.g. a power-of-two algorithm, or hypercube,
        # at P = 6: the same error here
        got = _error_of(lambda: mpi_exec.run(collective, local, comm, algorithm, op, root, **kw))
        assert got == (type(exc), str(exc))
        return
    ref = collectives.reference(collective, full, op, root, **kw)
    got = mpi_exec.run(collective, local, comm, algorithm, op, root, **kw)
    what = f"{collective}/{algorithm} k={k} P={P} count={count} {dtype} {op} root={root} rank={rank}"
    assert_same_bits(local, full[rank * k:(rank + 1) * k], what + " (input modified)")
    if np.ndim(want) == 1:  # a root-only result (reduce, gather): on the root's rank, None elsewhere
        if rank * k <= root < (rank + 1) * k:
            assert_same_bits(got, want, what)
            assert_close_to_reference(got, ref, dtype, what)
        else:
            assert got is None, what
        return
    rows = slice(rank * k, (rank + 1) * k)
    assert_same_bits(got, want[rows], what)
    assert_close_to_reference(got, ref[rows], dtype, what)


@pytest.mark.parametrize("collective,algorithm", CASES)
def test_matches_local_executor(comm, collective, algorithm):
    spec = registry.collective(collective)
    ops = REDUCE_OPS if spec.reduces else ("sum",)
    for k in DEVICES_PER_RANK:
        P = k * comm.Get_size()
        for count in counts_for(P):
            for dtype in DTYPES:
                for op in ops:
                    check_case(comm, collective, algorithm, k, count, dtype, op, seed=count)


@pytest.mark.parametrize("collective,algorithm", [c for c in CASES if registry.collective(c[0]).reduces])
def test_bfloat16(comm, collective, algorithm):
    for op in ("sum", "max", "avg"):
        check_case(comm, collective, algorithm, 2, 2 * comm.Get_size() + 3, "bfloat16", op)


def test_rooted_collectives_every_root(comm, naive_rooted):
    """Broadcast and reduce with test-only schedules: every root, local or remote, returns on the right rank."""
    for k in DEVICES_PER_RANK:
        P = k * comm.Get_size()
        for collective in ("broadcast", "reduce"):
            spec = registry.collective(collective)
            check(api.build_schedule(collective, naive_rooted, P, 7, root=P - 1), spec)
            for root in range(P):
                for dtype, op in (("float32", "sum"), ("float16", "prod"), ("int32", "avg"), ("float64", "min")):
                    check_case(comm, collective, naive_rooted, k, 7, dtype, op, root=root, seed=root)


def test_shipped_rooted_algorithms(comm):
    """Whatever broadcast/reduce/gather/scatter algorithms are registered: a few roots (the full sweep of
    broadcast/reduce is above)."""
    for collective in ("broadcast", "reduce", "gather", "scatter"):
        for algorithm in registry.list_algorithms(collective):
            for k in DEVICES_PER_RANK:
                P = k * comm.Get_size()
                for root in sorted({0, P // 2, P - 1}):
                    for dtype, op in (("float32", "sum"), ("int32", "max")):
                        check_case(comm, collective, algorithm, k, 2 * P + 1, dtype, op, root=root)


# -- errors ---------------------------------------------------------------------------------------

def _error_of(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 -- the test compares whatever is raised
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("case", ["collective", "algorithm", "op", "list", "1-D", "columns", "root", "bfloat16"])
def test_errors_match_collectives_run(comm, case):
    """The same input errors as ``collectives.run`` on the full data: type and message, on every rank."""
    size, rank = comm.Get_size(), comm.Get_rank()
    k = 2
    P = k * size
    args = {"collective": "allreduce", "algorithm": "ring", "op": "sum", "root": 0, "dtype": None}
    full = np.ones((P, 4), np.float32)
    if case == "collective":
        args["collective"] = "allreduse"
    elif case == "algorithm":
        args["algorithm"] = "nope"
    elif case == "op":
        args["op"] = "mean"
    elif case == "list":
        full = full.tolist()
    elif case == "1-D":
        full = np.ones(4, np.float32)
    elif case == "columns":
        args["collective"] = "reduce_scatter"
        full = np.ones((P, P * 2 + 1), np.float32)
    elif case == "root":
        args["root"] = P
    elif case == "bfloat16":
        args["dtype"] = "bfloat16"
    want = _error_of(lambda: collectives.run(args["collective"], full, args["algorithm"], args["op"], args["root"],
                                             dtype=args["dtype"]))
    assert want is not None
    local = full if not isinstance(full, np.ndarray) or full.ndim != 2 else full[rank * k:(rank + 1) * k]
    got = _error_of(lambda: mpi_exec.run(args["collective"], local, comm, args["algorithm"], args["op"],
                                         args["root"], dtype=args["dtype"]))
    assert got == want


def test_bad_input_on_one_rank_raises_everywhere(comm):
    """Rank 0's bad input raises its own error there and RankMismatch naming rank 0 elsewhere: no hang."""
    rank = comm.Get_rank()
    data = [[1.0, 2.0]] if rank == 0 else np.ones((1, 2), np.float32)
    with pytest.raises((TypeError, ValueError)) as info:
        mpi_exec.run("allreduce", data, comm)
    if rank == 0:
        assert info.type is TypeError
    else:
        assert info.type is mpi_exec.RankMismatch and "rank 0" in str(info.value)
    # The communicator is still usable afterwards.
    out = mpi_exec.run("allreduce", np.ones((1, 2), np.float32), comm)
    assert out.tolist() == [[comm.Get_size()] * 2]


def test_shapes_differ_across_ranks(comm):
    """Different local shapes: ValueError with the same message on every rank (with one rank, no error)."""
    rank, size = comm.Get_rank(), comm.Get_size()
    for local in (np.ones((1, 4 + rank), np.float32), np.ones((1 + rank, 4), np.float32),
                  np.ones((1, 4), np.float32 if rank == 0 else np.float64)):
        error = _error_of(lambda: mpi_exec.run("allgather", local, comm))
        if size == 1:
            assert error is None
            continue
        assert error is not None and error[0] is mpi_exec.RankMismatch and "differs across ranks" in error[1]
        messages = comm.allgather(error[1])
        assert len(set(messages)) == 1, messages


def test_arguments_differ_across_ranks(comm):
    rank, size = comm.Get_rank(), comm.Get_size()
    error = _error_of(lambda: mpi_exec.run("allreduce", np.ones((1, 3), np.float32), comm,
                                           op="sum" if rank == 0 else "max"))
    if size == 1:
        assert error is None
    else:
        assert error is not None and error[0] is mpi_exec.RankMismatch and "differ across ranks" in error[1]
        assert len(set(comm.allgather(error[1]))) == 1


def test_execute_checks_layout(comm):
    size, rank = comm.Get_size(), comm.Get_rank()
    schedule = api.build_schedule("allreduce", "ring", 2 * size, 8)
    buf = np.zeros((2, 8), np.float32)
    with pytest.raises(ValueError, match="first_device"):
        mpi_exec.execute(schedule, buf, comm, rank * 2 + 1, kernels.SUM, kernels.NATIVE)
    with pytest.raises(ValueError, match="P="):
        mpi_exec.execute(schedule, np.zeros((1, 8), np.float32), comm, rank, kernels.SUM, kernels.NATIVE)
    with pytest.raises(ValueError, match="elements per device"):
        mpi_exec.execute(schedule, np.zeros((2, 9), np.float32), comm, rank * 2, kernels.SUM, kernels.NATIVE)


def test_execute_is_the_step_loop(comm):
    """``execute`` on a loaded buffer is what ``run`` does between load and extract."""
    size, rank = comm.Get_size(), comm.Get_rank()
    P, n = 2 * size, 11
    full = make_input(registry.collective("allreduce"), P, n, "float32", 3)
    schedule = api.build_schedule("allreduce", "direct", P, n)
    buf = full[2 * rank:2 * rank + 2].copy()
    mpi_exec.execute(schedule, buf, comm, 2 * rank, kernels.SUM, kernels.NATIVE)
    assert_same_bits(buf, collectives.run("allreduce", full, "direct")[2 * rank:2 * rank + 2], "execute")


# -- the rank's rows of load/extract (no communication) ----------------------------------------------

@pytest.mark.parametrize("name", list(registry.COLLECTIVES))
def test_load_and_extract_by_row_blocks_equal_the_whole(name):
    """A rank's block of rows loads and extracts exactly as those rows of the all-device arrays."""
    spec = registry.collective(name)
    P, k, count, root = 6, 2, 5, 3
    rng = np.random.default_rng(1)
    full = rng.normal(size=spec.input_shape(P, count)).astype(np.float32)
    whole = spec.load(full, P, count, root)
    whole_out = spec.extract(whole, P, count, root)
    for first in range(0, P, k):
        rows = mpi_exec.load_rows(spec, full[first:first + k], P, count, root, first)
        assert_same_bits(rows, whole[first:first + k], "load")
        out = mpi_exec.extract_rows(spec, rows, P, count, root, first)
        if whole_out.ndim == 1:  # a root-only result
            assert (out is None) == (not first <= root < first + k)
            if out is not None:
                assert_same_bits(out, whole_out, "extract")
        else:
            assert_same_bits(out, whole_out[first:first + k], "extract")


def test_schedule_endpoints_live_with_their_device(comm):
    """Extra endpoints (scratch rows, switch ports) sit on the rank of device (row - P) mod P, and
    ``execute`` takes the buffers with or without their rows."""
    size, rank = comm.Get_size(), comm.Get_rank()
    k, n = 2, 9
    P = k * size
    seen = 0
    for collective, algorithm in CASES:
        if not registry.collective(collective).supports(P):   # hypercube on 6 devices
            continue
        try:
            schedule = api.build_schedule(collective, algorithm, P, n)
        except registry.AlgorithmUnavailable:
            continue
        if not schedule.endpoints:
            continue
        seen += 1
        E = len(schedule.endpoints)
        mine = sum(1 for j in range(E) if (j % P) // k == rank)
        assert mpi_exec.hosted_endpoints(schedule, k, rank) == mine
        assert comm.allreduce(mine) == E
        spec = registry.collective(collective)
        full = make_input(spec, P, n, "float32", 5)
        want = collectives.run(collective, full, algorithm)
        for rows in (k, k + mine):
            buf = np.zeros((rows, schedule.length), np.float32)
            buf[:k] = mpi_exec.load_rows(spec, full[rank * k:(rank + 1) * k], P, n, 0, rank * k)
            mpi_exec.execute(schedule, buf, comm, rank * k, kernels.SUM, kernels.NATIVE)
            got = mpi_exec.extract_rows(spec, buf[:k], P, n, 0, rank * k)
            assert_same_bits(got, want[rank * k:(rank + 1) * k], f"{collective}/{algorithm} rows={rows}")
    if not seen:
        pytest.skip("no registered algorithm uses extra endpoints")

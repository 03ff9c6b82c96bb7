"""The new dtypes and ops through the MPI executor: every rank's rows equal the local executor's, bit for bit.

Runs on any number of ranks (1 in-process; 2 and 3 under mpiexec via tests/test_mpi_launch.py). A few
cases, one per storage type the MPI executor sends as its own MPI datatype (uint8, int16, uint64,
complex64, complex128), so that the suite stays quick under mpiexec.
"""

from __future__ import annotations

import numpy as np
import pytest

import collectives
from collectives import dtypes, kernels
from collectives.executors import mpi as mpi_exec

# (collective, algorithm, dtype, op): fp8 and mulsum, bool, int16 bitwise, complex, the pair types.
CASES = [
    ("allreduce", "ring", "float8_e4m3", "mulsum"),
    ("reduce_scatter", "direct", "float8_e5m2", "max"),
    ("allreduce", "recursive_doubling", "bool", "lor"),
    ("allreduce", "ring", "int16", "bxor"),
    ("allreduce", "tree", "complex64", "prod"),
    ("reduce", "binomial", "complex128", "sum"),
    ("allreduce", "ring", "float_int", "maxloc"),
    ("allreduce", "direct", "double_int", "minloc"),
    ("reduce_scatter", "ring", "2int", "maxloc"),
]


def fields(a):
    """Bytes of each element; of a pair type its fields' (its padding carries nothing)."""
    a = np.ascontiguousarray(a)
    if a.dtype.names:
        return np.concatenate([fields(a[f]) for f in a.dtype.names], axis=-1)
    return a.view(np.uint8).reshape(a.shape + (a.dtype.itemsize,))


def make_input(name, shape, seed):
    """The same full input on every rank: small integers (ties for the pairs), fp8 as bits."""
    rng = np.random.default_rng(seed)
    row = dtypes.TABLE[name]
    values = rng.integers(-2, 3, shape).astype(np.float64)
    if name.startswith("float8"):
        return kernels._fp8_bits(np.abs(values).astype(np.float32) * 0.5, row.fmt).reshape(shape)
    if row.kind == "pair":
        out = np.zeros(shape, row.numpy)
        out["f0"], out["f1"] = values, rng.integers(0, 5, shape)
        return out
    if row.kind == "bool":
        return values > 0
    if row.kind == "complex":
        return (values + 1j * rng.choice([-1.0, 1.0, 2.0], shape)).astype(row.numpy)
    return values.astype(row.numpy)


@pytest.mark.parametrize("collective,algorithm,name,op", CASES)
def test_new_dtypes_match_local_executor(comm, collective, algorithm, name, op):
    size, rank = comm.Get_size(), comm.Get_rank()
    spec = collectives.registry.collective(collective)
    kw = {"dtype": name} if dtypes.bits_only(name) else {}
    for k in (1, 2):
        P = k * size
        full = make_input(name, spec.input_shape(P, 2 * P + 1), seed=P)
        local = full[rank * k:(rank + 1) * k].copy()
        want = collectives.run(collective, full, algorithm, op, root=P - 1, **kw)
        got = mpi_exec.run(collective, local, comm, algorithm, op, P - 1, **kw)
        what = f"{collective}/{algorithm} {name} {op} k={k} P={P} rank={rank}"
        if collective == "reduce":
            if rank * k <= P - 1 < (rank + 1) * k:
                assert np.array_equal(fields(got), fields(want)), what
            else:
                assert got is None, what
            continue
        assert got.dtype == want.dtype, what
        assert np.array_equal(fields(got), fields(want[rank * k:(rank + 1) * k])), what


def test_invalid_pair_raises_on_every_rank(comm):
    local = np.ones((1, 4), np.complex64)
    with pytest.raises(ValueError, match="unsupported dtype complex64 for op 'max'"):
        mpi_exec.run("allreduce", local, comm, "ring", "max")

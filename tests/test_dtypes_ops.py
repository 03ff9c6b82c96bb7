"""Every dtype and op MPI defines (and nccl-tests' fp8 and mulsum) through every reducing algorithm.

For each valid (dtype, op) pair of :data:`collectives.ops.VALID`: every reducing collective and
algorithm at P = 3, 4, 5 with counts not divisible by P, equal to the numpy reference and the same
bits on every device; invalid pairs raise ``ValueError`` naming both; the data-movement collectives
move every dtype bit for bit. fp8 is checked against ml_dtypes (test-only), the combines for
commutativity bit for bit on edge values (NaN payloads, signed zeros, extremes, ties).
"""

from __future__ import annotations

import numpy as np
import pytest

import collectives
from collectives import dataplane, dtypes, kernels, ops, registry
from collectives.api import np_combine

ml_dtypes = pytest.importorskip("ml_dtypes")

NAMES = list(dtypes.TABLE)
VALID = [(d, o) for d in NAMES for o in ops.ALL_OPS if dtypes.kind(d) in ops.VALID[o]]
INVALID = [(d, o) for d in NAMES for o in ops.ALL_OPS if dtypes.kind(d) not in ops.VALID[o]]
REDUCING = [(c, a) for c in registry.list_collectives() if registry.collective(c).reduces
            for a in registry.list_algorithms(c)]
MOVING = [(c, a) for c in ("allgather", "alltoall", "broadcast") for a in registry.list_algorithms(c)]
FP8 = {"float8_e4m3": ml_dtypes.float8_e4m3fn, "float8_e5m2": ml_dtypes.float8_e5m2}
FP8_MAX = {"float8_e4m3": 448.0, "float8_e5m2": 57344.0}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One numba thread: on these tiny arrays waking the pool's threads costs ten times the work on a
    busy two-core machine (the parallel loops are covered by test_kernels and test_dataplane_edges)."""
    import numba
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


def bits(a):
    """The bytes of each element; of a pair type its fields' bytes (padding carries nothing: numpy's own
    copies of a structured array zero it, its fancy indexing keeps it)."""
    a = np.ascontiguousarray(a)
    if a.dtype.names:
        return np.concatenate([bits(a[f]) for f in a.dtype.names], axis=-1)
    return a.view(np.uint8).reshape(a.shape + (a.dtype.itemsize,))


def assert_same_bits(got, want, msg):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (msg, got.shape, want.shape, got.dtype, want.dtype)
    if not np.array_equal(bits(got), bits(want)):
        bad = np.flatnonzero((bits(got) != bits(want)).reshape(got.size, -1).any(axis=1))[:4]
        raise AssertionError(f"{msg}: {len(bad)}+ elements differ, e.g. at {bad.tolist()}: "
                             f"got {got.reshape(-1)[bad]} want {want.reshape(-1)[bad]}")


def user_array(name, values, rng=None, index=None):
    """``values`` (small integers, float64 array) as the array a caller passes for dtype ``name``
    (bits for bfloat16 and fp8; pairs with ``index`` as their index field, or random small ones)."""
    row = dtypes.TABLE[name]
    if name == "bfloat16":
        return kernels._bf16_bits(values.astype(np.float32)).reshape(values.shape)
    if name in FP8:
        return kernels._fp8_bits(values.astype(np.float32), row.fmt).reshape(values.shape)
    if row.kind == "pair":
        out = np.zeros(values.shape, row.numpy)
        out["f0"] = values
        out["f1"] = index if index is not None else rng.integers(0, 4, values.shape)
        return out
    if row.kind == "complex":
        return (values + 1j * np.roll(values, 1, axis=-1)).astype(row.numpy)
    return values.astype(row.numpy)


def exact_values(name, op, shape, rng):
    """Values every order of reduction computes exactly for this dtype and op (so that any algorithm
    equals the reference bit for bit): small integers, +-1 and 2 for products, 0/1 for bool."""
    kind = dtypes.kind(name)
    if kind == "bool":
        return rng.integers(0, 2, shape).astype(np.float64)
    if op in ops.LOGICAL_OPS + ops.BITWISE_OPS:
        return rng.integers(0, 5, shape).astype(np.float64) * rng.choice([0, 1, 3], shape)
    unsigned = name.startswith("uint")
    if op == "prod":
        pool = [1, 2] if unsigned else [-1, 1, 2]
        if kind != "complex":
            pool = pool + [1, 1]
        return rng.choice(pool, shape).astype(np.float64)
    return rng.integers(0 if unsigned else -1, 2, shape).astype(np.float64)


def kw(name):
    return {"dtype": name} if dtypes.bits_only(name) else {}


# -- every valid pair, every reducing algorithm ------------------------------------------------------

@pytest.mark.parametrize("name,op", VALID)
def test_every_valid_pair_every_reducing_algorithm(name, op):
    rng = np.random.default_rng(abs(hash((name, op))) % 2**32)
    for P in (3, 4, 5):
        count = 2 * P + 1  # not divisible by P
        for coll, alg in REDUCING:
            spec = registry.collective(coll)
            shape = spec.input_shape(P, count)
            data = user_array(name, exact_values(name, op, shape, rng), rng)
            before = data.copy()
            root = P - 1
            what = f"{coll}/{alg} P={P} {name} {op}"
            try:
                out = collectives.run(coll, data, alg, op=op, root=root, **kw(name))
            except registry.AlgorithmUnavailable:
                continue
            ref = collectives.reference(coll, data, op, root=root, **kw(name))
            assert_same_bits(data, before, what + ": input modified")
            if dtypes.kind(name) == "complex" and op == "prod":
                # Exact values, but the sign of a zero part depends on the order of the products.
                np.testing.assert_array_equal(out, ref, err_msg=what)
            else:
                assert_same_bits(out, ref, what + ": vs reference")
            if coll == "allreduce":
                for d in range(1, P):
                    assert_same_bits(out[d], out[0], f"{what}: device {d} vs device 0")


@pytest.mark.parametrize("name,op", INVALID)
def test_invalid_pair_raises_naming_dtype_and_op(name, op):
    data = user_array(name, np.ones((3, 4)), np.random.default_rng(0))
    for call in (lambda: collectives.run("allreduce", data, "ring", op=op, **kw(name)),
                 lambda: collectives.reference("reduce", data, op, **kw(name)),
                 lambda: collectives.prepare("reduce_scatter", data[:, :3], "ring", op, **kw(name))):
        with pytest.raises(ValueError) as err:
            call()
        msg = str(err.value)
        assert name in msg and repr(op) in msg and "takes" in msg and "\n" not in msg, msg
    collectives.run("allgather", data, "ring", op=op, **kw(name))  # op ignored when nothing reduces


def test_validity_follows_mpi():
    assert dict(VALID).keys() >= {"bool", "complex64", "float_int", "float8_e4m3"}
    valid = set(VALID)
    assert ("bool", "sum") not in valid and ("bool", "land") in valid and ("bool", "band") not in valid
    assert ("complex64", "sum") in valid and ("complex128", "prod") in valid
    assert not {("complex64", o) for o in ("min", "max", "avg", "mulsum", "land", "band")} & valid
    assert ("float32", "land") not in valid and ("float32", "bor") not in valid and ("int16", "bxor") in valid
    assert {o for d, o in VALID if d == "double_int"} == {"maxloc", "minloc"}
    assert ("int32", "maxloc") not in valid and ("float8_e5m2", "mulsum") in valid
    assert len(VALID) == 8 * 12 + 6 * 6 + 2 * 2 + 3 + 5 * 2


# -- data movement ---------------------------------------------------------------------------------

def random_bits(name, shape, rng):
    """Any bit patterns of ``name``'s elements (NaN payloads, padding bytes) as the caller's array."""
    row = dtypes.TABLE[name]
    raw = rng.integers(0, 256, shape + (row.itemsize,), dtype=np.uint8)
    if name == "bool":
        raw &= 1
    held = row.storage if row.numpy is None else row.numpy
    return raw.view(held).reshape(shape)


@pytest.mark.parametrize("name", NAMES)
def test_data_movement_is_bit_exact(name):
    rng = np.random.default_rng(len(name))
    for coll, alg in MOVING:
        spec = registry.collective(coll)
        for P in (3, 4):
            data = random_bits(name, spec.input_shape(P, P + 2), rng)
            out = collectives.run(coll, data, alg, root=1, **kw(name))
            ref = collectives.reference(coll, data, root=1, **kw(name))
            assert_same_bits(out, ref, f"{coll}/{alg} P={P} {name}")
    counts = [[1, 0, 2], [3, 1, 0], [0, 2, 2]]
    data = random_bits(name, (3, 4), rng)
    out = collectives.run("alltoallv", data, "pairwise", counts=counts, **kw(name))
    assert_same_bits(out, collectives.reference("alltoallv", data, counts=counts, **kw(name)), f"alltoallv {name}")


# -- fp8 against ml_dtypes -------------------------------------------------------------------------

def ml_round(f32, name):
    """ml_dtypes' round to nearest even, saturating as NCCL's conversions do (clip first: rounding is
    monotone and the largest value is representable, so clip-then-round is round-then-saturate)."""
    f = np.asarray(f32, np.float64)
    clipped = np.where(np.isnan(f), f, np.clip(f, -FP8_MAX[name], FP8_MAX[name]))
    return clipped.astype(np.float32).astype(FP8[name]).view(np.uint8)


@pytest.mark.parametrize("name", list(FP8))
def test_fp8_widening_matches_ml_dtypes_on_every_pattern(name):
    fmt = dtypes.kernel_format(name)
    every = np.arange(256, dtype=np.uint16).astype(np.uint8)
    want = every.view(FP8[name]).astype(np.float32)
    widen = kernels.e4m3_to_float if fmt == dtypes.E4M3 else kernels.e5m2_to_float
    scalar = np.array([widen(b) for b in every], np.float32)
    vector = kernels._fp8_widen(every, fmt)
    # A signalling NaN (E5M2's 0x7D) comes back to Python as a double, which quiets it: not compared.
    quiet = ~((vector.view(np.uint32) & 0x7FC00000) == 0x7F800000) | ~np.isnan(vector)
    assert_same_bits(scalar[quiet], vector[quiet], f"{name}: numba vs numpy widening")
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(vector), nan)
    assert_same_bits(vector[~nan], want[~nan], f"{name}: vs ml_dtypes")
    assert np.array_equal(np.signbit(vector[nan]), every[nan] >= 0x80)  # a NaN keeps its sign


@pytest.mark.parametrize("name", list(FP8))
def test_fp8_rounding_matches_ml_dtypes_with_saturation(name):
    fmt = dtypes.kernel_format(name)
    rng = np.random.default_rng(3)
    grid = np.arange(256, dtype=np.uint16).astype(np.uint8).view(FP8[name]).astype(np.float64)
    grid = grid[np.isfinite(grid)]
    mids = (np.sort(grid)[1:] + np.sort(grid)[:-1]) / 2  # ties: round to even
    f = np.concatenate([grid, mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf),
                        rng.standard_normal(4000) * 10.0 ** rng.integers(-8, 6, 4000),
                        [464, 463.99, 480, 1e6, 61440, 61439, 57344, 65536, np.inf, -np.inf, 2.0**-10, 2.0**-17,
                         -0.0, 0.0, 1e-30]]).astype(np.float32)
    narrow = kernels.float_to_e4m3 if fmt == dtypes.E4M3 else kernels.float_to_e5m2
    scalar = np.array([narrow(x) for x in f], np.uint8)
    vector = kernels._fp8_bits(f, fmt)
    assert_same_bits(scalar, vector, f"{name}: numba vs numpy rounding")
    assert_same_bits(vector, ml_round(f, name), f"{name}: vs ml_dtypes, saturating")
    nan = np.array([0x7FC00001, 0xFFC00000, 0x7F800001, 0x7FFFFFFF], np.uint32).view(np.float32)
    got = kernels._fp8_bits(nan, fmt)
    assert np.isnan(got.view(FP8[name]).astype(np.float32)).all()
    assert (got >= 0x80).tolist() == [False, True, False, False]  # sign kept
    if fmt == dtypes.E5M2:
        assert ((got & 0x7F) >= 0x7E).all()  # quiet


@pytest.mark.parametrize("name", list(FP8))
@pytest.mark.parametrize("op", ["sum", "prod", "min", "max", "avg", "mulsum"])
def test_fp8_two_devices_against_ml_dtypes(name, op):
    """One combine (P = 2, so any order is the same): the kernels' result is ml_dtypes' arithmetic in
    float32 rounded once, saturating."""
    rng = np.random.default_rng(11)
    grid = np.arange(256, dtype=np.uint16).astype(np.uint8)
    finite = grid[np.isfinite(grid.view(FP8[name]).astype(np.float32))]
    data = rng.choice(finite, size=(2, 4001)).astype(np.uint8)
    a, b = (data[i].view(FP8[name]).astype(np.float32) for i in range(2))
    with np.errstate(over="ignore", invalid="ignore"):
        if op == "mulsum":
            b_scaled = ml_round(b * 2, name).view(FP8[name]).astype(np.float32)  # device 1: scalar 2
            want = ml_round(a + b_scaled, name)
        elif op == "avg":
            want = ml_round(ml_round(a + b, name).view(FP8[name]).astype(np.float32) / 2, name)
        elif op in ("min", "max"):
            want = np.where((a < b) == (op == "min"), data[0], data[1])
            tie = a == b  # +0 / -0: min takes the sign bit, max not
            want = np.where(tie, np.where(op == "min", np.maximum(data[0], data[1]), np.minimum(data[0], data[1])),
                            want)
        else:
            want = ml_round(a + b if op == "sum" else a * b, name)
    for alg in ("ring", "recursive_doubling"):
        out = collectives.run("allreduce", data, alg, op=op, dtype=name)
        assert_same_bits(out[0], want.astype(np.uint8), f"{name} {op} {alg}")
        assert_same_bits(out[1], out[0], f"{name} {op} {alg}: device 1")


def test_fp8_accepts_ml_dtypes_arrays_and_refuses_ieee_e4m3():
    v = np.array([[1.0, -2.0, 448.0], [3.0, 0.5, 448.0]], np.float32)
    got = collectives.run("allreduce", v.astype(ml_dtypes.float8_e4m3fn), "ring")
    assert got.dtype == ml_dtypes.float8_e4m3fn
    np.testing.assert_array_equal(got.astype(np.float32), [[4.0, -1.5, 448.0]] * 2)  # 896 saturates
    with pytest.raises(ValueError, match="float8_e4m3fn"):
        collectives.run("allreduce", v.astype(ml_dtypes.float8_e4m3), "ring")
    with pytest.raises(TypeError, match="uint8 bit patterns"):
        collectives.run("allreduce", v, "ring", dtype="f8e4m3")


# -- commutativity bit for bit on edge values ---------------------------------------------------------

def edge_storage(name, n, rng):
    """Edge values of ``name`` in kernel storage: NaN payloads, +-0, +-inf, extremes, ties."""
    row = dtypes.TABLE[name]
    if row.kind in ("int", "bool"):
        if row.kind == "bool":
            return rng.integers(0, 2, n).astype(np.uint8)
        info = np.iinfo(row.storage)
        pool = np.array([0, 1, 2, 3, info.min, info.max, info.max - 1], row.storage)
        return rng.choice(pool, n)
    if row.kind == "pair":
        value = row.numpy.fields["f0"][0]
        pool = (np.array([0.0, -0.0, 1.0, -1.0, np.inf, np.nan], value) if value.kind == "f"
                else np.array([0, 1, -1, np.iinfo(value).min, np.iinfo(value).max], value))
        out = np.zeros(n, row.numpy)
        out["f0"] = rng.choice(pool, n)
        if value.kind == "f":  # two NaN payloads
            u = out["f0"].view(f"u{value.itemsize}")
            u[rng.random(n) < 0.1] = (0x7FC00001 if value.itemsize == 4 else 0x7FF8000000000001)
            out["f0"] = u.view(value)
        out["f1"] = rng.integers(0, 3, n)
        return out.view(row.storage)
    if row.kind == "complex":
        part = np.float32 if row.storage == np.complex64 else np.float64
        pool = np.array([0.0, -0.0, 1.0, -1.0, 2.0, np.inf, np.nan], part)
        u = rng.choice(pool, (n, 2))
        p = u.view(f"u{u.itemsize}")
        p[rng.random((n, 2)) < 0.1] = 0x7FC00002 if part == np.float32 else 0x7FF8000000000002
        return np.ascontiguousarray(u).view(row.storage).reshape(n)
    # floats: as storage
    f32 = np.array([0.0, -0.0, 1.0, -1.0, 2.0, 0.5, np.inf, -np.inf, np.nan, 3e38], np.float32)
    if row.fmt == dtypes.NATIVE:
        vals = rng.choice(f32.astype(row.storage), n)
        u = vals.view(f"u{vals.itemsize}")
        u[rng.random(n) < 0.1] = 0x7FC00001 if vals.itemsize == 4 else 0x7FF8000000000001
        return vals
    widen, narrow = kernels.WIDEN_NARROW[row.fmt]
    vals = narrow(rng.choice(f32, n))
    if row.fmt in (dtypes.HALF, dtypes.BF16):
        vals[rng.random(n) < 0.1] = 0x7E01 if row.fmt == dtypes.HALF else 0x7FC1
    elif row.fmt == dtypes.E5M2:
        vals[rng.random(n) < 0.1] = 0xFF
    return vals


@pytest.mark.parametrize("name,op", [(d, o) for d, o in VALID if o != "mulsum"])
def test_combine_commutes_bit_for_bit_and_matches_reference(name, op):
    rng = np.random.default_rng(5)
    n = 1031  # past the SIMD loop bodies
    a, b = edge_storage(name, n, rng), edge_storage(name, n, rng)
    fmt, code = dtypes.kernel_format(name), ops.kernel_op(op)
    ab, ba = a.copy(), b.copy()
    kernels.reduce_into(ab, b, code, fmt)
    kernels.reduce_into(ba, a, code, fmt)
    assert_same_bits(ab, ba, f"{name} {op}: a op b vs b op a")
    row = dtypes.TABLE[name]
    stacked = np.stack([a, b])
    if row.kind == "pair":
        want = np_combine(stacked.view(row.numpy), op).view(row.storage)
    else:
        want = np_combine(stacked, "sum" if op == "avg" else op, fmt)
    assert_same_bits(ab, want, f"{name} {op}: kernel vs np_combine")


def test_logical_ops_give_zero_or_one_in_the_type():
    data = np.array([[5, 0, -3, 0], [2, 7, 0, 0], [1, 1, 1, 0]], np.int16)
    for op, want in (("land", [1, 0, 0, 0]), ("lor", [1, 1, 1, 0]), ("lxor", [1, 0, 0, 0])):
        out = collectives.run("allreduce", data, "ring", op=op)
        assert out.dtype == np.int16
        np.testing.assert_array_equal(out, [want] * 3, err_msg=op)
    flags = np.array([[True, False], [True, True]])
    np.testing.assert_array_equal(collectives.run("allreduce", flags, "direct", op="land"), [[True, False]] * 2)
    assert collectives.run("allreduce", flags, "direct", op="lxor").dtype == np.bool_


def test_maxloc_minloc_ties_take_the_smaller_index():
    fi = dtypes.TABLE["float_int"].numpy
    data = np.zeros((4, 3), fi)
    data["f0"] = [[1.0, 0.0, 2.0], [3.0, -0.0, 2.0], [3.0, 0.0, 1.0], [0.5, -0.0, 2.0]]
    data["f1"] = [[0, 0, 7], [1, 1, 5], [2, 2, 6], [3, 3, 9]]
    for alg in ("ring", "recursive_doubling", "tree"):
        out = collectives.run("allreduce", data, alg, op="maxloc")
        assert out[0].tolist() == [(3.0, 1), (0.0, 0), (2.0, 5)], alg
        assert not np.signbit(out[0]["f0"][1])  # +0 wins max
        low = collectives.run("allreduce", data, alg, op="minloc")[0]
        assert low.tolist() == [(0.5, 3), (-0.0, 0), (1.0, 6)], alg
        assert np.signbit(low["f0"][1])  # -0 wins min


def test_mulsum_uses_nccl_tests_scalars():
    data = np.ones((5, 3), np.float32)
    want = sum(ops.premul_scalar(d) for d in range(5))
    assert want == 1 + 2 + 1 + 2 + 1
    np.testing.assert_array_equal(collectives.run("allreduce", data, "ring", op="mulsum"), np.full((5, 3), want))
    ints = np.full((2, 2), 100, np.int8)  # 100 + 2 * 100 = 300 wraps in int8, as NCCL's int8 PreMulSum
    np.testing.assert_array_equal(collectives.run("allreduce", ints, "ring", op="mulsum"),
                                  np.full((2, 2), np.int8(300 - 256)))


# -- names ------------------------------------------------------------------------------------------

def test_names_and_numpy_dtypes():
    assert dtypes.nccl_names() == ["int8", "uint8", "int32", "uint32", "int64", "uint64", "half", "float",
                                   "double", "bfloat16", "f8e4m3", "f8e5m2"]
    for alias, name in (("f8e4m3", "float8_e4m3"), ("f8e5m2", "float8_e5m2"), ("half", "float16"),
                        ("C_BOOL", "bool")):
        assert dtypes.canonical(alias) == name
    for np_dtype, name in dtypes.BY_NUMPY.items():
        assert dtypes.canonical(np_dtype) == name
    renamed = np.dtype([("val", "<f8"), ("loc", "<i4")], align=True)
    assert dtypes.canonical(renamed) == "double_int"
    with pytest.raises(ValueError, match="layout of an MPI pair type"):
        dtypes.canonical(np.dtype([("a", "<f8"), ("b", "<i4")]))  # packed: 12 bytes, not C's 16
    with pytest.raises(ValueError, match="unsupported dtype"):
        dtypes.canonical(np.longdouble)
    assert set(dtypes.MPI_NAMES.values()) <= set(dtypes.TABLE)
    assert set(ops.MPI_OPS.values()) <= set(ops.ALL_OPS)


def test_pair_dtypes_are_what_mpi4py_gives():
    dtlib = pytest.importorskip("mpi4py.util.dtlib")
    from mpi4py import MPI
    for attr in ("FLOAT_INT", "DOUBLE_INT", "LONG_INT", "TWOINT", "SHORT_INT", "C_BOOL", "C_FLOAT_COMPLEX",
                 "C_DOUBLE_COMPLEX", "INT16_T", "UINT16_T"):
        assert dtypes.canonical(dtlib.to_numpy_dtype(getattr(MPI, attr))) == dtypes.MPI_NAMES[attr], attr


# -- the benchmark's data plane ------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(FP8))
def test_data_plane_checks_fp8_exactly_at_many_devices(name):
    """device_input keeps every partial fp8 sum exact (E5M2 has no 9) whatever the order, at P = 40."""
    for op in ("sum", "mulsum", "max", "prod", "avg"):
        runs = dataplane.measure("allreduce", 40, 37, "ring", dtype=name, op=op, iters=1, warmup=0)
        assert [r.nwrong for r in runs] == [0, 0], (name, op)


def test_nccl_tests_front_end_runs_fp8_and_mulsum(capsys):
    from bench.cli import main
    assert main(["bench", "all_reduce_perf", "-b", "8", "-e", "4K", "-f", "8", "-d", "f8e5m2", "-o", "mulsum",
                 "-n", "1", "-w", "0", "--topology", "hgx-h20"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip() and line[0] != "#"]
    assert rows and all(r[2] == "f8e5m2" and r[3] == "mulsum" and r[8] == "0" and r[12] == "0" for r in rows)
    assert main(["bench", "reduce_scatter_perf", "--model-only", "-b", "1K", "-e", "1K", "-d", "all", "-o", "all",
                 "--topology", "hgx-h20"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip() and line[0] != "#"]
    assert [r[2] for r in rows[::6]] == dtypes.nccl_names()
    assert [r[3] for r in rows[:6]] == ["sum", "prod", "max", "min", "avg", "mulsum"]

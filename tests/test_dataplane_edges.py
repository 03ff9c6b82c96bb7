"""Data-plane edge cases from the 30,000-case fuzz (issue 12, item 10).

Byte order, integer ``avg`` at the type's minimum, signed zeros and NaN payloads (every device ends
with the same bits, equal to the reference), shape errors that name their collective, and ``root``.
"""

import numpy as np
import pytest

import collectives
from collectives import kernels, registry
from collectives.dtypes import DTYPES
from collectives.ops import OPS

REDUCING = [(c, a) for c in registry.list_collectives() if registry.collective(c).reduces
            for a in registry.list_algorithms(c)]


def bits(a):
    """The raw bytes of ``a`` per element, to compare bit for bit (signed zeros, NaN payloads)."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint8).reshape(a.shape + (a.dtype.itemsize,)) if a.ndim else a.view(np.uint8)


def assert_same_bits(got, want, msg):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (msg, got.shape, want.shape, got.dtype, want.dtype)
    if not np.array_equal(bits(got), bits(want)):
        bad = np.flatnonzero((bits(got) != bits(want)).reshape(got.size, -1).any(axis=1))
        w = got.dtype.itemsize
        u = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[w]
        g, e = got.reshape(-1).view(u)[bad[:6]], want.reshape(-1).view(u)[bad[:6]]
        raise AssertionError(f"{msg}: {len(bad)} elements differ, e.g. at {bad[:6].tolist()}: "
                             f"got {[hex(x) for x in g]} want {[hex(x) for x in e]}")


# -- 1. byte order --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "uint32", "uint64", "float16"])
@pytest.mark.parametrize("coll,alg", [("allreduce", "ring"), ("reduce_scatter", "direct"), ("allgather", "ring"),
                                      ("reduce", "binomial")])
def test_big_endian_input_is_read_in_native_order(coll, alg, dtype):
    P = 3
    spec = registry.collective(coll)
    native = np.random.default_rng(0).integers(0, 5, spec.input_shape(P, 4)).astype(dtype)
    swapped = native.astype(native.dtype.newbyteorder(">" if native.dtype.byteorder != ">" else "<"))
    assert not swapped.dtype.isnative
    before = swapped.copy()
    want = collectives.run(coll, native, alg, op="sum", root=1)
    got = collectives.run(coll, swapped, alg, op="sum", root=1)
    assert got.dtype == native.dtype and got.dtype.isnative
    np.testing.assert_array_equal(got, want)
    ref = collectives.reference(coll, swapped, "sum", root=1)
    assert ref.dtype.isnative
    np.testing.assert_array_equal(ref, want)
    job = collectives.prepare(coll, swapped, alg, "sum", 1)
    buf = job.inputs.copy()
    job.execute(buf)
    np.testing.assert_array_equal(job.result(buf), want)
    # The caller's array is untouched (same byte order, same bytes).
    assert swapped.dtype == before.dtype
    assert swapped.tobytes() == before.tobytes()


def test_big_endian_bfloat16_bits():
    v = np.array([[1.0, -2.0], [3.0, 0.5]], np.float32)
    bf = (v.view(np.uint32) >> 16).astype(np.uint16)
    got = collectives.run("allreduce", bf.astype(">u2"), "ring", dtype="bfloat16")
    np.testing.assert_array_equal(got, collectives.run("allreduce", bf, "ring", dtype="bfloat16"))
    np.testing.assert_array_equal(collectives.reference("allreduce", bf.astype(">u2"), dtype="bfloat16"), got)
    assert got.dtype == np.uint16 and got.dtype.isnative


def test_check_data_converts_a_copy():
    data = np.arange(6, dtype=">f4").reshape(3, 2)
    out, name = collectives.api.check_data(data, None)
    assert name == "float32" and out.dtype.isnative and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.arange(6).reshape(3, 2))
    assert data.dtype == np.dtype(">f4") and not np.shares_memory(out, data)
    native = np.zeros((2, 2), np.float32)
    assert collectives.api.check_data(native, None)[0] is native  # native input: no copy


# -- 2. integer avg -------------------------------------------------------------------------------

def expected_avg(rows, dtype):
    """Sum wrapped to ``dtype`` (as the kernels sum), then divided by P truncating toward zero (Python ints)."""
    info = np.iinfo(dtype)
    span = 1 << info.bits
    out = []
    for col in zip(*[[int(v) for v in r] for r in rows]):
        s = sum(col) % span
        if s > info.max:
            s -= span
        q = abs(s) // len(col)
        out.append(q if s >= 0 else -q)
    return np.array(out, dtype)


def test_int8_avg_at_the_minimum():
    data = np.array([[-100], [-28]], np.int8)  # sum -128: abs() would wrap to -128 again
    for alg in ("ring", "direct", "recursive_doubling"):
        np.testing.assert_array_equal(collectives.run("allreduce", data, alg, op="avg"), [[-64], [-64]])
    np.testing.assert_array_equal(collectives.reference("allreduce", data, "avg"), [[-64], [-64]])


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32", "uint32", "int64", "uint64"])
@pytest.mark.parametrize("P", [1, 2, 3, 4, 7])
def test_integer_avg_every_dtype_with_extremes(dtype, P):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(P)
    pool = np.array([info.min, info.max, 0, 1, info.max - 1, info.min + 1, info.max // 2]
                    + ([-1, -2, info.min // 2 - 1] if info.min < 0 else [2, 3, info.max // 2 + 1]), dtype)
    data = rng.choice(pool, size=(P, 64)).astype(dtype)
    data[:, 0] = info.min
    data[:, 1] = info.max
    if P >= 2:  # sums landing exactly on the minimum, and on max + 1 (which wraps to the minimum)
        data[:, 2] = 0
        data[0, 2], data[1, 2] = (info.min // 2, info.min - info.min // 2) if info.min < 0 else (info.max, 1)
    want = expected_avg(data, dtype)
    ref = collectives.reference("allreduce", data, "avg")
    np.testing.assert_array_equal(ref, np.tile(want, (P, 1)))
    for alg in ("ring", "direct", "recursive_doubling"):
        np.testing.assert_array_equal(collectives.run("allreduce", data, alg, op="avg"), ref, err_msg=alg)
    # finish_avg directly, on a sum at the minimum and the maximum of the type.
    for total in (info.min, info.max, info.min + 1):
        v = np.array([total], dtype)
        kernels.finish_avg(v, P, 0)
        q = abs(int(total)) // P
        assert int(v[0]) == (q if total >= 0 else -q), (dtype, total, P, v)


# -- 3./4. the same bits everywhere, and the reference's IEEE rules -------------------------------

def nan_bits(dtype):
    """Two quiet NaNs with different payloads, as the kernels' storage dtype bit patterns."""
    return {"float32": (np.uint32, 0x7FC00001, 0x7FC00002), "float64": (np.uint64, 0x7FF8000000000001,
            0x7FF8000000000002), "float16": (np.uint16, 0x7E01, 0x7E02),
            "bfloat16": (np.uint16, 0x7FC1, 0x7FC2)}[dtype]


def edge_data(dtype, shape, seed):
    """Data made of +0, -0, two NaN payloads, +-1, 2 and +-inf (floats), or the type's extremes (ints),
    (bfloat16 as uint16 bits), and the same as float64 values (None for integers)."""
    rng = np.random.default_rng(seed)
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        pool = [0, 1, 2, info.min, info.max] + ([-1, info.min + 1] if info.min < 0 else [info.max - 1])
        return rng.choice(np.array(pool, dtype), size=shape), None
    ubits, n1, n2 = nan_bits(dtype)
    if dtype in ("float16", "bfloat16"):
        f32 = np.array([0.0, -0.0, 1.0, -1.0, 2.0, np.inf, -np.inf], np.float32)
        if dtype == "float16":
            vals = f32.astype(np.float16).view(np.uint16)
        else:
            vals = (f32.view(np.uint32) >> 16).astype(np.uint16)
        pool = np.concatenate([vals, np.array([n1, n2], np.uint16)])
        values = np.concatenate([f32.astype(np.float64), [np.nan, np.nan]])
    else:
        pool = np.concatenate([np.array([0.0, -0.0, 1.0, -1.0, 2.0, np.inf, -np.inf], dtype),
                               np.array([n1, n2], ubits).view(dtype)])
        values = pool.astype(np.float64)
    # Weighted towards zeros and NaNs; a few columns of one kind only.
    idx = rng.choice(len(pool), size=shape, p=np.array([3, 3, 1, 1, 1, 0.5, 0.5, 2, 2]) / 14)
    idx[:, 0] = 1   # all -0
    idx[:, 1] = 0   # all +0
    idx[:, 2] = rng.integers(0, 2, shape[0])  # +-0
    idx[:, 3] = rng.integers(7, 9, shape[0])  # NaN payloads only
    idx[:, 4] = 7 + (np.arange(shape[0]) % 2)  # NaN1, NaN2, NaN1, ... (recursive doubling's pairs)
    idx[:, 5] = 8 - (np.arange(shape[0]) % 2)
    out = pool[idx]
    return (out.view(np.float16) if dtype == "float16" else out), values[idx]


def defined(values, op):
    """Columns where IEEE 754 fixes the result bits whatever the order: excluded are NaN inputs meeting
    a NaN that the reduction itself makes (inf - inf, 0 x inf), whose payload depends on the order."""
    if values is None:
        return slice(None)
    nan_in = np.isnan(values).any(axis=0)
    if op in ("sum", "avg"):
        made = (values == np.inf).any(axis=0) & (values == -np.inf).any(axis=0)
    elif op == "prod":
        made = (values == 0).any(axis=0) & np.isinf(values).any(axis=0)
    else:
        return slice(None)
    return ~(nan_in & made)


def check_edges(coll, alg, P, dtype, op, m=7):
    spec = registry.collective(coll)
    shape = spec.input_shape(P, 3 * m if coll != "reduce_scatter" else m)
    data, values = edge_data(dtype, shape, seed=P * 131 + OPS.index(op) + m)
    kw = {"dtype": "bfloat16"} if dtype == "bfloat16" else {}
    root = P - 1
    before = data.copy()
    out = collectives.run(coll, data, alg, op=op, root=root, **kw)
    ref = collectives.reference(coll, data, op, root=root, **kw)
    what = f"{coll}/{alg} P={P} {dtype} {op}"
    assert bits(data).tobytes() == bits(before).tobytes()
    if coll == "allreduce":
        for d in range(1, P):
            assert_same_bits(out[d], out[0], f"{what}: device {d} vs device 0")
        ok = defined(values, op)
        assert_same_bits(out[0][ok], ref[0][ok], f"{what}: vs reference")
    elif coll == "reduce_scatter":
        m_out = out.shape[1]
        for d in range(P):
            ok = defined(values[:, d * m_out:(d + 1) * m_out] if values is not None else None, op)
            assert_same_bits(out[d][ok], ref[d][ok], f"{what}: device {d}'s block vs reference")
    else:
        assert_same_bits(out[defined(values, op)], ref[defined(values, op)], f"{what}: root vs reference")


@pytest.mark.parametrize("coll,alg", REDUCING)
def test_edge_data_same_bits_on_every_device_and_reference(coll, alg):
    for P in range(1, 10):
        for dtype in DTYPES:
            for op in OPS:
                check_edges(coll, alg, P, dtype, op)


@pytest.mark.parametrize("coll,alg", REDUCING)
def test_edge_data_in_the_vectorised_loops(coll, alg):
    """Chunks of hundreds of elements, so that the kernels' SIMD loop bodies run, not only their tails."""
    for P in (2, 3, 4, 8):
        for dtype in ("float32", "float64", "float16", "bfloat16", "int8", "uint64"):
            for op in OPS:
                check_edges(coll, alg, P, dtype, op, m=P * 97)


def test_recursive_doubling_signed_zero_and_nan_payload():
    """The fuzz's case: pairs combine as ``mine op theirs`` on one side and ``theirs op mine`` on the other."""
    n = np.array([0x7FC00001, 0x7FC00002], np.uint32).view(np.float32)
    data = np.array([[0.0, n[0], -0.0], [-0.0, n[1], 0.0]], np.float32)
    for op, zero in (("min", 0x80000000), ("max", 0x0)):
        out = collectives.run("allreduce", data, "recursive_doubling", op=op).view(np.uint32)
        np.testing.assert_array_equal(out, [[zero, 0x7FC00001, zero]] * 2, err_msg=op)
    out = collectives.run("allreduce", data, "recursive_doubling", op="sum").view(np.uint32)
    np.testing.assert_array_equal(out, [[0, 0x7FC00001, 0]] * 2)


def test_reference_keeps_the_sign_of_an_all_negative_zero_sum():
    data = np.full((4, 3), -0.0, np.float32)
    for op in ("sum", "avg", "min", "max"):
        assert np.signbit(collectives.reference("allreduce", data, op)).all(), op
        assert np.signbit(collectives.run("allreduce", data, "ring", op=op)).all(), op
    half = np.full((3, 2), 0x8000, np.uint16).view(np.float16)
    assert np.signbit(collectives.reference("allreduce", half, "sum")).all()


@pytest.mark.parametrize("fmt,storage,nan1,nan2,pz,nz", [
    (kernels.NATIVE, np.float32, 0x7FC00001, 0x7FC00002, 0x0, 0x80000000),
    (kernels.NATIVE, np.float64, 0x7FF8000000000001, 0x7FF8000000000002, 0x0, 1 << 63),
    (kernels.HALF, np.uint16, 0x7E01, 0x7E02, 0x0, 0x8000),
    (kernels.BF16, np.uint16, 0x7FC1, 0x7FC2, 0x0, 0x8000),
])
def test_combine_is_commutative_bit_for_bit(fmt, storage, nan1, nan2, pz, nz):
    u = {2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(storage).itemsize]
    a = np.array([pz, nz, nan1, nan2, pz, nan1], u)
    b = np.array([nz, pz, nan2, nan1, nan1, pz], u)
    want = {"min": [nz, nz, nan1, nan1, nan1, nan1], "max": [pz, pz, nan1, nan1, nan1, nan1],
            "sum": [pz, pz, nan1, nan1, nan1, nan1], "prod": [nz, nz, nan1, nan1, nan1, nan1]}
    for op, w in want.items():
        for x, y in ((a, b), (b, a)):
            dst = x.copy().view(storage)
            kernels.reduce_into(dst, y.copy().view(storage), kernels.OP_CODES[op], fmt)
            np.testing.assert_array_equal(dst.view(u), np.array(w, u), err_msg=f"{op} {storage} fmt={fmt}")


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("op", ["sum", "prod", "min", "max"])
def test_reduce_into_long_arrays_is_commutative_and_matches_np_reduce(dtype, op):
    from collectives.collective import np_reduce
    fmt = {"float16": kernels.HALF, "bfloat16": kernels.BF16}.get(dtype, kernels.NATIVE)
    a, _ = edge_data(dtype, (1, 300_001), seed=1)
    b, _ = edge_data(dtype, (1, 300_001), seed=2)
    a, b = a[0].view(np.uint16) if fmt else a[0], b[0].view(np.uint16) if fmt else b[0]
    ab, ba = a.copy(), b.copy()
    kernels.reduce_into(ab, b, kernels.OP_CODES[op], fmt)  # 300,001 elements: 4 blocks, in parallel
    kernels.reduce_into(ba, a, kernels.OP_CODES[op], fmt)
    assert_same_bits(ab, ba, f"{dtype} {op}: a op b vs b op a")
    hooks = {kernels.HALF: (kernels._half_widen, kernels._half_bits),
             kernels.BF16: (kernels._bf16_widen, kernels._bf16_bits)}.get(fmt, (None, None))
    want = np_reduce(np.stack([a, b]), op, widen=hooks[0], narrow=hooks[1])
    assert_same_bits(ab, want, f"{dtype} {op}: kernel vs np_reduce")


def test_half_conversions_keep_nan_payloads():
    for h in (0x7E01, 0x7E02, 0xFE03, 0x7FFF):
        f = kernels.half_to_float(np.uint16(h))
        assert np.isnan(f)
        assert int(kernels.float_to_half(f)) == h


# -- 5. shape errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("coll,alg", [("alltoall", "direct"), ("alltoall", "pairwise"), ("reduce_scatter", "ring")])
def test_shape_error_names_its_collective(coll, alg):
    data = np.ones((3, 7), np.float32)
    for call in (lambda: collectives.run(coll, data, alg), lambda: collectives.reference(coll, data)):
        with pytest.raises(ValueError) as err:
            call()
        msg = str(err.value)
        assert msg.startswith(f"{coll} input has 7 elements per device"), msg
        assert "P=3" in msg and "multiple" in msg, msg
        other = {"alltoall": "reduce_scatter", "reduce_scatter": "alltoall"}[coll]
        assert other not in msg, msg


# -- 6. root --------------------------------------------------------------------------------------

@pytest.mark.parametrize("root,exc", [(1.5, TypeError), (True, TypeError), (False, TypeError), ("1", TypeError),
                                      (5, ValueError), (3, ValueError), (-1, ValueError)])
@pytest.mark.parametrize("call", ["run", "prepare", "reference"])
def test_root_must_be_an_integer_device_index(call, root, exc):
    data = np.arange(6, dtype=np.float32).reshape(3, 2)
    fn = {"run": lambda: collectives.run("broadcast", data, "ring", root=root),
          "prepare": lambda: collectives.prepare("broadcast", data, "ring", root=root),
          "reference": lambda: collectives.reference("broadcast", data, root=root)}[call]
    with pytest.raises(exc, match=r"root=.*0\.\.2"):
        fn()


def test_numpy_integer_root_is_accepted():
    data = np.arange(6, dtype=np.float32).reshape(3, 2)
    for root in (np.int64(2), np.int32(1), 0):
        want = np.tile(data[int(root)], (3, 1))
        np.testing.assert_array_equal(collectives.run("broadcast", data, "ring", root=root), want)
        np.testing.assert_array_equal(collectives.reference("broadcast", data, root=root), want)

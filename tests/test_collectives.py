"""Every collective and algorithm against numpy, on the local executor."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import collectives
from collectives import registry
from collectives.api import build_schedule
from collectives.kernels import OPS

CASES = [(c, a) for c in registry.COLLECTIVES for a in registry.list_algorithms(c)]
DTYPES = ["float32", "float64", "float16", "int32", "int64", "int8", "uint8", "uint32", "uint64", "bfloat16"]


def small_ints(shape, seed, op="sum", unsigned=False):
    """Integer-valued data that every reduction order handles exactly."""
    rng = np.random.default_rng(seed)
    if op == "prod":
        return rng.choice([-1, 1, 1, 2], size=shape) if not unsigned else rng.choice([1, 1, 2], size=shape)
    return rng.integers(0 if unsigned else -3, 4, size=shape)


def make_input(coll, P, count, dtype, op, seed=0):
    spec = registry.collective(coll)
    v = small_ints(spec.input_shape(P, count), seed, op, dtype.startswith("uint"))
    if dtype == "bfloat16":
        return (v.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return v.astype(dtype)


def check_run(coll, alg, P, count, dtype, op):
    data = make_input(coll, P, count, dtype, op, seed=P * 1000 + count)
    before = data.copy()
    bf = "bfloat16" if dtype == "bfloat16" else None
    out = collectives.run(coll, data, alg, op=op, root=P - 1, dtype=bf)
    ref = collectives.reference(coll, data, op, root=P - 1, dtype=bf)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    np.testing.assert_array_equal(out, ref, err_msg=f"{coll}/{alg} P={P} count={count} {dtype} {op}")
    np.testing.assert_array_equal(data, before)  # input untouched


@pytest.mark.parametrize("coll,alg", CASES)
@pytest.mark.parametrize("P", range(1, 10))
def test_every_algorithm_every_device_count(coll, alg, P):
    if not registry.collective(coll).supports(P):    # hypercube: powers of two only
        with pytest.raises(ValueError, match="power-of-two"):
            check_run(coll, alg, P, 1, "float32", "sum")
        return
    for count in (0, 1, P, 3 * P + 1, 37):
        for op in (OPS if registry.collective(coll).reduces else ["sum"]):
            check_run(coll, alg, P, count, "float32", op)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("coll,alg", CASES)
def test_every_dtype_and_op(coll, alg, dtype):
    for P in filter(registry.collective(coll).supports, (3, 4)):
        for op in (OPS if registry.collective(coll).reduces else ["sum"]):
            check_run(coll, alg, P, 2 * P + 1, dtype, op)


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(CASES), P=st.integers(1, 12), count=st.integers(0, 50),
       dtype=st.sampled_from(DTYPES), op=st.sampled_from(OPS))
def test_hypothesis(case, P, count, dtype, op):
    coll, alg = case
    if not registry.collective(coll).supports(P):
        P = 1 << (P.bit_length() - 1)     # hypercube: the power of two below
    check_run(coll, alg, P, count, dtype, op if registry.collective(coll).reduces else "sum")


@pytest.mark.parametrize("coll,alg", CASES)
def test_checker_proves_every_algorithm(coll, alg):
    spec = registry.collective(coll)
    for P in filter(spec.supports, list(range(1, 18)) + [31, 32, 33, 64]):
        collectives.check(build_schedule(coll, alg, P, 2 * P + 1, root=P // 2), spec)


def test_checker_rejects_broken_schedules():
    spec = registry.collective("allreduce")
    s = build_schedule("allreduce", "ring", 4, 8)
    s.phases[1].repeat -= 1  # allgather one step short
    with pytest.raises(collectives.ScheduleError, match="ends with"):
        collectives.check(s, spec)
    s = build_schedule("allreduce", "ring", 4, 8)
    s.phases[0].repeat += 1  # one reduction too many counts a device twice
    with pytest.raises(collectives.ScheduleError, match="twice"):
        collectives.check(s, spec)
    s = build_schedule("allreduce", "direct", 3, 6)
    s.phases[0].reduce = False  # copies where reductions belong: several writers of one chunk
    with pytest.raises(collectives.ScheduleError, match="written by"):
        collectives.check(s, spec)


def test_avg_divides_once():
    data = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)
    np.testing.assert_array_equal(collectives.run("allreduce", data, op="avg"), [[2.0, 4.0], [2.0, 4.0]])
    ints = np.array([[-3], [0]], np.int32)  # -3 / 2 truncates toward zero, as C does
    np.testing.assert_array_equal(collectives.run("allreduce", ints, op="avg"), [[-1], [-1]])


def test_shapes_documented_in_run():
    P, m = 3, 2
    assert collectives.run("allgather", np.zeros((P, m), np.float32), "ring").shape == (P, P * m)
    assert collectives.run("reduce_scatter", np.zeros((P, P * m), np.float32), "ring").shape == (P, m)
    assert collectives.run("alltoall", np.zeros((P, P * m), np.float32), "pairwise").shape == (P, P * m)


@pytest.mark.parametrize("call,match", [
    (lambda d: collectives.run("allreduce", d[0]), "shape"),
    (lambda d: collectives.run("allreduce", d.tolist()), "numpy.ndarray"),
    (lambda d: collectives.run("allreduse", d), "allreduce, allgather"),
    (lambda d: collectives.run("allreduce", d, algorithm="rign"), "unknown algorithm .rign.*expected one of.*ring"),
    (lambda d: collectives.run("allreduce", d, op="mean"), "sum, prod, min, max, avg"),
    (lambda d: collectives.run("allreduce", d.astype(np.complex64), op="max"), "unsupported dtype"),
    (lambda d: collectives.run("allreduce", d.astype(bool)), "unsupported dtype"),
    (lambda d: collectives.run("reduce_scatter", d[:, :5]), "multiple of the device count"),
    (lambda d: collectives.run("allreduce", d, dtype="bfloat16"), "uint16"),
])
def test_bad_input_gives_clear_error(call, match):
    data = np.ones((3, 6), np.float32)
    before = data.copy()
    with pytest.raises((ValueError, TypeError), match=match):
        call(data)
    np.testing.assert_array_equal(data, before)

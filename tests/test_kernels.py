"""Numba kernels: 16-bit float conversions bit-exact against numpy, reduce-into against ufuncs."""

import subprocess
import sys

import numpy as np
import pytest

from collectives import kernels


def test_half_conversions_match_numpy_on_every_bit_pattern():
    bits = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    as_float = np.array([kernels.half_to_float(b) for b in bits], np.float32)
    want = bits.view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(np.isnan(as_float), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(as_float[ok], want[ok])
    # float32 -> half rounding, including ties, subnormals and overflow.
    rng = np.random.default_rng(1)
    f = np.concatenate([rng.standard_normal(3000).astype(np.float32) * 10.0 ** rng.integers(-9, 6, 3000),
                        np.array([65504, 65519.99, 65520, 1e-8, 2.0**-25, 3 * 2.0**-25, -0.0, np.inf], np.float32)])
    got = np.array([kernels.float_to_half(x) for x in f], np.uint16)
    with np.errstate(over="ignore"):
        want_bits = f.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(got, want_bits)


def test_bf16_round_to_nearest_even():
    f = np.array([1.0, 1.00390625, 1.01171875, -2.5, 3e38, np.inf], np.float32)
    got = np.array([kernels.float_to_bf16(x) for x in f], np.uint16)
    np.testing.assert_array_equal(got, kernels._bf16_bits(f))
    assert kernels.bf16_to_float(got[0]) == 1.0
    assert kernels.bf16_to_float(got[1]) == 1.0  # tie goes to even
    assert kernels.bf16_to_float(got[2]) == np.float32(1.015625)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("op", ["sum", "prod", "min", "max"])
def test_reduce_into_matches_ufunc(dtype, op):
    rng = np.random.default_rng(0)
    a = rng.integers(-4, 5, 200_001).astype(dtype)
    b = rng.integers(-4, 5, 200_001).astype(dtype)
    want = {"sum": np.add, "prod": np.multiply, "min": np.minimum, "max": np.maximum}[op](a, b)
    kernels.reduce_into(a, b, kernels.OP_CODES[op])
    np.testing.assert_array_equal(a, want)


def test_half_reduce_matches_numpy_rounding():
    rng = np.random.default_rng(2)
    a = rng.standard_normal(10_000).astype(np.float16)
    b = rng.standard_normal(10_000).astype(np.float16)
    want = a + b
    got = a.view(np.uint16).copy()
    kernels.reduce_into(got, b.view(np.uint16), kernels.SUM, kernels.HALF)
    np.testing.assert_array_equal(got.view(np.float16), want)


def test_import_compiles_nothing():
    code = ("import collectives, topologies, bench.cli, numba.core.registry as r\n"
            "from collectives import kernels\n"
            "from topologies import routing, network\n"
            "d = [v for m in (kernels, routing, network) for v in vars(m).values()\n"
            "     if hasattr(v, 'signatures') and hasattr(v, 'py_func')]\n"
            "assert d and all(not f.signatures for f in d), [f for f in d if f.signatures]\n"
            "print(len(d))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 8

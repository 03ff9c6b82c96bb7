"""Numba kernels that move and reduce the real data. No communication, no graphs.

Every kernel is compiled lazily on first call (``cache=True`` keeps the machine code between runs),
so importing this module compiles nothing.

Ops are small integers (:data:`collectives.ops.OP_CODES`); ``avg`` reduces as a sum and is divided by the device
count once at the end (:func:`finish_avg`), as NCCL's ``ncclAvg`` does. ``float16`` and
``bfloat16`` are stored as ``uint16`` bit patterns, widened to float32 for the arithmetic and
rounded back to nearest-even, which is what numpy does for ``float16``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .dtypes import BF16, HALF, NATIVE
from .ops import MAX, MIN, OP_CODES, OPS, PROD, SUM  # noqa: F401  (OPS, OP_CODES: the ops table, re-exported)


@numba.njit(cache=True, inline="always")
def _combine(a, b, op):
    if op == PROD:
        return a * b
    if op == MIN:
        if b < a or b != b:
            return b
        return a
    if op == MAX:
        if b > a or b != b:
            return b
        return a
    return a + b  # SUM and AVG


@numba.njit(cache=True)
def half_to_float(h):
    """IEEE binary16 bits (uint16) to float32."""
    h = np.uint32(h)
    sign = np.float32(-1.0) if (h >> 15) & 1 else np.float32(1.0)
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if exp == 0:
        return sign * np.float32(mant) * np.float32(5.960464477539063e-08)  # mant * 2**-24
    if exp == 31:
        if mant == 0:
            return sign * np.float32(np.inf)
        return np.float32(np.nan)
    bits = ((h >> 15) << 31) | ((exp + 112) << 23) | (mant << 13)
    return np.array([bits], dtype=np.uint32).view(np.float32)[0]


@numba.njit(cache=True)
def float_to_half(f):
    """float32 to IEEE binary16 bits (uint16), round to nearest even."""
    x = np.array([np.float32(f)]).view(np.uint32)[0]
    sign = (x >> 16) & 0x8000
    x = x & 0x7FFFFFFF
    if x >= 0x7F800000:
        return np.uint16(sign | 0x7C00 | (0x200 if x > 0x7F800000 else 0))
    if x >= 0x477FF000:  # 65520 and up round to infinity
        return np.uint16(sign | 0x7C00)
    if x < 0x38800000:  # below 2**-14: subnormal half (or zero)
        v = np.float64(np.array([x], dtype=np.uint32).view(np.float32)[0]) * 16777216.0  # * 2**24, exact
        return np.uint16(sign | np.uint32(np.rint(v)))
    h = (x >> 13) - (112 << 10)
    rem = x & 0x1FFF
    if rem > 0x1000 or (rem == 0x1000 and (h & 1)):
        h += 1
    return np.uint16(sign | h)


@numba.njit(cache=True)
def bf16_to_float(h):
    bits = np.uint32(h) << 16
    return np.array([bits], dtype=np.uint32).view(np.float32)[0]


@numba.njit(cache=True)
def float_to_bf16(f):
    x = np.array([np.float32(f)]).view(np.uint32)[0]
    if (x & 0x7FFFFFFF) > 0x7F800000:
        return np.uint16((x >> 16) | 0x40)  # quiet NaN
    x = x + 0x7FFF + ((x >> 16) & 1)  # round to nearest even
    return np.uint16(x >> 16)


@numba.njit(cache=True, inline="always")
def _combine_fmt(a, b, op, fmt):
    if fmt == HALF:
        return float_to_half(_combine(half_to_float(a), half_to_float(b), op))
    if fmt == BF16:
        return float_to_bf16(_combine(bf16_to_float(a), bf16_to_float(b), op))
    return _combine(a, b, op)


@numba.njit(cache=True)
def _reduce_range(dst, doff, src, soff, n, op, fmt):
    # Slices first: with plain offsets LLVM cannot rule out overlap and does not vectorise (3x slower).
    # One loop per op so that the branch sits outside the loop.
    d = dst[doff:doff + n]
    s = src[soff:soff + n]
    if fmt != NATIVE:
        for i in range(n):
            d[i] = _combine_fmt(d[i], s[i], op, fmt)
    elif op == PROD:
        for i in range(n):
            d[i] *= s[i]
    elif op == MIN:
        for i in range(n):
            d[i] = _combine(d[i], s[i], MIN)
    elif op == MAX:
        for i in range(n):
            d[i] = _combine(d[i], s[i], MAX)
    else:
        for i in range(n):
            d[i] += s[i]


def reduce_into(dst, src, op=SUM, fmt=NATIVE):
    """``dst[i] = dst[i] (op) src[i]`` for 1-D arrays of one dtype, split into blocks across threads."""
    nblocks = max(1, min(numba.get_num_threads() * 4, dst.size // 65536))
    _reduce_blocks(dst, src, op, fmt, nblocks)


@numba.njit(cache=True, parallel=True)
def _reduce_blocks(dst, src, op, fmt, nblocks):
    n = dst.size
    step = (n + nblocks - 1) // nblocks
    for b in prange(nblocks):
        lo = b * step
        hi = min(n, lo + step)
        if hi > lo:
            _reduce_range(dst, lo, src, lo, hi - lo, op, fmt)


@numba.njit(cache=True, parallel=True)
def apply_step(buf, src, dst, soff, doff, length, group_ptr, reduce, op, fmt):
    """Apply one step of a schedule to ``buf`` (devices x elements).

    Transfer ``k`` reads ``length[k]`` elements of device ``src[k]`` at ``soff[k]`` and copies or
    reduces them into device ``dst[k]`` at ``doff[k]``. Transfers are grouped by destination
    (``group_ptr``); groups run in parallel, a group's transfers in order. The schedule checker
    guarantees no element is both read and written in one step, so in-place is exact.
    """
    for g in prange(group_ptr.size - 1):
        for k in range(group_ptr[g], group_ptr[g + 1]):
            s = src[k]
            d = dst[k]
            n = length[k]
            if reduce:
                _reduce_range(buf[d], doff[k], buf[s], soff[k], n, op, fmt)
            else:
                buf[d, doff[k]:doff[k] + n] = buf[s, soff[k]:soff[k] + n]


@numba.njit(cache=True)
def reduce_chunk(dst, doff, src, soff, n, op, fmt):
    """Serial reduce of ``src[soff:soff+n]`` into ``dst[doff:doff+n]`` (used by the MPI executor)."""
    _reduce_range(dst, doff, src, soff, n, op, fmt)


def finish_avg(values: np.ndarray, count: int, fmt: int) -> None:
    """Divide a summed buffer by ``count`` in place (``avg``); integers truncate toward zero as in C."""
    if fmt == HALF:
        v = values.view(np.float16)
        v[...] = (v.astype(np.float32) / np.float32(count)).astype(np.float16)
    elif fmt == BF16:
        f = (values.astype(np.uint32) << 16).view(np.float32) / np.float32(count)
        values[...] = _bf16_bits(f)
    elif values.dtype.kind in "iu":
        values[...] = np.sign(values) * (np.abs(values) // count)
    else:
        values /= values.dtype.type(count)


def _bf16_bits(f32: np.ndarray) -> np.ndarray:
    """float32 array to bfloat16 bit patterns, round to nearest even (numpy version of float_to_bf16)."""
    x = np.ascontiguousarray(f32, np.float32).view(np.uint32).astype(np.uint64)
    nan = (x & 0x7FFFFFFF) > 0x7F800000
    out = ((x + 0x7FFF + ((x >> 16) & 1)) >> 16).astype(np.uint16)
    out[nan] = ((x[nan] >> 16) | 0x40).astype(np.uint16)
    return out

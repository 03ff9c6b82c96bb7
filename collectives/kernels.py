"""Numba kernels that move and reduce the real data. No communication, no graphs.

Every kernel is compiled lazily on first call (``cache=True`` keeps the machine code between runs),
so importing this module compiles nothing.

Ops are small integers (:data:`collectives.ops.OP_CODES`); ``avg`` reduces as a sum and is divided by the device
count once at the end (:func:`finish_avg`), as NCCL's ``ncclAvg`` does. ``float16`` and
``bfloat16`` are stored as ``uint16`` bit patterns, widened to float32 for the arithmetic and
rounded back to nearest-even, which is what numpy does for ``float16``. Widening is exact (a NaN
keeps its sign and payload); rounding back returns a NaN quiet, with its sign and the top bits of
its payload (as x86's F16C ``vcvtps2ph`` does).

Every combine is commutative bit for bit, so that two devices combining the same pair in opposite
orders (recursive doubling: ``mine op theirs`` on one side, ``theirs op mine`` on the other) end
with the same bits, and ``min``/``max`` give the same bits whatever the order of the devices:

- ``min``/``max`` of equal values: ``-0.0`` wins ``min``, ``+0.0`` wins ``max`` (IEEE 754-2019
  ``minimum``/``maximum``);
- a NaN beats any number (it propagates) and keeps its payload;
- of two NaNs, every op returns the one whose bit pattern, read as an unsigned integer, is smaller
  (quieted by ``sum``/``prod`` as the hardware quiets a NaN operand).

>>> a, b = np.array([0.0, -0.0], np.float32), np.array([-0.0, 0.0], np.float32)
>>> reduce_into(a, b, MIN); np.signbit(a).tolist()
[True, True]
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from .dtypes import BF16, HALF, NATIVE
from .ops import MAX, MIN, OP_CODES, OPS, PROD, SUM  # noqa: F401  (OPS, OP_CODES: the ops table, re-exported)


@intrinsic
def _ubits(typingctx, x):
    """The bit pattern of a float as the unsigned integer of its width (an integer: itself)."""
    if isinstance(x, types.Float) and x.bitwidth in (32, 64):
        ret = types.uint32 if x.bitwidth == 32 else types.uint64

        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], context.get_value_type(ret))
        return ret(x), codegen
    if isinstance(x, types.Integer):
        return x(x), lambda context, builder, sig, args: args[0]
    return None


@intrinsic
def _f32_from_bits(typingctx, u):
    """The float32 whose bit pattern is the low 32 bits of the integer ``u``."""
    if not isinstance(u, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        v = args[0]
        if v.type.width > 32:
            v = builder.trunc(v, ir.IntType(32))
        elif v.type.width < 32:
            v = builder.zext(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())
    return types.float32(u), codegen


@numba.njit(cache=True, inline="always")
def _combine(a, b, op):
    # Commutative bit for bit (see the module docstring). For integers the NaN and signed-zero
    # tests fold away and this is the plain op. min/max: one select on non-short-circuit
    # conditions, which LLVM vectorises well (if/return chains vectorise to twice the instructions).
    if op == MIN or op == MAX:
        ua, ub = _ubits(a), _ubits(b)
        # Equal (+0 and -0): min takes the sign bit (the larger pattern), max the smaller.
        tie = (a == b) & ((ub > ua) if op == MIN else (ub < ua))
        # A NaN wins over a number; of two NaNs, the smaller pattern.
        nan = (b != b) & ((a == a) | (ub < ua))
        return b if ((b < a) if op == MIN else (b > a)) | tie | nan else a
    if op == PROD:
        r = a * b
        if a != a and b != b:  # two NaNs: the hardware keeps one operand's payload; pick by bits
            c = b if _ubits(b) < _ubits(a) else a
            r = c * c
        return r
    r = a + b  # SUM and AVG
    if a != a and b != b:
        c = b if _ubits(b) < _ubits(a) else a
        r = c + c
    return r


@numba.njit(cache=True)
def half_to_float(h):
    """IEEE binary16 bits (uint16) to float32 (exact; a NaN keeps its sign and payload)."""
    h = np.uint32(h)
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if exp == 0:
        sign = np.float32(-1.0) if (h >> 15) & 1 else np.float32(1.0)
        return sign * np.float32(mant) * np.float32(5.960464477539063e-08)  # mant * 2**-24
    if exp == 31:  # infinity, or NaN with its payload
        return _f32_from_bits(((h >> 15) << 31) | 0x7F800000 | (mant << 13))
    return _f32_from_bits(((h >> 15) << 31) | ((exp + 112) << 23) | (mant << 13))


@numba.njit(cache=True)
def float_to_half(f):
    """float32 to IEEE binary16 bits (uint16), round to nearest even; a NaN comes back quiet with
    its sign and the top 10 bits of its payload (as F16C's ``vcvtps2ph`` does)."""
    x = _ubits(np.float32(f))
    sign = (x >> 16) & 0x8000
    x = x & 0x7FFFFFFF
    if x > 0x7F800000:
        return np.uint16(sign | 0x7E00 | ((x >> 13) & 0x3FF))
    if x >= 0x477FF000:  # 65520 and up round to infinity
        return np.uint16(sign | 0x7C00)
    if x < 0x38800000:  # below 2**-14: subnormal half (or zero)
        v = np.float64(_f32_from_bits(x)) * 16777216.0  # * 2**24, exact
        return np.uint16(sign | np.uint32(np.rint(v)))
    h = (x >> 13) - (112 << 10)
    rem = x & 0x1FFF
    if rem > 0x1000 or (rem == 0x1000 and (h & 1)):
        h += 1
    return np.uint16(sign | h)


@numba.njit(cache=True)
def bf16_to_float(h):
    return _f32_from_bits(np.uint32(h) << 16)


@numba.njit(cache=True)
def float_to_bf16(f):
    x = _ubits(np.float32(f))
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
            d[i] = _combine(d[i], s[i], PROD)
    elif op == MIN:
        for i in range(n):
            d[i] = _combine(d[i], s[i], MIN)
    elif op == MAX:
        for i in range(n):
            d[i] = _combine(d[i], s[i], MAX)
    else:
        for i in range(n):
            d[i] = _combine(d[i], s[i], SUM)


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
    """Divide a summed buffer by ``count`` in place (``avg``).

    Integers: the sum as the kernels made it (wrapping as the type does, as NCCL sums) divided by
    ``count`` truncating toward zero as in C, without overflow, also for a sum at the type's minimum:

    >>> v = np.array([-128, 127, -127, 5], np.int8)
    >>> finish_avg(v, 2, NATIVE); v.tolist()
    [-64, 63, -63, 2]
    """
    if fmt == HALF:
        values[...] = _half_bits(_half_widen(values) / np.float32(count))
    elif fmt == BF16:
        values[...] = _bf16_bits(_bf16_widen(values) / np.float32(count))
    elif values.dtype.kind in "iu":
        if values.dtype.itemsize <= 4:  # in int64, where count need not fit the type
            t = values.astype(np.int64)
            n = np.int64(count)
        else:
            t, n = values, values.dtype.type(count)
        q = t // n  # floor; for a negative total with a remainder one step toward zero
        if t.dtype.kind == "i":
            q += ((t < 0) & (t % n != 0)).astype(q.dtype)
        values[...] = q
    else:
        values /= values.dtype.type(count)


def _half_widen(h: np.ndarray) -> np.ndarray:
    """float16 bit patterns (uint16) to float32, exactly as :func:`half_to_float` (numpy version)."""
    h = np.ascontiguousarray(h).view(np.uint16)
    f = h.view(np.float16).astype(np.float32)
    nan = (h & 0x7FFF) > 0x7C00
    if nan.any():  # sign and payload kept, never quieted (numpy's F16C path would quiet)
        hn = h[nan].astype(np.uint32)
        f[nan] = (((hn & 0x8000) << 16) | 0x7F800000 | ((hn & 0x3FF) << 13)).view(np.float32)
    return f


def _half_bits(f32: np.ndarray) -> np.ndarray:
    """float32 array to float16 bit patterns as :func:`float_to_half` does (numpy version)."""
    f32 = np.ascontiguousarray(f32, np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        out = f32.astype(np.float16).view(np.uint16)
    x = f32.view(np.uint32)
    nan = (x & 0x7FFFFFFF) > 0x7F800000
    if nan.any():
        xn = x[nan]
        out[nan] = (((xn >> 16) & 0x8000) | 0x7E00 | ((xn >> 13) & 0x3FF)).astype(np.uint16)
    return out


def _bf16_widen(h: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) to float32, exactly (numpy version of :func:`bf16_to_float`)."""
    return (np.asarray(h).astype(np.uint32) << 16).view(np.float32)


def _bf16_bits(f32: np.ndarray) -> np.ndarray:
    """float32 array to bfloat16 bit patterns, round to nearest even (numpy version of float_to_bf16)."""
    x = np.ascontiguousarray(f32, np.float32).view(np.uint32).astype(np.uint64)
    nan = (x & 0x7FFFFFFF) > 0x7F800000
    out = ((x + 0x7FFF + ((x >> 16) & 1)) >> 16).astype(np.uint16)
    out[nan] = ((x[nan] >> 16) | 0x40).astype(np.uint16)
    return out

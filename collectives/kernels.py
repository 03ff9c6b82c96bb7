"""Numba kernels that move and reduce the real data. No communication, no graphs.

Every kernel is compiled lazily on first call (``cache=True`` keeps the machine code between runs),
so importing this module compiles nothing. The reduce loops are specialised by the storage type of
the buffers (the overload of :func:`_reduce_range`): each storage type compiles only its own formats.

Ops are small integers (:data:`collectives.ops.OP_CODES`); ``avg`` reduces as a sum and is divided by
the device count once at the end (:func:`finish_avg`), and ``mulsum`` is a sum of inputs
premultiplied once as they are loaded (:func:`premultiply`), as NCCL applies a PreMulSum op's scalar
to each input. ``float16`` and ``bfloat16`` are stored as ``uint16`` bit patterns, widened to float32
for the arithmetic and rounded back to nearest-even, which is what numpy does for ``float16``.
Widening is exact (a NaN keeps its sign and payload); rounding back returns a NaN quiet, with its
sign and the top bits of its payload (as x86's F16C ``vcvtps2ph`` does). The fp8 formats (OCP FP8
``E4M3``: no infinities, largest 448; ``E5M2``: largest 57344) are stored as ``uint8`` bit patterns
and done the same way, rounding back as NCCL's conversions do (CUDA's ``__NV_SATFINITE``): a
magnitude past the largest finite value, infinity included, becomes that value with its sign; a NaN
stays a NaN (E4M3: ``0x7F`` with its sign; E5M2: quiet, with its sign and top payload bit). NCCL does
the fp8 arithmetic in half precision; one sum or product of two fp8 values rounds to the same fp8
value from float32 as from half (both are exact or correctly rounded at that width).

Every combine is commutative bit for bit, so that two devices combining the same pair in opposite
orders (recursive doubling: ``mine op theirs`` on one side, ``theirs op mine`` on the other) end
with the same bits, and ``min``/``max`` give the same bits whatever the order of the devices:

- ``min``/``max`` of equal values: ``-0.0`` wins ``min``, ``+0.0`` wins ``max`` (IEEE 754-2019
  ``minimum``/``maximum``);
- a NaN beats any number (it propagates) and keeps its payload;
- of two NaNs, every op returns the one whose bit pattern, read as an unsigned integer, is smaller
  (quieted by ``sum``/``prod`` as the hardware quiets a NaN operand);
- complex: each part by the float rules; ``prod`` as ``(ar br - ai bi) + i (ar bi + ai br)`` with
  each product and the imaginary sum done by those rules (swapping the operands swaps only the two
  terms of that sum; the real part's difference is of terms that do not swap);
- integers: ``land``/``lor``/``lxor`` give 0 or 1 in the input's type, as C's logical operators do;
- ``maxloc``/``minloc`` (MPI's pair types): the value by the ``max``/``min`` rules; the index of the
  winning value, or the smaller index of two equal values (equal as numbers, +0 and -0 included, or
  the same bits); the padding bytes of a combined pair are zero.

>>> a, b = np.array([0.0, -0.0], np.float32), np.array([-0.0, 0.0], np.float32)
>>> reduce_into(a, b, MIN); np.signbit(a).tolist()
[True, True]
>>> x = np.array([5, 0, -2], np.int32); reduce_into(x, np.array([3, 7, 0], np.int32), LAND); x.tolist()
[1, 0, 0]
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic, overload

from .dtypes import (BF16, E4M3, E5M2, HALF, NATIVE, PAIR_2INT, PAIR_DOUBLE_INT, PAIR_FLOAT_INT,  # noqa: F401
                     PAIR_LONG_INT, PAIR_SHORT_INT)
# (ALL_OPS, OPS, OP_CODES and the op codes: the ops table, re-exported)
from .ops import (ALL_OPS, BAND, BOR, BXOR, LAND, LOR, LXOR, MAX, MAXLOC, MIN, MINLOC, MULSUM,  # noqa: F401
                  OP_CODES, OPS, PROD, SUM, premul_scalar)


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


@intrinsic
def _f64_from_bits(typingctx, u):
    """The float64 whose bit pattern is the 64-bit integer ``u``."""
    if not isinstance(u, types.Integer) or u.bitwidth != 64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(u), codegen


@intrinsic
def _complex_of(typingctx, re, im):
    """The complex of the floats' width whose parts are ``re`` and ``im``, bits unchanged
    (``complex()`` would go through complex128)."""
    if not (isinstance(re, types.Float) and re == im):
        return None
    ret = types.complex64 if re.bitwidth == 32 else types.complex128

    def codegen(context, builder, sig, args):
        z = context.make_complex(builder, sig.return_type)
        z.real, z.imag = args
        return z._getvalue()
    return ret(re, im), codegen


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


@numba.njit(cache=True)
def e4m3_to_float(h):
    """OCP FP8 E4M3 bits (uint8) to float32, exactly (the NaN ``S.1111.111`` keeps its sign)."""
    h = np.uint32(h)
    sign = (h >> 7) << 31
    e = (h >> 3) & 0xF
    m = h & 0x7
    if (h & 0x7F) == 0x7F:  # E4M3 has no infinity: only these two patterns are NaN
        return _f32_from_bits(sign | 0x7F800000 | (m << 20))
    if e == 0:
        s = np.float32(-1.0) if sign else np.float32(1.0)
        return s * np.float32(m) * np.float32(0.001953125)  # m * 2**-9
    return _f32_from_bits(sign | ((e + 120) << 23) | (m << 20))


@numba.njit(cache=True)
def e5m2_to_float(h):
    """OCP FP8 E5M2 bits (uint8) to float32, exactly: E5M2 is the top byte of an IEEE binary16."""
    return half_to_float(np.uint16(np.uint32(h) << 8))


@numba.njit(cache=True)
def float_to_e4m3(f):
    """float32 to OCP FP8 E4M3 bits (uint8), round to nearest even, saturating as NCCL does: 464 and
    up (infinity too) give +-448; a NaN gives ``0x7F`` with its sign."""
    x = _ubits(np.float32(f))
    sign = (x >> 24) & 0x80
    a = x & 0x7FFFFFFF
    if a > 0x7F800000:
        return np.uint8(sign | 0x7F)
    if a >= 0x43E80000:  # 464 = 448 + half an ulp: the tie would round to 480, E4M3's NaN pattern
        return np.uint8(sign | 0x7E)
    if a < 0x3C800000:  # below 2**-6: subnormal (or zero)
        v = np.float64(_f32_from_bits(a)) * 512.0  # * 2**9, exact
        return np.uint8(sign | np.uint32(np.rint(v)))
    h = (a >> 20) - (120 << 3)
    rem = a & 0xFFFFF
    if rem > 0x80000 or (rem == 0x80000 and (h & 1)):
        h += 1
    return np.uint8(sign | h)


@numba.njit(cache=True)
def float_to_e5m2(f):
    """float32 to OCP FP8 E5M2 bits (uint8), round to nearest even, saturating as NCCL does: 61440 and
    up (infinity too) give +-57344; a NaN comes back quiet with its sign and top payload bit."""
    x = _ubits(np.float32(f))
    sign = (x >> 24) & 0x80
    a = x & 0x7FFFFFFF
    if a > 0x7F800000:
        return np.uint8(sign | 0x7E | ((a >> 21) & 0x3))
    if a >= 0x47700000:  # 61440 = 57344 + half an ulp
        return np.uint8(sign | 0x7B)
    if a < 0x38800000:  # below 2**-14: subnormal (or zero)
        v = np.float64(_f32_from_bits(a)) * 65536.0  # * 2**16, exact
        return np.uint8(sign | np.uint32(np.rint(v)))
    h = (a >> 21) - (112 << 2)
    rem = a & 0x1FFFFF
    if rem > 0x100000 or (rem == 0x100000 and (h & 1)):
        h += 1
    return np.uint8(sign | h)


@numba.njit(cache=True, inline="always")
def _bit_op(a, b, op):
    """MPI's logical (0 or 1 in the type, as C's ``&&``, ``||``, ``!=`` of truth values) and bitwise ops."""
    if op == LAND:
        return type(a)((a != 0) & (b != 0))
    if op == LOR:
        return type(a)((a != 0) | (b != 0))
    if op == LXOR:
        return type(a)((a != 0) != (b != 0))
    if op == BAND:
        return a & b
    if op == BOR:
        return a | b
    return a ^ b


@numba.njit(cache=True, inline="always")
def _loc(va, ia, vb, ib, op):
    """``maxloc``/``minloc`` of (value, index) pairs: ``(value, index)`` (see the module docstring)."""
    v = _combine(va, vb, MAX if op == MAXLOC else MIN)
    tie = (va == vb) | (_ubits(va) == _ubits(vb))
    i = min(ia, ib) if tie else (ia if _ubits(v) == _ubits(va) else ib)
    return v, i


@numba.njit(cache=True, inline="always")
def _complex_sum(a, b):
    return _complex_of(_combine(a.real, b.real, SUM), _combine(a.imag, b.imag, SUM))


@numba.njit(cache=True, inline="always")
def _complex_prod(a, b):
    # The real part's terms do not swap with the operands: a plain difference commutes (and
    # ``x + (-y)`` would not help: LLVM folds it into ``x - y``, whose NaN keeps ``y``'s sign).
    re = _combine(a.real, b.real, PROD) - _combine(a.imag, b.imag, PROD)
    im = _combine(_combine(a.real, b.imag, PROD), _combine(a.imag, b.real, PROD), SUM)
    return _complex_of(re, im)


# The formats other than NATIVE, by storage type: the overload below compiles the one its storage
# type has (a runtime ``fmt`` branch over every format would compile them all for every type).

def _combine_16(a, b, op, fmt):
    if fmt == HALF:
        return float_to_half(_combine(half_to_float(a), half_to_float(b), op))
    return float_to_bf16(_combine(bf16_to_float(a), bf16_to_float(b), op))


def _combine_fp8(a, b, op, fmt):
    if fmt == E4M3:
        return float_to_e4m3(_combine(e4m3_to_float(a), e4m3_to_float(b), op))
    return float_to_e5m2(_combine(e5m2_to_float(a), e5m2_to_float(b), op))


@numba.njit(cache=True)
def _combine_pair8(a, b, op, fmt):
    # One uint64 word, little-endian: the value in the low 4 bytes (short_int: 2, then 2 of padding),
    # the int32 index in the high 4. Not inlined (the float formats are: a call per element slows their
    # loops); inlined, its three value types took twice as long to compile.
    ia, ib = np.int32(a >> 32), np.int32(b >> 32)
    if fmt == PAIR_FLOAT_INT:
        vf, i = _loc(_f32_from_bits(a), ia, _f32_from_bits(b), ib, op)
        lo = np.uint64(_ubits(vf))
    elif fmt == PAIR_2INT:
        vi, i = _loc(np.int32(a), ia, np.int32(b), ib, op)
        lo = np.uint64(np.uint32(vi))
    else:
        vs, i = _loc(np.int16(a), ia, np.int16(b), ib, op)
        lo = np.uint64(np.uint16(vs))
    return lo | (np.uint64(np.uint32(i)) << 32)


@numba.njit(cache=True)
def _combine_pair16(a, b, op, fmt):
    # One complex128 word used as two 8-byte halves (no complex arithmetic): the value in the real
    # half, the int32 index in the low 4 bytes of the imaginary half, 4 bytes of padding after it.
    ia, ib = np.int32(_ubits(a.imag)), np.int32(_ubits(b.imag))
    if fmt == PAIR_DOUBLE_INT:
        vd, i = _loc(a.real, ia, b.real, ib, op)
        lo = vd
    else:
        vl, i = _loc(np.int64(_ubits(a.real)), ia, np.int64(_ubits(b.real)), ib, op)
        lo = _f64_from_bits(np.uint64(vl))
    return _complex_of(lo, _f64_from_bits(np.uint64(np.uint32(i))))


def _combine_same(a, b, op, fmt):
    return a  # no other format is held in this storage type


def _combine_fmt(a, b, op, fmt):
    """``a op b`` for a non-NATIVE format ``fmt`` of ``a``'s storage type (jitted code only: the overload)."""
    raise NotImplementedError("jitted code only")


@overload(_combine_fmt, inline="always", jit_options={"cache": True})
def _combine_fmt_typed(a, b, op, fmt):
    if isinstance(a, types.Integer) and not a.signed and a.bitwidth == 16:
        return _combine_16
    if isinstance(a, types.Integer) and not a.signed and a.bitwidth == 8:
        return _combine_fp8
    if isinstance(a, types.Integer) and not a.signed and a.bitwidth == 64:
        return lambda a, b, op, fmt: _combine_pair8(a, b, op, fmt)
    if a == types.complex128:
        return lambda a, b, op, fmt: _combine_pair16(a, b, op, fmt)
    return _combine_same


# The reduce loops by storage type. Slices first: with plain offsets LLVM cannot rule out overlap and
# does not vectorise (3x slower). One loop per op so that the branch sits outside the loop.

def _reduce_float(dst, doff, src, soff, n, op, fmt):
    d = dst[doff:doff + n]
    s = src[soff:soff + n]
    if op == PROD:
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


def _reduce_int(dst, doff, src, soff, n, op, fmt):
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
    elif LAND <= op <= BXOR:  # one loop for MPI's logical and bitwise ops: less to compile, rarely hot
        for i in range(n):
            d[i] = _bit_op(d[i], s[i], op)
    else:
        for i in range(n):
            d[i] = _combine(d[i], s[i], SUM)


def _reduce_complex(dst, doff, src, soff, n, op, fmt):
    d = dst[doff:doff + n]
    s = src[soff:soff + n]
    if fmt != NATIVE:
        for i in range(n):
            d[i] = _combine_fmt(d[i], s[i], op, fmt)
    elif op == PROD:
        for i in range(n):
            d[i] = _complex_prod(d[i], s[i])
    else:
        for i in range(n):
            d[i] = _complex_sum(d[i], s[i])


def _reduce_range(dst, doff, src, soff, n, op, fmt):
    """``dst[doff:doff+n] = dst[doff:doff+n] (op) src[soff:soff+n]`` (jitted code only: the overload)."""
    raise NotImplementedError("jitted code only")


@overload(_reduce_range, jit_options={"cache": True})
def _reduce_range_typed(dst, doff, src, soff, n, op, fmt):
    kind = dst.dtype
    if isinstance(kind, types.Float):
        return _reduce_float
    if isinstance(kind, types.Integer):
        return _reduce_int
    if isinstance(kind, types.Complex):
        return _reduce_complex
    return None


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
    elif fmt in (E4M3, E5M2):
        values[...] = _fp8_bits(_fp8_widen(values, fmt) / np.float32(count), fmt)
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


def _fp8_widen(h: np.ndarray, fmt: int) -> np.ndarray:
    """fp8 bit patterns (uint8) to float32, exactly as :func:`e4m3_to_float`/:func:`e5m2_to_float` (numpy version)."""
    h = np.ascontiguousarray(h).view(np.uint8)
    if fmt == E5M2:
        return _half_widen(h.astype(np.uint16) << 8)
    u = h.astype(np.uint32)
    sign, e, m = (u >> 7) << 31, (u >> 3) & 0xF, u & 0x7
    out = (sign | ((e + 120) << 23) | (m << 20)).view(np.float32)
    sub = e == 0
    signs = np.where(sign[sub] != 0, np.float32(-1), np.float32(1))
    out[sub] = signs * m[sub].astype(np.float32) * np.float32(2.0**-9)  # subnormals (and zeros, signed)
    nan = (u & 0x7F) == 0x7F
    out[nan] = (sign[nan] | 0x7F800000 | (m[nan] << 20)).view(np.float32)
    return out


def _fp8_bits(f32: np.ndarray, fmt: int) -> np.ndarray:
    """float32 array to fp8 bit patterns as :func:`float_to_e4m3`/:func:`float_to_e5m2` do (numpy version)."""
    x = np.ascontiguousarray(f32, np.float32).view(np.uint32).astype(np.int64)
    sign, a = (x >> 24) & 0x80, x & 0x7FFFFFFF
    if fmt == E4M3:
        shift, rebias, saturate, largest, normal, scale = 20, 120 << 3, 0x43E80000, 0x7E, 0x3C800000, 2.0**9
    else:
        shift, rebias, saturate, largest, normal, scale = 21, 112 << 2, 0x47700000, 0x7B, 0x38800000, 2.0**16
    h = (a >> shift) - rebias
    rem, half = a & ((1 << shift) - 1), 1 << (shift - 1)
    h += (rem > half) | ((rem == half) & (h & 1 == 1))
    sub = a < normal
    h[sub] = np.rint(a[sub].astype(np.uint32).view(np.float32).astype(np.float64) * scale).astype(np.int64)
    h[a >= saturate] = largest
    nan = a > 0x7F800000
    h[nan] = 0x7F if fmt == E4M3 else 0x7E | ((a[nan] >> 21) & 0x3)
    return (sign | h).astype(np.uint8)


#: fmt -> (widen to float32, round back) for the formats the kernels compute in float32 (numpy versions).
WIDEN_NARROW = {HALF: (_half_widen, _half_bits), BF16: (_bf16_widen, _bf16_bits),
                E4M3: (lambda h: _fp8_widen(h, E4M3), lambda f: _fp8_bits(f, E4M3)),
                E5M2: (lambda h: _fp8_widen(h, E5M2), lambda f: _fp8_bits(f, E5M2))}


def premultiply(rows: np.ndarray, fmt: int, first: int = 0) -> np.ndarray:
    """``mulsum``'s inputs: row ``r`` (device ``first + r``) times :func:`collectives.ops.premul_scalar`,
    in its own type, as NCCL's PreMulSum multiplies each input before the sum. A new array.

    Integers wrap as the type does; 16-bit and fp8 floats are widened, multiplied in float32 and
    rounded back (fp8 saturating), which for these scalars is the correctly rounded product.

    >>> premultiply(np.array([[3, -128], [3, -128]], np.int8), NATIVE).tolist()
    [[3, -128], [6, 0]]
    """
    out = np.array(rows, copy=True)
    for r in range(out.shape[0]):
        k = premul_scalar(first + r)
        if k == 1:
            continue
        if fmt in WIDEN_NARROW:
            widen, narrow = WIDEN_NARROW[fmt]
            out[r] = narrow(widen(out[r]) * np.float32(k))
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                out[r] = out[r] * out.dtype.type(k)
    return out
